//! The agent loop: one task that owns the producer, the verifier, the tracker and the state
//! batch, so that every decision sees one consistent picture and a saved batch is a
//! consistent cut (pending probes, positions and totals agree).
//!
//! Blocking librdkafka calls (metadata, watermarks, the verifier's seeks and assignments)
//! run on the blocking pool and come back as [`Background`] messages; nothing in the loop
//! blocks, and the scrape lock guards memory only.

mod coverage;
mod others;
mod prober;
mod reader;
mod reading;
mod status;
mod store;
mod topology;
mod verdicts;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use coverage::CoverageView;
pub use status::{Health, PartitionStatus, SeqAt, Status, TotalsView};
pub use store::Store;

use crate::canary::fleet::Fleet;
use crate::canary::producer::Report;
use crate::canary::topic::{PartitionInfo, TopicError, TopicView};
use crate::config::Config;
use crate::kafka::Clients;
use crate::ledger::{Batch, Loaded, PartitionRow};
use crate::metrics::{Metrics, PartitionCells};
use crate::tracker::{Ack, Outcome, PendingProbe, Tracker, TrackerConfig};
use crate::verifier::{Next, Verifier};

/// Sequence numbers reserved per ledger write. A crash skips at most this many.
const SEQ_BLOCK: u64 = 1000;
const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);
/// Delivery reports handled per turn of the loop, under one hold of the scrape lock.
const REPORT_BATCH: usize = 64;

pub fn now_us() -> i64 {
    // Called several times per probe: the system clock straight, without chrono's calendar
    // conversion. A clock before 1970 reads as negative.
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// Results of work done off the loop.
enum Background {
    Metadata(Result<TopicView, TopicError>),
    Created(Result<(), TopicError>),
    /// New partitions with their metadata and log end (where verifying starts).
    Starts(Vec<(i32, PartitionInfo, Result<i64, KafkaError>)>),
    Watermarks {
        partition: i32,
        refused: crate::tracker::Refused,
        result: Result<(i64, i64), KafkaError>,
    },
    /// Partitions added to the canary topic (or why not).
    Grown(Result<(), String>),
    /// The verifier's assignment returned.
    Assigned {
        partitions: Vec<i32>,
        result: Result<(), KafkaError>,
    },
    /// A seek of the verifier returned.
    Sought {
        partition: i32,
        offset: i64,
        result: Result<(), KafkaError>,
    },
}

struct PartState {
    /// The partition's series (`metrics::partitions`).
    cells: Arc<PartitionCells>,
    info: PartitionInfo,
    next_seq: u64,
    reserved_seq: u64,
    producing: bool,
    last_acked: Option<SeqAt>,
    last_verified: Option<SeqAt>,
    send_failed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The Kafka library refused the settings (the message has its secrets removed).
    #[error("invalid value for `kafka.properties`: {0}")]
    Client(String),
    #[error("cannot start the state writer: {0}")]
    Store(#[source] std::io::Error),
}

/// The loop's state, in parts that each own one concern: probing ([`prober::Prober`]),
/// reading back ([`reader::Reader`]), accounting (the tracker, the per-partition state, the
/// batch for the ledger), finding partitions ([`topology::Discovery`]), keeping the topic
/// covered ([`coverage::Reconcile`]) and the fleet ([`Fleet`], [`others::Others`]). The
/// handlers that tie them together are named after the event they handle (`on_report`,
/// `on_next`, `on_background`, `send_probes`, `housekeeping`, `flush`).
pub struct Agent {
    cfg: Config,
    topic: String,
    instance: Uuid,
    clients: Clients,
    tracker: Tracker,
    /// The canary producer and its delivery reports.
    prober: prober::Prober,
    /// The verifier and the commands that move it.
    reader: reader::Reader,
    store: Store,
    metrics: Metrics,
    health: Arc<Health>,
    status: watch::Sender<Arc<Status>>,
    parts: BTreeMap<i32, PartState>,
    batch: Batch,
    /// What the tracker decided in the event being handled (applied by `apply_outcome`).
    outcome: Outcome,
    /// Other instances seen on the canary topic, and their probe counters.
    others: others::Others,
    /// Agents seen probing, and this agent's probe interval (`canary::fleet`).
    fleet: Fleet,
    started: Instant,
    bg_tx: mpsc::Sender<Background>,
    bg_rx: mpsc::Receiver<Background>,
    /// The canary topic's partitions as metadata is found.
    discovery: topology::Discovery,
    reconcile: coverage::Reconcile,
}

impl Agent {
    /// Builds the agent from a loaded ledger. Fails only on configuration the Kafka client
    /// refuses.
    pub fn new(
        cfg: Config,
        clients: Clients,
        loaded: Loaded,
        store: Store,
        metrics: Metrics,
        health: Arc<Health>,
        status: watch::Sender<Arc<Status>>,
    ) -> Result<Agent, AgentError> {
        let refused = |e: KafkaError| AgentError::Client(clients.scrub(&e.to_string()));
        let timeout_ms = u64::try_from(cfg.canary.delivery_timeout.as_millis()).unwrap_or(u64::MAX);
        let prober = prober::Prober::new(
            &clients,
            loaded.instance,
            &cfg.canary.topic,
            cfg.canary.payload_bytes,
            timeout_ms,
        )
        .map_err(refused)?;
        let verifier =
            Verifier::create(&clients, &cfg.canary.topic, loaded.instance).map_err(refused)?;
        let tracker = Tracker::new(TrackerConfig {
            late_threshold_us: i64::try_from(cfg.canary.late_threshold.as_micros())
                .unwrap_or(i64::MAX),
            max_pending: cfg.canary.max_pending_per_partition,
            unmatched_after_us: i64::try_from((cfg.canary.delivery_timeout * 4).as_micros())
                .unwrap_or(i64::MAX)
                .max(300_000_000),
            ..TrackerConfig::default()
        });
        let (bg_tx, bg_rx) = mpsc::channel(64);
        let topic = cfg.canary.topic.clone();
        let others = others::Others::new(
            metrics.other_instance.clone(),
            &topic,
            cfg.metrics.other_instance_series,
        );
        tracing::info!(instance = %loaded.instance, topic, restored_partitions = loaded.partitions.len(), "agent starting");
        health.set_not_ready("waiting for canary topic metadata");
        let weak = cfg.weak_producer_settings();
        if !weak.is_empty() {
            tracing::warn!(
                settings = weak.join(", "),
                "canary.allow_weak_producer: the canary producer runs with weakened settings; a lost probe may be the producer's doing, not the cluster's"
            );
            metrics.weak_producer.set(1);
        }
        Ok(Agent {
            topic,
            instance: loaded.instance,
            clients,
            tracker,
            prober,
            reader: reader::Reader::new(verifier, bg_tx.clone()),
            store,
            metrics,
            health,
            status,
            discovery: topology::Discovery::new(loaded.partitions),
            parts: BTreeMap::new(),
            batch: Batch::default(),
            outcome: Outcome::default(),
            others,
            fleet: Fleet::new(
                loaded.instance,
                cfg.canary.probe_interval,
                cfg.canary.fleet_probe_rate,
            ),
            started: Instant::now(),
            bg_tx,
            bg_rx,
            reconcile: coverage::Reconcile::new(cfg.canary.manage_topic),
            cfg,
        })
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut probe_tick = tokio::time::interval(self.fleet.interval());
        let mut meta_tick = tokio::time::interval(self.cfg.canary.metadata_refresh);
        let mut flush_tick = tokio::time::interval(self.cfg.state.flush_interval);
        let mut house_tick = tokio::time::interval(Duration::from_secs(1));
        for t in [
            &mut probe_tick,
            &mut meta_tick,
            &mut flush_tick,
            &mut house_tick,
        ] {
            t.set_missed_tick_behavior(MissedTickBehavior::Skip);
        }
        let mut reports = Vec::with_capacity(REPORT_BATCH);
        loop {
            // Biased, in this order:
            // - delivery reports before records, so that an ack is usually known when its
            //   probe is read back (the tracker is exact either way; this keeps its map of
            //   early reads small);
            // - the ticks before the reads: a verifier that always has records waiting (a
            //   restart far behind on a topic many agents share) would otherwise starve
            //   probing, the state flush and the heartbeat behind `/livez`;
            // - (in `reader.next`) the main queue before the partition queues: see
            //   `verifier::Next::Main`.
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = self.prober.reports(&mut reports, REPORT_BATCH) => {
                    self.consistently(|a| reports.drain(..).for_each(|r| a.on_report(r)));
                }
                _ = probe_tick.tick() => self.send_probes().await,
                _ = flush_tick.tick() => self.flush(false),
                _ = house_tick.tick() => {
                    self.consistently(Agent::housekeeping);
                    if let Some(every) = self.fleet.take_change() {
                        tracing::info!(
                            agents = self.fleet.live(),
                            interval = ?every,
                            "probe interval follows the fleet size"
                        );
                        probe_tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                        probe_tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
                    }
                }
                _ = meta_tick.tick() => self.refresh_metadata(),
                Some(bg) = self.bg_rx.recv() => self.consistently(|a| a.on_background(bg)),
                next = self.reader.next() => self.on_next(next),
            }
            // The verifier's queues are not tokio resources and do not count against the
            // task's cooperative budget. With records always waiting the loop would never
            // yield: its worker thread would be held, and once the budget ran out every
            // tokio branch above (ticks, reports, shutdown) would stay pending. This counts
            // each turn and yields when the budget is spent.
            tokio::task::consume_budget().await;
        }
        self.shutdown().await;
    }

    /// What the reader read.
    fn on_next(&mut self, next: Next) {
        match next {
            Next::Main(Some(p), f) => self.consistently(|a| a.on_main_fetched(p, f)),
            Next::Main(None, f) => self.on_main_error(f),
            Next::Partition(p, f) => self.consistently(|a| a.on_fetched_batch(p, f)),
        }
    }

    /// Handles one event with scrapes held off, so none sees half of its metric updates;
    /// then, with the lock released, starts the seeks it asked for.
    fn consistently(&mut self, handle: impl FnOnce(&mut Agent)) {
        let lock = self.metrics.scrape_lock.clone();
        {
            let _held = lock.hold();
            handle(self);
        }
        self.reader.start_seeks();
    }

    async fn send_probes(&mut self) {
        if self.prober.replace_if_fatal() {
            self.metrics.producer_restarts.inc();
        }
        let now = now_us();
        let producing: Vec<(i32, Arc<PartitionCells>)> = self
            .parts
            .iter()
            .filter(|(_, s)| s.producing)
            .map(|(p, s)| (*p, s.cells.clone()))
            .collect();
        for (p, cells) in producing {
            if !self.tracker.can_send(p) {
                cells.held_back.inc();
                continue;
            }
            let Some(seq) = self.alloc_seq(p).await else {
                continue;
            };
            cells.sent.inc();
            let epoch = self.tracker.epoch(p);
            if let Err(failed) = self.prober.send(p, seq, now, epoch) {
                self.on_report(failed);
            }
        }
    }

    /// The next sequence number of `p`, reserving a new block durably when needed.
    async fn alloc_seq(&mut self, p: i32) -> Option<u64> {
        let st = self.parts.get_mut(&p)?;
        if st.next_seq >= st.reserved_seq {
            let reserved = st.next_seq + SEQ_BLOCK;
            if let Err(error) = self.store.reserve(p, st.next_seq, reserved).await {
                tracing::error!(partition = p, %error, "cannot reserve sequence numbers; not probing");
                return None;
            }
            st.reserved_seq = reserved;
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        Some(seq)
    }

    fn on_report(&mut self, r: Report) {
        let now = now_us();
        let mut touched = None;
        match r {
            Report::Acked {
                probe,
                offset,
                acked_at,
            } => {
                let p = probe.partition;
                touched = Some(p);
                self.cells(p).acked.inc();
                let broker = self.parts.get(&p).map_or(-1, |s| s.info.leader);
                self.metrics.ack_latency.observe(
                    &self.topic,
                    p,
                    broker,
                    acked_at
                        .saturating_duration_since(probe.sent_at)
                        .as_secs_f64(),
                );
                let ack = Ack {
                    seq: probe.seq,
                    offset,
                    broker,
                    produced_at_us: probe.produced_at_us,
                    sent_epoch: probe.sent_epoch,
                };
                self.tracker.on_ack(p, ack, now, &mut self.outcome);
                // Saved as pending; a verdict in the same batch removes it again if resolved.
                self.batch.inserted.push((
                    p,
                    PendingProbe {
                        seq: probe.seq,
                        offset,
                        broker,
                        produced_at_us: probe.produced_at_us,
                        acked_at_us: now,
                        epoch: probe.sent_epoch,
                    },
                ));
                if let Some(st) = self.parts.get_mut(&p) {
                    st.last_acked = Some(SeqAt {
                        seq: probe.seq,
                        offset,
                    });
                }
            }
            Report::Failed {
                probe,
                reason,
                code,
            } => {
                self.prober.note_failure(code, probe.sent_at);
                let p = probe.partition;
                self.cells(p).send_failed(reason).inc();
                if let Some(st) = self.parts.get_mut(&p) {
                    st.send_failed += 1;
                }
                tracing::warn!(
                    partition = p,
                    seq = probe.seq,
                    reason = reason.as_label(),
                    error = ?code,
                    stage = "producer",
                    "probe send failed"
                );
                self.tracker.on_send_failed(p, probe.seq, &mut self.outcome);
            }
        }
        self.apply_outcome();
        if let Some(p) = touched {
            self.refresh_pending(p);
        }
    }

    /// Keeps the pending gauge exact after every change, so that a scrape always sees
    /// `acked + restored = received + lost + expired_unread + pending`.
    pub(super) fn refresh_pending(&self, p: i32) {
        self.cells(p)
            .pending
            .set(i64::try_from(self.tracker.pending_len(p)).unwrap_or(i64::MAX));
    }

    /// The series of partition `p`: those kept in its state, or (for a partition not probed
    /// yet) looked up.
    pub(super) fn cells(&self, p: i32) -> Arc<PartitionCells> {
        match self.parts.get(&p) {
            Some(st) => st.cells.clone(),
            None => self.metrics.partition(&self.topic, p),
        }
    }

    /// Sends the changes since the last flush, with a fresh row for every partition.
    fn flush(&mut self, exact_reservations: bool) {
        let mut batch = std::mem::take(&mut self.batch);
        batch.exact_reservations = exact_reservations;
        batch.partitions = self
            .parts
            .iter()
            .filter_map(|(&p, st)| {
                let snap = self.tracker.snapshot(p)?;
                Some(PartitionRow {
                    partition: p,
                    next_seq: st.next_seq,
                    reserved_seq: if exact_reservations {
                        st.next_seq
                    } else {
                        st.reserved_seq
                    },
                    position: snap.position,
                    epoch: snap.epoch,
                    totals: snap.totals,
                })
            })
            .collect();
        if !batch.is_empty() {
            self.metrics.ledger_batches.inc();
            self.store.write(batch);
        }
    }

    /// Reads until every acked probe is resolved (nothing pending) or `deadline`, so that a
    /// clean stop leaves a complete account and nothing to restore.
    async fn verify_in_flight(&mut self, deadline: tokio::time::Instant) {
        let pending = |a: &Agent| a.tracker.partitions().any(|p| a.tracker.pending_len(p) > 0);
        if !pending(self) {
            return;
        }
        tracing::info!("shutting down: verifying probes in flight");
        while pending(self) {
            // The deadline first: behind a backlog the reads are always ready (see `run`).
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!("grace period over with probes still unverified; they are saved");
                    break;
                }
                Some(bg) = self.bg_rx.recv() => self.consistently(|a| a.on_background(bg)),
                next = self.reader.next() => self.on_next(next),
            }
            tokio::task::consume_budget().await;
        }
    }

    /// Stops probing, drains delivery reports and verifies what is in flight within the grace
    /// period, saves state.
    async fn shutdown(mut self) {
        let grace = self.cfg.shutdown.grace;
        let deadline = tokio::time::Instant::now() + grace.mul_f64(0.8);
        tracing::info!(
            in_flight = self.prober.in_flight(),
            "shutting down: draining delivery reports"
        );
        self.health.set_not_ready("shutting down");
        self.metrics.ready.set(0);
        let mut reports = Vec::with_capacity(REPORT_BATCH);
        loop {
            if self.prober.in_flight() == 0 {
                break;
            }
            tokio::select! {
                n = self.prober.reports(&mut reports, REPORT_BATCH) => {
                    reports.drain(..n).for_each(|r| self.on_report(r));
                }
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!("grace period over with delivery reports outstanding");
                    break;
                }
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        while let Some(r) = self.prober.try_report() {
            self.on_report(r);
        }
        self.reader.start_seeks();
        self.verify_in_flight(deadline).await;
        self.housekeeping();
        self.flush(true);
        let closing = self.store.close();
        if tokio::time::timeout(grace.mul_f64(0.2).max(Duration::from_secs(1)), closing)
            .await
            .is_err()
        {
            tracing::error!("state file did not finish writing within the grace period");
        }
        tracing::info!("agent stopped");
    }
}

/// The agent loop is spawned on the multi-threaded runtime, so it must stay `Send`.
#[allow(dead_code)]
fn assert_send(a: Agent, t: CancellationToken) -> impl Send {
    a.run(t)
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_us_is_the_wall_clock_in_microseconds() {
        let before = chrono::Utc::now().timestamp_micros();
        let now = super::now_us();
        let after = chrono::Utc::now().timestamp_micros();
        assert!(before <= now && now <= after, "{before} {now} {after}");
    }
}
