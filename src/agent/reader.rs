//! The reader: the verifier's consumer and the commands that move it (seeks and
//! assignments), run off the runtime. A seek blocks until librdkafka's fetcher takes it (up to
//! 5 s) and an assignment waits for librdkafka's main thread, so both run on the blocking
//! pool, never in the loop and never under the scrape lock; their results come back as
//! [`Background`] messages.
//!
//! While a partition's seek is in flight its queue is not read: what is queued there was
//! fetched from the old position, beyond the seek's target, and reading it would make the
//! tracker skip the offsets it rewound to (rule 3 would then count their probes lost). When
//! the seek returns, its version barrier is set and librdkafka drops the older records.

use std::collections::{BTreeMap, BTreeSet};

use rdkafka::error::KafkaError;
use tokio::sync::mpsc;

use super::Background;
use crate::verifier::{Fetched, Next, Verifier, VerifierConsumer};

pub(super) struct Reader {
    verifier: Verifier,
    bg_tx: mpsc::Sender<Background>,
    /// Seeks not started yet: the latest target per partition (the tracker's position).
    /// One seek per partition runs at a time: two in flight could finish out of order and
    /// leave the reader at the older target.
    seeks_wanted: BTreeMap<i32, i64>,
    seeks_in_flight: BTreeSet<i32>,
    /// Partitions with a seek in flight of which a record came on the main queue and was
    /// dropped: it may have been fetched after the seek, so the seek is done again.
    seeks_spoiled: BTreeSet<i32>,
    /// An assignment is in flight.
    assigning: bool,
    /// Another assignment was asked for while one was in flight.
    assign_again: bool,
    /// The assignment must be redone at the next housekeeping (one failed).
    pub(super) assign_due: bool,
    /// The reader was told to move since this was last cleared: what its queues hold next
    /// may come from elsewhere (the main queue first), so a batch read stops.
    pub(super) moved: bool,
}

impl Reader {
    pub(super) fn new(verifier: Verifier, bg_tx: mpsc::Sender<Background>) -> Reader {
        Reader {
            verifier,
            bg_tx,
            seeks_wanted: BTreeMap::new(),
            seeks_in_flight: BTreeSet::new(),
            seeks_spoiled: BTreeSet::new(),
            assigning: false,
            assign_again: false,
            assign_due: false,
            moved: false,
        }
    }

    pub(super) fn consumer(&self) -> &std::sync::Arc<VerifierConsumer> {
        self.verifier.consumer()
    }

    /// The next record or error, of the main queue first, then of any partition queue
    /// being read. Cancel-safe.
    pub(super) async fn next(&mut self) -> Next {
        let next = self.verifier.next().await;
        // A partition's queue that was waiting when its seek started may have yielded
        // before the seek returned; what it yielded was dropped, so the seek is done again
        // (as for a record of the main queue, below).
        for p in self.verifier.take_dropped() {
            if self.seeks_in_flight.contains(&p) {
                self.seeks_spoiled.insert(p);
            }
        }
        next
    }

    /// What partition `p`'s queue already holds, without waiting.
    pub(super) fn try_next(&self, p: i32) -> Option<Fetched> {
        self.verifier.try_next(p)
    }

    /// Whether a record of `partition` from the main queue must be dropped. The main queue
    /// holds records fetched between an assignment and the split of the partition queues;
    /// one read while the partition's seek is in flight may precede the seek's target (see
    /// the module comment). It may also follow it, so the seek is done again once it
    /// returns, and what it drops is fetched anew.
    pub(super) fn drop_main_record(&mut self, partition: i32) -> bool {
        if self.seeks_in_flight.contains(&partition) {
            self.seeks_spoiled.insert(partition);
            return true;
        }
        false
    }

    /// A command from the tracker: move the reader of `partition` back to `offset`.
    pub(super) fn seek(&mut self, partition: i32, offset: i64) {
        self.moved = true;
        self.seeks_wanted.insert(partition, offset);
    }

    /// Starts the seeks asked for, each partition's after its previous one returned. Called
    /// after every handler, outside the scrape lock.
    pub(super) fn start_seeks(&mut self) {
        let ready: Vec<(i32, i64)> = self
            .seeks_wanted
            .iter()
            .filter(|(p, _)| !self.seeks_in_flight.contains(p))
            .map(|(&p, &o)| (p, o))
            .collect();
        for (partition, offset) in ready {
            self.seeks_wanted.remove(&partition);
            self.seeks_in_flight.insert(partition);
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

    /// A seek returned: the partition is read again (or its next seek starts). Returns
    /// whether the reader must be assigned again (the seek was refused).
    #[must_use]
    pub(super) fn on_sought(
        &mut self,
        partition: i32,
        offset: i64,
        result: Result<(), KafkaError>,
    ) -> bool {
        self.seeks_in_flight.remove(&partition);
        if self.seeks_spoiled.remove(&partition) {
            // Nothing of the partition was read meanwhile, so the target still stands.
            self.seeks_wanted.entry(partition).or_insert(offset);
        }
        if !self.seeks_wanted.contains_key(&partition) {
            self.verifier.resume(partition);
        }
        match result {
            Ok(()) => false,
            Err(error) => {
                // After an out-of-range error librdkafka stops fetching the partition and
                // refuses a seek; assigning again at the tracker's positions restarts it.
                tracing::debug!(partition, offset, %error, "verifier seek refused; reassigning");
                true
            }
        }
    }

    /// Points the verifier at exactly these partitions and offsets. One assignment runs at
    /// a time; one asked for meanwhile is reported by [`on_assigned`](Reader::on_assigned),
    /// to run at the positions of then.
    pub(super) fn assign(&mut self, positions: Vec<(i32, i64)>) {
        self.moved = true;
        if self.assigning {
            self.assign_again = true;
            return;
        }
        self.assigning = true;
        self.verifier.clear_queues();
        let consumer = self.verifier.consumer().clone();
        let topic = self.verifier.topic().to_owned();
        let tx = self.bg_tx.clone();
        tokio::task::spawn_blocking(move || {
            let result = Verifier::assign(&consumer, &topic, &positions);
            let partitions = positions.into_iter().map(|(p, _)| p).collect();
            let _ = tx.blocking_send(Background::Assigned { partitions, result });
        });
    }

    /// An assignment returned. Returns whether another one was asked for meanwhile.
    #[must_use]
    pub(super) fn on_assigned(
        &mut self,
        partitions: &[i32],
        result: Result<(), KafkaError>,
    ) -> bool {
        self.assigning = false;
        self.moved = true;
        match result {
            Ok(()) => self.verifier.split(partitions),
            Err(error) => {
                tracing::error!(%error, "verifier assignment failed; retrying at next metadata refresh");
                self.assign_due = true;
            }
        }
        std::mem::take(&mut self.assign_again)
    }
}
