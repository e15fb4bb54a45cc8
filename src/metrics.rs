//! Prometheus metrics: one explicit registry, typed handles, bounded labels.
//!
//! Metric names are a public contract (dashboards and alert rules use them). Counters count
//! what happened in this process and start at zero on restart, as Prometheus expects; the
//! lifetime totals live in the ledger and are served by `/api/status`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

mod partitions;

pub use partitions::{PartitionCells, PartitionSeries};

/// Buckets for ack and end-to-end latency, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Makes a scrape see the effects of one agent event together or not at all (a probe counted
/// received is no longer pending in the same scrape), so that
/// `acked + restored = received + lost + expired_unread + pending` holds on every scrape.
#[derive(Clone, Default)]
pub struct ScrapeLock(Arc<Mutex<()>>);

impl ScrapeLock {
    pub fn hold(&self) -> MutexGuard<'_, ()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Clone)]
pub struct Metrics {
    pub scrape_lock: ScrapeLock,
    /// Every canary partition's series but the lost counter (`partitions`).
    pub series: PartitionSeries,
    pub lost: IntCounterVec,
    pub foreign: IntCounterVec,
    pub other_instance: IntCounterVec,
    pub ack_latency: Latency,
    pub e2e_latency: Latency,
    pub build_info: IntGaugeVec,
    pub ready: IntGauge,
    pub partitions: IntGauge,
    /// Agents probing the canary topic, as this one counts them (`canary::fleet`).
    pub fleet_agents: IntGauge,
    /// This agent's probe interval per partition, seconds.
    pub probe_interval: prometheus::Gauge,
    pub consumer_errors: IntCounterVec,
    pub metadata_errors: IntCounter,
    pub ledger_write_seconds: Histogram,
    pub ledger_errors: IntCounter,
    pub ledger_events_dropped: IntCounter,
    pub ledger_batches: IntCounter,
    pub producer_restarts: IntCounter,
    pub weak_producer: IntGauge,
    pub broker_canary_partitions: IntGaugeVec,
    pub brokers_without_canary_leader: IntGauge,
    pub canary_admin_errors: IntCounterVec,
}

fn counter(
    reg: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(
    reg: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(g.clone()))?;
    Ok(g)
}

/// A latency histogram labelled by topic and leader broker, and by partition too when
/// `metrics.per_partition_histograms` is set. Per broker is the default because a histogram
/// is 18 series: per partition it would be most of an agent's series.
/// A histogram handle kept for one broker, with the topic it was looked up for.
type Kept = (Arc<str>, Histogram);

#[derive(Clone)]
pub struct Latency {
    hist: HistogramVec,
    per_partition: bool,
    /// The per-broker histograms already looked up, by broker, with their topic: one probe
    /// is two observations, and a labelled lookup formats and hashes its labels each time.
    /// These series are never removed, so a kept handle stays the exported one.
    by_broker: Arc<Mutex<HashMap<i32, Kept>>>,
}

impl Latency {
    fn register(
        reg: &Registry,
        name: &str,
        help: &str,
        per_partition: bool,
    ) -> prometheus::Result<Latency> {
        let labels: &[&str] = if per_partition {
            &["topic", "partition", "broker"]
        } else {
            &["topic", "broker"]
        };
        let hist = HistogramVec::new(
            HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
            labels,
        )?;
        reg.register(Box::new(hist.clone()))?;
        Ok(Latency {
            hist,
            per_partition,
            by_broker: Arc::default(),
        })
    }

    /// Records one latency of a probe on `partition`, whose leader was `broker`.
    pub fn observe(&self, topic: &str, partition: i32, broker: i32, seconds: f64) {
        if self.per_partition {
            let (p, b) = (partition.to_string(), broker.to_string());
            self.hist
                .with_label_values(&[topic, &p, &b])
                .observe(seconds);
        } else {
            let mut kept = self.by_broker.lock().unwrap_or_else(|e| e.into_inner());
            match kept.get(&broker) {
                Some((t, h)) if **t == *topic => h.observe(seconds),
                _ => {
                    let h = self.hist.with_label_values(&[topic, &broker.to_string()]);
                    h.observe(seconds);
                    kept.insert(broker, (Arc::from(topic), h));
                }
            }
        }
    }
}

impl Metrics {
    /// Registers every agent metric; `per_partition_histograms` is
    /// `metrics.per_partition_histograms`.
    pub fn register(reg: &Registry, per_partition_histograms: bool) -> prometheus::Result<Metrics> {
        let ready = IntGauge::new(
            "losswatch_ready",
            "1 when the agent is ready: metadata loaded, canary topic present and state file open.",
        )?;
        reg.register(Box::new(ready.clone()))?;
        let partitions = IntGauge::new(
            "losswatch_canary_partitions",
            "Number of canary topic partitions being probed.",
        )?;
        reg.register(Box::new(partitions.clone()))?;
        let fleet_agents = IntGauge::new(
            "losswatch_fleet_agents",
            "Agents probing the canary topic, this one included: instances whose probes this agent read within the last 3 of its probe intervals.",
        )?;
        reg.register(Box::new(fleet_agents.clone()))?;
        let probe_interval = prometheus::Gauge::new(
            "losswatch_probe_interval_seconds",
            "This agent's probe interval per partition: canary.probe_interval, or with canary.fleet_probe_rate, fleet agents / fleet rate (never below canary.probe_interval).",
        )?;
        reg.register(Box::new(probe_interval.clone()))?;
        let metadata_errors = IntCounter::new(
            "losswatch_metadata_errors_total",
            "Metadata refreshes of the canary topic that failed.",
        )?;
        reg.register(Box::new(metadata_errors.clone()))?;
        let ledger_write_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "losswatch_ledger_write_seconds",
                "Time to commit one batch of state to the SQLite state file.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        reg.register(Box::new(ledger_write_seconds.clone()))?;
        let ledger_errors = IntCounter::new(
            "losswatch_ledger_errors_total",
            "State file writes that failed (state is retried at the next flush).",
        )?;
        reg.register(Box::new(ledger_errors.clone()))?;
        let ledger_events_dropped = IntCounter::new(
            "losswatch_ledger_events_dropped_total",
            "Loss events not written to the state file because it stayed unwritable for longer than state.max_events events (the metrics count them).",
        )?;
        reg.register(Box::new(ledger_events_dropped.clone()))?;
        let ledger_batches = IntCounter::new(
            "losswatch_ledger_batches_total",
            "Batches of state the agent loop handed to the state writer (one per flush with changes).",
        )?;
        reg.register(Box::new(ledger_batches.clone()))?;
        let producer_restarts = IntCounter::new(
            "losswatch_producer_restarts_total",
            "Times the canary producer was recreated after a fatal librdkafka error.",
        )?;
        reg.register(Box::new(producer_restarts.clone()))?;
        let weak_producer = IntGauge::new(
            "losswatch_weak_producer",
            "1 when kafka.properties weaken the canary producer (acks below all or no idempotence; canary.allow_weak_producer): a lost probe may then be the producer's doing, not the cluster's.",
        )?;
        reg.register(Box::new(weak_producer.clone()))?;
        let brokers_without_canary_leader = IntGauge::new(
            "losswatch_brokers_without_canary_leader",
            "Brokers in metadata that lead no canary partition: their losses and latency are not probed.",
        )?;
        reg.register(Box::new(brokers_without_canary_leader.clone()))?;
        Ok(Metrics {
            scrape_lock: ScrapeLock::default(),
            weak_producer,
            brokers_without_canary_leader,
            broker_canary_partitions: gauge(
                reg,
                "losswatch_broker_canary_partitions",
                "Canary partitions the broker leads (0 for a broker in metadata that leads none).",
                &["broker"],
            )?,
            canary_admin_errors: counter(
                reg,
                "losswatch_canary_admin_errors_total",
                "Admin requests on the canary topic (create, add partitions) that failed or were refused, by operation.",
                &["operation"],
            )?,
            series: PartitionSeries::default(),
            lost: counter(
                reg,
                "losswatch_probes_lost_total",
                "Probes acknowledged and then provably gone from the log; broker is the partition leader at ack time.",
                &["topic", "partition", "broker"],
            )?,
            foreign: counter(
                reg,
                "losswatch_foreign_records_total",
                "Records on the canary topic that are not probes, by reason.",
                &["topic", "reason"],
            )?,
            other_instance: counter(
                reg,
                "losswatch_other_instance_probes_total",
                "Probes of other losswatch instances read on the canary topic.",
                &["topic", "instance"],
            )?,
            ack_latency: Latency::register(
                reg,
                "losswatch_ack_latency_seconds",
                "Time from send to acknowledgement, by the partition leader that acknowledged.",
                per_partition_histograms,
            )?,
            e2e_latency: Latency::register(
                reg,
                "losswatch_e2e_latency_seconds",
                "Time from production to first arrival at the verifier, by the partition leader at ack time.",
                per_partition_histograms,
            )?,
            build_info: gauge(reg, "losswatch_build_info", "Always 1; the version label tells the build.", &["version"])?,
            ready,
            partitions,
            fleet_agents,
            probe_interval,
            consumer_errors: counter(
                reg,
                "losswatch_verifier_errors_total",
                "Errors the verifier's consumer reported, by kind.",
                &["topic", "reason"],
            )?,
            metadata_errors,
            ledger_write_seconds,
            ledger_errors,
            ledger_events_dropped,
            ledger_batches,
            producer_restarts,
        })
    }

    /// The series of `partition` of `topic` (created at zero on first use).
    pub fn partition(&self, topic: &str, partition: i32) -> std::sync::Arc<PartitionCells> {
        self.series.cells(topic, partition)
    }
}

/// A scrape: the registry and the agent's per-partition values, read together between two
/// agent events (under the scrape lock) and written after it is released; then the lag
/// poller's per-group and per-partition series, written straight from its last snapshot.
pub fn render_scrape(
    reg: &Registry,
    lock: &ScrapeLock,
    partitions: &PartitionSeries,
    lag: &crate::lag::LagMetrics,
) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // The size of the last scrape: the text is written into one allocation of about the
    // right size instead of doubling its way there (at 100 000 group-partitions a scrape is
    // 60 MB).
    static LAST_LEN: AtomicUsize = AtomicUsize::new(0);
    let last = LAST_LEN.load(Ordering::Relaxed);
    let (families, parts) = {
        let _consistent = lock.hold();
        (reg.gather(), partitions.snapshot())
    };
    let hint = parts.text_len_hint() + lag.text_len_hint();
    let mut text = String::with_capacity((last + last / 16).max(hint) + 65_536);
    if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&families, &mut text) {
        text = format!("# encoding failed: {e}\n");
    }
    drop(families);
    parts.write_text(&mut text);
    lag.write_text(&mut text);
    LAST_LEN.store(text.len(), Ordering::Relaxed);
    text
}
