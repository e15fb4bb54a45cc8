//! The lag poller's clients and requests. One admin client ([`LagAdmin`]) answers every
//! request of a poll: the group list and members (ListConsumerGroups + DescribeConsumerGroups),
//! topic metadata, committed offsets (ListConsumerGroupOffsets, many in flight), log offsets
//! (two batched ListOffsets rounds) and topic ids (DescribeTopics). A reader consumer
//! ([`LagReader`]) fetches the first unconsumed records whose timestamps the time lag needs.
//! Both live for the agent's whole term as poller: no connection is opened per poll.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::TopicPartitionList;
use rdkafka_admin_ext::{Admin, GroupState, OffsetSpec, Options, TopicId};
use tokio::task::JoinSet;

use super::book::{LogOffsets, Tp};
use crate::kafka::{Clients, Context};

pub use crate::kafka::LAG_READER_GROUP as READER_GROUP;

/// DescribeConsumerGroups asked per call.
const DESCRIBE_BATCH: usize = 1000;

/// The poller's admin client. Other cluster-wide tasks of the elected agent borrow it
/// (`admin.client()` is the rust-rdkafka `AdminClient`, for `describe_configs` and
/// `fetch_metadata`) instead of opening their own connections.
pub type LagAdmin = Admin<Context>;

/// The consumer that reads record timestamps.
pub type LagReader = BaseConsumer<Context>;

/// The poller's admin client.
pub fn admin(clients: &Clients) -> Result<Arc<LagAdmin>, KafkaError> {
    clients.admin("lag")
}

/// The reader consumer: it reads and never commits or joins.
pub fn reader(clients: &Clients) -> Result<LagReader, KafkaError> {
    let mut c = clients.config().clone();
    c.set("group.id", READER_GROUP)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("allow.auto.create.topics", "false")
        .set("auto.offset.reset", "error")
        .set("enable.partition.eof", "false")
        // Only the first record of each partition is wanted: keep prefetching small.
        .set("queued.min.messages", "1")
        .set("queued.max.messages.kbytes", "4096")
        .set("fetch.message.max.bytes", "65536")
        .set("fetch.wait.max.ms", "100")
        .set("fetch.queue.backoff.ms", "10");
    c.create_with_context(clients.context("lag"))
}

fn options(timeout: Duration) -> Options {
    Options {
        request_timeout: timeout,
        ..Options::default()
    }
}

/// A consumer group and its members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listed {
    /// `None` when the group could not be described.
    pub members: Option<usize>,
    /// Topics assigned to its members.
    pub assigned: BTreeSet<String>,
}

/// Every consumer group of the cluster (ListConsumerGroups). Fails when any broker could
/// not list its groups: an incomplete list would make groups vanish.
pub async fn list_group_ids(admin: &LagAdmin, timeout: Duration) -> Result<Vec<String>, String> {
    let listed = admin
        .list_consumer_groups(&options(timeout))
        .await
        .map_err(|e| e.to_string())?;
    if let Some(e) = listed.errors.first() {
        return Err(format!(
            "{} of the brokers could not list groups: {e}",
            listed.errors.len()
        ));
    }
    Ok(listed.groups.into_iter().map(|g| g.group_id).collect())
}

/// Members and assigned topics of `groups` (DescribeConsumerGroups, batches in flight
/// together), and how many
/// groups could not be described. A group the brokers do not know has no members.
pub async fn describe_groups(
    admin: &LagAdmin,
    groups: &[String],
    timeout: Duration,
) -> (BTreeMap<String, Listed>, usize) {
    let mut out = BTreeMap::new();
    let mut failed = 0;
    let mut unlisted = Vec::new();
    // Every batch is sent before the first answer is awaited.
    let replies: Vec<_> = groups
        .chunks(DESCRIBE_BATCH)
        .map(|chunk| {
            let names: Vec<&str> = chunk.iter().map(String::as_str).collect();
            (
                chunk.len(),
                admin.describe_consumer_groups(&names, &options(timeout)),
            )
        })
        .collect();
    for (asked, reply) in replies {
        match reply.await {
            Ok(ds) => {
                for d in ds {
                    let listed = if d.error.is_some() {
                        failed += 1;
                        Listed::default()
                    } else {
                        if d.members.is_empty()
                            && matches!(
                                d.state,
                                GroupState::Stable
                                    | GroupState::PreparingRebalance
                                    | GroupState::CompletingRebalance
                            )
                        {
                            unlisted.push(d.group_id.clone());
                        }
                        Listed {
                            members: Some(d.members.len()),
                            assigned: d
                                .members
                                .iter()
                                .flat_map(|m| m.assignment.iter().map(|(t, _)| t.clone()))
                                .collect(),
                        }
                    };
                    out.insert(d.group_id, listed);
                }
            }
            Err(error) => {
                tracing::debug!(%error, "cannot describe consumer groups");
                failed += asked;
            }
        }
    }
    // A group the coordinator calls Stable (or rebalancing) has members. Tansu 0.6.0 answers
    // DescribeConsumerGroups for such a group with none, which would read as STOP where the
    // truth is STALL: ask the classic DescribeGroups on the same client for those only.
    for g in unlisted {
        let client = admin.client().clone();
        let name = g.clone();
        let members = tokio::task::spawn_blocking(move || {
            client
                .inner()
                .fetch_group_list(Some(&name), timeout)
                .ok()
                .and_then(|l| l.groups().first().map(|x| x.members().len()))
        })
        .await
        .ok()
        .flatten();
        if let (Some(n), Some(l)) = (members, out.get_mut(&g)) {
            l.members = Some(n);
        }
    }
    for g in groups {
        out.entry(g.clone()).or_default();
    }
    (out, failed)
}

/// Partitions of every topic (one metadata request on the admin client). Topics in error
/// are left out.
pub async fn topics(
    admin: &Arc<LagAdmin>,
    timeout: Duration,
) -> Result<BTreeMap<String, Vec<i32>>, String> {
    let admin = admin.clone();
    let md = tokio::task::spawn_blocking(move || {
        admin
            .client()
            .inner()
            .fetch_metadata(None, timeout)
            .map(|md| {
                md.topics()
                    .iter()
                    .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                    .map(|t| {
                        (
                            t.name().to_owned(),
                            t.partitions().iter().map(|p| p.id()).collect(),
                        )
                    })
                    .collect()
            })
    })
    .await
    .map_err(|e| e.to_string())?;
    md.map_err(|e| e.to_string())
}

/// One group's committed offsets (partitions without a commit left out), or why not.
pub type Committed = Result<BTreeMap<Tp, i64>, String>;

/// Committed offsets of each group on the partitions planned for it, `concurrency` calls
/// in flight over the admin client's connections.
pub async fn committed<Q: Send + 'static>(
    admin: &LagAdmin,
    plans: Vec<(String, Q, Option<Vec<Tp>>)>,
    concurrency: usize,
    timeout: Duration,
) -> Vec<(String, Q, Committed)> {
    let mut plans = plans.into_iter();
    let mut set = JoinSet::new();
    let mut out = Vec::new();
    loop {
        while set.len() < concurrency.max(1) {
            let Some((g, q, parts)) = plans.next() else {
                break;
            };
            let tpl = match parts {
                Some(parts) if parts.is_empty() => {
                    out.push((g, q, Ok(BTreeMap::new())));
                    continue;
                }
                Some(parts) => {
                    let mut tpl = TopicPartitionList::with_capacity(parts.len());
                    for (t, p) in &parts {
                        tpl.add_partition(t, *p);
                    }
                    Some(tpl)
                }
                None => None,
            };
            let reply = admin.list_consumer_group_offsets(&g, tpl.as_ref(), &options(timeout));
            set.spawn(async move {
                let r = reply.await.map_err(|e| e.to_string()).map(|offsets| {
                    offsets
                        .into_iter()
                        .filter(|c| c.error.is_none())
                        .filter_map(|c| Some(((c.topic, c.partition), c.offset?)))
                        .collect()
                });
                (g, q, r)
            });
        }
        match set.join_next().await {
            Some(Ok(f)) => out.push(f),
            // A task that panicked: its group is missing from the answer and shows ERR.
            Some(Err(error)) => tracing::warn!(%error, "committed offsets fetch failed"),
            None => break,
        }
    }
    out
}

/// Log start and log end of `partitions`: two batched ListOffsets calls (latest, earliest)
/// in flight together. A partition whose offsets could not be read is `None`.
pub async fn log_offsets(
    admin: &LagAdmin,
    partitions: &BTreeSet<Tp>,
    timeout: Duration,
) -> Result<BTreeMap<Tp, Option<LogOffsets>>, String> {
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    let ask = |spec| {
        let req: Vec<(&str, i32, OffsetSpec)> = partitions
            .iter()
            .map(|(t, p)| (t.as_str(), *p, spec))
            .collect();
        admin.list_offsets(&req, &options(timeout))
    };
    let (ends, starts) = (ask(OffsetSpec::Latest), ask(OffsetSpec::Earliest));
    let known = |v: Vec<rdkafka_admin_ext::ListedOffset>| -> BTreeMap<Tp, i64> {
        v.into_iter()
            .filter_map(|o| Some(((o.topic, o.partition), o.offset.ok().filter(|&x| x >= 0)?)))
            .collect()
    };
    let ends = known(ends.await.map_err(|e| e.to_string())?);
    let starts = known(starts.await.map_err(|e| e.to_string())?);
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

/// Topic ids and partition leaders of `topics` (DescribeTopics). Topics not described are
/// left out.
pub async fn topic_ids(
    admin: &LagAdmin,
    topics: &[&str],
    timeout: Duration,
) -> Result<BTreeMap<String, (TopicId, BTreeMap<i32, i32>)>, String> {
    let ds = admin
        .describe_topics(topics, &options(timeout))
        .await
        .map_err(|e| e.to_string())?;
    Ok(ds
        .into_iter()
        .filter(|d| d.error.is_none())
        .map(|d| {
            let leaders = d
                .partitions
                .iter()
                .map(|p| (p.partition, p.leader.as_ref().map_or(-1, |n| n.id)))
                .collect();
            (d.name, (d.topic_id, leaders))
        })
        .collect())
}
