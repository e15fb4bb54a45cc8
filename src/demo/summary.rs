//! What the demo prints about the agent, read from its metrics registry the way a scrape sees
//! it: counters summed over labels, by broker, by reason and by group, so that they can be
//! added up across the agent's restarts and compared per stage.

use std::collections::BTreeMap;

use prometheus::proto::{Metric, MetricFamily, MetricType};
use prometheus::Registry;

/// The agent's metrics as a scrape sees them: its registry, its per-partition series and the
/// lag poller's series.
#[derive(Clone)]
pub struct Registries {
    pub main: Registry,
    pub partitions: Registry,
    pub lag: Registry,
}

impl Registries {
    pub fn of(running: &crate::Running) -> Registries {
        Registries {
            main: running.registry.clone(),
            partitions: running.partition_series.clone(),
            lag: running.lag_series.clone(),
        }
    }

    pub fn gather(&self) -> Vec<MetricFamily> {
        let mut f = self.main.gather();
        f.extend(self.partitions.gather());
        f.extend(self.lag.gather());
        f
    }
}

use super::PARTITIONS;

fn value(f: &MetricFamily, m: &Metric) -> f64 {
    match f.get_field_type() {
        MetricType::COUNTER => m.get_counter().get_value(),
        _ => m.get_gauge().get_value(),
    }
}

fn label<'a>(m: &'a Metric, name: &str) -> Option<&'a str> {
    m.get_label()
        .iter()
        .find(|l| l.name() == name)
        .map(|l| l.value())
}

fn sum(families: &[MetricFamily], name: &str) -> f64 {
    families
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter().map(move |m| value(f, m)))
        .sum::<f64>()
        + 0.0
}

fn by_label(families: &[MetricFamily], name: &str, key: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for f in families.iter().filter(|f| f.name() == name) {
        for m in f.get_metric() {
            let k = label(m, key).unwrap_or_default().to_owned();
            *out.entry(k).or_insert(0.0) += value(f, m);
        }
    }
    out
}

/// Approximates a quantile over all series of a histogram from its buckets.
fn quantile(families: &[MetricFamily], name: &str, q: f64) -> Option<f64> {
    let f = families.iter().find(|f| f.name() == name)?;
    let mut buckets: Vec<(f64, u64)> = vec![];
    let mut total = 0u64;
    for m in f.get_metric() {
        let h = m.get_histogram();
        total += h.get_sample_count();
        for (i, b) in h.get_bucket().iter().enumerate() {
            match buckets.get_mut(i) {
                Some(e) => e.1 += b.cumulative_count(),
                None => buckets.push((b.upper_bound(), b.cumulative_count())),
            }
        }
    }
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil() as u64;
    buckets
        .iter()
        .find(|(_, c)| *c >= rank)
        .map(|(le, _)| *le)
        .or(Some(f64::INFINITY))
}

/// The agent's counters (never gauges), so that two readings can be added or subtracted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub sent: f64,
    pub acked: f64,
    pub received: f64,
    pub lost: f64,
    pub expired_unread: f64,
    pub duplicated: f64,
    pub truncations: f64,
    pub failed_arrived: f64,
    pub foreign: f64,
    /// `losswatch_probes_send_failed_total` by `reason`.
    pub failed: BTreeMap<String, f64>,
    /// `losswatch_probes_lost_total` by `broker`.
    pub lost_by_broker: BTreeMap<String, f64>,
    /// `losswatch_consumergroup_expired_unread_total` by `group`.
    pub group_expired: BTreeMap<String, f64>,
}

fn merge(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>, sign: f64) -> BTreeMap<String, f64> {
    let mut out = a.clone();
    for (k, v) in b {
        *out.entry(k.clone()).or_insert(0.0) += sign * v;
    }
    out.retain(|_, v| *v != 0.0);
    out
}

impl Counters {
    pub fn read(registry: &Registries) -> Counters {
        let f = registry.gather();
        Counters {
            sent: sum(&f, "losswatch_probes_sent_total"),
            acked: sum(&f, "losswatch_probes_acked_total"),
            received: sum(&f, "losswatch_probes_received_total"),
            lost: sum(&f, "losswatch_probes_lost_total"),
            expired_unread: sum(&f, "losswatch_probes_expired_unread_total"),
            duplicated: sum(&f, "losswatch_probes_duplicated_total"),
            truncations: sum(&f, "losswatch_partition_truncations_total"),
            failed_arrived: sum(&f, "losswatch_probes_failed_but_arrived_total"),
            foreign: sum(&f, "losswatch_foreign_records_total"),
            failed: merge(
                &BTreeMap::new(),
                &by_label(&f, "losswatch_probes_send_failed_total", "reason"),
                1.0,
            ),
            lost_by_broker: merge(
                &BTreeMap::new(),
                &by_label(&f, "losswatch_probes_lost_total", "broker"),
                1.0,
            ),
            group_expired: merge(
                &BTreeMap::new(),
                &by_label(&f, "losswatch_consumergroup_expired_unread_total", "group"),
                1.0,
            ),
        }
    }

    fn combine(&self, o: &Counters, sign: f64) -> Counters {
        Counters {
            sent: self.sent + sign * o.sent,
            acked: self.acked + sign * o.acked,
            received: self.received + sign * o.received,
            lost: self.lost + sign * o.lost,
            expired_unread: self.expired_unread + sign * o.expired_unread,
            duplicated: self.duplicated + sign * o.duplicated,
            truncations: self.truncations + sign * o.truncations,
            failed_arrived: self.failed_arrived + sign * o.failed_arrived,
            foreign: self.foreign + sign * o.foreign,
            failed: merge(&self.failed, &o.failed, sign),
            lost_by_broker: merge(&self.lost_by_broker, &o.lost_by_broker, sign),
            group_expired: merge(&self.group_expired, &o.group_expired, sign),
        }
    }

    pub fn plus(&self, o: &Counters) -> Counters {
        self.combine(o, 1.0)
    }

    pub fn minus(&self, o: &Counters) -> Counters {
        self.combine(o, -1.0)
    }

    pub fn failed_total(&self) -> f64 {
        self.failed.values().sum::<f64>() + 0.0
    }

    /// Send failures whose probe never reached the log.
    pub fn not_appended(&self) -> f64 {
        self.failed_total() - self.failed_arrived
    }

    pub fn group_expired_total(&self) -> f64 {
        self.group_expired.values().sum::<f64>() + 0.0
    }
}

/// `k=v` pairs of a labelled count, e.g. `timeout=3 broker_down=1`.
pub fn pairs(m: &BTreeMap<String, f64>) -> String {
    let v: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
    v.join(" ")
}

/// Totals over all partitions and all of the agent's runs in this demo.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub sent: f64,
    pub acked: f64,
    pub failed: f64,
    pub received: f64,
    pub lost: f64,
    pub expired_unread: f64,
    pub duplicated: f64,
    pub truncations: f64,
    pub pending: f64,
    pub e2e_p99_seconds: Option<f64>,
    /// Partitions with at least one probe acked and one verified (current run).
    pub partitions_verified: usize,
}

impl Summary {
    /// `earlier` are the counters of the agent's earlier runs (before a power loss).
    pub fn read(earlier: &Counters, current: Option<&Registries>) -> Summary {
        let fams = current.map(Registries::gather).unwrap_or_default();
        let c = current.map_or_else(Counters::default, Counters::read);
        let total = earlier.plus(&c);
        let acked = by_label(&fams, "losswatch_probes_acked_total", "partition");
        let received = by_label(&fams, "losswatch_probes_received_total", "partition");
        let partitions_verified = acked
            .iter()
            .filter(|(p, a)| **a > 0.0 && received.get(*p).copied().unwrap_or(0.0) > 0.0)
            .count();
        Summary {
            sent: total.sent,
            acked: total.acked,
            failed: total.failed_total(),
            received: total.received,
            lost: total.lost,
            expired_unread: total.expired_unread,
            duplicated: total.duplicated,
            truncations: total.truncations,
            pending: sum(&fams, "losswatch_probes_pending"),
            e2e_p99_seconds: quantile(&fams, "losswatch_e2e_latency_seconds", 0.99),
            partitions_verified,
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p99 = self
            .e2e_p99_seconds
            .map_or("-".to_string(), |s| format!("{:.0}ms", s * 1000.0));
        write!(
            f,
            "sent={} acked={} failed={} received={} pending={} lost={} expired_unread={} dup={} truncations={} e2e_p99<={} partitions_verified={}/{}",
            self.sent, self.acked, self.failed, self.received, self.pending, self.lost,
            self.expired_unread, self.duplicated, self.truncations, p99, self.partitions_verified,
            PARTITIONS
        )
    }
}

/// The lag poller's view of one group, read from the metrics registry.
#[derive(Debug, Clone, PartialEq)]
pub struct LagSummary {
    pub group: String,
    pub lag: f64,
    pub lag_seconds: f64,
    pub status: Option<String>,
    pub expired_unread: f64,
}

impl LagSummary {
    pub fn read(registry: &Registries, group: &str, earlier_expired: f64) -> LagSummary {
        let fams = registry.gather();
        let of = |name: &str| {
            fams.iter()
                .filter(|f| f.name() == name)
                .flat_map(|f| f.get_metric().iter().map(move |m| (f, m)))
                .filter(|(_, m)| label(m, "group") == Some(group))
                .map(|(f, m)| (value(f, m), m))
                .collect::<Vec<_>>()
        };
        LagSummary {
            group: group.to_owned(),
            // `+ 0.0`: an empty sum is -0.0, which would print as "-0".
            lag: of("losswatch_consumergroup_lag")
                .iter()
                .map(|(v, _)| v)
                .sum::<f64>()
                + 0.0,
            lag_seconds: of("losswatch_consumergroup_lag_seconds")
                .iter()
                .map(|(v, _)| *v)
                .fold(0.0, f64::max),
            status: of("losswatch_consumergroup_status")
                .iter()
                .find(|(v, _)| *v == 1.0)
                .and_then(|(_, m)| label(m, "status"))
                .map(str::to_owned),
            expired_unread: earlier_expired
                + of("losswatch_consumergroup_expired_unread_total")
                    .iter()
                    .map(|(v, _)| v)
                    .sum::<f64>(),
        }
    }
}

impl std::fmt::Display for LagSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "consumer group {}: lag={} lag_seconds={:.1} status={} expired_unread={}",
            self.group,
            self.lag,
            self.lag_seconds,
            self.status.as_deref().unwrap_or("-"),
            self.expired_unread
        )
    }
}
