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
pub mod truth;
pub mod verdict;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::Registry;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
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

/// The agent's counters of its earlier runs, and the registry of the current one.
#[derive(Default)]
struct Books {
    earlier: Counters,
    registry: Option<Registry>,
}

impl Books {
    fn total(&self) -> Counters {
        let now = self
            .registry
            .as_ref()
            .map_or_else(Counters::default, Counters::read);
        self.earlier.plus(&now)
    }
}

type Shared = Arc<Mutex<Books>>;

fn lock(b: &Shared) -> std::sync::MutexGuard<'_, Books> {
    b.lock().unwrap_or_else(|e| e.into_inner())
}

type Mock = MockCluster<'static, DefaultProducerContext>;

fn new_cluster() -> Result<Mock, DemoError> {
    let mock = MockCluster::new(BROKERS).map_err(|e| DemoError::Mock(e.to_string()))?;
    mock.create_topic(TOPIC, PARTITIONS, 3)
        .and_then(|_| mock.create_topic(APP_TOPIC, APP_PARTITIONS, 3))
        .map_err(|e| DemoError::Mock(e.to_string()))?;
    Ok(mock)
}

/// Everything the demo runs: the cluster, the agent, the application, and the books.
struct World {
    opts: DemoOptions,
    mock: Mock,
    cfg: Config,
    listen: SocketAddr,
    agent_stop: CancellationToken,
    running: Option<crate::Running>,
    app: Option<(CancellationToken, std::thread::JoinHandle<()>)>,
    books: Shared,
    started: Instant,
    results: Vec<StageResult>,
    /// The stage whose window is open, and the agent's counters when it opened.
    open: Option<(Stage, u64, Counters)>,
}

impl World {
    fn bootstrap(&self) -> String {
        self.mock.bootstrap_servers()
    }

    fn say(&self, what: impl std::fmt::Display) {
        println!("[{:>5.1}s] {what}", self.started.elapsed().as_secs_f64());
    }

    async fn start_agent(&mut self) -> Result<(), DemoError> {
        let mut cfg = self.cfg.clone();
        cfg.kafka.bootstrap_servers = self.bootstrap();
        cfg.http.listen = self.listen;
        let running = crate::start(cfg, self.agent_stop.clone()).await?;
        self.listen = running.addr;
        lock(&self.books).registry = Some(running.registry.clone());
        self.running = Some(running);
        Ok(())
    }

    fn start_app(&mut self) -> Result<(), DemoError> {
        let stop = self.agent_stop.child_token();
        let handle = crate::lag::simulate::App {
            bootstrap: self.bootstrap(),
            topic: APP_TOPIC.into(),
            partitions: APP_PARTITIONS,
            group: APP_GROUP.into(),
            rate: 20,
        }
        .spawn(stop.clone())
        .map_err(|e| DemoError::Mock(e.to_string()))?;
        self.app = Some((stop, handle));
        Ok(())
    }

    async fn stop_app(&mut self) {
        if let Some((stop, handle)) = self.app.take() {
            stop.cancel();
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }

    fn open_stage(&mut self, stage: Stage, cycle: u64) {
        let before = lock(&self.books).total();
        self.open = Some((stage, cycle, before));
        self.say(format!("--- {} (cycle {}) ---", stage.name(), cycle + 1));
    }

    /// Closes the open stage's window with what was injected in it.
    fn close_stage(&mut self, injected: verdict::Tally, completed: bool) {
        let Some((stage, cycle, before)) = self.open.take() else {
            return;
        };
        let delta = lock(&self.books).total().minus(&before);
        let r = StageResult {
            stage,
            cycle,
            completed,
            injected,
            delta,
        };
        if completed {
            let d = r.injected.differences(&r.counted());
            self.say(format!(
                "{}: {}{}",
                stage.name(),
                verdict::describe(stage, &r.injected, &r.counted(), &r.delta),
                if d.is_empty() {
                    " - exact".to_string()
                } else {
                    format!(" - MISMATCH: {}", d.join("; "))
                }
            ));
        }
        self.results.push(r);
    }

    /// Waits until the open stage's counts equal `injected`, or until `deadline`.
    async fn settle(&self, injected: &verdict::Tally, deadline: Instant) {
        loop {
            let counted = match &self.open {
                Some((_, _, before)) => {
                    verdict::Tally::counted(&lock(&self.books).total().minus(before))
                }
                None => return,
            };
            if injected.differences(&counted).is_empty() || Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Leaves the cluster healthy so that the last probes can settle.
    fn heal(&self) {
        for api in [RDKafkaApiKey::Produce, RDKafkaApiKey::Fetch] {
            self.mock.clear_request_errors(api);
        }
        for b in 1..=BROKERS {
            let _ = self.mock.broker_up(b);
            let _ = self.mock.broker_round_trip_time(b, Duration::ZERO);
        }
    }

    /// Makes every produce request fail (retriably) until [`World::allow_appends`].
    fn refuse_appends(&self) {
        self.mock.request_errors(
            RDKafkaApiKey::Produce,
            &vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 100_000],
        );
    }

    fn allow_appends(&self) {
        self.mock.clear_request_errors(RDKafkaApiKey::Produce);
    }

    /// Makes every fetch fail with a storage error (librdkafka retries it quietly) until
    /// [`World::release_reads`]: the verifier reads nothing.
    fn hold_reads(&self) {
        self.mock.request_errors(
            RDKafkaApiKey::Fetch,
            &vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR; 100_000],
        );
    }

    fn release_reads(&self) {
        self.mock.clear_request_errors(RDKafkaApiKey::Fetch);
    }
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

/// Runs the demo; returns what it showed.
pub async fn run(opts: DemoOptions, shutdown: CancellationToken) -> Result<Outcome, DemoError> {
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
    cfg.lag.interval = Duration::from_secs(2);
    cfg.lag.window = 5;
    cfg.lag.request_timeout = Duration::from_secs(2);

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
