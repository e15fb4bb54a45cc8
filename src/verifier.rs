//! The verifier's consumer: manual assignment to every canary partition (no consumer group,
//! so no rebalance blind spots), one queue per partition so that an error always names its
//! partition, and `auto.offset.reset=error` so that the log moving under the reader is
//! reported instead of silently skipped.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{select_all, FutureExt};
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use uuid::Uuid;

use crate::kafka::{Clients, Context, VERIFIER_GROUP_PREFIX};

pub type VerifierConsumer = StreamConsumer<Context>;

/// What one partition queue yielded.
pub enum Fetched {
    Record(OwnedMessage),
    /// The fetch position is outside the log (`auto.offset.reset=error`).
    OutOfRange,
    Error(KafkaError),
}

pub struct Verifier {
    consumer: Arc<VerifierConsumer>,
    topic: String,
    queues: Vec<(i32, StreamPartitionQueue<Context>)>,
    /// Partitions whose queue is not read: a seek of theirs is in flight.
    paused: BTreeSet<i32>,
}

impl Verifier {
    pub fn create(clients: &Clients, topic: &str, instance: Uuid) -> Result<Verifier, KafkaError> {
        let mut cfg = clients.config().clone();
        // A group id is required by librdkafka's assign(); the group is never joined and
        // nothing is committed.
        cfg.set("group.id", format!("{VERIFIER_GROUP_PREFIX}{instance}"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "error")
            .set("allow.auto.create.topics", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "100");
        let consumer: Arc<VerifierConsumer> =
            Arc::new(cfg.create_with_context(clients.context("verifier"))?);
        Ok(Verifier {
            consumer,
            topic: topic.to_owned(),
            queues: Vec::new(),
            paused: BTreeSet::new(),
        })
    }

    pub fn consumer(&self) -> &Arc<VerifierConsumer> {
        &self.consumer
    }

    /// Drops the partition queues before a new assignment: until [`split`](Verifier::split)
    /// what is fetched goes to the main queue, which the agent reads first (see
    /// [`next_main`]), so no record is lost or reordered.
    pub fn clear_queues(&mut self) {
        self.queues.clear();
    }

    /// Assigns exactly these partitions at these offsets, replacing the old assignment.
    /// Blocking: librdkafka waits for its main thread to take the assignment, so run it off
    /// the runtime, after [`clear_queues`](Verifier::clear_queues).
    pub fn assign(
        consumer: &VerifierConsumer,
        topic: &str,
        positions: &[(i32, i64)],
    ) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for &(p, o) in positions {
            tpl.add_partition_offset(topic, p, Offset::Offset(o))?;
        }
        consumer.assign(&tpl)
    }

    /// Gives each assigned partition its own queue, once [`assign`](Verifier::assign)
    /// returned.
    pub fn split(&mut self, partitions: &[i32]) {
        self.queues.clear();
        for &p in partitions {
            if let Some(q) = self.consumer.split_partition_queue(&self.topic, p) {
                self.queues.push((p, q));
            }
        }
    }

    /// Moves the reader of `partition` to `offset` (blocking, up to 5 s: run it off the
    /// runtime, with the partition [paused](Verifier::pause)). librdkafka discards what it
    /// fetched before the seek: the seek sets a version barrier as it starts, and records of
    /// an older version are dropped when the queue is read.
    pub fn seek(
        consumer: &VerifierConsumer,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), KafkaError> {
        consumer.seek(
            topic,
            partition,
            Offset::Offset(offset),
            Duration::from_secs(5),
        )
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Stops reading `partition`'s queue until [`resume`](Verifier::resume). What librdkafka
    /// fetched for it stays queued (and a seek's barrier drops what precedes the seek).
    pub fn pause(&mut self, partition: i32) {
        self.paused.insert(partition);
    }

    pub fn is_paused(&self, partition: i32) -> bool {
        self.paused.contains(&partition)
    }

    pub fn resume(&mut self, partition: i32) {
        self.paused.remove(&partition);
    }

    /// The next message or error from any partition. Cancel-safe.
    pub async fn next(&self) -> (i32, Fetched) {
        let mut futs = Vec::with_capacity(self.queues.len());
        for (p, q) in &self.queues {
            if !self.paused.contains(p) {
                let p = *p;
                futs.push(Box::pin(async move { (p, fetched(q.recv().await)) }));
            }
        }
        if futs.is_empty() {
            return std::future::pending().await;
        }
        select_all(futs).await.0
    }

    /// What `partition`'s queue already holds, without waiting: lets the agent read a
    /// fetched batch in one turn instead of one loop turn per record.
    pub fn try_next(&self, partition: i32) -> Option<Fetched> {
        if self.paused.contains(&partition) {
            return None;
        }
        let (_, q) = self.queues.iter().find(|(p, _)| *p == partition)?;
        q.recv().now_or_never().map(fetched)
    }
}

fn fetched(r: KafkaResult<BorrowedMessage<'_>>) -> Fetched {
    match r {
        Ok(m) => Fetched::Record(m.detach()),
        Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset))
        | Err(KafkaError::MessageConsumption(RDKafkaErrorCode::OffsetOutOfRange)) => {
            Fetched::OutOfRange
        }
        Err(e) => Fetched::Error(e),
    }
}

/// The next message or error from the consumer's main queue. Records fetched between
/// `assign()` and the split of their partition's queue land here, *before* anything on the
/// partition queue, so the agent polls this first to keep offsets in order. Errors here
/// carry no partition.
pub async fn next_main(consumer: &VerifierConsumer) -> (Option<i32>, Fetched) {
    match consumer.recv().await {
        Ok(m) => (
            Some(rdkafka::Message::partition(&m)),
            Fetched::Record(m.detach()),
        ),
        Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset)) => {
            (None, Fetched::OutOfRange)
        }
        Err(e) => (None, Fetched::Error(e)),
    }
}
