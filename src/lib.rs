//! losswatch: proves, continuously, that Kafka does not lose messages.
//!
//! # The data path
//!
//! ```text
//!            ┌──────────────┐  probe (seq n, partition p)   ┌────────┐
//!  tick ───▶ │ canary       │ ───────────────────────────▶ │ broker │
//!            │ producer     │ ◀─── delivery report ─────── │        │
//!            └──────┬───────┘      (offset or failure)      └───┬────┘
//!                   │ acks                                       │ records
//!                   ▼                                            ▼
//!            ┌──────────────┐     records read back      ┌──────────────┐
//!            │   tracker    │ ◀───────────────────────── │   verifier   │
//!            │  (sans-IO)   │ ────── seek ─────────────▶ │   consumer   │
//!            └──────┬───────┘                            └──────────────┘
//!                   │ verdicts: delivered, lost, late, duplicate, reordered,
//!                   │           expired unread, truncation
//!          ┌────────┴────────┐
//!          ▼                 ▼
//!     ┌─────────┐      ┌──────────┐      ┌──────────────────────────────┐
//!     │ ledger  │      │ metrics  │ ───▶ │ http: /metrics /livez /readyz │
//!     │ (SQLite)│ ───▶ │          │      │       /api/losses /api/status │
//!     └─────────┘      └──────────┘      │       /api/lag, / (page)      │
//!                                        └──────────────────────────────┘
//! ```
//!
//! # Where things live
//!
//! | module | concern |
//! |---|---|
//! | [`probe`] | the probe wire format; decoding never panics (sans-IO) |
//! | [`tracker`] | **the brain**: classifies every acked probe from delivery reports and records read back; what counts as proof of loss is documented there (sans-IO, property-tested) |
//! | [`canary`] | the producer (acks=all, idempotent; delivery reports onto a channel), canary topic discovery/creation/growth, broker coverage, and the fleet size that sets the probe interval (`canary.fleet_probe_rate`) |
//! | [`verifier`] | manual-assign consumer, one queue per partition, `auto.offset.reset=error` |
//! | [`agent`] | the loop that wires producer, verifier, tracker, ledger and metrics; health and status |
//! | [`ledger`] | SQLite state: instance id, sequence reservations, pending probes, positions, loss events |
//! | [`metrics`] | the Prometheus registry and the public metric names; the per-partition series as cells the agent holds, written straight into the scrape |
//! | [`promtext`] | series written straight into a scrape in the text format, and as metric values for readers of a registry |
//! | [`http`] | the endpoints |
//! | [`config`] | TOML + env + flags, validation (exit 64 naming the key), redaction |
//! | [`demo`] | `losswatch demo`: the whole agent against librdkafka's mock cluster; every stage loses messages and the counts are checked against what was injected |
//! | [`report`] | `losswatch report`: loss events from a state file as a table |
//! | [`audit`] | beside the data path: the durability audit — topic, partition and broker settings that make loss possible, and how to fix them (rules sans-IO, table-tested); run by the elected agent |
//! | [`backoff`] | backing off refused admin requests (sans-IO) |
//! | [`page`] | the status page served at `GET /`, and `/api/lag` behind it |
//! | [`ratelimit`] | repeated log lines held back (librdkafka's, while a broker is down) |
//! | [`lag`] | beside the data path: consumer-group lag in messages and time, status, expired unread; one elected poller per DaemonSet |
//!
//! Data flows one way: the producer and the verifier feed the tracker; the tracker's verdicts
//! go to the ledger and the metrics. The tracker knows nothing of Kafka, SQLite or HTTP.

pub mod agent;
pub mod audit;
pub mod backoff;
pub mod canary;
pub mod config;
pub mod demo;
pub mod http;
pub mod kafka;
pub mod lag;
pub mod ledger;
pub mod metrics;
pub mod page;
pub mod probe;
pub mod promtext;
pub mod ratelimit;
pub mod report;
pub mod tracker;
pub mod verifier;

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::agent::{Agent, AgentError, Health, Status, Store};
use crate::config::ValidConfig;
use crate::kafka::{Clients, KafkaErrors};
use crate::ledger::{Ledger, LedgerError};
use crate::metrics::Metrics;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid value for `http.web_config_file`: {0}")]
    Tls(#[from] http::TlsError),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("internal task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl Error {
    /// The process exit code (sysexits): 64 for configuration, 74 for the state file.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Agent(AgentError::Client(_)) | Error::Tls(_) => 64,
            Error::Ledger(_) => 74,
            _ => 1,
        }
    }
}

/// A running agent.
pub struct Running {
    /// Where the HTTP endpoints listen.
    pub addr: SocketAddr,
    pub registry: Registry,
    /// The agent's per-partition series (`/metrics` writes them after the registry's; see
    /// `metrics::partitions`).
    pub partition_series: Registry,
    /// The lag poller's per-group and per-partition series (`/metrics` writes them after the
    /// registry's; see `lag::metrics`).
    pub lag_series: Registry,
    pub status: watch::Receiver<Arc<Status>>,
    pub health: Arc<Health>,
    agent: JoinHandle<()>,
    http: JoinHandle<()>,
    lag: JoinHandle<()>,
    audit: JoinHandle<()>,
    /// Leaves the election group on shutdown (within the grace).
    election: Option<JoinHandle<()>>,
    /// The durability audit's last report (empty on an agent that does not audit).
    pub audit_state: audit::Shared,
    http_stop: CancellationToken,
}

impl Running {
    /// Waits until the agent has shut down (after the token given to [`start`] fires).
    pub async fn wait(self) -> Result<(), Error> {
        self.agent.await?;
        self.http.await?;
        self.lag.await?;
        self.audit.await?;
        if let Some(e) = self.election {
            e.await?;
        }
        Ok(())
    }

    /// Stops the agent at once, as a power cut would: no delivery reports are drained, nothing
    /// in flight is verified and no final state is saved. What the state writer had already
    /// been handed is still written, like the pages an OS had flushed before the cut. Used by
    /// the demo's power-loss stage; a restart on the same state file resumes from it.
    pub async fn kill(self) {
        self.agent.abort();
        self.lag.abort();
        self.audit.abort();
        if let Some(e) = &self.election {
            e.abort();
        }
        self.http.abort();
        // Also ends the connections the HTTP server had open, so that no client keeps reading
        // the dead agent's last status over a kept-alive connection.
        self.http_stop.cancel();
        let _ = self.agent.await;
        let _ = self.lag.await;
        let _ = self.audit.await;
        let _ = self.http.await;
    }
}

/// Opens the state file, binds the HTTP listener and starts the agent. Returns once it runs.
/// Only a configuration that passed [`config::Config::build`] is accepted.
pub async fn start(config: ValidConfig, shutdown: CancellationToken) -> Result<Running, Error> {
    let server = http::Server::new(&config.http, config.web())?;
    let addr = config.http.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| Error::Listen { addr, source })?;

    let path = config.state.path.clone();
    let topic = config.canary.topic.clone();
    let max_events = config.state.max_events;
    let (ledger, loaded) = tokio::task::spawn_blocking(move || {
        let mut ledger = Ledger::open(&path, max_events)?;
        let loaded = ledger.load(&topic)?;
        Ok::<_, LedgerError>((ledger, loaded))
    })
    .await??;

    let registry = Registry::new();
    let metrics = Metrics::register(&registry, config.metrics.per_partition_histograms)?;
    metrics
        .build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    let lag_metrics = lag::LagMetrics::register(&registry)?;
    let kafka_errors = KafkaErrors::register(&registry)?;
    let clients = Clients::new(&config, kafka_errors.clone());
    let health = Arc::new(Health::default());
    let (status_tx, status_rx) = watch::channel(Arc::new(Status::default()));
    let store = Store::spawn(ledger, metrics.clone()).map_err(AgentError::Store)?;
    let state_path = config.state.path.clone();
    let scrape_lock = metrics.scrape_lock.clone();
    let partitions = metrics.series.clone();
    let partition_series = partitions.registry()?;
    // The agent's clients first: settings librdkafka refuses stop the start here, before
    // the lag poller's clients log the same refusal.
    let agent = Agent::new(
        config.config().clone(),
        clients.clone(),
        loaded,
        store,
        metrics,
        health.clone(),
        status_tx,
    )?;
    let audit_metrics = audit::AuditMetrics::register(&registry)?;
    // The lag poller and the audit are cluster-wide: one elected agent does them.
    let (election, election_task) = if config.lag.mode == lag::LagMode::Elected
        || config.audit.mode == config::AuditMode::Elected
    {
        let (rx, task) = lag::election::spawn_role(
            clients.clone(),
            config.lag.clone(),
            config.shutdown.grace,
            lag_metrics.clone(),
            shutdown.clone(),
        );
        (Some(rx), Some(task))
    } else {
        (None, None)
    };
    let lag_series = lag_metrics.series_registry().clone();
    let app_lag = lag_metrics.clone();
    let (lag, lag_admin) = lag::spawn(
        &config,
        clients.clone(),
        lag_metrics,
        election.clone(),
        shutdown.clone(),
    );
    let audit_role = match (config.audit.mode, election) {
        (config::AuditMode::Off, _) => None,
        (config::AuditMode::Always, _) => Some(audit::Role::Always),
        (config::AuditMode::Elected, Some(rx)) => Some(audit::Role::Elected(rx)),
        (config::AuditMode::Elected, None) => None,
    };
    let (audit, audit_state) = audit::spawn(
        &config,
        clients.clone(),
        lag_admin,
        audit_metrics,
        audit_role,
        shutdown.clone(),
    );
    let app = http::AppState {
        registry: registry.clone(),
        lag: app_lag,
        scrape_lock,
        partitions,
        health: health.clone(),
        status: status_rx.clone(),
        state_path,
        audit: audit_state.clone(),
        kafka_errors,
    };
    tracing::info!(%addr, scheme = server.scheme(), "serving the endpoints");
    let http_stop = shutdown.child_token();
    let http = tokio::spawn(http::serve(listener, app, server, http_stop.clone()));
    let agent = tokio::spawn(agent.run(shutdown));
    Ok(Running {
        addr,
        registry,
        partition_series,
        lag_series,
        status: status_rx,
        health,
        agent,
        http,
        lag,
        audit,
        election: election_task,
        audit_state,
        http_stop,
    })
}

/// Runs the agent until `shutdown` fires.
pub async fn run(config: ValidConfig, shutdown: CancellationToken) -> Result<(), Error> {
    start(config, shutdown).await?.wait().await
}
