//! What the agent publishes about itself: health for `/livez` and `/readyz`, and the
//! per-partition summary served as `/api/status`.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use uuid::Uuid;

use super::{now_us, Agent};
use crate::tracker::Totals;

/// Liveness and readiness, shared with the HTTP server.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    reason: Mutex<String>,
    /// Unix milliseconds of the agent loop's last turn.
    heartbeat_ms: AtomicI64,
}

impl Health {
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
        if let Ok(mut r) = self.reason.lock() {
            r.clear();
        }
    }

    pub fn set_not_ready(&self, reason: impl Into<String>) {
        self.ready.store(false, Ordering::Relaxed);
        if let Ok(mut r) = self.reason.lock() {
            *r = reason.into();
        }
    }

    /// `Ok` when ready, else why not.
    pub fn readiness(&self) -> Result<(), String> {
        if self.ready.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(self
                .reason
                .lock()
                .map(|r| r.clone())
                .unwrap_or_else(|_| "starting".into()))
        }
    }

    pub fn beat(&self, now_ms: i64) {
        self.heartbeat_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Milliseconds since the agent loop last turned; `None` before it started.
    pub fn since_beat_ms(&self, now_ms: i64) -> Option<i64> {
        match self.heartbeat_ms.load(Ordering::Relaxed) {
            0 => None,
            t => Some(now_ms - t),
        }
    }
}

/// Lifetime totals as served (counters survive restarts here, unlike in `/metrics`).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TotalsView {
    #[serde(flatten)]
    pub tracked: Totals,
    /// Send failures since this process started.
    pub send_failed: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct SeqAt {
    pub seq: u64,
    pub offset: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub producing: bool,
    pub next_seq: u64,
    pub last_acked: Option<SeqAt>,
    pub last_verified: Option<SeqAt>,
    pub read_position: Option<i64>,
    pub pending: usize,
    pub oldest_pending_age_seconds: f64,
    pub totals: TotalsView,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    pub version: &'static str,
    pub instance: String,
    pub topic: String,
    pub ready: bool,
    pub not_ready_reason: Option<String>,
    pub other_instances: Vec<String>,
    pub partitions: Vec<PartitionStatus>,
    /// Which brokers the canary probes, and what is not covered.
    pub coverage: super::CoverageView,
}

impl Agent {
    pub(super) fn housekeeping(&mut self) {
        let now = now_us();
        self.health.beat(now / 1000);
        self.fleet.tick(self.started.elapsed().as_secs(), now);
        self.metrics
            .fleet_agents
            .set(i64::try_from(self.fleet.live()).unwrap_or(i64::MAX));
        self.metrics
            .probe_interval
            .set(self.fleet.interval().as_secs_f64());
        self.tracker.on_tick(now, &mut self.outcome);
        self.apply_outcome();
        if std::mem::take(&mut self.reader.assign_due) {
            self.reassign();
        }
        let mut statuses = Vec::with_capacity(self.parts.len());
        for (&p, st) in &self.parts {
            let pending = self.tracker.pending_len(p);
            st.cells
                .pending
                .set(i64::try_from(pending).unwrap_or(i64::MAX));
            let age = self
                .tracker
                .oldest_pending_acked_at(p)
                .map_or(0.0, |t| ((now - t).max(0)) as f64 / 1e6);
            st.cells.oldest_pending_age.set(age);
            statuses.push(PartitionStatus {
                partition: p,
                leader: st.info.leader,
                replicas: st.info.replicas.clone(),
                isr: st.info.isr.clone(),
                producing: st.producing,
                next_seq: st.next_seq,
                last_acked: st.last_acked,
                last_verified: st.last_verified,
                read_position: self.tracker.position(p),
                pending,
                oldest_pending_age_seconds: age,
                totals: TotalsView {
                    tracked: self.tracker.totals(p),
                    send_failed: st.send_failed,
                },
            });
        }
        let readiness = self.health.readiness();
        let status = Status {
            version: env!("CARGO_PKG_VERSION"),
            instance: self.instance.to_string(),
            topic: self.topic.clone(),
            ready: readiness.is_ok(),
            not_ready_reason: readiness.err(),
            other_instances: self.others.instances().map(Uuid::to_string).collect(),
            partitions: statuses,
            coverage: self.reconcile.view.clone(),
        };
        self.status.send_replace(Arc::new(status));
    }
}
