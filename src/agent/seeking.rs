//! The verifier's seeks, off the runtime. A seek blocks until librdkafka's fetcher takes it
//! (up to 5 s), so it runs on the blocking pool, never in the loop and never under the scrape
//! lock. While a partition's seek is in flight its queue is not read: what is queued there
//! was fetched from the old position, beyond the seek's target, and reading it would make the
//! tracker skip the offsets it rewound to (rule 3 would then count their probes lost). When
//! the seek returns, its version barrier is set and librdkafka drops the older records.

use std::collections::{BTreeMap, BTreeSet};

use rdkafka::error::KafkaError;

use super::{Agent, Background};
use crate::verifier::Verifier;

/// Seeks asked for by the tracker, run one at a time per partition (two in flight could
/// finish out of order and leave the reader at the older target).
#[derive(Debug, Default)]
pub(super) struct Seeks {
    /// Not started yet: the latest target per partition (the tracker's position).
    wanted: BTreeMap<i32, i64>,
    in_flight: BTreeSet<i32>,
}

impl Seeks {
    /// Asks for the reader of `partition` to move to `offset`.
    pub(super) fn want(&mut self, partition: i32, offset: i64) {
        self.wanted.insert(partition, offset);
    }
}

impl Agent {
    /// Starts the seeks asked for, each partition's after its previous one returned. Called
    /// after every handler, outside the scrape lock.
    pub(super) fn start_seeks(&mut self) {
        let ready: Vec<(i32, i64)> = self
            .seeks
            .wanted
            .iter()
            .filter(|(p, _)| !self.seeks.in_flight.contains(p))
            .map(|(&p, &o)| (p, o))
            .collect();
        for (partition, offset) in ready {
            self.seeks.wanted.remove(&partition);
            self.seeks.in_flight.insert(partition);
            self.verifier.pause(partition);
            tracing::debug!(partition, offset, "verifier seeking");
            let consumer = self.verifier.consumer().clone();
            let topic = self.verifier.topic().to_owned();
            let tx = self.bg_tx.clone();
            tokio::task::spawn_blocking(move || {
                let result = Verifier::seek(&consumer, &topic, partition, offset);
                let _ = tx.blocking_send(Background::Sought {
                    partition,
                    offset,
                    result,
                });
            });
        }
    }

    /// A seek returned: the partition is read again (or its next seek starts).
    pub(super) fn on_sought(
        &mut self,
        partition: i32,
        offset: i64,
        result: Result<(), KafkaError>,
    ) {
        self.seeks.in_flight.remove(&partition);
        if let Err(error) = result {
            // After an out-of-range error librdkafka stops fetching the partition and
            // refuses a seek; assigning again at the tracker's positions restarts it.
            tracing::debug!(partition, offset, %error, "verifier seek refused; reassigning");
            self.reassign();
        }
        if !self.seeks.wanted.contains_key(&partition) {
            self.verifier.resume(partition);
        }
    }
}
