//! The audit task: every `audit.interval` (a slow audit skips ticks) while this agent audits,
//! it reads the cluster, runs the rules and publishes the report to the metrics and
//! `/api/audit`. Its admin client exists only while the agent audits.
//!
//! A DescribeConfigs that fails or times out is not retried at once: after `n` consecutive
//! failures the next attempt waits `interval × 2^(n-1)`, at most an hour, and the resources
//! are reported `configs_unavailable` meanwhile. The first failure of a kind is logged at
//! WARN, repeats at DEBUG.

use std::sync::Arc;

use rdkafka::admin::AdminClient;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::fetch::{self, Scope};
use super::metrics::{AuditError, AuditMetrics};
use super::{rules, Report};
use crate::backoff::Backoff;
use crate::config::{AuditConfig, Config, TopicFilter};
use crate::kafka::Clients;

/// Which agent audits.
pub enum Role {
    Always,
    /// Follows the lag poller election: audits while the flag is true.
    Elected(watch::Receiver<bool>),
}

/// What the task publishes.
#[derive(Debug, Default)]
pub struct AuditState {
    pub auditing: bool,
    pub report: Option<Arc<Report>>,
    /// Why the last audit could not read the cluster.
    pub error: Option<String>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

type Admin = AdminClient<crate::kafka::Context>;

/// Creates the admin client the audit (and `losswatch audit`) uses; its `client()` is what
/// [`audit_once`] takes.
pub fn admin_client(
    clients: &Clients,
) -> Result<Arc<crate::kafka::Admin>, rdkafka::error::KafkaError> {
    clients.admin("audit")
}

/// One audit with a given client: what `losswatch audit` runs, and the task at each tick.
pub async fn audit_once(
    admin: &Arc<Admin>,
    scope: &Scope,
) -> Result<(Report, Option<String>), fetch::Unreachable> {
    let started_ms = now_ms();
    let gathered = fetch::gather(admin, scope).await?;
    let audit = rules::audit(&gathered.input);
    Ok((
        Report {
            started_ms,
            finished_ms: now_ms(),
            audit,
        },
        gathered.describe_failure,
    ))
}

/// Starts the audit task (returns at once when `audit.mode = "off"`).
pub fn spawn(
    cfg: &Config,
    base: Clients,
    lag_admin: Option<crate::lag::SharedAdmin>,
    metrics: AuditMetrics,
    role: Option<Role>,
    shutdown: CancellationToken,
) -> (JoinHandle<()>, watch::Receiver<Arc<AuditState>>) {
    let (tx, rx) = watch::channel(Arc::new(AuditState::default()));
    let audit = cfg.audit.clone();
    let canary_topic = cfg.canary.topic.clone();
    let handle = tokio::spawn(async move {
        let Some(role) = role else {
            metrics.auditing.set(0);
            return;
        };
        let filter = match audit.filter() {
            Ok(f) => f,
            Err(error) => {
                tracing::error!(%error, "durability audit not started");
                return;
            }
        };
        let task = Task {
            cfg: audit,
            canary_topic,
            filter,
            base,
            lag_admin,
            metrics,
            tx,
            client: None,
            backoff: Backoff::default(),
        };
        task.run(role, shutdown).await;
    });
    (handle, rx)
}

struct Task {
    cfg: AuditConfig,
    canary_topic: String,
    filter: TopicFilter,
    base: Clients,
    /// The lag poller's admin client on this agent, when it polls: the audit borrows it
    /// rather than holding a second client to the same brokers.
    lag_admin: Option<crate::lag::SharedAdmin>,
    metrics: AuditMetrics,
    tx: watch::Sender<Arc<AuditState>>,
    /// The audit's own client, only when no lag poller's client is there to borrow.
    client: Option<Arc<crate::kafka::Admin>>,
    backoff: Backoff,
}

impl Task {
    async fn run(mut self, role: Role, shutdown: CancellationToken) {
        let mut election = match role {
            Role::Always => None,
            Role::Elected(rx) => Some(rx),
        };
        let mut auditing = election.is_none();
        self.set_auditing(auditing);
        let mut tick = tokio::time::interval(self.cfg.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                now = crate::lag::election::next_change(&mut election) => {
                    if now != auditing {
                        auditing = now;
                        self.set_auditing(now);
                        if now {
                            tick.reset_immediately();
                        }
                    }
                }
                _ = tick.tick(), if auditing => {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = self.audit() => {}
                    }
                }
            }
        }
        if let Some(c) = self.client.take() {
            tokio::task::spawn_blocking(move || drop(c));
        }
    }

    fn set_auditing(&mut self, on: bool) {
        self.metrics.auditing.set(i64::from(on));
        if on {
            tracing::info!("running the durability audit on this agent");
        } else {
            if let Some(c) = self.client.take() {
                // Closing blocks briefly: not on the runtime.
                tokio::task::spawn_blocking(move || drop(c));
            }
            self.metrics.publish(None);
        }
        self.tx.send_replace(Arc::new(AuditState {
            auditing: on,
            ..AuditState::default()
        }));
    }

    /// The client to audit with: the lag poller's when this agent polls (waiting a moment
    /// for it at the start of a term, when both begin at once), else one of its own.
    async fn client(&mut self) -> Option<Arc<Admin>> {
        if let Some(rx) = self.lag_admin.as_mut() {
            let wait = tokio::time::timeout(std::time::Duration::from_secs(2), async {
                loop {
                    if let Some(lag) = rx.borrow_and_update().clone() {
                        return Some(lag);
                    }
                    if rx.changed().await.is_err() {
                        return None;
                    }
                }
            });
            if let Ok(Some(lag)) = wait.await {
                if let Some(own) = self.client.take() {
                    tokio::task::spawn_blocking(move || drop(own));
                }
                return Some(lag.client().clone());
            }
        }
        if self.client.is_none() {
            match admin_client(&self.base) {
                Ok(c) => self.client = Some(c),
                Err(error) => {
                    self.metrics.error(AuditError::Client);
                    tracing::error!(%error, "cannot create the audit's admin client");
                    return None;
                }
            }
        }
        self.client.as_ref().map(|c| c.client().clone())
    }

    async fn audit(&mut self) {
        let started = std::time::Instant::now();
        let Some(admin) = self.client().await else {
            return;
        };
        let scope = Scope {
            canary_topic: self.canary_topic.clone(),
            filter: self.filter.clone(),
            timeout: self.cfg.request_timeout,
            describe: self
                .backoff
                .allow(now_ms())
                .map_err(|why| format!("DescribeConfigs {why}")),
        };
        let result = audit_once(&admin, &scope).await;
        self.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        match result {
            Err(error) => {
                self.metrics.error(AuditError::Metadata);
                tracing::warn!(%error, "durability audit could not read the cluster");
                let report = self.tx.borrow().report.clone();
                self.tx.send_replace(Arc::new(AuditState {
                    auditing: true,
                    report,
                    error: Some(error.to_string()),
                }));
            }
            Ok((report, describe_failure)) => {
                match describe_failure {
                    Some(why) => {
                        self.metrics.error(AuditError::DescribeConfigs);
                        if self.backoff.failed(now_ms(), self.cfg.interval, &why) {
                            tracing::warn!(reason = %why, "cannot read topic or broker configs; they are reported configs_unavailable");
                        } else {
                            tracing::debug!(reason = %why, "cannot read topic or broker configs");
                        }
                    }
                    None if scope.describe.is_ok() && self.backoff.succeeded() => {
                        tracing::info!("topic and broker configs readable again");
                    }
                    None => {}
                }
                tracing::debug!(
                    findings = report.audit.findings.len(),
                    topics = report.audit.topics,
                    seconds = started.elapsed().as_secs_f64(),
                    "durability audit done"
                );
                let report = Arc::new(report);
                self.metrics.publish(Some(report.clone()));
                self.tx.send_replace(Arc::new(AuditState {
                    auditing: true,
                    report: Some(report),
                    error: None,
                }));
            }
        }
    }
}
