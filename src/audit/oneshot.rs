//! `losswatch audit`: one audit, no agent needed. Exit codes: 0 clean, 1 findings
//! (`configs_unavailable` is one: unknown is not clean), 2 nothing could be audited.

use super::fetch::Scope;
use super::{table, task};
use crate::config::ValidConfig;
use crate::kafka::{Clients, KafkaErrors};

/// What the command prints and its exit code.
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub code: u8,
}

/// Runs one audit with the configuration's cluster, topic filter and timeout.
pub async fn run(cfg: &ValidConfig, json: bool) -> Outcome {
    let fail = |stderr: String, code| Outcome {
        stdout: String::new(),
        stderr,
        code,
    };
    let filter = match cfg.audit.filter() {
        Ok(f) => f,
        Err(e) => return fail(format!("losswatch: {e}\n"), 64),
    };
    let errors = match KafkaErrors::register(&prometheus::Registry::new()) {
        Ok(e) => e,
        Err(e) => return fail(format!("losswatch audit: {e}\n"), 70),
    };
    let admin = match task::admin_client(&Clients::new(cfg, errors)) {
        Ok(a) => a,
        Err(e) => {
            return fail(
                format!("losswatch: invalid value for `kafka.properties`: {e}\n"),
                64,
            )
        }
    };
    let scope = Scope {
        canary_topic: cfg.canary.topic.clone(),
        filter,
        timeout: cfg.audit.request_timeout,
        describe: Ok(()),
    };
    let result = task::audit_once(admin.client(), &scope).await;
    // Closing the client blocks until its threads end: not on the runtime.
    let _ = tokio::task::spawn_blocking(move || drop(admin)).await;
    let (report, _) = match result {
        Ok(r) => r,
        Err(e) => {
            return fail(
                format!(
                    "losswatch audit: nothing audited: {e} (bootstrap servers {})\n",
                    cfg.kafka.bootstrap_servers
                ),
                2,
            )
        }
    };
    let code = if report.audit.is_clean() { 0 } else { 1 };
    let stdout = if json {
        let state = task::AuditState {
            auditing: true,
            report: Some(std::sync::Arc::new(report)),
            error: None,
        };
        match serde_json::to_string_pretty(&state.response()) {
            Ok(s) => s + "\n",
            Err(e) => return fail(format!("losswatch audit: cannot encode: {e}\n"), 70),
        }
    } else {
        table::render(&report)
    };
    Outcome {
        stdout,
        stderr: String::new(),
        code,
    }
}
