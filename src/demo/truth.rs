//! The demo's own view of the cluster, independent of the agent: watermarks, leaders,
//! committed offsets, the probes that are really in a log range, and filler records written
//! to push retention. Every figure the demo calls "injected" is computed from these, never
//! from the agent's counters. All calls block (run them on the blocking pool).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("read of {topic} stopped short: partition {partition} at {at}, wanted {to}")]
    Short {
        topic: String,
        partition: i32,
        at: i64,
        to: i64,
    },
    #[error("{0} filler records were not acknowledged")]
    Filler(usize),
}

fn consumer(bootstrap: &str) -> Result<BaseConsumer, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "losswatch-demo-truth")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "error")
        .set("enable.partition.eof", "false")
        .set("log_level", "3")
        .create()
}

/// Low and high watermark of each partition `0..partitions`.
pub fn watermarks(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> Result<BTreeMap<i32, (i64, i64)>, KafkaError> {
    let c = consumer(bootstrap)?;
    (0..partitions)
        .map(|p| Ok((p, c.fetch_watermarks(topic, p, TIMEOUT)?)))
        .collect()
}

/// The leader broker of each partition.
pub fn leaders(bootstrap: &str, topic: &str) -> Result<BTreeMap<i32, i32>, KafkaError> {
    let c = consumer(bootstrap)?;
    let md = c.fetch_metadata(Some(topic), TIMEOUT)?;
    Ok(md
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .map(|p| (p.id(), p.leader()))
        .collect())
}

/// Committed offsets of `group` on `topic` (partitions without a commit are left out).
pub fn committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Result<BTreeMap<i32, i64>, KafkaError> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, TIMEOUT)?;
    Ok(got
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect())
}

/// A record found in the log: its offset and, when it is a probe, the probe.
#[derive(Debug, Clone, Copy)]
pub struct Found {
    pub partition: i32,
    pub offset: i64,
    pub probe: Option<crate::probe::Probe>,
}

/// Every record of `topic` in `[from, to)` of each given partition.
pub fn read(
    bootstrap: &str,
    topic: &str,
    ranges: &BTreeMap<i32, (i64, i64)>,
) -> Result<Vec<Found>, TruthError> {
    let c = consumer(bootstrap)?;
    let mut tpl = TopicPartitionList::new();
    let mut next = BTreeMap::new();
    for (&p, &(from, to)) in ranges {
        if to > from {
            tpl.add_partition_offset(topic, p, Offset::Offset(from))?;
            next.insert(p, (from, to));
        }
    }
    if next.is_empty() {
        return Ok(vec![]);
    }
    c.assign(&tpl)?;
    let mut out = vec![];
    let deadline = Instant::now() + Duration::from_secs(20);
    while next.values().any(|(at, to)| at < to) {
        if Instant::now() > deadline {
            let (&partition, &(at, to)) = next
                .iter()
                .find(|(_, (at, to))| at < to)
                .unwrap_or((&0, &(0, 0)));
            return Err(TruthError::Short {
                topic: topic.to_owned(),
                partition,
                at,
                to,
            });
        }
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let Some(n) = next.get_mut(&m.partition()) else {
                    continue;
                };
                if m.offset() >= n.1 {
                    n.0 = n.1;
                    continue;
                }
                n.0 = m.offset() + 1;
                out.push(Found {
                    partition: m.partition(),
                    offset: m.offset(),
                    probe: crate::probe::decode(m.payload()).ok(),
                });
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    Ok(out)
}

struct FillerContext;
impl ClientContext for FillerContext {}
impl ProducerContext for FillerContext {
    type DeliveryOpaque = Box<std::sync::mpsc::Sender<Result<(i32, i64), ()>>>;
    fn delivery(&self, r: &DeliveryResult<'_>, tx: Self::DeliveryOpaque) {
        let _ = tx.send(match r {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err(_) => Err(()),
        });
    }
}

/// Writes `bytes` of filler records to each partition `0..partitions`; returns the offsets
/// they were written at.
pub fn fill(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    bytes: usize,
) -> Result<BTreeMap<i32, Vec<i64>>, TruthError> {
    const RECORD: usize = 100_000;
    let producer: ThreadedProducer<FillerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "10000")
        .set("queue.buffering.max.kbytes", "262144")
        .create_with_context(FillerContext)?;
    let payload = vec![b'.'; RECORD];
    let (tx, rx) = std::sync::mpsc::channel();
    let mut sent = 0usize;
    for p in 0..partitions {
        for _ in 0..bytes.div_ceil(RECORD) {
            let mut rec = BaseRecord::with_opaque_to(topic, Box::new(tx.clone()))
                .partition(p)
                .payload(&payload[..])
                .key("losswatch-demo-filler");
            loop {
                match producer.send::<str, [u8]>(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(_), r)) => {
                        rec = r;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err((e, _)) => return Err(e.into()),
                }
            }
            sent += 1;
        }
    }
    drop(tx);
    producer.flush(Duration::from_secs(15))?;
    let mut out: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut failed = 0;
    for r in rx.try_iter() {
        match r {
            Ok((p, o)) => out.entry(p).or_default().push(o),
            Err(()) => failed += 1,
        }
    }
    let acked: usize = out.values().map(Vec::len).sum();
    if failed > 0 || acked != sent {
        return Err(TruthError::Filler(sent - acked));
    }
    Ok(out)
}
