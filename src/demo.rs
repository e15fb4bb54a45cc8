//! `losswatch demo`: the whole agent against librdkafka's in-process mock cluster (3 brokers,
//! a 6-partition canary topic with replication 3), with a chaos schedule of leader moves, a
//! broker outage, produce error bursts and latency spikes. It prints a one-line summary every
//! few seconds and serves the HTTP endpoints like the real agent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use prometheus::proto::MetricFamily;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

pub const TOPIC: &str = "losswatch-canary";
pub const PARTITIONS: i32 = 6;
/// The simulated application's topic and consumer group (see [`crate::lag::simulate`]).
pub const APP_TOPIC: &str = "demo-orders";
pub const APP_GROUP: &str = "demo-app";
/// A topic with one replica, for the durability audit to find.
pub const SCRATCH_TOPIC: &str = "demo-scratch";

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Stop by itself after this long; `None` runs until SIGINT/SIGTERM.
    pub duration: Option<Duration>,
    pub listen: SocketAddr,
    /// State file; a temporary one (removed at exit) when `None`.
    pub state: Option<PathBuf>,
    pub summary_every: Duration,
    pub probe_interval: Duration,
    /// Run the chaos schedule.
    pub chaos: bool,
    /// Web-config file for the endpoints (TLS, basic auth).
    pub web_config_file: Option<PathBuf>,
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
        }
    }
}

/// Totals over all partitions, read from the metrics registry.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    pub sent: f64,
    pub acked: f64,
    pub failed: f64,
    pub received: f64,
    pub lost: f64,
    pub duplicated: f64,
    pub truncations: f64,
    pub pending: f64,
    pub e2e_p99_seconds: Option<f64>,
    /// Partitions with at least one probe acked and one verified.
    pub partitions_verified: usize,
}

fn sum(families: &[MetricFamily], name: &str) -> f64 {
    families
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| {
            let counter = f.get_field_type() == prometheus::proto::MetricType::COUNTER;
            f.get_metric().iter().map(move |m| {
                if counter {
                    m.get_counter().get_value()
                } else {
                    m.get_gauge().get_value()
                }
            })
        })
        .sum()
}

/// Approximates a quantile over all series of a histogram from its buckets.
fn quantile(families: &[MetricFamily], name: &str, q: f64) -> Option<f64> {
    let f = families.iter().find(|f| f.name() == name)?;
    let mut buckets: Vec<(f64, u64)> = vec![];
    let mut total = 0u64;
    for m in f.get_metric() {
        let h = m.get_histogram();
        total += h.get_sample_count();
        for (i, b) in h.get_bucket().iter().enumerate() {
            match buckets.get_mut(i) {
                Some(e) => e.1 += b.cumulative_count(),
                None => buckets.push((b.upper_bound(), b.cumulative_count())),
            }
        }
    }
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil() as u64;
    buckets
        .iter()
        .find(|(_, c)| *c >= rank)
        .map(|(le, _)| *le)
        .or(Some(f64::INFINITY))
}

pub fn summarize(registry: &prometheus::Registry) -> Summary {
    let fams = registry.gather();
    let per_partition = |name: &str| -> std::collections::BTreeMap<String, f64> {
        let mut out = std::collections::BTreeMap::new();
        for f in fams.iter().filter(|f| f.name() == name) {
            for m in f.get_metric() {
                let p = m
                    .get_label()
                    .iter()
                    .find(|l| l.name() == "partition")
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default();
                *out.entry(p).or_insert(0.0) += m.get_counter().get_value();
            }
        }
        out
    };
    let acked = per_partition("losswatch_probes_acked_total");
    let received = per_partition("losswatch_probes_received_total");
    let partitions_verified = acked
        .iter()
        .filter(|(p, a)| **a > 0.0 && received.get(*p).copied().unwrap_or(0.0) > 0.0)
        .count();
    Summary {
        sent: sum(&fams, "losswatch_probes_sent_total"),
        acked: sum(&fams, "losswatch_probes_acked_total"),
        failed: sum(&fams, "losswatch_probes_send_failed_total"),
        received: sum(&fams, "losswatch_probes_received_total"),
        lost: sum(&fams, "losswatch_probes_lost_total"),
        duplicated: sum(&fams, "losswatch_probes_duplicated_total"),
        truncations: sum(&fams, "losswatch_partition_truncations_total"),
        pending: sum(&fams, "losswatch_probes_pending"),
        e2e_p99_seconds: quantile(&fams, "losswatch_e2e_latency_seconds", 0.99),
        partitions_verified,
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p99 = self
            .e2e_p99_seconds
            .map_or("-".to_string(), |s| format!("{:.0}ms", s * 1000.0));
        write!(
            f,
            "sent={} acked={} failed={} received={} pending={} lost={} dup={} truncations={} e2e_p99<={} partitions_verified={}/{}",
            self.sent, self.acked, self.failed, self.received, self.pending, self.lost,
            self.duplicated, self.truncations, p99, self.partitions_verified, PARTITIONS
        )
    }
}

/// The lag poller's view of one group, read from the metrics registry.
#[derive(Debug, Clone, PartialEq)]
pub struct LagSummary {
    pub group: String,
    pub lag: f64,
    pub lag_seconds: f64,
    pub status: Option<String>,
}

impl LagSummary {
    pub fn read(registry: &prometheus::Registry, group: &str) -> LagSummary {
        let fams = registry.gather();
        let of = |name: &str| {
            fams.iter()
                .filter(|f| f.name() == name)
                .flat_map(|f| f.get_metric())
                .filter(|m| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == "group" && l.value() == group)
                })
                .collect::<Vec<_>>()
        };
        let gauge = |m: &&prometheus::proto::Metric| m.get_gauge().get_value();
        LagSummary {
            group: group.to_owned(),
            // `+ 0.0`: an empty sum is -0.0, which would print as "-0".
            lag: of("losswatch_consumergroup_lag")
                .iter()
                .map(gauge)
                .sum::<f64>()
                + 0.0,
            lag_seconds: of("losswatch_consumergroup_lag_seconds")
                .iter()
                .map(gauge)
                .fold(0.0, f64::max),
            status: of("losswatch_consumergroup_status")
                .iter()
                .find(|m| gauge(m) == 1.0)
                .and_then(|m| m.get_label().iter().find(|l| l.name() == "status"))
                .map(|l| l.value().to_owned()),
        }
    }
}

impl std::fmt::Display for LagSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "consumer group {}: lag={} lag_seconds={:.1} status={}",
            self.group,
            self.lag,
            self.lag_seconds,
            self.status.as_deref().unwrap_or("-")
        )
    }
}

/// One step of the chaos schedule, `at` seconds into each 30-second cycle.
struct Chaos {
    at: u64,
    what: &'static str,
}

const SCHEDULE: &[Chaos] = &[
    Chaos {
        at: 4,
        what: "move leader of partition 0 to broker 2",
    },
    Chaos {
        at: 7,
        what: "latency spike: broker 1 round trip 400ms",
    },
    Chaos {
        at: 10,
        what: "latency back to normal; broker 3 down",
    },
    Chaos {
        at: 16,
        what: "broker 3 up",
    },
    Chaos {
        at: 19,
        what: "burst of NOT_ENOUGH_REPLICAS produce errors",
    },
    Chaos {
        at: 24,
        what: "move leader of partition 0 back to broker 1",
    },
];

fn apply(
    mock: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    step: usize,
) -> Result<(), String> {
    let r = match step {
        0 => mock.partition_leader(TOPIC, 0, Some(2)),
        1 => mock.broker_round_trip_time(1, Duration::from_millis(400)),
        2 => mock
            .broker_round_trip_time(1, Duration::ZERO)
            .and_then(|_| mock.broker_down(3)),
        3 => mock.broker_up(3),
        4 => {
            mock.request_errors(
                RDKafkaApiKey::Produce,
                &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 12],
            );
            Ok(())
        }
        _ => mock.partition_leader(TOPIC, 0, Some(1)),
    };
    r.map_err(|e| e.to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("mock cluster: {0}")]
    Mock(String),
    #[error(transparent)]
    Agent(#[from] crate::Error),
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
            DemoError::Mock(_) => 1,
        }
    }
}

/// Runs the demo; returns the final summary.
pub async fn run(opts: DemoOptions, shutdown: CancellationToken) -> Result<Summary, DemoError> {
    opts.validate()?;
    let mock = MockCluster::new(3).map_err(|e| DemoError::Mock(e.to_string()))?;
    mock.create_topic(TOPIC, PARTITIONS, 3)
        .and_then(|_| mock.create_topic(APP_TOPIC, 3, 3))
        // A topic the durability audit finds fragile: one replica.
        .and_then(|_| mock.create_topic(SCRATCH_TOPIC, 1, 1))
        .map_err(|e| DemoError::Mock(e.to_string()))?;
    let (state, temp) = match &opts.state {
        Some(p) => (p.clone(), false),
        None => (
            std::env::temp_dir().join(format!("losswatch-demo-{}.db", std::process::id())),
            true,
        ),
    };
    let mut cfg = Config::default();
    cfg.kafka.bootstrap_servers = mock.bootstrap_servers();
    cfg.canary.topic = TOPIC.into();
    cfg.canary.probe_interval = opts.probe_interval;
    cfg.canary.metadata_refresh = Duration::from_secs(2);
    cfg.canary.delivery_timeout = Duration::from_secs(5);
    cfg.canary.create_topic = false;
    cfg.http.listen = opts.listen;
    cfg.state.path = state.clone();
    // The mock cannot list groups: poll the simulated application's group by name.
    cfg.lag.mode = crate::lag::LagMode::Always;
    cfg.lag.groups = vec![APP_GROUP.into()];
    cfg.lag.interval = Duration::from_secs(2);
    cfg.lag.window = 5;
    cfg.lag.request_timeout = Duration::from_secs(2);
    // One agent: it audits. The mock never answers DescribeConfigs; do not wait long for it.
    cfg.audit.mode = crate::config::AuditMode::Always;
    cfg.audit.interval = Duration::from_secs(30);
    cfg.audit.request_timeout = Duration::from_secs(2);

    let agent_stop = CancellationToken::new();
    cfg.http.web_config_file = opts.web_config_file.clone();
    let cfg = cfg.build()?;
    let running = crate::start(cfg, agent_stop.clone()).await?;
    println!(
        "losswatch demo: mock cluster of 3 brokers, topic {TOPIC} with {PARTITIONS} partitions; \
         metrics at http://{}/metrics",
        running.addr
    );
    let app_stop = agent_stop.child_token();
    let app = crate::lag::simulate::App {
        bootstrap: mock.bootstrap_servers(),
        topic: APP_TOPIC.into(),
        partitions: 3,
        group: APP_GROUP.into(),
        rate: 20,
    }
    .spawn(app_stop.clone())
    .map_err(|e| DemoError::Mock(e.to_string()))?;
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut next_summary = started + opts.summary_every;
    let mut done_steps = std::collections::BTreeSet::new();
    let mut audit_shown = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let elapsed = started.elapsed();
        if opts.duration.is_some_and(|d| elapsed >= d) {
            break;
        }
        if opts.chaos {
            let cycle = elapsed.as_secs() / 30;
            let second = elapsed.as_secs() % 30;
            for (i, c) in SCHEDULE.iter().enumerate() {
                if second >= c.at && done_steps.insert((cycle, i)) {
                    match apply(&mock, i) {
                        Ok(()) => println!("[{:>5.1}s] chaos: {}", elapsed.as_secs_f64(), c.what),
                        Err(e) => println!(
                            "[{:>5.1}s] chaos step failed ({}): {e}",
                            elapsed.as_secs_f64(),
                            c.what
                        ),
                    }
                }
            }
        }
        if !audit_shown {
            if let Some(report) = running.audit_state.borrow().report.clone() {
                audit_shown = true;
                println!(
                    "[{:>5.1}s] durability audit: {}",
                    elapsed.as_secs_f64(),
                    crate::audit::table::render(&report)
                        .trim_end()
                        .replace('\n', "\n    ")
                );
            }
        }
        if tokio::time::Instant::now() >= next_summary {
            next_summary += opts.summary_every;
            println!(
                "[{:>5.1}s] {}",
                elapsed.as_secs_f64(),
                summarize(&running.registry)
            );
            println!(
                "[{:>5.1}s] {}",
                elapsed.as_secs_f64(),
                LagSummary::read(&running.registry, APP_GROUP)
            );
        }
    }
    // Heal the cluster so the last probes can settle, then stop the agent.
    let _ = mock.broker_up(3);
    let _ = mock.broker_round_trip_time(1, Duration::ZERO);
    let registry = running.registry.clone();
    app_stop.cancel();
    let _ = tokio::task::spawn_blocking(move || app.join()).await;
    agent_stop.cancel();
    running.wait().await?;
    let summary = summarize(&registry);
    println!("final: {summary}");
    if temp {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = state.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(summary)
}
