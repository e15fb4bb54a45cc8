//! Broker coverage of the canary topic: which brokers lead a canary partition (exported at
//! every metadata refresh), and, every `canary.reconcile_interval` when the agent manages the
//! topic, partitions added so that it keeps `canary.partitions_per_broker` per broker and every
//! broker leads one (see [`crate::canary::coverage`]). A refused request is logged once and
//! backed off, never retried in a hot loop.

use std::time::Instant;

use serde::Serialize;

use super::{now_us, Agent, Background, KAFKA_TIMEOUT};
use crate::backoff::Backoff;
use crate::canary::coverage::{self, Coverage};
use crate::canary::topic::{self, TopicView};

/// What `/api/status` says about coverage.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CoverageView {
    /// Brokers in metadata.
    pub brokers: Vec<i32>,
    /// Brokers that lead no canary partition: their losses and latency are not probed.
    pub brokers_without_canary_leader: Vec<i32>,
    /// Whether the agent creates and grows the canary topic (`canary.manage_topic`).
    pub manage_topic: bool,
    /// What is not covered and why, in words; `None` when every broker is probed.
    pub note: Option<String>,
}

/// The reconcile loop's state.
#[derive(Debug)]
pub(super) struct Reconcile {
    next_at: Instant,
    in_flight: bool,
    backoff: Backoff,
    pub(super) view: CoverageView,
}

impl Reconcile {
    pub(super) fn new(manage_topic: bool) -> Reconcile {
        Reconcile {
            next_at: Instant::now(),
            in_flight: false,
            backoff: Backoff::default(),
            view: CoverageView {
                manage_topic,
                ..CoverageView::default()
            },
        }
    }
}

impl Agent {
    pub(super) fn on_coverage(&mut self, view: &TopicView) {
        let c = coverage::coverage(view);
        self.export_coverage(&c);
        let idle = c.without_leader();
        let manage = self.cfg.canary.manage_topic;
        self.reconcile.view = CoverageView {
            brokers: c.led.keys().copied().collect(),
            note: (!idle.is_empty()).then(|| {
                format!(
                    "broker(s) {idle:?} lead no canary partition{}",
                    if manage {
                        "; partitions are added for brokers that hold no replica, a leadership imbalance waits for a preferred leader election"
                    } else {
                        "; canary.manage_topic is false, so no partition is added: add partitions led by them, or move leadership"
                    }
                )
            }),
            brokers_without_canary_leader: idle,
            manage_topic: manage,
        };
        if manage && !self.reconcile.in_flight && Instant::now() >= self.reconcile.next_at {
            self.reconcile.next_at = Instant::now() + self.cfg.canary.reconcile_interval;
            if self.reconcile.backoff.allow(now_us() / 1000).is_ok() {
                self.grow(view);
            }
        }
    }

    fn export_coverage(&self, c: &Coverage) {
        // Runs under the agent's scrape lock (metadata is handled `consistently`): a scrape
        // sees the whole set, and brokers that left metadata vanish with the reset.
        self.metrics.broker_canary_partitions.reset();
        for (b, n) in &c.led {
            self.metrics
                .broker_canary_partitions
                .with_label_values(&[b.to_string().as_str()])
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        self.metrics
            .brokers_without_canary_leader
            .set(i64::try_from(c.without_leader().len()).unwrap_or(i64::MAX));
    }

    fn grow(&mut self, view: &TopicView) {
        let per_broker = usize::try_from(self.cfg.canary.partitions_per_broker).unwrap_or(1);
        let Some(plan) = coverage::plan(view, per_broker) else {
            return;
        };
        self.reconcile.in_flight = true;
        let clients = self.clients.clone();
        let topic = self.topic.clone();
        let tx = self.bg_tx.clone();
        tokio::spawn(async move {
            let res = topic::grow(&clients, &topic, &plan, KAFKA_TIMEOUT).await;
            let _ = tx.send(Background::Grown(res)).await;
        });
    }

    pub(super) fn on_grown(&mut self, res: Result<(), String>) {
        self.reconcile.in_flight = false;
        match res {
            Ok(()) => {
                self.reconcile.backoff.succeeded();
                // The new partitions show at the next refresh; ask now.
                self.refresh_metadata();
            }
            Err(error) => {
                self.metrics
                    .canary_admin_errors
                    .with_label_values(&["create_partitions"])
                    .inc();
                let interval = self.cfg.canary.reconcile_interval;
                if self
                    .reconcile
                    .backoff
                    .failed(now_us() / 1000, interval, &error)
                {
                    tracing::warn!(%error, topic = self.topic, "cannot add canary partitions; backing off");
                } else {
                    tracing::debug!(%error, "cannot add canary partitions");
                }
            }
        }
    }
}
