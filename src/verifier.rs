//! The verifier's consumer: manual assignment to every canary partition (no consumer group,
//! so no rebalance blind spots), one queue per partition so that an error always names its
//! partition, and `auto.offset.reset=error` so that the log moving under the reader is
//! reported instead of silently skipped.

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
        })
    }

    pub fn consumer(&self) -> &Arc<VerifierConsumer> {
        &self.consumer
    }

    /// Assigns exactly these partitions at these offsets. Called when the partition set
    /// changes; assign() replaces the old assignment and its queues.
    pub fn assign(&mut self, positions: &[(i32, i64)]) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for &(p, o) in positions {
            tpl.add_partition_offset(&self.topic, p, Offset::Offset(o))?;
        }
        self.queues.clear();
        // Records fetched before a partition's queue is split go to the main queue; the agent
        // reads that queue first (see `next_main`), so none is lost or reordered.
        self.consumer.assign(&tpl)?;
        for &(p, _) in positions {
            if let Some(q) = self.consumer.split_partition_queue(&self.topic, p) {
                self.queues.push((p, q));
            }
        }
        Ok(())
    }

    /// Moves the reader of `partition` to `offset`. Messages fetched before the seek are
    /// discarded by librdkafka.
    pub fn seek(&self, partition: i32, offset: i64) -> Result<(), KafkaError> {
        self.consumer.seek(
            &self.topic,
            partition,
            Offset::Offset(offset),
            Duration::from_secs(5),
        )
    }

    /// The next message or error from any partition. Cancel-safe.
    pub async fn next(&self) -> (i32, Fetched) {
        if self.queues.is_empty() {
            return std::future::pending().await;
        }
        let futs = self
            .queues
            .iter()
            .map(|(p, q)| Box::pin(async move { (*p, fetched(q.recv().await)) }));
        select_all(futs).await.0
    }

    /// What `partition`'s queue already holds, without waiting: lets the agent read a
    /// fetched batch in one turn instead of one loop turn per record.
    pub fn try_next(&self, partition: i32) -> Option<Fetched> {
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
