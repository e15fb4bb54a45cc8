//! The lag poller's requests. Every function blocks (librdkafka's synchronous calls) and is
//! run on the blocking pool. Each is one batched round: one metadata request, one group
//! list (ListGroups + DescribeGroups per broker), one OffsetFetch per group, one ListOffsets
//! per broker for the log ends and one for the log starts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::assignment;
use super::book::{LogOffsets, Tp};
pub use crate::kafka::LAG_READER_GROUP as READER_GROUP;
use crate::kafka::{Clients, Context};

pub type LagClient = BaseConsumer<Context>;

/// Settings of every consumer the poller creates: it reads and never commits or joins.
fn consumer_config(base: &ClientConfig, group: &str) -> ClientConfig {
    let mut c = base.clone();
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("allow.auto.create.topics", "false");
    c
}

/// The poller's long-lived client: metadata, group list, log offsets and record reads.
pub fn client(clients: &Clients) -> Result<LagClient, KafkaError> {
    let mut c = consumer_config(clients.config(), READER_GROUP);
    c.set("auto.offset.reset", "error")
        .set("enable.partition.eof", "false")
        // Only the first record of each partition is wanted: keep prefetching small.
        .set("queued.min.messages", "1")
        .set("queued.max.messages.kbytes", "4096")
        .set("fetch.message.max.bytes", "65536")
        .set("fetch.wait.max.ms", "100")
        .set("fetch.queue.backoff.ms", "10");
    c.create_with_context(clients.context("lag"))
}

/// A listed consumer group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listed {
    pub members: usize,
    /// Topics assigned to its members (consumer protocol only).
    pub assigned: BTreeSet<String>,
}

/// Every consumer group of the cluster, with its members.
pub fn list_groups(
    client: &LagClient,
    timeout: Duration,
) -> Result<BTreeMap<String, Listed>, KafkaError> {
    let list = client.fetch_group_list(None, timeout)?;
    Ok(list
        .groups()
        .iter()
        .map(|g| {
            let assigned = if g.protocol_type() == "consumer" {
                g.members()
                    .iter()
                    .filter_map(|m| m.assignment().and_then(assignment::decode))
                    .flatten()
                    .map(|(t, _)| t)
                    .collect()
            } else {
                BTreeSet::new()
            };
            (
                g.name().to_owned(),
                Listed {
                    members: g.members().len(),
                    assigned,
                },
            )
        })
        .collect())
}

/// Partitions of every topic (one metadata request). Topics in error are left out.
pub fn topics(
    client: &LagClient,
    timeout: Duration,
) -> Result<BTreeMap<String, Vec<i32>>, KafkaError> {
    let md = client.fetch_metadata(None, timeout)?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| {
            (
                t.name().to_owned(),
                t.partitions().iter().map(|p| p.id()).collect(),
            )
        })
        .collect())
}

/// A client with a consumer group's id, to read that group's committed offsets. It never
/// joins the group. Dropping it blocks for about 100 ms (the consumer's close handshake), so
/// the poller drops it off the request path.
pub struct GroupClient(BaseConsumer);

impl GroupClient {
    pub fn new(base: &ClientConfig, group: &str) -> Result<GroupClient, KafkaError> {
        Ok(GroupClient(consumer_config(base, group).create()?))
    }

    /// Committed offsets on `partitions` (one OffsetFetch to the group's coordinator).
    /// Partitions without a commit are left out.
    pub fn committed(
        &self,
        partitions: &[Tp],
        timeout: Duration,
    ) -> Result<BTreeMap<Tp, i64>, KafkaError> {
        if partitions.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        for (t, p) in partitions {
            tpl.add_partition(t, *p);
        }
        let tpl = self.0.committed_offsets(tpl, timeout)?;
        Ok(known_offsets(&tpl))
    }
}

/// The offsets of a list answered without error, by (topic, partition).
fn known_offsets(tpl: &TopicPartitionList) -> BTreeMap<Tp, i64> {
    tpl.elements()
        .iter()
        .filter(|e| e.error().is_ok())
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) if o >= 0 => Some(((e.topic().to_owned(), e.partition()), o)),
            _ => None,
        })
        .collect()
}

/// Log start and log end of `partitions`: two ListOffsets rounds (latest, earliest), each
/// one request per leader broker. A partition whose offsets could not be read is `None`.
pub fn log_offsets(
    client: &LagClient,
    partitions: &BTreeSet<Tp>,
    timeout: Duration,
) -> Result<BTreeMap<Tp, Option<LogOffsets>>, KafkaError> {
    let ask = |at: Offset| -> Result<BTreeMap<Tp, i64>, KafkaError> {
        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        for (t, p) in partitions {
            tpl.add_partition_offset(t, *p, at)?;
        }
        let tpl = client.offsets_for_times(tpl, timeout)?;
        Ok(known_offsets(&tpl))
    };
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    let ends = ask(Offset::End)?;
    let starts = ask(Offset::Beginning)?;
    Ok(partitions
        .iter()
        .map(|tp| {
            let l = match (starts.get(tp), ends.get(tp)) {
                (Some(&start), Some(&end)) if start <= end => Some(LogOffsets { start, end }),
                _ => None,
            };
            (tp.clone(), l)
        })
        .collect())
}
