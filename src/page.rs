//! The status page (`GET /`): one self-contained HTML file, no external scripts, fonts or
//! stylesheets (clusters are often air-gapped). Its script reads what the agent already
//! serves — `/api/status`, `/api/losses`, `/metrics` (end-to-end latency buckets) — plus
//! `/api/lag` below and `/api/audit` when that answers, and redraws every two seconds.
//!
//! `/api/lag` is the lag poller's published snapshot as `/metrics` renders it, regrouped by
//! consumer group: no second copy of the lag state to keep in sync.

use std::collections::BTreeMap;

use prometheus::proto::{Metric, MetricFamily, MetricType};
use prometheus::Registry;
use serde::Serialize;

/// The page.
pub const HTML: &str = include_str!("http/page.html");

/// One group-partition as the last lag poll saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LagPartition {
    pub topic: String,
    pub partition: i32,
    pub committed: Option<f64>,
    pub log_end: Option<f64>,
    pub lag: Option<f64>,
    pub lag_seconds: Option<f64>,
    pub expired_unread: Option<f64>,
}

/// One consumer group as the last lag poll saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LagGroup {
    pub group: String,
    pub status: Option<String>,
    pub members: Option<f64>,
    pub partitions: Vec<LagPartition>,
}

fn label<'a>(m: &'a Metric, name: &str) -> Option<&'a str> {
    m.get_label()
        .iter()
        .find(|l| l.name() == name)
        .map(|l| l.value())
}

fn value(f: &MetricFamily, m: &Metric) -> f64 {
    match f.get_field_type() {
        MetricType::COUNTER => m.get_counter().get_value(),
        _ => m.get_gauge().get_value(),
    }
}

/// The consumer groups in the registry's lag series (empty on an agent that does not poll).
pub fn lag(registry: &Registry) -> Vec<LagGroup> {
    let fams = registry.gather();
    let mut groups: BTreeMap<String, LagGroup> = BTreeMap::new();
    let mut parts: BTreeMap<(String, String, i32), LagPartition> = BTreeMap::new();
    let mut log_end: BTreeMap<(String, i32), f64> = BTreeMap::new();
    for f in &fams {
        for m in f.get_metric() {
            let v = value(f, m);
            if f.name() == "losswatch_partition_log_end_offset" {
                if let (Some(t), Some(p)) = (label(m, "topic"), label(m, "partition")) {
                    log_end.insert((t.to_owned(), p.parse().unwrap_or(-1)), v);
                }
                continue;
            }
            let Some(g) = label(m, "group") else { continue };
            let group = groups.entry(g.to_owned()).or_insert_with(|| LagGroup {
                group: g.to_owned(),
                ..LagGroup::default()
            });
            match f.name() {
                "losswatch_consumergroup_status" if v == 1.0 => {
                    group.status = label(m, "status").map(str::to_owned)
                }
                "losswatch_consumergroup_members" => group.members = Some(v),
                name => {
                    let (Some(t), Some(p)) = (label(m, "topic"), label(m, "partition")) else {
                        continue;
                    };
                    let p: i32 = p.parse().unwrap_or(-1);
                    let row = parts
                        .entry((g.to_owned(), t.to_owned(), p))
                        .or_insert_with(|| LagPartition {
                            topic: t.to_owned(),
                            partition: p,
                            ..LagPartition::default()
                        });
                    match name {
                        "losswatch_consumergroup_lag" => row.lag = Some(v),
                        "losswatch_consumergroup_lag_seconds" => row.lag_seconds = Some(v),
                        "losswatch_consumergroup_committed_offset" => row.committed = Some(v),
                        "losswatch_consumergroup_expired_unread_total" => {
                            row.expired_unread = Some(v)
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    for ((g, t, p), mut row) in parts {
        row.log_end = log_end.get(&(t, p)).copied();
        if let Some(group) = groups.get_mut(&g) {
            group.partitions.push(row);
        }
    }
    groups.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained() {
        for external in ["src=\"http", "href=\"http", "@import", "url(http", "//cdn"] {
            assert!(!HTML.contains(external), "page refers to {external}");
        }
        for api in [
            "/api/status",
            "/api/losses",
            "/api/lag",
            "/api/audit",
            "/metrics",
        ] {
            assert!(HTML.contains(api), "page does not read {api}");
        }
    }

    #[test]
    fn lag_groups_come_from_the_registry() {
        let r = Registry::new();
        let opts = |n: &str| prometheus::Opts::new(n, "help");
        let lag = prometheus::GaugeVec::new(
            opts("losswatch_consumergroup_lag"),
            &["group", "topic", "partition"],
        )
        .unwrap();
        let status =
            prometheus::GaugeVec::new(opts("losswatch_consumergroup_status"), &["group", "status"])
                .unwrap();
        r.register(Box::new(lag.clone())).unwrap();
        r.register(Box::new(status.clone())).unwrap();
        lag.with_label_values(&["app", "orders", "1"]).set(7.0);
        status.with_label_values(&["app", "OK"]).set(0.0);
        status.with_label_values(&["app", "WARN"]).set(1.0);
        let groups = super::lag(&r);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].status.as_deref(), Some("WARN"));
        assert_eq!(groups[0].partitions[0].lag, Some(7.0));
        assert_eq!(groups[0].partitions[0].partition, 1);
    }
}
