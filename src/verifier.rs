//! The verifier's consumer: manual assignment to every canary partition (no consumer group,
//! so no rebalance blind spots), one queue per partition so that an error always names its
//! partition, and `auto.offset.reset=error` so that the log moving under the reader is
//! reported instead of silently skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::future::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
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

/// What [`Verifier::next`] yielded.
pub enum Next {
    /// From the consumer's main queue: records fetched between an assignment and the split
    /// of their partition's queue (with their partition), and errors that name none.
    Main(Option<i32>, Fetched),
    /// From the partition's own queue.
    Partition(i32, Fetched),
}

type Queue = StreamPartitionQueue<Context>;
/// A partition queue waiting for its next record or error.
type Armed = Pin<Box<dyn Future<Output = (i32, Fetched, Queue)> + Send>>;

/// The partition queues are read through a [`FuturesUnordered`]: each queue waits for its
/// next record on its own waker, and only the queues librdkafka reports non-empty are
/// polled. A turn of the agent loop costs the same with 6 partitions or 1 000 (a
/// `select_all` over every queue polled each of them, and read the clock twice per queue,
/// at every turn).
pub struct Verifier {
    consumer: Arc<VerifierConsumer>,
    topic: String,
    /// Queues waiting for a record.
    armed: FuturesUnordered<Armed>,
    /// Queues not waiting: the one last read from ([`Verifier::held`]), and those of paused
    /// partitions.
    idle: BTreeMap<i32, Queue>,
    /// The partition whose record [`Verifier::next`] returned last: its queue is kept out of
    /// [`Verifier::armed`] so that [`Verifier::try_next`] can read the rest of its batch.
    held: Option<i32>,
    /// Partitions whose queue is not read: a seek of theirs is in flight.
    paused: BTreeSet<i32>,
    /// Paused partitions whose queue yielded anyway (it was waiting when the pause came):
    /// what it yielded was dropped, so the seek must be done again (see `agent::reader`).
    dropped: Vec<i32>,
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
            armed: FuturesUnordered::new(),
            idle: BTreeMap::new(),
            held: None,
            paused: BTreeSet::new(),
            dropped: Vec::new(),
        })
    }

    pub fn consumer(&self) -> &Arc<VerifierConsumer> {
        &self.consumer
    }

    /// Drops the partition queues before a new assignment: until [`split`](Verifier::split)
    /// what is fetched goes to the main queue, which [`next`](Verifier::next) reads first,
    /// so no record is lost or reordered.
    pub fn clear_queues(&mut self) {
        self.armed.clear();
        self.idle.clear();
        self.held = None;
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
        self.clear_queues();
        for &p in partitions {
            if let Some(q) = self.consumer.split_partition_queue(&self.topic, p) {
                if self.paused.contains(&p) {
                    self.idle.insert(p, q);
                } else {
                    self.arm(p, q);
                }
            }
        }
    }

    fn arm(&mut self, p: i32, q: Queue) {
        self.armed.push(Box::pin(async move {
            let f = fetched(q.recv().await);
            (p, f, q)
        }));
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
    /// fetched for it stays queued (and a seek's barrier drops what precedes the seek). If
    /// the queue is waiting for a record when the pause comes, what it yields meanwhile is
    /// dropped and reported by [`take_dropped`](Verifier::take_dropped).
    pub fn pause(&mut self, partition: i32) {
        self.paused.insert(partition);
    }

    pub fn is_paused(&self, partition: i32) -> bool {
        self.paused.contains(&partition)
    }

    pub fn resume(&mut self, partition: i32) {
        if self.paused.remove(&partition) && self.held != Some(partition) {
            if let Some(q) = self.idle.remove(&partition) {
                self.arm(partition, q);
            }
        }
    }

    /// Paused partitions of which a record or error was dropped since the last call.
    pub fn take_dropped(&mut self) -> Vec<i32> {
        std::mem::take(&mut self.dropped)
    }

    /// The next message or error: from the main queue first (see [`Next::Main`]), then from
    /// any partition queue being read. Cancel-safe: a queue's record stays in its future
    /// until it is returned.
    pub async fn next(&mut self) -> Next {
        if let Some(p) = self.held.take() {
            if !self.paused.contains(&p) {
                if let Some(q) = self.idle.remove(&p) {
                    self.arm(p, q);
                }
            }
        }
        let consumer = self.consumer.clone();
        let main = consumer.recv();
        let mut main = std::pin::pin!(main);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = main.as_mut().poll(cx) {
                return Poll::Ready(main_fetched(r));
            }
            while let Poll::Ready(Some((p, f, q))) = self.armed.poll_next_unpin(cx) {
                self.idle.insert(p, q);
                if self.paused.contains(&p) {
                    drop(f);
                    self.dropped.push(p);
                    continue;
                }
                self.held = Some(p);
                return Poll::Ready(Next::Partition(p, f));
            }
            Poll::Pending
        })
        .await
    }

    /// What the queue of `partition`, whose record [`next`](Verifier::next) just returned,
    /// already holds, without waiting: lets the agent read a fetched batch in one turn
    /// instead of one loop turn per record.
    pub fn try_next(&self, partition: i32) -> Option<Fetched> {
        if self.held != Some(partition) || self.paused.contains(&partition) {
            return None;
        }
        let q = self.idle.get(&partition)?;
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

/// A message or error of the consumer's main queue. Records fetched between `assign()` and
/// the split of their partition's queue land there, *before* anything on the partition
/// queue, so [`Verifier::next`] polls it first to keep offsets in order. Errors there carry
/// no partition.
fn main_fetched(r: KafkaResult<BorrowedMessage<'_>>) -> Next {
    match r {
        Ok(m) => Next::Main(
            Some(rdkafka::Message::partition(&m)),
            Fetched::Record(m.detach()),
        ),
        Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset)) => {
            Next::Main(None, Fetched::OutOfRange)
        }
        Err(e) => Next::Main(None, Fetched::Error(e)),
    }
}
