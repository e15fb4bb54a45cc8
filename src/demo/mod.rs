//! `losswatch demo`: the whole agent against librdkafka's in-process mock cluster (3 brokers,
//! a 6-partition canary topic with replication 3) and a simulated application group, with a
//! schedule in which every stage of the path really loses messages (see [`stages`]):
//!
//! - **producer stage**: a broker down, then every produce refused for longer than the
//!   delivery timeout: send failures by reason;
//! - **consumer stage**: the verifier held back while retention removes what it has not
//!   read, and the application group `demo-app` stalled behind retention: expired unread;
//! - **broker stage**: a whole-cluster power loss: the agent stops abruptly, a fresh cluster
//!   with the same topics replaces the old one, the agent restarts on its state file and
//!   proves the acknowledged probes gone from its ledger.
//!
//! What was injected is worked out from the demo's own view of the cluster ([`truth`]), and
//! the closing verdict compares it with what the agent counted ([`verdict`]); the demo fails
//! when they differ. It prints a summary line every few seconds and serves the HTTP endpoints
//! (status page included) like the real agent.

mod stages;
pub mod summary;
mod world;

use world::{lock, new_cluster, Shared, World};
pub mod truth;
pub mod verdict;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
pub use summary::{Counters, LagSummary, Summary};
pub use verdict::{Stage, StageResult};

pub const TOPIC: &str = "losswatch-canary";
pub const PARTITIONS: i32 = 6;
/// The simulated application's topic and consumer group (see [`crate::lag::simulate`]).
pub const APP_TOPIC: &str = "demo-orders";
pub const APP_PARTITIONS: i32 = 3;
pub const APP_GROUP: &str = "demo-app";
/// A topic with one replica, for the durability audit to find.
pub const SCRATCH_TOPIC: &str = "demo-scratch";
const BROKERS: i32 = 3;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Stop by itself after this long; `None` runs until SIGINT/SIGTERM.
    pub duration: Option<Duration>,
    pub listen: SocketAddr,
    /// State file; a temporary one (removed at exit) when `None`.
    pub state: Option<PathBuf>,
    pub summary_every: Duration,
    pub probe_interval: Duration,
    /// Run the loss schedule.
    pub chaos: bool,
    /// Web-config file for the endpoints (TLS, basic auth).
    pub web_config_file: Option<PathBuf>,
    /// `metrics.per_partition_histograms` for the agent.
    pub per_partition_histograms: bool,
}

impl DemoOptions {
    /// Checks the options as the config file's keys are checked; the error names the flag.
    pub fn validate(&self) -> Result<(), DemoError> {
        let flag = |flag: &'static str, message: &str| {
            Err(DemoError::Flag {
                flag,
                message: message.into(),
            })
        };
        if self.probe_interval < Duration::from_millis(10) {
            return flag("--probe-interval", "expected at least 10ms");
        }
        if self.summary_every < Duration::from_millis(100) {
            return flag("--summary-every", "expected at least 100ms");
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return flag("--duration", "expected more than 0s");
        }
        Ok(())
    }
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            duration: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 9840)),
            state: None,
            summary_every: Duration::from_secs(5),
            probe_interval: Duration::from_millis(500),
            chaos: true,
            web_config_file: None,
            per_partition_histograms: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("mock cluster: {0}")]
    Mock(String),
    #[error(transparent)]
    Agent(#[from] crate::Error),
    #[error("reading the cluster: {0}")]
    Truth(#[from] truth::TruthError),
    #[error("reading the cluster: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("reading the state file: {0}")]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error("internal task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("invalid value for `{flag}`: {message}")]
    Flag { flag: &'static str, message: String },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

impl DemoError {
    /// The process exit code: 64 for a bad flag or configuration.
    pub fn exit_code(&self) -> i32 {
        match self {
            DemoError::Flag { .. } | DemoError::Config(_) => 64,
            DemoError::Agent(e) => e.exit_code(),
            _ => 1,
        }
    }
}

/// What a run showed.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Totals over the whole run, all of the agent's restarts included.
    pub summary: Summary,
    pub stages: Vec<StageResult>,
    /// The closing line: per stage, injected and counted.
    pub verdict: String,
    /// Every count matched what was injected, and nothing was counted outside the stages.
    pub exact: bool,
}

/// Prints the summary lines until dropped.
async fn printer(books: Shared, started: Instant, every: Duration) {
    let mut next = started + every;
    loop {
        tokio::time::sleep_until(next).await;
        next += every;
        let (summary, lag) = {
            let b = lock(&books);
            let lag = b.registry.as_ref().map(|r| {
                let earlier = b.earlier.group_expired.get(APP_GROUP).copied();
                LagSummary::read(r, APP_GROUP, earlier.unwrap_or(0.0))
            });
            (Summary::read(&b.earlier, b.registry.as_ref()), lag)
        };
        let t = started.elapsed().as_secs_f64();
        println!("[{t:>5.1}s] {summary}");
        if let Some(lag) = lag {
            println!("[{t:>5.1}s] {lag}");
        }
    }
}

/// Prints the first audit's findings, indented under one line.
async fn print_audit_once(mut audit: crate::audit::Shared, started: Instant) {
    let report = loop {
        if let Some(r) = audit.borrow_and_update().report.clone() {
            break r;
        }
        if audit.changed().await.is_err() {
            return;
        }
    };
    let table = crate::audit::table::render(&report);
    let indented: Vec<String> = table
        .trim_end()
        .lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("    {l}")
            }
        })
        .collect();
    println!(
        "[{:>5.1}s] durability audit:\n{}",
        started.elapsed().as_secs_f64(),
        indented.join("\n")
    );
}

/// Runs the demo; returns what it showed.
pub async fn run(opts: DemoOptions, shutdown: CancellationToken) -> Result<Outcome, DemoError> {
    opts.validate()?;
    let mock = new_cluster()?;
    let (state, temp) = match &opts.state {
        Some(p) => (p.clone(), false),
        None => (
            std::env::temp_dir().join(format!("losswatch-demo-{}.db", std::process::id())),
            true,
        ),
    };
    let mut cfg = Config::default();
    cfg.canary.topic = TOPIC.into();
    cfg.canary.probe_interval = opts.probe_interval;
    cfg.canary.metadata_refresh = Duration::from_secs(2);
    cfg.canary.delivery_timeout = Duration::from_secs(5);
    cfg.canary.create_topic = false;
    cfg.state.path = state.clone();
    // The mock cannot list groups: poll the simulated application's group by name.
    cfg.lag.mode = crate::lag::LagMode::Always;
    cfg.lag.groups = vec![APP_GROUP.into()];
    // The mock cluster answers an all-partitions offset fetch with nothing.
    cfg.lag.offsets_fetch = crate::config::lag::OffsetsFetch::Named;
    cfg.lag.interval = Duration::from_secs(2);
    cfg.lag.window = 5;
    cfg.lag.request_timeout = Duration::from_secs(2);
    // One agent: it audits. The mock never answers DescribeConfigs; do not wait long for it.
    cfg.audit.mode = crate::config::AuditMode::Always;
    cfg.audit.interval = Duration::from_secs(30);
    cfg.audit.request_timeout = Duration::from_secs(2);
    cfg.http.web_config_file = opts.web_config_file.clone();
    cfg.metrics.per_partition_histograms = opts.per_partition_histograms;

    let started = Instant::now();
    let mut world = World {
        listen: opts.listen,
        opts: opts.clone(),
        mock,
        cfg,
        agent_stop: CancellationToken::new(),
        running: None,
        app: None,
        books: Shared::default(),
        started,
        results: vec![],
        open: None,
    };
    world.start_agent().await?;
    println!(
        "losswatch demo: mock cluster of {BROKERS} brokers, topic {TOPIC} with {PARTITIONS} partitions; \
         status page at http://{0}/ and metrics at http://{0}/metrics",
        world.listen
    );
    world.start_app()?;
    if let Some(running) = &world.running {
        tokio::spawn(print_audit_once(running.audit_state.clone(), started));
    }

    let deadline = opts.duration.map(|d| started + d);
    let until_deadline = async move {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    let books = world.books.clone();
    let script_result = {
        let script = async {
            if opts.chaos {
                stages::cycles(&mut world).await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => Ok(()),
            _ = until_deadline => Ok(()),
            r = script => r,
            _ = printer(books, started, opts.summary_every) => Ok(()),
        }
    };
    if let Err(e) = &script_result {
        world.say(format!("demo step failed: {e}"));
    }
    let outcome = finish(&mut world).await;
    if temp {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = state.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
    script_result?;
    outcome
}

/// Heals the cluster, stops the application and the agent, and judges the run.
async fn finish(world: &mut World) -> Result<Outcome, DemoError> {
    world.heal();
    world.stop_app().await;
    world.agent_stop.cancel();
    if let Some(running) = world.running.take() {
        running.wait().await?;
    }
    // A stage the run ended in keeps its window (to the end) but is not judged.
    world.close_stage(verdict::Tally::default(), false);
    let (summary, total) = {
        let b = lock(&world.books);
        (Summary::read(&b.earlier, b.registry.as_ref()), b.total())
    };
    let v = verdict::judge(&world.results, &total, world.opts.chaos);
    println!("final: {summary}");
    println!("{}", v.line);
    Ok(Outcome {
        summary,
        stages: world.results.clone(),
        verdict: v.line,
        exact: v.exact,
    })
}
