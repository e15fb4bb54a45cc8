//! The canary topic as metadata shows it: partitions appearing (new ones are verified from
//! their end, saved ones resume from the ledger), leaders, a missing topic, and the
//! verifier's assignment.

use std::collections::{BTreeMap, BTreeSet};

use rdkafka::consumer::Consumer;

use super::{Agent, Background, PartState, KAFKA_TIMEOUT};
use crate::canary::topic::{self, PartitionInfo, TopicError, TopicView};
use crate::ledger::SavedPartition;

/// Where finding the canary topic's partitions stands.
pub(super) struct Discovery {
    /// Partitions restored from the ledger that metadata has not shown yet.
    saved: BTreeMap<i32, SavedPartition>,
    /// New partitions whose start (their log end) is being read.
    starting: BTreeSet<i32>,
    /// Metadata has been seen at least once.
    loaded: bool,
    /// A metadata refresh is waiting for its answer.
    in_flight: bool,
    /// The topic is being created.
    creating: bool,
}

impl Discovery {
    pub(super) fn new(saved: BTreeMap<i32, SavedPartition>) -> Discovery {
        Discovery {
            saved,
            starting: BTreeSet::new(),
            loaded: false,
            in_flight: false,
            creating: false,
        }
    }
}

impl Agent {
    pub(super) fn refresh_metadata(&mut self) {
        // While a broker does not answer, one request waits out its timeout; the ticks in
        // between do not pile more blocking requests on top of it.
        if self.discovery.in_flight {
            return;
        }
        self.discovery.in_flight = true;
        let consumer = self.reader.consumer().clone();
        let topic = self.topic.clone();
        let tx = self.bg_tx.clone();
        tokio::task::spawn_blocking(move || {
            let res = topic::describe(consumer.client(), &topic, KAFKA_TIMEOUT);
            let _ = tx.blocking_send(Background::Metadata(res));
        });
    }

    pub(super) fn on_background(&mut self, bg: Background) {
        if matches!(bg, Background::Metadata(_)) {
            self.discovery.in_flight = false;
        }
        match bg {
            Background::Metadata(Ok(view)) => self.on_metadata(view),
            Background::Metadata(Err(TopicError::Missing(_))) => self.on_topic_missing(),
            Background::Metadata(Err(error)) => {
                self.metrics.metadata_errors.inc();
                tracing::warn!(%error, "canary topic metadata refresh failed");
                if !self.discovery.loaded {
                    self.health.set_not_ready(error.to_string());
                }
            }
            Background::Created(res) => {
                self.discovery.creating = false;
                match res {
                    Ok(()) => {
                        // A refresh still in flight may predate the creation: ask again now.
                        self.discovery.in_flight = false;
                        self.refresh_metadata();
                    }
                    Err(error) => {
                        tracing::error!(%error, "canary topic is missing and could not be created");
                        self.health.set_not_ready(error.to_string());
                    }
                }
            }
            Background::Starts(starts) => {
                for (p, info, res) in starts {
                    self.discovery.starting.remove(&p);
                    match res {
                        Ok(high) => {
                            let saved = self.discovery.saved.remove(&p).unwrap_or_default();
                            self.tracker.add_partition(p, high);
                            self.adopt(
                                p,
                                info,
                                saved.reserved_seq.max(saved.next_seq),
                                saved.reserved_seq,
                            );
                            tracing::info!(
                                partition = p,
                                start = high,
                                "verifying new partition from its end"
                            );
                        }
                        Err(error) => {
                            tracing::warn!(partition = p, %error, "cannot read partition end; retrying at next metadata refresh");
                        }
                    }
                }
                self.reassign();
            }
            Background::Grown(res) => self.on_grown(res),
            Background::Sought {
                partition,
                offset,
                result,
            } => {
                if self.reader.on_sought(partition, offset, result) {
                    self.reassign();
                }
            }
            Background::Assigned { partitions, result } => {
                if self.reader.on_assigned(&partitions, result) {
                    self.reassign();
                }
            }
            Background::Watermarks {
                partition,
                refused,
                result,
            } => match result {
                Ok((low, high)) => {
                    self.tracker
                        .on_out_of_range(partition, refused, low, high, &mut self.outcome);
                    self.apply_outcome();
                    self.refresh_pending(partition);
                }
                Err(error) => {
                    tracing::warn!(partition, %error, "cannot read watermarks after out of range; resuming");
                    self.reader.assign_due = true;
                }
            },
        }
    }

    pub(super) fn on_topic_missing(&mut self) {
        let topic = self.topic.clone();
        if !self.cfg.canary.manage_topic {
            let reason = format!(
                "canary topic {topic} does not exist and canary.manage_topic is false (no admin calls)"
            );
            tracing::error!("{reason}");
            self.health.set_not_ready(reason);
            return;
        }
        if !self.cfg.canary.create_topic {
            let reason =
                format!("canary topic {topic} does not exist and canary.create_topic is false");
            tracing::error!("{reason}");
            self.health.set_not_ready(reason);
            return;
        }
        self.health
            .set_not_ready(format!("canary topic {topic} does not exist; creating it"));
        if self.discovery.creating {
            return;
        }
        self.discovery.creating = true;
        let consumer = self.reader.consumer().clone();
        let clients = self.clients.clone();
        let c = &self.cfg.canary;
        let (parts, per_broker, rf) = (c.partitions, c.partitions_per_broker, c.replication_factor);
        let tx = self.bg_tx.clone();
        tokio::spawn(async move {
            let brokers = tokio::task::spawn_blocking(move || {
                consumer
                    .fetch_metadata(None, KAFKA_TIMEOUT)
                    .map(|m| m.brokers().len())
            })
            .await;
            let res = match brokers {
                Ok(Ok(n)) => {
                    let layout = topic::Layout::new(n, parts, per_broker, rf);
                    topic::create(&clients, &topic, layout, KAFKA_TIMEOUT).await
                }
                Ok(Err(e)) => Err(TopicError::Metadata(e)),
                Err(e) => Err(TopicError::Create {
                    topic: topic.clone(),
                    reason: e.to_string(),
                }),
            };
            let _ = tx.send(Background::Created(res)).await;
        });
    }

    pub(super) fn on_metadata(&mut self, view: TopicView) {
        if !self.discovery.loaded {
            tracing::info!(
                partitions = view.partitions.len(),
                brokers = view.brokers.len(),
                "canary topic metadata loaded"
            );
        }
        self.discovery.loaded = true;
        self.health.set_ready();
        self.on_coverage(&view);
        self.metrics.ready.set(1);
        self.metrics
            .partitions
            .set(i64::try_from(view.partitions.len()).unwrap_or(i64::MAX));
        let mut fresh = vec![];
        let mut restored = false;
        for (&p, info) in &view.partitions {
            let pl = p.to_string();
            self.cells(p).leader.set(i64::from(info.leader));
            // Lost series exist at zero for every replica of the partition (the leader at
            // ack time is one of them), so that the first loss is an increase that rules can
            // see. Per replica, not per broker: the series per partition stay bounded by the
            // replication factor, not by the size of the cluster.
            for b in info.replicas.iter().chain(std::iter::once(&info.leader)) {
                if *b < 0 {
                    continue;
                }
                let bl = b.to_string();
                self.metrics.lost.with_label_values(&[
                    self.topic.as_str(),
                    pl.as_str(),
                    bl.as_str(),
                ]);
            }
            if let Some(st) = self.parts.get_mut(&p) {
                if st.info.leader != info.leader {
                    tracing::info!(
                        partition = p,
                        from = st.info.leader,
                        to = info.leader,
                        "partition leader changed"
                    );
                }
                st.info = info.clone();
                st.producing = true;
                continue;
            }
            if self.discovery.starting.contains(&p) {
                continue;
            }
            match self.discovery.saved.remove(&p) {
                Some(saved) if saved.snapshot.position >= 0 => {
                    let n = saved.snapshot.pending.len();
                    self.cells(p)
                        .restored
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                    tracing::info!(
                        partition = p,
                        position = saved.snapshot.position,
                        pending = n,
                        next_seq = saved.reserved_seq,
                        "resuming partition from saved state"
                    );
                    self.tracker.restore_partition(p, saved.snapshot);
                    self.adopt(p, info.clone(), saved.reserved_seq, saved.reserved_seq);
                    restored = true;
                }
                other => {
                    if let Some(s) = other {
                        self.discovery.saved.insert(p, s);
                    }
                    fresh.push((p, info.clone()));
                }
            }
        }
        for (p, st) in &mut self.parts {
            if !view.partitions.contains_key(p) && st.producing {
                tracing::warn!(
                    partition = p,
                    "partition no longer in metadata; not probing it"
                );
                st.producing = false;
            }
        }
        if restored {
            self.reassign();
        }
        if !fresh.is_empty() {
            self.discovery
                .starting
                .extend(fresh.iter().map(|(p, _)| *p));
            let consumer = self.reader.consumer().clone();
            let producer = self.prober.producer();
            let topic = self.topic.clone();
            let tx = self.bg_tx.clone();
            tokio::task::spawn_blocking(move || {
                // The producer keeps its own metadata: show it the new partitions before the
                // first probe is addressed to them (a miss is an immediate refusal).
                let _ = rdkafka::producer::Producer::client(&*producer)
                    .fetch_metadata(Some(&topic), KAFKA_TIMEOUT);
                let starts = fresh
                    .into_iter()
                    .map(|(p, info)| {
                        let high = consumer
                            .fetch_watermarks(&topic, p, KAFKA_TIMEOUT)
                            .map(|(_, h)| h);
                        (p, info, high)
                    })
                    .collect();
                let _ = tx.blocking_send(Background::Starts(starts));
            });
        }
    }

    /// Starts probing partition `p` (already known to the tracker).
    pub(super) fn adopt(&mut self, p: i32, info: PartitionInfo, next_seq: u64, reserved_seq: u64) {
        self.parts.insert(
            p,
            PartState {
                cells: self.metrics.partition(&self.topic, p),
                info,
                next_seq,
                reserved_seq,
                producing: true,
                last_acked: None,
                last_verified: None,
                send_failed: 0,
            },
        );
    }

    /// Points the verifier at every tracked partition, at the tracker's positions (off the
    /// runtime: see `reader`).
    pub(super) fn reassign(&mut self) {
        let positions: Vec<(i32, i64)> = self
            .tracker
            .partitions()
            .filter_map(|p| self.tracker.position(p).map(|o| (p, o)))
            .collect();
        self.reader.assign(positions);
    }
}
