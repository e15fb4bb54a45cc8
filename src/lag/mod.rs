//! Consumer-group lag: how far every consumer group is behind, in messages and in time, its
//! Burrow-style status, and messages retention removed before the group read them (loss at
//! the consumer stage). One agent of a DaemonSet polls, elected through a Kafka group.
//!
//! | module | concern |
//! |---|---|
//! | [`poller`] | the task: each interval, list → fetch → [`book`] → [`metrics`] |
//! | [`kafka`] | the poller's one admin client and its requests (groups and members, metadata, committed offsets with a bounded number in flight, batched log offsets, topic ids) |
//! | [`records`] | timestamps of the first unconsumed records |
//! | [`discovery`] | which partitions to ask each group for (sans-IO) |
//! | [`book`] | lag, expired unread, series lifecycle across polls (sans-IO) |
//! | [`status`] | the status evaluator: OK, WARN, STALL, STOP, REWIND, ERR (sans-IO) |
//! | [`timelag`] | time lag from timestamps or interpolated log-end history (sans-IO) |
//! | [`topic_loss`] | topic ids for the tracker, the truncation counters and `topic_truncation` / `topic_recreated` loss events |
//! | [`truncation`] | log ends going backwards on application topics: truncation or recreation (sans-IO) |
//! | [`election`] | one poller per DaemonSet through group membership |
//! | [`once`] | `losswatch lag`: one poll, printed |
//! | [`metrics`] | the `losswatch_consumergroup_*` and `losswatch_lag_*` series |
//! | [`simulate`] | the demo's application consumer group that falls behind and recovers |

pub mod book;
pub mod discovery;
pub mod election;
pub mod kafka;
pub mod metrics;
pub mod once;
pub mod poller;
pub mod records;
pub mod simulate;
mod stages;
pub mod status;
pub mod timelag;
pub mod topic_loss;
pub mod truncation;

/// The `[lag]` section, owned by [`crate::config`].
pub use crate::config::lag as config;
pub use crate::config::{LagConfig, LagMode};
pub use metrics::LagMetrics;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::kafka::Clients;

/// Starts the lag poller task (it returns at once when `lag.mode = "off"`). A client the
/// Kafka library refuses is logged and counted at each poll; the canary runs on. Also
/// returns the poller's admin client as it comes and goes, for the audit to share.
pub fn spawn(
    cfg: &Config,
    clients: Clients,
    metrics: LagMetrics,
    election: Option<tokio::sync::watch::Receiver<bool>>,
    shutdown: CancellationToken,
) -> (JoinHandle<()>, Option<SharedAdmin>) {
    let lag = cfg.lag.clone();
    let sink = topic_loss::EventSink {
        path: cfg.state.path.clone(),
        max_events: cfg.state.max_events,
    };
    if lag.mode == LagMode::Off {
        metrics.leader.set(0);
        return (tokio::spawn(async {}), None);
    }
    let filter = match lag.filter() {
        Ok(f) => f,
        Err(error) => {
            tracing::error!(%error, "lag poller not started");
            return (tokio::spawn(async {}), None);
        }
    };
    let poller = poller::Poller::new(lag, clients, filter, metrics, Some(sink));
    let shared = poller.shared_admin();
    (tokio::spawn(poller.run(election, shutdown)), Some(shared))
}

/// The elected poller's admin client while it polls, for the audit to borrow.
pub type SharedAdmin = tokio::sync::watch::Receiver<Option<std::sync::Arc<kafka::LagAdmin>>>;
