//! The audit's metrics. The finding and partition-state series are a view of the last
//! [`Report`], rendered at scrape time: a topic, partition or broker that is gone from the
//! cluster (or a risk that was fixed) has no series at the next audit, and an agent that does
//! not audit exports none.

use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Metric, MetricFamily, MetricType};
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

use super::rules::Resource;
use super::Report;
use crate::audit::risk::Risk;
use crate::promtext;

/// Why (part of) an audit failed; the `reason` label of `losswatch_audit_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditError {
    /// Metadata could not be read: nothing was audited.
    Metadata,
    /// A DescribeConfigs request failed, was refused or timed out.
    DescribeConfigs,
    /// The admin client could not be created.
    Client,
}

impl AuditError {
    pub const ALL: [AuditError; 3] = [
        AuditError::Metadata,
        AuditError::DescribeConfigs,
        AuditError::Client,
    ];

    pub fn as_label(self) -> &'static str {
        match self {
            AuditError::Metadata => "metadata",
            AuditError::DescribeConfigs => "describe_configs",
            AuditError::Client => "client",
        }
    }
}

const FAMILIES: &[(&str, &str, &[&str])] = &[
    ("losswatch_topic_config_risk", "1 while the topic has the risk (absent otherwise): a setting that can lose acknowledged data, or configs_unavailable when its settings could not be read (unknown is not safe). /api/audit says why and how to fix it.", &["topic", "risk"]),
    ("losswatch_broker_config_risk", "1 while the broker's configuration has the risk (absent otherwise); configs_unavailable when it could not be read.", &["broker", "risk"]),
    ("losswatch_partition_offline", "1 while the partition has no leader (absent otherwise).", TP),
    ("losswatch_partition_under_replicated", "1 while the partition has fewer in-sync replicas than replicas (absent otherwise).", TP),
    ("losswatch_partition_under_min_isr", "1 while the partition has fewer in-sync replicas than its min.insync.replicas: acks=all writes are refused (absent otherwise, and when min.insync.replicas is unknown).", TP),
    ("losswatch_partition_at_min_isr", "1 while the partition's in-sync replicas equal its min.insync.replicas: one more failure stops acks=all writes (absent otherwise, and when min.insync.replicas is unknown).", TP),
    ("losswatch_audit_configs_unavailable", "1 for each resource (topic:NAME or broker:ID) whose configuration the last audit could not read.", &["resource"]),
    ("losswatch_audit_last_run_timestamp_seconds", "When the last audit that could read the cluster's metadata finished (Unix time; only on the agent that audits).", &[]),
    ("losswatch_audit_topics", "Topics the last audit looked at.", &[]),
];

const TP: &[&str] = &["topic", "partition"];

type View = Arc<Mutex<Option<Arc<Report>>>>;

#[derive(Clone)]
pub struct AuditMetrics {
    view: View,
    pub duration: Histogram,
    pub errors: IntCounterVec,
    /// 1 on the agent that audits.
    pub auditing: IntGauge,
}

impl AuditMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<AuditMetrics> {
        let view = View::default();
        r.register(Box::new(SeriesCollector::new(view.clone())?))?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "losswatch_audit_duration_seconds",
                "Wall time of one durability audit (metadata and DescribeConfigs).",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
        )?;
        r.register(Box::new(duration.clone()))?;
        let errors = IntCounterVec::new(
            Opts::new(
                "losswatch_audit_errors_total",
                "Failed requests of durability audits, by reason.",
            ),
            &["reason"],
        )?;
        r.register(Box::new(errors.clone()))?;
        for e in AuditError::ALL {
            errors.with_label_values(&[e.as_label()]);
        }
        let auditing = IntGauge::new(
            "losswatch_audit_running",
            "1 on the agent that runs the durability audit (the elected one by default), 0 on the others.",
        )?;
        r.register(Box::new(auditing.clone()))?;
        Ok(AuditMetrics {
            view,
            duration,
            errors,
            auditing,
        })
    }

    pub fn error(&self, e: AuditError) {
        self.errors.with_label_values(&[e.as_label()]).inc();
    }

    pub fn publish(&self, report: Option<Arc<Report>>) {
        if let Ok(mut v) = self.view.lock() {
            *v = report;
        }
    }
}

struct SeriesCollector {
    view: View,
    descs: Vec<Desc>,
}

impl SeriesCollector {
    fn new(view: View) -> prometheus::Result<SeriesCollector> {
        let descs = FAMILIES
            .iter()
            .map(|(name, help, labels)| {
                Desc::new(
                    (*name).to_owned(),
                    (*help).to_owned(),
                    labels.iter().map(|l| (*l).to_owned()).collect(),
                    Default::default(),
                )
            })
            .collect::<prometheus::Result<_>>()?;
        Ok(SeriesCollector { view, descs })
    }
}

impl Collector for SeriesCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(report) = self.view.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return Vec::new();
        };
        let mut series: Vec<Vec<Metric>> = vec![Vec::new(); FAMILIES.len()];
        for f in &report.audit.findings {
            let risk = f.risk.as_label();
            match &f.resource {
                Resource::Topic(t) => {
                    series[0].push(promtext::gauge(&[("topic", t), ("risk", risk)], 1.0))
                }
                Resource::Broker(b) => {
                    let b = b.to_string();
                    series[1].push(promtext::gauge(&[("broker", &b), ("risk", risk)], 1.0));
                }
                Resource::Partition(..) => {}
            }
            if f.risk == Risk::ConfigsUnavailable {
                series[6].push(promtext::gauge(&[("resource", &f.resource.label())], 1.0));
            }
        }
        for p in &report.audit.partitions {
            let pl = p.partition.to_string();
            let l = [("topic", p.topic.as_str()), ("partition", pl.as_str())];
            for (i, on) in [
                (2, p.offline),
                (3, p.under_replicated),
                (4, p.under_min_isr == Some(true)),
                (5, p.at_min_isr == Some(true)),
            ] {
                if on {
                    series[i].push(promtext::gauge(&l, 1.0));
                }
            }
        }
        series[7].push(promtext::gauge(&[], report.finished_ms as f64 / 1000.0));
        series[8].push(promtext::gauge(&[], report.audit.topics as f64));
        FAMILIES
            .iter()
            .zip(series)
            .filter(|(_, s)| !s.is_empty())
            .map(|((name, help, _), metrics)| {
                let mut mf = MetricFamily::default();
                mf.set_name((*name).to_owned());
                mf.set_help((*help).to_owned());
                mf.set_field_type(MetricType::GAUGE);
                mf.set_metric(metrics);
                mf
            })
            .collect()
    }
}
