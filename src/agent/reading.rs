//! What the verifier reads: records (classified as own probe, another instance's probe or
//! foreign), out-of-range refusals and fetch errors.

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;

use super::{now_us, Agent, Background, KAFKA_TIMEOUT};
use crate::probe;
use crate::tracker::Record;
use crate::verifier::Fetched;

/// Records read from one partition queue in one loop turn (one hold of the scrape lock). A
/// backlog is read in batches of this size, and the loop's ticks still get a turn between
/// them.
const READ_BATCH: usize = 256;

impl Agent {
    /// `first`, then whatever else partition `p`'s queue already holds (up to
    /// [`READ_BATCH`] in all). Stops at anything but a record, and when the reader moved
    /// (a seek or a reassignment): the next record may then be on the main queue.
    pub(super) fn on_fetched_batch(&mut self, p: i32, first: Fetched) {
        self.reader.moved = false;
        let mut next = Some(first);
        let mut n = 0;
        while let Some(f) = next.take() {
            let record = matches!(f, Fetched::Record(_));
            self.read(p, f);
            n += 1;
            if record && n < READ_BATCH && !self.reader.moved {
                next = self.reader.try_next(p);
            }
        }
        // Once per batch: the scrape lock is held for all of it.
        self.refresh_pending(p);
    }

    /// One record or error of partition `p` from the main queue.
    pub(super) fn on_main_fetched(&mut self, p: i32, f: Fetched) {
        if self.reader.drop_main_record(p) {
            return;
        }
        self.read(p, f);
        self.refresh_pending(p);
    }

    /// What the verifier read; the caller refreshes the pending gauge.
    fn read(&mut self, p: i32, f: Fetched) {
        match f {
            Fetched::Record(msg) => {
                let record = self.classify(p, msg.payload());
                self.tracker
                    .on_record(p, msg.offset(), record, now_us(), &mut self.outcome);
                self.apply_outcome();
            }
            Fetched::OutOfRange => {
                self.metrics
                    .consumer_errors
                    .with_label_values(&[self.topic.as_str(), "offset_out_of_range"])
                    .inc();
                tracing::warn!(
                    partition = p,
                    position = self.tracker.position(p),
                    "verifier fetch out of range; reading watermarks"
                );
                // The reader may move while the watermarks are read (an append below it
                // rewinds it); the tracker judges them against where it stood now.
                let refused = self.tracker.refused(p);
                let consumer = self.reader.consumer().clone();
                let topic = self.topic.clone();
                let tx = self.bg_tx.clone();
                tokio::task::spawn_blocking(move || {
                    let result = consumer.fetch_watermarks(&topic, p, KAFKA_TIMEOUT);
                    let _ = tx.blocking_send(Background::Watermarks {
                        partition: p,
                        refused,
                        result,
                    });
                });
            }
            Fetched::Error(error) => {
                self.metrics
                    .consumer_errors
                    .with_label_values(&[self.topic.as_str(), "fetch"])
                    .inc();
                tracing::warn!(partition = p, %error, "verifier fetch error");
            }
        }
    }

    /// An error on the consumer's main queue, not tied to a partition.
    pub(super) fn on_main_error(&mut self, f: Fetched) {
        match f {
            Fetched::OutOfRange => {
                // Reported before the partition queues were split; assigning again makes the
                // partition report it on its own queue, where it is classified.
                self.reassign();
            }
            Fetched::Error(error) => {
                self.metrics
                    .consumer_errors
                    .with_label_values(&[self.topic.as_str(), "client"])
                    .inc();
                tracing::debug!(%error, "verifier consumer error");
            }
            Fetched::Record(_) => {}
        }
    }

    /// Decides what a record on partition `p` is; counts foreign records and other instances.
    pub(super) fn classify(&mut self, p: i32, payload: Option<&[u8]>) -> Record {
        match probe::decode(payload) {
            Ok(probe) if probe.partition != p => {
                self.metrics
                    .foreign
                    .with_label_values(&[self.topic.as_str(), "wrong_partition"])
                    .inc();
                Record::Other
            }
            Ok(probe) if probe.instance == self.instance => Record::Own {
                seq: probe.seq,
                produced_at_us: probe.produced_at_us,
            },
            Ok(probe) => {
                self.fleet.seen(probe.instance, probe.produced_at_us);
                self.others.count(probe.instance);
                Record::Other
            }
            Err(e) => {
                self.metrics
                    .foreign
                    .with_label_values(&[self.topic.as_str(), e.as_label()])
                    .inc();
                Record::Other
            }
        }
    }
}
