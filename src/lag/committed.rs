//! Fetching the committed offsets of many groups: one client per group (the Kafka client
//! offers committed offsets only to a consumer with that group's id), `lag.concurrency`
//! fetches at a time, each an OffsetFetch to the group's coordinator.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::book::Tp;
use super::discovery::Query;
use super::kafka::GroupClient;

/// Group clients alive per concurrent fetch. A fetch takes about 10 ms and closing the client
/// about 100 ms, so closes run beside the fetches; this bounds the clients (each with its own
/// librdkafka threads and buffers) alive at once to `lag.concurrency` × 4. Measured at 1 000
/// groups: ×4 polls in 4.3-5.0 s at 83 MB peak RSS, ×2 in 7.7 s at 67 MB (BENCHMARKS.md).
const CLIENTS_PER_FETCH: usize = 4;

/// One group's answer: its committed offsets, or why they could not be read.
pub type Fetched = (String, Query, Result<BTreeMap<Tp, i64>, String>);

/// Committed offsets of each group on the partitions planned for it.
pub async fn fetch(
    base: &ClientConfig,
    plans: Vec<(String, Query, Vec<Tp>)>,
    concurrency: usize,
    timeout: Duration,
) -> Vec<Fetched> {
    let mut plans = plans.into_iter();
    let mut set = JoinSet::new();
    let mut out = Vec::new();
    let alive = Arc::new(Semaphore::new(concurrency * CLIENTS_PER_FETCH));
    loop {
        while set.len() < concurrency {
            let Some((g, q, parts)) = plans.next() else {
                break;
            };
            let Ok(permit) = alive.clone().acquire_owned().await else {
                break;
            };
            let base = base.clone();
            set.spawn_blocking(move || {
                let r = GroupClient::new(&base, &g).and_then(|c| {
                    let r = c.committed(&parts, timeout);
                    // Closing blocks for about 100 ms: off the request path.
                    tokio::task::spawn_blocking(move || {
                        drop(c);
                        drop(permit);
                    });
                    r
                });
                (g, q, r.map_err(|e| e.to_string()))
            });
        }
        match set.join_next().await {
            Some(Ok(f)) => out.push(f),
            // A fetch that panicked: its group is missing from the answer and shows ERR.
            Some(Err(error)) => tracing::warn!(%error, "committed offsets fetch failed"),
            None => break,
        }
    }
    out
}
