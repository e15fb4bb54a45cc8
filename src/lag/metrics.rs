//! The lag poller's metrics. The per-group and per-partition series are a view of the last
//! [`Snapshot`]: a group or partition that is not in the snapshot has no series, and no
//! per-series state is kept between scrapes (at 10 000 group-partitions, one prometheus
//! child per series would hold about 1 KB each). Only the agent that polls has a snapshot.
//!
//! `/metrics` gets them from [`LagMetrics::write_text`], written straight into the scrape
//! text from the snapshot, outside the scrape lock: no prometheus value per series (at 10 000
//! group-partitions those took about 20 MB at every scrape) and no agent event held back
//! while they are written. Readers that want metric values (`/api/lag`, the demo) gather
//! [`LagMetrics::series_registry`], a registry of their own that renders the same snapshot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Metric, MetricFamily, MetricType};
use prometheus::{
    Gauge as GaugeHandle, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry,
};

use super::book::Snapshot;
use super::status::Status;
use crate::promtext::{self, counter, gauge, line};

const POLL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Why (part of) a poll failed; the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollError {
    /// Listing the cluster's consumer groups (and their members) failed.
    ListGroups,
    /// Reading topic metadata failed.
    Metadata,
    /// Fetching one group's committed offsets failed.
    CommittedOffsets,
    /// Reading the log-start or log-end offsets of a partition failed.
    LogOffsets,
    /// Reading the first unconsumed record of a partition failed or timed out.
    Timestamps,
    /// Creating a client failed.
    Client,
}

impl PollError {
    pub const ALL: [PollError; 6] = [
        PollError::ListGroups,
        PollError::Metadata,
        PollError::CommittedOffsets,
        PollError::LogOffsets,
        PollError::Timestamps,
        PollError::Client,
    ];

    pub fn as_label(self) -> &'static str {
        match self {
            PollError::ListGroups => "list_groups",
            PollError::Metadata => "metadata",
            PollError::CommittedOffsets => "committed_offsets",
            PollError::LogOffsets => "log_offsets",
            PollError::Timestamps => "timestamps",
            PollError::Client => "client",
        }
    }
}

/// Name, help, type and labels of each series family rendered from the snapshot.
const FAMILIES: &[(&str, &str, MetricType, &[&str])] = &[
    ("losswatch_consumergroup_lag", "Messages of the partition the consumer group has not consumed and can still read (log end minus the later of committed offset and log start; never negative).", MetricType::GAUGE, GTP),
    ("losswatch_consumergroup_lag_seconds", "Age of the first message the consumer group has not consumed (0 when it has consumed everything); losswatch_consumergroup_lag_seconds_method tells how it was measured.", MetricType::GAUGE, GTP),
    ("losswatch_consumergroup_lag_seconds_method", "1 for the method that produced losswatch_consumergroup_lag_seconds: timestamp (the record's own timestamp), interpolated (between two polls of the log end), lower_bound (older than the poller's history), caught_up (nothing to read).", MetricType::GAUGE, &["group", "topic", "partition", "method"]),
    ("losswatch_consumergroup_committed_offset", "Offset the consumer group committed on the partition.", MetricType::GAUGE, GTP),
    ("losswatch_consumergroup_expired_unread_total", "Messages retention removed before the consumer group read them (its committed offset was below the log start): lost for that group. Each gap is counted once by the agent that saw it.", MetricType::COUNTER, GTP),
    ("losswatch_partition_log_end_offset", "Log-end offset (high watermark) of a partition some polled consumer group reads.", MetricType::GAUGE, &["topic", "partition"]),
    ("losswatch_partition_log_start_offset", "Log-start offset (low watermark) of a partition some polled consumer group reads.", MetricType::GAUGE, &["topic", "partition"]),
    ("losswatch_consumergroup_status", "1 for the consumer group's current status (its worst partition's), 0 for the others: OK, WARN (lag growing), STALL (members, offset not moving), STOP (no commit while messages wait), REWIND (offset went backwards), ERR (could not be read).", MetricType::GAUGE, &["group", "status"]),
    ("losswatch_consumergroup_members", "Members of the consumer group (absent when the group list cannot be read).", MetricType::GAUGE, &["group"]),
];

const GTP: &[&str] = &["group", "topic", "partition"];

/// The last published snapshot, shared by the poller and the collector.
type View = Arc<Mutex<Option<Arc<Snapshot>>>>;

#[derive(Clone)]
pub struct LagMetrics {
    view: View,
    /// The per-group and per-partition series as a registry, for readers of metric values.
    series: Registry,
    pub negative: IntCounter,
    pub poll_duration: Histogram,
    pub poll_errors: IntCounterVec,
    pub leader: IntGauge,
    pub groups: IntGauge,
    pub group_partitions: IntGauge,
    pub last_poll: GaugeHandle,
    pub log_truncations: IntCounterVec,
    pub truncated_messages: IntCounterVec,
}

fn reg<T: Collector + Clone + 'static>(r: &Registry, c: T) -> prometheus::Result<T> {
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

impl LagMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<LagMetrics> {
        let view = View::default();
        let series = Registry::new();
        series.register(Box::new(SeriesCollector::new(view.clone())?))?;
        let m = LagMetrics {
            view,
            series,
            negative: reg(r, IntCounter::new("losswatch_lag_negative_total", "Group-partitions whose committed offset was above the log end read in the same poll (a commit raced the read); their lag is shown as 0.")?)?,
            poll_duration: reg(r, Histogram::with_opts(HistogramOpts::new("losswatch_lag_poll_duration_seconds", "Wall time of one consumer-group lag poll.").buckets(POLL_BUCKETS.to_vec()))?)?,
            poll_errors: reg(r, IntCounterVec::new(Opts::new("losswatch_lag_poll_errors_total", "Failed requests of lag polls, by reason (per group for committed offsets, per partition for log offsets and timestamps)."), &["reason"])?)?,
            leader: reg(r, IntGauge::new("losswatch_lag_poller_leader", "1 on the agent that polls consumer-group lag, 0 on the others.")?)?,
            groups: reg(r, IntGauge::new("losswatch_lag_groups", "Consumer groups exported by the last lag poll.")?)?,
            group_partitions: reg(r, IntGauge::new("losswatch_lag_group_partitions", "Group-partitions exported by the last lag poll.")?)?,
            last_poll: reg(r, GaugeHandle::new("losswatch_lag_last_poll_timestamp_seconds", "Wall-clock time the values of the last lag poll describe: when it started reading (Unix time; 0 before the first).")?)?,
            log_truncations: reg(r, IntCounterVec::new(Opts::new("losswatch_partition_log_truncations_total", "Confirmed truncations of partitions read by consumer groups: the log end went backwards (read twice) under an unchanged topic id."), &["topic", "partition"])?)?,
            truncated_messages: reg(r, IntCounterVec::new(Opts::new("losswatch_partition_truncated_messages_total", "Messages removed by those truncations (old log end minus new log end)."), &["topic", "partition"])?)?,
        };
        for e in PollError::ALL {
            m.poll_errors.with_label_values(&[e.as_label()]);
        }
        Ok(m)
    }

    pub fn error(&self, e: PollError) {
        self.errors(e, 1);
    }

    pub fn errors(&self, e: PollError, n: usize) {
        self.poll_errors
            .with_label_values(&[e.as_label()])
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// Makes `/metrics` show exactly `snap`.
    pub fn publish(&self, snap: Snapshot) {
        self.negative.inc_by(snap.negative);
        self.last_poll.set(snap.at_ms as f64 / 1000.0);
        self.groups
            .set(i64::try_from(snap.groups.len()).unwrap_or(i64::MAX));
        self.group_partitions
            .set(i64::try_from(snap.parts.len()).unwrap_or(i64::MAX));
        *self.view.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(snap));
    }

    /// Creates the truncation series of a partition at 0, so that the first truncation is an
    /// increase.
    pub fn touch_truncation_series(&self, topic: &str, partition: i32) {
        let p = partition.to_string();
        self.log_truncations.with_label_values(&[topic, &p]);
        self.truncated_messages.with_label_values(&[topic, &p]);
    }

    /// Counts one confirmed truncation of `messages` messages.
    pub fn truncation(&self, topic: &str, partition: i32, messages: u64) {
        let p = partition.to_string();
        self.log_truncations.with_label_values(&[topic, &p]).inc();
        self.truncated_messages
            .with_label_values(&[topic, &p])
            .inc_by(messages);
    }

    /// The per-group and per-partition series as metric values (`/api/lag`, the demo).
    pub fn series_registry(&self) -> &Registry {
        &self.series
    }

    /// About how many bytes [`Self::write_text`] writes: a capacity hint for the scrape.
    pub fn text_len_hint(&self) -> usize {
        let view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        view.as_ref().map_or(0, |s| {
            // Measured line lengths with names of typical length, rounded up.
            let headers: usize = FAMILIES
                .iter()
                .map(|(name, help, _, _)| help.len() + 2 * name.len() + 32)
                .sum();
            headers + s.parts.len() * 5 * 130 + s.logs.len() * 2 * 80 + s.groups.len() * 7 * 70
        })
    }

    /// Appends the per-group and per-partition series of the last snapshot to a scrape, in
    /// the Prometheus text format (the same series `series_registry` gathers).
    pub fn write_text(&self, out: &mut String) {
        let Some(snap) = self.view.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return;
        };
        write_snapshot(&snap, out);
    }

    /// Removes every per-group and per-partition series: this agent stopped polling.
    pub fn clear(&self) {
        *self.view.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.groups.set(0);
        self.group_partitions.set(0);
    }
}

/// `# HELP` and `# TYPE` of family `i` of [`FAMILIES`].
fn header(i: usize, out: &mut String) {
    let (name, help, kind, _) = FAMILIES[i];
    promtext::header(name, help, kind, out);
}

/// Every family of [`FAMILIES`] with its series from `snap`; a family without series is left
/// out, as the registry's encoder does.
fn write_snapshot(snap: &Snapshot, out: &mut String) {
    let name = |i: usize| FAMILIES[i].0;
    let mut p = String::new();
    if !snap.parts.is_empty() {
        for (i, value) in [
            (
                0usize,
                (|r: &super::book::PartRow| r.lag as f64) as fn(&super::book::PartRow) -> f64,
            ),
            (1, |r| r.lag_seconds),
            (3, |r| r.committed as f64),
            (4, |r| r.expired_total as f64),
        ] {
            header(i, out);
            for ((g, (t, part)), row) in &snap.parts {
                p.clear();
                p.push_str(&part.to_string());
                let l = [
                    ("group", g.as_str()),
                    ("topic", t.as_str()),
                    ("partition", p.as_str()),
                ];
                line(name(i), &l, value(row), out);
            }
        }
        header(2, out);
        for ((g, (t, part)), row) in &snap.parts {
            let ps = part.to_string();
            let l = [
                ("group", g.as_str()),
                ("topic", t.as_str()),
                ("partition", ps.as_str()),
                ("method", row.method.as_label()),
            ];
            line(name(2), &l, 1.0, out);
        }
    }
    if !snap.logs.is_empty() {
        for (i, end) in [(5usize, true), (6, false)] {
            header(i, out);
            for ((t, part), log) in &snap.logs {
                let ps = part.to_string();
                let v = if end { log.end } else { log.start };
                line(
                    name(i),
                    &[("topic", t.as_str()), ("partition", ps.as_str())],
                    v as f64,
                    out,
                );
            }
        }
    }
    if !snap.groups.is_empty() {
        header(7, out);
        for (g, row) in &snap.groups {
            for s in Status::ALL {
                let l = [("group", g.as_str()), ("status", s.as_label())];
                line(name(7), &l, f64::from(u8::from(s == row.status)), out);
            }
        }
        if snap.groups.values().any(|r| r.members.is_some()) {
            header(8, out);
            for (g, row) in &snap.groups {
                if let Some(n) = row.members {
                    line(name(8), &[("group", g.as_str())], n as f64, out);
                }
            }
        }
    }
}

/// Renders the per-group and per-partition series from the last snapshot.
struct SeriesCollector {
    descs: Vec<Desc>,
    view: View,
}

impl SeriesCollector {
    fn new(view: View) -> prometheus::Result<SeriesCollector> {
        let descs = FAMILIES
            .iter()
            .map(|(name, help, _, labels)| {
                Desc::new(
                    (*name).to_owned(),
                    (*help).to_owned(),
                    labels.iter().map(|l| (*l).to_owned()).collect(),
                    HashMap::new(),
                )
            })
            .collect::<prometheus::Result<_>>()?;
        Ok(SeriesCollector { descs, view })
    }
}

impl Collector for SeriesCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(snap) = self.view.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return Vec::new();
        };
        let mut fams: Vec<Vec<Metric>> = FAMILIES.iter().map(|_| Vec::new()).collect();
        for ((g, (t, p)), row) in &snap.parts {
            let ps = p.to_string();
            let l = [
                ("group", g.as_str()),
                ("topic", t.as_str()),
                ("partition", ps.as_str()),
            ];
            fams[0].push(gauge(&l, row.lag as f64));
            fams[1].push(gauge(&l, row.lag_seconds));
            let lm = [l[0], l[1], l[2], ("method", row.method.as_label())];
            fams[2].push(gauge(&lm, 1.0));
            fams[3].push(gauge(&l, row.committed as f64));
            fams[4].push(counter(&l, row.expired_total as f64));
        }
        for ((t, p), log) in &snap.logs {
            let ps = p.to_string();
            let l = [("topic", t.as_str()), ("partition", ps.as_str())];
            fams[5].push(gauge(&l, log.end as f64));
            fams[6].push(gauge(&l, log.start as f64));
        }
        for (g, row) in &snap.groups {
            for s in Status::ALL {
                let l = [("group", g.as_str()), ("status", s.as_label())];
                fams[7].push(gauge(&l, f64::from(u8::from(s == row.status))));
            }
            if let Some(n) = row.members {
                fams[8].push(gauge(&[("group", g.as_str())], n as f64));
            }
        }
        FAMILIES
            .iter()
            .zip(fams)
            .map(|((name, help, kind, _), metrics)| promtext::family(name, help, *kind, metrics))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::lag::book::{GroupRow, LogOffsets, PartRow};
    use crate::lag::timelag::Method;

    fn snapshot(groups: &[&str]) -> Snapshot {
        let mut s = Snapshot::default();
        for g in groups {
            s.groups.insert(
                (*g).to_owned(),
                GroupRow {
                    members: Some(2),
                    status: Status::Warn,
                },
            );
            s.parts.insert(
                ((*g).to_owned(), ("t".to_owned(), 3)),
                PartRow {
                    committed: 40,
                    lag: 7,
                    lag_seconds: 1.5,
                    method: Method::Interpolated,
                    status: Status::Warn,
                    expired_total: 5,
                },
            );
        }
        s.logs = BTreeMap::from([(("t".to_owned(), 3), LogOffsets { start: 2, end: 47 })]);
        s
    }

    /// The text written straight from the snapshot is what prometheus's encoder makes of
    /// the same series gathered from `series_registry` (line for line, in any order), also
    /// for names that need escaping.
    #[test]
    fn written_text_equals_the_encoded_registry() {
        let r = Registry::new();
        let m = LagMetrics::register(&r).unwrap();
        let mut snap = snapshot(&["a", "b", "we\"ird\\grp\nname"]);
        snap.groups.get_mut("b").unwrap().members = None;
        m.publish(snap);
        let mut written = String::new();
        m.write_text(&mut written);
        let encoded = prometheus::TextEncoder::new()
            .encode_to_string(&m.series_registry().gather())
            .unwrap();
        let sorted = |t: &str| {
            let mut l: Vec<String> = t.lines().map(str::to_owned).collect();
            l.sort();
            l
        };
        assert_eq!(sorted(&written), sorted(&encoded), "{written}");
        assert!(m.text_len_hint() >= written.len(), "{}", m.text_len_hint());
        assert!(
            written.contains(r#"group="we\"ird\\grp\nname""#),
            "{written}"
        );
        // Nothing when there is no snapshot.
        m.clear();
        let mut empty = String::new();
        m.write_text(&mut empty);
        assert_eq!(empty, "");
    }

    #[test]
    fn series_follow_the_last_snapshot() {
        let r = Registry::new();
        let m = LagMetrics::register(&r).unwrap();
        let text = crate::metrics::render_scrape(&r, &Default::default(), &Default::default(), &m);
        assert!(!text.contains("losswatch_consumergroup_lag{"), "{text}");

        m.publish(snapshot(&["a", "b"]));
        let text = crate::metrics::render_scrape(&r, &Default::default(), &Default::default(), &m);
        for line in [
            r#"losswatch_consumergroup_lag{group="a",topic="t",partition="3"} 7"#,
            r#"losswatch_consumergroup_lag_seconds{group="b",topic="t",partition="3"} 1.5"#,
            r#"losswatch_consumergroup_lag_seconds_method{group="a",topic="t",partition="3",method="interpolated"} 1"#,
            r#"losswatch_consumergroup_committed_offset{group="a",topic="t",partition="3"} 40"#,
            r#"losswatch_consumergroup_expired_unread_total{group="a",topic="t",partition="3"} 5"#,
            r#"losswatch_partition_log_end_offset{topic="t",partition="3"} 47"#,
            r#"losswatch_partition_log_start_offset{topic="t",partition="3"} 2"#,
            r#"losswatch_consumergroup_status{group="a",status="WARN"} 1"#,
            r#"losswatch_consumergroup_status{group="a",status="OK"} 0"#,
            r#"losswatch_consumergroup_members{group="b"} 2"#,
            "# TYPE losswatch_consumergroup_expired_unread_total counter",
            "losswatch_lag_groups 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("losswatch_consumergroup_status{group=\"a\""))
                .count(),
            6
        );

        // A group that disappears takes its series with it.
        m.publish(snapshot(&["b"]));
        let text = crate::metrics::render_scrape(&r, &Default::default(), &Default::default(), &m);
        assert!(!text.contains(r#"group="a""#), "{text}");
        assert!(text.contains(r#"group="b""#));

        m.clear();
        let text = crate::metrics::render_scrape(&r, &Default::default(), &Default::default(), &m);
        assert!(!text.contains("group="), "{text}");
        assert!(text.contains("losswatch_lag_groups 0"));
    }
}
