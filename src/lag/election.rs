//! One lag poller per DaemonSet, elected through Kafka group membership: every agent joins
//! the election group, subscribed to the election topic, and the member assigned partition 0
//! polls. No Kubernetes API, no RBAC. The group coordinator removes a member that stops
//! heartbeating after `lag.session_timeout`, rebalances, and partition 0 goes to another
//! agent; an agent that shuts down leaves the group at once.
//!
//! The eager `range` assignor revokes every partition before assigning again, so two agents
//! never both hold partition 0 as the group sees it. The poller also commits a heartbeat that
//! the others watch, to recover from a coordinator that leaves partition 0 unassigned
//! (`Watchdog`). An agent cut off from the coordinator
//! keeps its assignment until librdkafka notices the lost session, so for up to one session
//! timeout two agents may poll; both then report the same values.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::config::LagConfig;
use crate::kafka::{Clients, Context, Hooks};

/// The election consumer's rebalance hook: flips the elected flag.
struct Rebalances {
    topic: String,
    leader: watch::Sender<bool>,
}

type ElectionContext = Context<Rebalances>;

impl Hooks for Rebalances {
    // Runs on the polling thread; only flips the flag.
    fn post_rebalance(&self, rebalance: &Rebalance<'_>) {
        let leader = match rebalance {
            Rebalance::Assign(tpl) => tpl.find_partition(&self.topic, 0).is_some(),
            Rebalance::Revoke(_) | Rebalance::Error(_) => false,
        };
        tracing::debug!(leader, "lag election rebalance");
        self.leader
            .send_if_modified(|l| std::mem::replace(l, leader) != leader);
    }
}

/// Creates the one-partition election topic unless it exists. Failing is not fatal: brokers
/// that create topics on subscription make one, and any partition count elects one agent.
/// Both clients have the agent's context, so that their errors are counted and scrubbed.
async fn ensure_topic(clients: &Clients, topic: &str, timeout: Duration) {
    let probe = clients.clone();
    let t = topic.to_owned();
    let brokers = tokio::task::spawn_blocking(move || {
        let c: BaseConsumer<Context> = probe
            .config()
            .create_with_context(probe.context("lag-election"))?;
        let md = c.fetch_metadata(Some(&t), timeout)?;
        let exists = md
            .topics()
            .iter()
            .any(|x| x.name() == t && x.error().is_none() && !x.partitions().is_empty());
        Ok::<_, KafkaError>((exists, md.brokers().len()))
    })
    .await;
    let brokers = match brokers {
        Ok(Ok((true, _))) => return,
        Ok(Ok((false, n))) => n,
        Ok(Err(error)) => {
            let error = clients.scrub(&error.to_string());
            tracing::warn!(%error, topic, "cannot read the election topic's metadata");
            return;
        }
        Err(_) => return,
    };
    let admin = match clients.admin("lag-election") {
        Ok(a) => a,
        Err(error) => {
            let error = clients.scrub(&error.to_string());
            tracing::warn!(%error, "cannot create an admin client for the election topic");
            return;
        }
    };
    let replication = i32::try_from(brokers.clamp(1, 3)).unwrap_or(1);
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(replication));
    let opts = AdminOptions::new().operation_timeout(Some(timeout));
    match admin.client().create_topics([&new], &opts).await {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(_) => tracing::info!(topic, "created the lag election topic"),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((_, code)) => {
                        tracing::warn!(topic, error = %code, "cannot create the lag election topic")
                    }
                }
            }
        }
        Err(error) => {
            let error = clients.scrub(&error.to_string());
            tracing::warn!(topic, %error, "cannot create the lag election topic")
        }
    }
}

/// This agent's membership of the election group: a thread polls the group's consumer.
pub struct Election {
    pub leader: watch::Receiver<bool>,
    thread: std::thread::JoinHandle<()>,
}

impl Election {
    /// Waits (up to `grace`) for the thread to leave the group after `shutdown` fired, so
    /// that another agent takes over at once rather than after a session timeout. Returns
    /// whether it left in time.
    pub async fn leave(self, grace: Duration) -> bool {
        let thread = self.thread;
        let joined = tokio::task::spawn_blocking(move || thread.join());
        matches!(tokio::time::timeout(grace, joined).await, Ok(Ok(Ok(()))))
    }
}

/// Waits until this agent's elected flag changes and returns it; without an election it
/// never returns. When the election ends (the agent shuts down) `election` becomes `None`
/// and the answer is "not elected". The lag poller and the audit both follow it this way.
pub async fn next_change(election: &mut Option<watch::Receiver<bool>>) -> bool {
    let Some(rx) = election.as_mut() else {
        return std::future::pending().await;
    };
    match rx.changed().await {
        Ok(()) => *rx.borrow_and_update(),
        Err(_) => {
            *election = None;
            false
        }
    }
}

/// Joins the election in the background and returns at once: the receiver is false until
/// this agent is elected, true while it is. The lag poller and the durability audit both
/// follow it. Failing to join is not fatal for the canary: the error is logged and counted,
/// and this agent never does the cluster-wide work (the sender is dropped, so receivers see
/// the election end). On shutdown the task leaves the group, waiting up to `grace`, so that
/// another agent takes over at once; the returned handle ends when it has.
pub fn spawn_role(
    clients: Clients,
    cfg: LagConfig,
    grace: Duration,
    metrics: super::LagMetrics,
    shutdown: CancellationToken,
) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let joined = tokio::select! {
            // Creating the election topic can wait for a request timeout.
            _ = shutdown.cancelled() => return,
            j = join(&clients, &cfg, shutdown.clone()) => j,
        };
        let election = match joined {
            Ok(e) => e,
            Err(error) => {
                tracing::error!(%error, "cannot join the lag poller election; this agent does not poll lag or audit");
                metrics.error(super::metrics::PollError::Client);
                return;
            }
        };
        let mut inner = election.leader.clone();
        loop {
            let now = *inner.borrow_and_update();
            tx.send_if_modified(|v| std::mem::replace(v, now) != now);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = inner.changed() => if r.is_err() { break },
            }
        }
        if !election.leave(grace).await {
            tracing::warn!("the lag election did not leave its group within the shutdown grace");
        }
    });
    (rx, task)
}

/// Joins the election; [`Election::leader`] is true while this agent is elected. The group
/// is left when `shutdown` fires ([`Election::leave`] waits for it).
pub async fn join(
    clients: &Clients,
    cfg: &LagConfig,
    shutdown: CancellationToken,
) -> Result<Election, KafkaError> {
    let base = clients.config();
    ensure_topic(clients, &cfg.election_topic, cfg.request_timeout).await;
    let (tx, rx) = watch::channel(false);
    let session_ms = cfg.session_timeout.as_millis();
    let mut c = base.clone();
    c.set("group.id", &cfg.election_group)
        .set("session.timeout.ms", session_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            (session_ms / 5).max(100).to_string(),
        )
        .set("partition.assignment.strategy", "range")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .set("allow.auto.create.topics", "true");
    let consumer: BaseConsumer<ElectionContext> = c.create_with_context(clients.context_with(
        "lag-election",
        Rebalances {
            topic: cfg.election_topic.clone(),
            leader: tx,
        },
    ))?;
    consumer.subscribe(&[&cfg.election_topic])?;
    let mut watch = Watchdog {
        topic: cfg.election_topic.clone(),
        every: cfg.session_timeout / 3,
        stale_after: cfg.session_timeout * 2,
        timeout: cfg.request_timeout,
        seen: None,
        changed: Instant::now(),
    };
    // A thread of its own: polling drives the rebalance callbacks and proves liveness to
    // the coordinator (max.poll.interval.ms).
    let thread = std::thread::Builder::new()
        .name("lag-election".into())
        .spawn(move || {
            let mut next = Instant::now();
            let mut was_leader = false;
            while !shutdown.is_cancelled() {
                if let Some(Err(error)) = consumer.poll(Duration::from_millis(200)) {
                    tracing::debug!(%error, topic = watch.topic, "lag election consumer");
                }
                let leader = *consumer.context().hooks().leader.borrow();
                // A new poller beats at once, so that the others see it quickly.
                if Instant::now() >= next || leader != was_leader {
                    was_leader = leader;
                    next = Instant::now() + watch.every;
                    watch.check(&consumer);
                }
            }
            // Dropping closes the consumer: it leaves the group, so another agent is
            // elected without waiting for the session timeout.
            drop(consumer);
        })
        .map_err(|e| KafkaError::Subscription(format!("cannot start the election thread: {e}")))?;
    Ok(Election { leader: rx, thread })
}

/// The poller's heartbeat, and a guard against a coordinator that completes a rebalance
/// with nobody holding partition 0. Seen with Tansu 0.6.0: when the member that computed the
/// assignment dies, the group keeps it as its leader, so every survivor is assigned nothing
/// and no agent polls.
///
/// The poller commits a new offset (the time) on partition 0 every third of a session
/// timeout. Every other member reads that commit; when it has not changed for two session
/// timeouts (a healthy group hands partition 0 over within one, and the new poller commits
/// at once), nobody polls: the member leaves and joins again, which makes the group choose a
/// new leader.
struct Watchdog {
    topic: String,
    every: Duration,
    stale_after: Duration,
    timeout: Duration,
    seen: Option<i64>,
    changed: Instant,
}

impl Watchdog {
    fn partition_zero(&self, at: Offset) -> Result<TopicPartitionList, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, 0, at)?;
        Ok(tpl)
    }

    fn check(&mut self, consumer: &BaseConsumer<ElectionContext>) {
        if *consumer.context().hooks().leader.borrow() {
            let beat = self
                .partition_zero(Offset::Offset(chrono::Utc::now().timestamp_millis()))
                .and_then(|tpl| consumer.commit(&tpl, CommitMode::Async));
            if let Err(error) = beat {
                tracing::debug!(%error, "lag poller heartbeat not committed");
            }
            self.changed = Instant::now();
            return;
        }
        let committed = self
            .partition_zero(Offset::Invalid)
            .and_then(|tpl| consumer.committed_offsets(tpl, self.timeout));
        let value = match committed {
            Ok(tpl) => tpl.elements().first().and_then(|e| e.offset().to_raw()),
            Err(error) => {
                tracing::debug!(%error, "cannot read the lag poller heartbeat");
                return;
            }
        };
        if value != self.seen {
            self.seen = value;
            self.changed = Instant::now();
            return;
        }
        if self.changed.elapsed() > self.stale_after {
            tracing::warn!(
                topic = self.topic,
                "no lag poller heartbeat for two session timeouts; rejoining the election group"
            );
            self.changed = Instant::now();
            consumer.unsubscribe();
            if let Err(error) = consumer.subscribe(&[&self.topic]) {
                tracing::warn!(%error, "cannot rejoin the lag election group");
            }
        }
    }
}
