//! The poller's side of [`super::truncation`]: after each poll's log offsets it reads the
//! topic ids and leaders of the same partitions (one DescribeTopics on the admin client),
//! feeds the tracker, counts what it confirms and records each finding as a loss event
//! (`/api/losses`). A broker that cannot describe topics (no topic ids) is asked again only
//! after `lag.discovery_interval`; until then nothing is counted. Topics matching
//! `lag.truncation_topics` are read and tracked too, also when no group reads them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use super::book::{LogOffsets, Tp};
use super::kafka::{self, LagAdmin};
use super::metrics::{LagMetrics, PollError};
use super::truncation::{Finding, Read, Tracker};
use crate::ledger::{Batch, Event, Ledger};

/// Kind of the loss event of a confirmed truncation of an application topic.
pub const TOPIC_TRUNCATION: &str = "topic_truncation";
/// Kind of the loss event of a topic deleted and created again (partition -1: the topic).
pub const TOPIC_RECREATED: &str = "topic_recreated";

/// Where loss events are written: the agent's state file.
#[derive(Debug, Clone)]
pub struct EventSink {
    pub path: PathBuf,
    pub max_events: usize,
}

pub struct TopicWatch {
    tracker: Tracker,
    sink: Option<EventSink>,
    /// Poll time before which DescribeTopics is not asked again (after it failed).
    retry_at_ms: i64,
    retry_ms: i64,
}

impl TopicWatch {
    pub fn new(sink: Option<EventSink>, retry: Duration) -> TopicWatch {
        TopicWatch {
            tracker: Tracker::new(),
            sink,
            retry_at_ms: i64::MIN,
            retry_ms: i64::try_from(retry.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// Feeds one poll's log offsets (read at `now_ms`): those of the groups' partitions and
    /// the `extra` ones of [`extra_logs`]. Returns the topics found deleted and created again
    /// (a new topic id), whose ids other clients may still hold.
    pub async fn observe(
        &mut self,
        admin: &LagAdmin,
        logs: &BTreeMap<Tp, Option<LogOffsets>>,
        extra: &BTreeMap<Tp, Option<LogOffsets>>,
        now_ms: i64,
        timeout: Duration,
        metrics: &LagMetrics,
    ) -> Vec<String> {
        let topics: BTreeSet<&str> = logs
            .keys()
            .chain(extra.keys())
            .map(|(t, _)| t.as_str())
            .collect();
        if topics.is_empty() {
            return Vec::new();
        }
        let mut ids = BTreeMap::new();
        if now_ms >= self.retry_at_ms {
            let names: Vec<&str> = topics.into_iter().collect();
            match kafka::topic_ids(admin, &names, timeout).await {
                Ok(i) => ids = i,
                Err(error) => {
                    self.retry_at_ms = now_ms.saturating_add(self.retry_ms);
                    tracing::info!(%error, "cannot read topic ids; truncation of application topics is not tracked until the next try");
                }
            }
        }
        let reads: BTreeMap<Tp, Read> = logs
            .iter()
            .chain(extra)
            .filter_map(|(tp, l)| {
                let l = (*l)?;
                let (id, leaders) = match ids.get(&tp.0) {
                    Some((id, leaders)) => (
                        Some(id.0).filter(|&v| v != 0),
                        leaders.get(&tp.1).copied().filter(|&b| b >= 0),
                    ),
                    None => (None, None),
                };
                Some((
                    tp.clone(),
                    Read {
                        start: l.start,
                        end: l.end,
                        topic_id: id,
                        leader: leaders,
                    },
                ))
            })
            .collect();
        for (t, p) in reads.keys() {
            metrics.touch_truncation_series(t, *p);
        }
        let forget_before = now_ms.saturating_sub(self.retry_ms.max(1).saturating_mul(2));
        let findings = self.tracker.apply(&reads, now_ms, forget_before);
        if findings.is_empty() {
            return Vec::new();
        }
        let recreated = findings
            .iter()
            .filter_map(|f| match f {
                Finding::Recreated { topic, .. } => Some(topic.clone()),
                Finding::Truncated { .. } => None,
            })
            .collect();
        let events: Vec<Event> = findings.iter().map(|f| event(f, now_ms, metrics)).collect();
        if let Some(sink) = self.sink.clone() {
            let written = tokio::task::spawn_blocking(move || {
                let mut ledger = Ledger::open(&sink.path, sink.max_events)?;
                ledger.write(&Batch {
                    events,
                    ..Batch::default()
                })
            })
            .await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "cannot record topic loss events"),
                Err(error) => tracing::error!(%error, "cannot record topic loss events"),
            }
        }
        recreated
    }
}

/// Log offsets of the partitions of the topics matching `patterns` (`lag.truncation_topics`)
/// that no group's commits brought into `logs`: one more batched ListOffsets round when there
/// are any. A failed round is counted and leaves them unread for this poll.
pub async fn extra_logs(
    admin: &LagAdmin,
    patterns: &[regex::Regex],
    topics: &BTreeMap<String, Vec<i32>>,
    logs: &BTreeMap<Tp, Option<LogOffsets>>,
    timeout: Duration,
    metrics: &LagMetrics,
) -> BTreeMap<Tp, Option<LogOffsets>> {
    let extra: BTreeSet<Tp> = topics
        .iter()
        .filter(|(t, _)| patterns.iter().any(|r| r.is_match(t)))
        .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
        .filter(|tp| !logs.contains_key(tp))
        .collect();
    if extra.is_empty() {
        return BTreeMap::new();
    }
    match kafka::log_offsets(admin, &extra, timeout).await {
        Ok(l) => l,
        Err(error) => {
            metrics.error(PollError::LogOffsets);
            tracing::warn!(%error, "cannot read log offsets of lag.truncation_topics");
            BTreeMap::new()
        }
    }
}

/// Counts a finding, logs it and makes its loss event.
fn event(f: &Finding, now_ms: i64, metrics: &LagMetrics) -> Event {
    let at_us = now_ms.saturating_mul(1000);
    let leader = |b: Option<i32>| b.map_or_else(|| "unknown".to_owned(), |b| b.to_string());
    match f {
        Finding::Truncated {
            tp: (topic, partition),
            old_end,
            new_end,
            leader_before,
            leader_after,
        } => {
            let messages = u64::try_from(old_end - new_end).unwrap_or(0);
            metrics.truncation(topic, *partition, messages);
            tracing::error!(
                topic,
                partition,
                old_end,
                new_end,
                messages,
                stage = "broker",
                "partition log end went backwards under the same topic id: acknowledged messages removed"
            );
            Event {
                at_us,
                topic: topic.clone(),
                partition: *partition,
                seq: None,
                offset: Some(*new_end),
                broker: *leader_after,
                kind: TOPIC_TRUNCATION.into(),
                detail: format!(
                    "log end went from {old_end} to {new_end} under the same topic id \
                     ({messages} messages removed; leader {} before, {} after)",
                    leader(*leader_before),
                    leader(*leader_after)
                ),
            }
        }
        Finding::Recreated {
            topic,
            old_id,
            new_id,
            messages,
        } => {
            let (old, new) = (
                rdkafka_admin_ext::TopicId(*old_id),
                rdkafka_admin_ext::TopicId(*new_id),
            );
            tracing::warn!(topic, %old, %new, messages, "topic deleted and created again");
            Event {
                at_us,
                topic: topic.clone(),
                partition: -1,
                seq: None,
                offset: None,
                broker: None,
                kind: TOPIC_RECREATED.into(),
                detail: format!(
                    "topic id changed from {old} to {new}: the topic was deleted and created \
                     again; the old topic held {messages} messages"
                ),
            }
        }
    }
}
