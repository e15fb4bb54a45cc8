//! `losswatch lag`: one poll by the poller's own code, printed as a table or JSON.

use prometheus::Registry;
use serde::Serialize;

use super::metrics::{LagMetrics, PollError};
use super::poller::Poller;
use crate::config::ValidConfig;
use crate::kafka::{Clients, KafkaErrors};

/// One group-partition as `losswatch lag` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub current_offset: i64,
    pub log_end_offset: i64,
    pub lag: i64,
    pub lag_seconds: f64,
    pub status: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OnceError {
    #[error("bad lag configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot read consumer-group lag from the cluster ({0}); is it reachable?")]
    Unreachable(String),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl OnceError {
    /// The process exit code (sysexits): 64 for configuration, 69 when the cluster cannot
    /// be read.
    pub fn exit_code(&self) -> u8 {
        match self {
            OnceError::Config(_) => 64,
            OnceError::Unreachable(_) => 69,
            OnceError::Metrics(_) => 1,
        }
    }
}

/// Polls once: every group the poller would poll, or only `group`.
pub async fn poll_once(cfg: &ValidConfig, group: Option<&str>) -> Result<Vec<Row>, OnceError> {
    let mut lag = cfg.lag.clone();
    if let Some(g) = group {
        lag.groups = vec![g.to_owned()];
    }
    lag.validate()?;
    let filter = lag.filter()?;
    let registry = Registry::new();
    let metrics = LagMetrics::register(&registry)?;
    let clients = Clients::new(cfg, KafkaErrors::register(&registry)?);
    let mut poller = Poller::new(lag, clients, filter, metrics.clone(), None);
    let Some(snap) = poller.poll().await else {
        let failed: Vec<&str> = PollError::ALL
            .iter()
            .filter(|e| metrics.poll_errors.with_label_values(&[e.as_label()]).get() > 0)
            .map(|e| e.as_label())
            .collect();
        return Err(OnceError::Unreachable(if failed.is_empty() {
            "no answer".into()
        } else {
            format!("failed: {}", failed.join(", "))
        }));
    };
    Ok(snap
        .parts
        .iter()
        .map(|((g, tp), row)| Row {
            group: g.clone(),
            topic: tp.0.clone(),
            partition: tp.1,
            current_offset: row.committed,
            log_end_offset: snap.logs.get(tp).map_or(-1, |l| l.end),
            lag: row.lag,
            lag_seconds: row.lag_seconds,
            status: row.status.as_label().to_owned(),
        })
        .collect())
}

/// The rows as a table, one line each, in the order of the header.
pub fn table(rows: &[Row]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<30} {:<30} {:>9} {:>14} {:>14} {:>10} {:>11} STATUS",
        "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "LAG-SECONDS"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<30} {:<30} {:>9} {:>14} {:>14} {:>10} {:>11.3} {}",
            r.group,
            r.topic,
            r.partition,
            r.current_offset,
            r.log_end_offset,
            r.lag,
            r.lag_seconds,
            r.status
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_the_header_and_a_line_per_row() {
        let rows = vec![Row {
            group: "billing".into(),
            topic: "orders".into(),
            partition: 2,
            current_offset: 0,
            log_end_offset: 30,
            lag: 30,
            lag_seconds: 1.5,
            status: "OK".into(),
        }];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        let head: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            head,
            [
                "GROUP",
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "LOG-END-OFFSET",
                "LAG",
                "LAG-SECONDS",
                "STATUS"
            ]
        );
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            row,
            ["billing", "orders", "2", "0", "30", "30", "1.500", "OK"]
        );
    }
}
