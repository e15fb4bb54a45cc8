//! What the demo runs — the mock cluster, the agent, the simulated application — and the
//! books: the agent's counters across its restarts, and the open stage's window. The fault
//! switches the stages use (appends refused, reads held) are here too.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::summary::Registries;
use super::verdict::{self, Stage, StageResult};
use super::{Counters, DemoError, DemoOptions, APP_GROUP, APP_PARTITIONS, APP_TOPIC, BROKERS};
use super::{PARTITIONS, TOPIC};
use crate::config::Config;

/// The agent's counters of its earlier runs, and the registry of the current one.
#[derive(Default)]
pub(super) struct Books {
    pub(super) earlier: Counters,
    pub(super) registry: Option<Registries>,
}

impl Books {
    pub(super) fn total(&self) -> Counters {
        let now = self
            .registry
            .as_ref()
            .map_or_else(Counters::default, Counters::read);
        self.earlier.plus(&now)
    }
}

pub(super) type Shared = Arc<Mutex<Books>>;

pub(super) fn lock(b: &Shared) -> std::sync::MutexGuard<'_, Books> {
    b.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) type Mock = MockCluster<'static, DefaultProducerContext>;

pub(super) fn new_cluster() -> Result<Mock, DemoError> {
    let mock = MockCluster::new(BROKERS).map_err(|e| DemoError::Mock(e.to_string()))?;
    mock.create_topic(TOPIC, PARTITIONS, 3)
        .and_then(|_| mock.create_topic(APP_TOPIC, APP_PARTITIONS, 3))
        // A topic the durability audit finds fragile: one replica.
        .and_then(|_| mock.create_topic(super::SCRATCH_TOPIC, 1, 1))
        .map_err(|e| DemoError::Mock(e.to_string()))?;
    Ok(mock)
}

/// Everything the demo runs: the cluster, the agent, the application, and the books.
pub(super) struct World {
    pub(super) opts: DemoOptions,
    pub(super) mock: Mock,
    pub(super) cfg: Config,
    pub(super) listen: SocketAddr,
    pub(super) agent_stop: CancellationToken,
    pub(super) running: Option<crate::Running>,
    pub(super) app: Option<(CancellationToken, std::thread::JoinHandle<()>)>,
    pub(super) books: Shared,
    pub(super) started: Instant,
    pub(super) results: Vec<StageResult>,
    /// The stage whose window is open, and the agent's counters when it opened.
    pub(super) open: Option<(Stage, u64, Counters)>,
}

impl World {
    pub(super) fn bootstrap(&self) -> String {
        self.mock.bootstrap_servers()
    }

    pub(super) fn say(&self, what: impl std::fmt::Display) {
        println!("[{:>5.1}s] {what}", self.started.elapsed().as_secs_f64());
    }

    pub(super) async fn start_agent(&mut self) -> Result<(), DemoError> {
        let mut cfg = self.cfg.clone();
        cfg.kafka.bootstrap_servers = self.bootstrap();
        cfg.http.listen = self.listen;
        let running = crate::start(cfg.build()?, self.agent_stop.clone()).await?;
        self.listen = running.addr;
        lock(&self.books).registry = Some(Registries::of(&running));
        self.running = Some(running);
        Ok(())
    }

    pub(super) fn start_app(&mut self) -> Result<(), DemoError> {
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

    pub(super) async fn stop_app(&mut self) {
        if let Some((stop, handle)) = self.app.take() {
            stop.cancel();
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }

    pub(super) fn open_stage(&mut self, stage: Stage, cycle: u64) {
        let before = lock(&self.books).total();
        self.open = Some((stage, cycle, before));
        self.say(format!("--- {} (cycle {}) ---", stage.name(), cycle + 1));
    }

    /// Closes the open stage's window with what was injected in it.
    pub(super) fn close_stage(&mut self, injected: verdict::Tally, completed: bool) {
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
    pub(super) async fn settle(&self, injected: &verdict::Tally, deadline: Instant) {
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
    pub(super) fn heal(&self) {
        for api in [RDKafkaApiKey::Produce, RDKafkaApiKey::Fetch] {
            self.mock.clear_request_errors(api);
        }
        for b in 1..=BROKERS {
            let _ = self.mock.broker_up(b);
            let _ = self.mock.broker_round_trip_time(b, Duration::ZERO);
        }
    }

    /// Makes every produce request fail (retriably) until [`World::allow_appends`].
    pub(super) fn refuse_appends(&self) {
        self.mock.request_errors(
            RDKafkaApiKey::Produce,
            &vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 100_000],
        );
    }

    pub(super) fn allow_appends(&self) {
        self.mock.clear_request_errors(RDKafkaApiKey::Produce);
    }

    /// Makes every fetch fail with a storage error (librdkafka retries it quietly) until
    /// [`World::release_reads`]: the verifier reads nothing.
    pub(super) fn hold_reads(&self) {
        self.mock.request_errors(
            RDKafkaApiKey::Fetch,
            &vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR; 100_000],
        );
    }

    pub(super) fn release_reads(&self) {
        self.mock.clear_request_errors(RDKafkaApiKey::Fetch);
    }
}
