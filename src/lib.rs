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
//!     └─────────┘      └──────────┘      └──────────────────────────────┘
//! ```
//!
//! # Where things live
//!
//! | module | concern |
//! |---|---|
//! | [`probe`] | the probe wire format; decoding never panics (sans-IO) |
//! | [`tracker`] | **the brain**: classifies every acked probe from delivery reports and records read back; what counts as proof of loss is documented there (sans-IO, property-tested) |
//! | [`canary`] | the producer (acks=all, idempotent; delivery reports onto a channel) and canary topic discovery/creation |
//! | [`verifier`] | manual-assign consumer, one queue per partition, `auto.offset.reset=error` |
//! | [`agent`] | the loop that wires producer, verifier, tracker, ledger and metrics; health and status |
//! | [`ledger`] | SQLite state: instance id, sequence reservations, pending probes, positions, loss events |
//! | [`metrics`] | the Prometheus registry and the public metric names |
//! | [`http`] | the endpoints |
//! | [`config`] | TOML + env + flags, validation (exit 64 naming the key), redaction |
//! | [`demo`] | `losswatch demo`: the whole agent against librdkafka's mock cluster, with chaos |
//! | [`report`] | `losswatch report`: loss events from a state file as a table |
//! | [`lag`] | beside the data path: consumer-group lag in messages and time, status, expired unread; one elected poller per DaemonSet |
//!
//! Data flows one way: the producer and the verifier feed the tracker; the tracker's verdicts
//! go to the ledger and the metrics. The tracker knows nothing of Kafka, SQLite or HTTP.

pub mod agent;
pub mod canary;
pub mod config;
pub mod demo;
pub mod http;
pub mod kafka;
pub mod lag;
pub mod ledger;
pub mod metrics;
pub mod probe;
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
    pub status: watch::Receiver<Arc<Status>>,
    pub health: Arc<Health>,
    agent: JoinHandle<()>,
    http: JoinHandle<()>,
    lag: JoinHandle<()>,
}

impl Running {
    /// Waits until the agent has shut down (after the token given to [`start`] fires).
    pub async fn wait(self) -> Result<(), Error> {
        self.agent.await?;
        self.http.await?;
        self.lag.await?;
        Ok(())
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
    let metrics = Metrics::register(&registry)?;
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
    let lag = lag::spawn(&config.lag, clients, lag_metrics, shutdown.clone());
    let app = http::AppState {
        registry: registry.clone(),
        scrape_lock,
        health: health.clone(),
        status: status_rx.clone(),
        state_path,
        kafka_errors,
    };
    tracing::info!(%addr, scheme = server.scheme(), "serving the endpoints");
    let http = tokio::spawn(http::serve(listener, app, server, shutdown.clone()));
    let agent = tokio::spawn(agent.run(shutdown));
    Ok(Running {
        addr,
        registry,
        status: status_rx,
        health,
        agent,
        http,
        lag,
    })
}

/// Runs the agent until `shutdown` fires.
pub async fn run(config: ValidConfig, shutdown: CancellationToken) -> Result<(), Error> {
    start(config, shutdown).await?.wait().await
}
