//! The durability audit: is the cluster configured so that an acknowledged message cannot be
//! lost? Beside the data path, like the lag poller, and cluster-wide like it: by default only
//! the agent elected to poll lag audits, so a DaemonSet of 300 agents sends one agent's
//! DescribeConfigs, not 300.
//!
//! | module | concern |
//! |---|---|
//! | [`input`] | the cluster as metadata and DescribeConfigs show it (plain data) |
//! | [`resolve`] | the value of a topic setting a broker applies, and where it was set (sans-IO) |
//! | [`risk`] | the risks: stable labels, stage, why, fix |
//! | [`rules`] | **the rules**: input → findings and partition states (sans-IO, table-tested) |
//! | [`fetch`] | metadata and DescribeConfigs, each bounded by a timeout |
//! | [`task`] | every `audit.interval` on the auditing agent; DescribeConfigs backed off after failures |
//! | [`metrics`] | `losswatch_topic_config_risk`, `losswatch_partition_*`, … rendered from the last report |
//! | [`oneshot`] | `losswatch audit`: one audit, exit code 0 clean, 1 findings, 2 unreachable |
//! | [`table`] | `losswatch audit`: the findings as a table a person reads |
//!
//! Unknown is never "all good": a resource whose configuration cannot be read (no ACL, a
//! broker that answers with no entries, a timeout) is reported `configs_unavailable`.

pub mod fetch;
pub mod input;
pub mod metrics;
pub mod oneshot;
pub mod resolve;
pub mod risk;
pub mod rules;
pub mod table;
pub mod task;

use std::sync::Arc;

use serde::Serialize;

pub use metrics::AuditMetrics;
pub use risk::{Risk, Severity, Stage};
pub use rules::{audit, Audit, Finding, PartitionState, Resource};
pub use task::{spawn, AuditState, Role};

/// One finished audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Unix milliseconds when the audit started and finished.
    pub started_ms: i64,
    pub finished_ms: i64,
    pub audit: Audit,
}

/// What `GET /api/audit` answers.
#[derive(Debug, Serialize)]
pub struct AuditResponse<'a> {
    /// Whether this agent runs the audit (only the elected agent does, by default).
    pub auditing: bool,
    /// RFC 3339 time the last audit finished; `None` before the first.
    pub last_run: Option<String>,
    /// Why the last audit could not read the cluster, if it could not.
    pub error: Option<&'a str>,
    pub topics: usize,
    pub brokers: usize,
    pub partitions: usize,
    pub findings: &'a [Finding],
}

impl AuditState {
    pub fn response(&self) -> AuditResponse<'_> {
        let report = self.report.as_deref();
        AuditResponse {
            auditing: self.auditing,
            last_run: report.and_then(|r| {
                chrono::DateTime::from_timestamp_millis(r.finished_ms).map(|t| t.to_rfc3339())
            }),
            error: self.error.as_deref(),
            topics: report.map_or(0, |r| r.audit.topics),
            brokers: report.map_or(0, |r| r.audit.brokers),
            partitions: report.map_or(0, |r| r.audit.partitions.len()),
            findings: report.map_or(&[], |r| r.audit.findings.as_slice()),
        }
    }
}

/// The audit state as the HTTP server sees it.
pub type Shared = tokio::sync::watch::Receiver<Arc<AuditState>>;
