//! The agent's per-partition series: one set of cells per canary partition, created once and
//! kept by the agent beside its partition state, and written straight into the scrape text.
//!
//! At 1 000 canary partitions these are about 19 000 series, most of a scrape. As prometheus
//! children they cost a label lookup (a hash of the label strings under a lock) at every probe
//! sent, acked and read, and a gather that copied every series into protobuf values under the
//! scrape lock at every scrape. Here an update is one relaxed atomic add on a cell the agent
//! already holds, and a scrape copies the values under the scrape lock (a few microseconds per
//! hundred partitions) and formats them after releasing it.
//!
//! Readers that want metric values (the demo, the tests) gather [`PartitionSeries::registry`],
//! a registry of its own that renders the same cells.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{MetricFamily, MetricType};
use prometheus::Registry;

use crate::canary::producer::FailReason;
use crate::promtext::{self, counter, gauge};

/// A counter cell.
#[derive(Debug, Default)]
pub struct Count(AtomicU64);

impl Count {
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// An integer gauge cell.
#[derive(Debug, Default)]
pub struct Level(AtomicI64);

impl Level {
    pub fn set(&self, v: i64) {
        self.0.store(v, Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// A gauge cell in seconds.
#[derive(Debug, Default)]
pub struct Seconds(AtomicU64);

impl Seconds {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Relaxed);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Relaxed))
    }
}

/// The series of one canary partition. Every one exists, at zero, from the partition's first
/// appearance, so that `rate()` and `increase()` see the first event.
#[derive(Debug, Default)]
pub struct PartitionCells {
    pub sent: Count,
    pub acked: Count,
    pub held_back: Count,
    pub received: Count,
    pub late: Count,
    pub duplicated: Count,
    pub reordered: Count,
    pub expired_unread: Count,
    pub unmatched: Count,
    pub failed_arrived: Count,
    pub truncations: Count,
    /// By [`FailReason::ALL`].
    send_failed: [Count; 4],
    pub pending: Level,
    pub restored: Level,
    pub leader: Level,
    pub oldest_pending_age: Seconds,
}

impl PartitionCells {
    pub fn send_failed(&self, reason: FailReason) -> &Count {
        let i = FailReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(FailReason::ALL.len() - 1);
        &self.send_failed[i]
    }

    fn values(&self) -> Values {
        Values {
            counts: [
                self.sent.get(),
                self.acked.get(),
                self.held_back.get(),
                self.received.get(),
                self.late.get(),
                self.duplicated.get(),
                self.reordered.get(),
                self.expired_unread.get(),
                self.unmatched.get(),
                self.failed_arrived.get(),
                self.truncations.get(),
            ],
            send_failed: std::array::from_fn(|i| self.send_failed[i].get()),
            levels: [self.pending.get(), self.restored.get(), self.leader.get()],
            oldest_pending_age: self.oldest_pending_age.get(),
        }
    }
}

/// The values of one partition's cells, copied under the scrape lock.
#[derive(Debug, Clone, Copy)]
struct Values {
    /// In the order of [`COUNTS`].
    counts: [u64; 11],
    send_failed: [u64; 4],
    /// In the order of [`LEVELS`].
    levels: [i64; 3],
    oldest_pending_age: f64,
}

const COUNTS: [(&str, &str); 11] = [
    ("losswatch_probes_sent_total", "Probes handed to the producer."),
    ("losswatch_probes_acked_total", "Probes acknowledged by the broker (acks=all)."),
    ("losswatch_probes_held_back_total", "Probes not sent because the partition already has the maximum number of unverified probes."),
    ("losswatch_probes_received_total", "First arrivals of this agent's acked probes at the verifier."),
    ("losswatch_probes_late_total", "First arrivals later than the late threshold after production."),
    ("losswatch_probes_duplicated_total", "Probes read again at another offset after their first arrival."),
    ("losswatch_probes_reordered_total", "First arrivals with a lower sequence number than one already seen."),
    ("losswatch_probes_expired_unread_total", "Acked probes removed by retention before the verifier read them (the agent's own consumer stage)."),
    ("losswatch_probes_unmatched_total", "Own probes read back that no delivery report of this run matched (acked before a crash, or re-read); not an alarm."),
    ("losswatch_probes_failed_but_arrived_total", "Probes whose send was reported failed but which were found in the log anyway."),
    ("losswatch_partition_truncations_total", "Truncations of a canary partition's log, confirmed by a fetch or an append."),
];

const SEND_FAILED: (&str, &str) = (
    "losswatch_probes_send_failed_total",
    "Probes whose send failed and were never acknowledged: producer-stage failures, never counted as lost.",
);

const LEVELS: [(&str, &str); 3] = [
    ("losswatch_probes_pending", "Acked probes not yet verified."),
    ("losswatch_probes_restored", "Pending probes loaded from the state file at start; acked + restored = received + lost + expired_unread + pending."),
    ("losswatch_partition_leader", "Leader broker id of the partition (-1 when leaderless)."),
];

const OLDEST_PENDING_AGE: (&str, &str) = (
    "losswatch_oldest_pending_probe_age_seconds",
    "Age of the oldest acked probe the verifier has not read back yet (0 when none is pending).",
);

/// Topic, partition and values of every partition, in order.
pub struct Snapshot(Vec<(Arc<str>, i32, Values)>);

type Cells = BTreeMap<Arc<str>, BTreeMap<i32, Arc<PartitionCells>>>;

/// Every canary partition's cells.
#[derive(Clone, Default)]
pub struct PartitionSeries {
    cells: Arc<Mutex<Cells>>,
}

impl PartitionSeries {
    /// The cells of `partition` of `topic`, created at zero on first use.
    pub fn cells(&self, topic: &str, partition: i32) -> Arc<PartitionCells> {
        let mut map = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get(topic).and_then(|t| t.get(&partition)) {
            return c.clone();
        }
        let t = map.entry(Arc::from(topic)).or_default();
        t.entry(partition).or_default().clone()
    }

    /// The values now; the caller holds the scrape lock, so that they are those between two
    /// agent events.
    pub fn snapshot(&self) -> Snapshot {
        let map = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(map.values().map(BTreeMap::len).sum());
        for (t, parts) in map.iter() {
            out.extend(parts.iter().map(|(p, c)| (t.clone(), *p, c.values())));
        }
        Snapshot(out)
    }

    /// A registry that renders these series as metric values.
    pub fn registry(&self) -> prometheus::Result<Registry> {
        let r = Registry::new();
        r.register(Box::new(SeriesCollector::new(self.clone())?))?;
        Ok(r)
    }
}

impl Snapshot {
    /// About how many bytes [`Self::write_text`] writes.
    pub fn text_len_hint(&self) -> usize {
        self.0.len() * 19 * 100 + 4096
    }

    /// Appends every family in the Prometheus text format; nothing when there is no partition
    /// (as the registry's encoder leaves out a family without series).
    pub fn write_text(&self, out: &mut String) {
        if self.0.is_empty() {
            return;
        }
        // Each partition's label set, escaped once.
        let labels: Vec<String> = self
            .0
            .iter()
            .map(|(t, p, _)| {
                let mut l = String::from("topic=\"");
                promtext::escaped(t, &mut l);
                let _ = write!(l, "\",partition=\"{p}\"");
                l
            })
            .collect();
        let rows = || labels.iter().zip(self.0.iter().map(|(_, _, v)| v));
        for (i, (name, help)) in COUNTS.iter().enumerate() {
            promtext::header(name, help, MetricType::COUNTER, out);
            for (l, v) in rows() {
                let _ = writeln!(out, "{name}{{{l}}} {}", v.counts[i]);
            }
        }
        let (name, help) = SEND_FAILED;
        promtext::header(name, help, MetricType::COUNTER, out);
        for (l, v) in rows() {
            for (r, n) in FailReason::ALL.iter().zip(v.send_failed) {
                let _ = writeln!(out, "{name}{{{l},reason=\"{}\"}} {n}", r.as_label());
            }
        }
        for (i, (name, help)) in LEVELS.iter().enumerate() {
            promtext::header(name, help, MetricType::GAUGE, out);
            for (l, v) in rows() {
                let _ = writeln!(out, "{name}{{{l}}} {}", v.levels[i]);
            }
        }
        let (name, help) = OLDEST_PENDING_AGE;
        promtext::header(name, help, MetricType::GAUGE, out);
        for (l, v) in rows() {
            let _ = writeln!(out, "{name}{{{l}}} {}", v.oldest_pending_age);
        }
    }
}

/// Renders the cells as metric values.
struct SeriesCollector {
    descs: Vec<Desc>,
    series: PartitionSeries,
}

impl SeriesCollector {
    fn new(series: PartitionSeries) -> prometheus::Result<SeriesCollector> {
        let tp = || vec!["topic".to_owned(), "partition".to_owned()];
        let mut descs = Vec::new();
        for (name, help) in COUNTS.iter().chain(&LEVELS).chain([&OLDEST_PENDING_AGE]) {
            descs.push(Desc::new(
                (*name).into(),
                (*help).into(),
                tp(),
                HashMap::new(),
            )?);
        }
        let mut labels = tp();
        labels.push("reason".into());
        let (name, help) = SEND_FAILED;
        descs.push(Desc::new(name.into(), help.into(), labels, HashMap::new())?);
        Ok(SeriesCollector { descs, series })
    }
}

impl Collector for SeriesCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snap = self.series.snapshot();
        if snap.0.is_empty() {
            return Vec::new();
        }
        let rows: Vec<(String, &Values)> =
            snap.0.iter().map(|(_, p, v)| (p.to_string(), v)).collect();
        let topic = |i: usize| &*snap.0[i].0;
        let mut fams = Vec::new();
        for (i, (name, help)) in COUNTS.iter().enumerate() {
            let m = rows
                .iter()
                .enumerate()
                .map(|(j, (p, v))| {
                    counter(&[("topic", topic(j)), ("partition", p)], v.counts[i] as f64)
                })
                .collect();
            fams.push(promtext::family(name, help, MetricType::COUNTER, m));
        }
        let mut m = Vec::new();
        for (j, (p, v)) in rows.iter().enumerate() {
            for (r, n) in FailReason::ALL.iter().zip(v.send_failed) {
                let l = [
                    ("topic", topic(j)),
                    ("partition", p),
                    ("reason", r.as_label()),
                ];
                m.push(counter(&l, n as f64));
            }
        }
        let (name, help) = SEND_FAILED;
        fams.push(promtext::family(name, help, MetricType::COUNTER, m));
        for (i, (name, help)) in LEVELS.iter().enumerate() {
            let m = rows
                .iter()
                .enumerate()
                .map(|(j, (p, v))| {
                    gauge(&[("topic", topic(j)), ("partition", p)], v.levels[i] as f64)
                })
                .collect();
            fams.push(promtext::family(name, help, MetricType::GAUGE, m));
        }
        let m = rows
            .iter()
            .enumerate()
            .map(|(j, (p, v))| {
                gauge(
                    &[("topic", topic(j)), ("partition", p)],
                    v.oldest_pending_age,
                )
            })
            .collect();
        let (name, help) = OLDEST_PENDING_AGE;
        fams.push(promtext::family(name, help, MetricType::GAUGE, m));
        fams
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(t: &str) -> Vec<String> {
        let mut l: Vec<String> = t.lines().map(str::to_owned).collect();
        l.sort();
        l
    }

    /// The text written straight from the cells is what prometheus's encoder makes of the same
    /// series gathered from `registry`, line for line, also for a topic that needs escaping.
    #[test]
    fn written_text_equals_the_encoded_registry() {
        let s = PartitionSeries::default();
        let empty = s.snapshot();
        let mut text = String::new();
        empty.write_text(&mut text);
        assert_eq!(text, "");
        for p in [0, 1, 10, 2] {
            s.cells("canary", p);
        }
        let c = s.cells("we\"ird\\topic", 3);
        c.sent.inc();
        c.sent.inc();
        c.acked.inc();
        c.send_failed(FailReason::NotEnoughReplicas).inc();
        c.pending.set(7);
        c.leader.set(-1);
        c.oldest_pending_age.set(0.125);
        s.cells("canary", 2).truncations.inc();
        let snap = s.snapshot();
        let mut written = String::new();
        snap.write_text(&mut written);
        let encoded = prometheus::TextEncoder::new()
            .encode_to_string(&s.registry().unwrap().gather())
            .unwrap();
        assert_eq!(sorted(&written), sorted(&encoded), "{written}");
        assert!(snap.text_len_hint() >= written.len());
        for want in [
            r#"losswatch_probes_sent_total{topic="we\"ird\\topic",partition="3"} 2"#,
            r#"losswatch_probes_send_failed_total{topic="we\"ird\\topic",partition="3",reason="not_enough_replicas"} 1"#,
            r#"losswatch_partition_leader{topic="we\"ird\\topic",partition="3"} -1"#,
            r#"losswatch_oldest_pending_probe_age_seconds{topic="we\"ird\\topic",partition="3"} 0.125"#,
            r#"losswatch_partition_truncations_total{topic="canary",partition="2"} 1"#,
            r#"losswatch_probes_pending{topic="canary",partition="10"} 0"#,
        ] {
            assert!(written.contains(want), "{want} not in {written}");
        }
    }

    /// A partition's cells are created once: a second lookup finds the same cells.
    #[test]
    fn cells_are_created_once() {
        let s = PartitionSeries::default();
        s.cells("t", 1).received.inc();
        s.cells("t", 1).received.inc();
        assert_eq!(s.cells("t", 1).received.get(), 2);
        assert_eq!(s.snapshot().0.len(), 1);
    }
}
