//! The lag poller task: every `lag.interval` (a slow poll skips ticks) while this agent is
//! the poller, it reads the groups, their committed offsets and the log offsets, feeds the
//! [`Book`] and publishes its snapshot. Broker trouble is counted in
//! `losswatch_lag_poll_errors_total` and leaves the last published values in place; it never
//! stops the task.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::book::{Book, GroupInput, PollInput, Snapshot, Tp};
use super::config::{GroupFilter, LagConfig, LagMode, OffsetsFetch};
use super::discovery::{self, Discovery, Query};
use super::kafka::{self, LagAdmin, LagReader};
use super::metrics::{LagMetrics, PollError};
use super::records;
use super::stages::Stages;
use super::topic_loss::{EventSink, TopicWatch};
use crate::kafka::Clients;

/// The groups of a poll: members (when known) and the topics they are assigned.
type Groups = BTreeMap<String, (Option<usize>, BTreeSet<String>)>;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub struct Poller {
    cfg: LagConfig,
    kafka: Clients,
    /// Created when this agent becomes the poller, dropped when it stops being it: the other
    /// agents of a DaemonSet hold only their election client.
    admin: Option<Arc<LagAdmin>>,
    reader: Option<Arc<LagReader>>,
    /// `admin`, published for other tasks of the elected agent.
    shared: watch::Sender<Option<Arc<LagAdmin>>>,
    filter: GroupFilter,
    book: Book,
    discovery: Discovery,
    /// Truncation and recreation of the topics the groups read.
    topics: TopicWatch,
    sink: Option<EventSink>,
    metrics: LagMetrics,
}

/// Runs `f` on the blocking pool; a panic there is reported as `None`.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

impl Poller {
    pub fn new(
        cfg: LagConfig,
        kafka: Clients,
        filter: GroupFilter,
        metrics: LagMetrics,
        sink: Option<EventSink>,
    ) -> Poller {
        let interval_ms = i64::try_from(cfg.discovery_interval.as_millis()).unwrap_or(i64::MAX);
        Poller {
            book: Book::new(cfg.window),
            topics: TopicWatch::new(sink.clone(), cfg.discovery_interval),
            sink,
            discovery: Discovery::new(interval_ms),
            cfg,
            kafka,
            admin: None,
            reader: None,
            shared: watch::Sender::new(None),
            filter,
            metrics,
        }
    }

    /// The poller's admin client, created on first use and kept for the whole term.
    fn admin(&mut self) -> Option<Arc<LagAdmin>> {
        if self.admin.is_none() {
            match kafka::admin(&self.kafka) {
                Ok(a) => {
                    self.admin = Some(a.clone());
                    self.shared.send_replace(Some(a));
                }
                Err(error) => {
                    self.metrics.error(PollError::Client);
                    tracing::error!(%error, "cannot create the lag poller's admin client");
                }
            }
        }
        self.admin.clone()
    }

    /// The record reader, created when a timestamp is first wanted and kept for the term.
    fn reader(&mut self) -> Option<Arc<LagReader>> {
        if self.reader.is_none() {
            match kafka::reader(&self.kafka) {
                Ok(c) => self.reader = Some(Arc::new(c)),
                Err(error) => {
                    self.metrics.error(PollError::Client);
                    tracing::error!(%error, "cannot create the lag poller's record reader");
                }
            }
        }
        self.reader.clone()
    }

    /// The elected poller's admin client while this agent polls (`None` otherwise), for
    /// other cluster-wide tasks to borrow: no second client per concern.
    pub fn shared_admin(&self) -> watch::Receiver<Option<Arc<LagAdmin>>> {
        self.shared.subscribe()
    }

    /// Runs until `shutdown` fires. `election` is this agent's elected flag (see
    /// [`super::election::spawn_role`]), `None` unless `lag.mode = "elected"`.
    pub async fn run(
        mut self,
        election: Option<watch::Receiver<bool>>,
        shutdown: CancellationToken,
    ) {
        // `None`: always the poller (or, once elected, the election ended).
        let mut election = match self.cfg.mode {
            LagMode::Off => {
                self.metrics.leader.set(0);
                return;
            }
            LagMode::Always => None,
            LagMode::Elected => match election {
                Some(rx) => Some(rx),
                None => {
                    tracing::error!("lag.mode is elected but no election was joined");
                    self.metrics.leader.set(0);
                    return;
                }
            },
        };
        let mut elected = election.is_none();
        self.metrics.leader.set(i64::from(elected));
        let mut tick = tokio::time::interval(self.cfg.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                now = crate::lag::election::next_change(&mut election) => {
                    if now != elected {
                        elected = now;
                        self.on_leadership(now);
                        if now {
                            tick.reset_immediately();
                        }
                    }
                }
                _ = tick.tick(), if elected => {
                    let started = tokio::time::Instant::now();
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = self.poll_and_publish() => {}
                    }
                    // A poll longer than the interval skips the ticks it overran, including the
                    // one an interval would fire at once: polls stay an interval apart, so a
                    // window of N polls spans at least N - 1 intervals.
                    if started.elapsed() >= self.cfg.interval {
                        tick.reset();
                    }
                }
            }
        }
    }

    fn on_leadership(&mut self, leader: bool) {
        self.metrics.leader.set(i64::from(leader));
        if leader {
            tracing::info!("elected lag poller");
        } else {
            tracing::info!("no longer the lag poller; removing consumer-group series");
            self.metrics.clear();
            self.shared.send_replace(None);
            let (admin, reader) = (self.admin.take(), self.reader.take());
            // Closing blocks briefly: not on the runtime.
            tokio::task::spawn_blocking(move || drop((admin, reader)));
            self.book = Book::new(self.cfg.window);
            self.topics = TopicWatch::new(self.sink.clone(), self.cfg.discovery_interval);
            let interval_ms =
                i64::try_from(self.cfg.discovery_interval.as_millis()).unwrap_or(i64::MAX);
            self.discovery = Discovery::new(interval_ms);
        }
    }

    async fn poll_and_publish(&mut self) {
        let started = Instant::now();
        if let Some(snap) = self.poll().await {
            tracing::debug!(
                groups = snap.groups.len(),
                group_partitions = snap.group_partitions(),
                seconds = started.elapsed().as_secs_f64(),
                "lag poll done"
            );
            for ((group, (topic, partition)), messages) in &snap.expired {
                // Data loss at the consumer stage: the counter is rendered from the snapshot.
                tracing::error!(
                    group,
                    topic,
                    partition,
                    messages,
                    stage = "consumer",
                    "retention removed messages before the consumer group read them"
                );
            }
            self.metrics.publish(snap);
        }
        self.metrics
            .poll_duration
            .observe(started.elapsed().as_secs_f64());
    }

    /// One poll; `None` when the groups or the topics could not be read at all.
    pub async fn poll(&mut self) -> Option<Snapshot> {
        let timeout = self.cfg.request_timeout;
        let now = now_ms();
        let mut stages = Stages::new();
        let admin = self.admin()?;
        let groups = self.groups(&admin).await?;
        stages.done("list_groups");
        let topics = match kafka::topics(&admin, timeout).await {
            Ok(t) => t,
            Err(error) => {
                self.metrics.error(PollError::Metadata);
                tracing::warn!(%error, "cannot read topic metadata; lag not polled");
                return None;
            }
        };

        stages.done("metadata");
        let committed = self.fetch_committed(&admin, &groups, &topics, now).await;
        stages.done("committed_offsets");
        self.discovery.retain(|g| groups.contains_key(g));

        let wanted: BTreeSet<Tp> = committed
            .values()
            .flatten()
            .flat_map(|c| c.keys().cloned())
            .collect();
        let logs = match kafka::log_offsets(&admin, &wanted, timeout).await {
            Ok(l) => l,
            Err(error) => {
                self.metrics.error(PollError::LogOffsets);
                tracing::warn!(%error, "cannot read log offsets");
                wanted.into_iter().map(|tp| (tp, None)).collect()
            }
        };
        if self.cfg.track_truncation {
            self.topics
                .observe(&admin, &logs, now, timeout, &self.metrics)
                .await;
        }
        let unreadable = logs.values().filter(|l| l.is_none()).count();
        if unreadable > 0 {
            self.metrics.errors(PollError::LogOffsets, unreadable);
        }

        let input = PollInput {
            now_ms: now,
            logs,
            groups: groups
                .into_iter()
                .map(|(g, (members, _))| {
                    let committed = committed.get(&g).cloned().flatten();
                    (g, GroupInput { members, committed })
                })
                .collect(),
        };
        stages.done("log_offsets");
        let mut read = HashMap::new();
        if self.cfg.read_timestamps {
            let wanted = self.book.wanted_timestamps(&input);
            if !wanted.is_empty() {
                if let Some(reader) = self.reader() {
                    if let Some((r, failed)) =
                        blocking(move || records::read(&reader, &wanted, timeout)).await
                    {
                        read = r;
                        if failed > 0 {
                            self.metrics.errors(PollError::Timestamps, failed);
                        }
                    }
                }
            }
        }
        stages.done("timestamps");
        let snap = self.book.apply(input, read);
        stages.done("book");
        tracing::debug!(stages = %stages, "lag poll stages");
        Some(snap)
    }

    /// The groups to poll, with their members; `None` when the cluster's groups are polled
    /// and cannot be listed.
    async fn groups(&mut self, admin: &LagAdmin) -> Option<Groups> {
        let timeout = self.cfg.request_timeout;
        let names: Vec<String> = if self.cfg.groups.is_empty() {
            match kafka::list_group_ids(admin, timeout).await {
                Ok(all) => all.into_iter().filter(|g| self.filter.accepts(g)).collect(),
                Err(error) => {
                    self.metrics.error(PollError::ListGroups);
                    tracing::warn!(%error, "cannot list consumer groups; lag not polled");
                    return None;
                }
            }
        } else {
            self.cfg.groups.clone()
        };
        let (described, failed) = kafka::describe_groups(admin, &names, timeout).await;
        if failed > 0 {
            // Their members are unknown: STALL and STOP cannot be told apart for them.
            self.metrics.error(PollError::ListGroups);
            tracing::debug!(groups = failed, "cannot describe consumer groups");
        }
        Some(
            described
                .into_iter()
                .map(|(g, l)| (g, (l.members, l.assigned)))
                .collect(),
        )
    }

    /// Committed offsets of every group (see [`kafka::committed`]); `None` for a group whose
    /// fetch failed. Teaches discovery what each group has commits on.
    async fn fetch_committed(
        &mut self,
        admin: &LagAdmin,
        groups: &Groups,
        topics: &BTreeMap<String, Vec<i32>>,
        now: i64,
    ) -> BTreeMap<String, Option<BTreeMap<Tp, i64>>> {
        let named = self.cfg.offsets_fetch == OffsetsFetch::Named;
        let plans = groups
            .iter()
            .map(|(g, (_, assigned))| {
                if !named {
                    // Every partition the group committed, in one request.
                    return (g.clone(), Query::All, None);
                }
                let q = self.discovery.plan(g, assigned, now);
                let parts = discovery::partitions(&q, topics);
                (g.clone(), q, Some(parts))
            })
            .collect();
        let fetched =
            kafka::committed(admin, plans, self.cfg.concurrency, self.cfg.request_timeout).await;
        let mut out = BTreeMap::new();
        for (g, q, r) in fetched {
            match r {
                Ok(c) => {
                    if named {
                        let ts: BTreeSet<String> = c.keys().map(|(t, _)| t.clone()).collect();
                        self.discovery.learn(&g, &q, ts, now);
                    }
                    out.insert(g, Some(c));
                }
                Err(error) => {
                    self.metrics.error(PollError::CommittedOffsets);
                    tracing::debug!(group = g, error, "cannot fetch committed offsets");
                    out.insert(g, None);
                }
            }
        }
        out
    }
}

/// Keeps `Poller::run` `Send`, as the runtime requires.
#[allow(dead_code)]
fn assert_send(p: Poller, t: CancellationToken) -> impl Send {
    p.run(None, t)
}
