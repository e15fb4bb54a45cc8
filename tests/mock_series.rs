//! The series budget: what one agent exports per canary partition, counted on a real scrape
//! of the whole agent against librdkafka's MockCluster.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{config, eventually, scrape, Mock, Scrape};
use tokio_util::sync::CancellationToken;

const T: &str = "canary";
const PARTITIONS: i32 = 12;
const WAIT: Duration = Duration::from_secs(60);
/// Series that carry a `partition` label, per canary partition, at most.
const BUDGET: usize = 25;

/// Series carrying a `partition` label, by metric name.
fn per_partition(s: &Scrape) -> BTreeMap<String, usize> {
    let mut by_name = BTreeMap::new();
    for (name, labels, _) in &s.0 {
        if labels.contains_key("partition") {
            *by_name.entry(name.clone()).or_insert(0) += 1;
        }
    }
    by_name
}

/// Runs an agent until every partition verified probes, then returns its scrape.
async fn steady_scrape(per_partition_histograms: bool) -> Scrape {
    let mock = Mock::new(T, PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&mock, T, &dir.path().join("s.db"));
    cfg.metrics.per_partition_histograms = per_partition_histograms;
    let stop = CancellationToken::new();
    let running = losswatch::start(cfg.build().unwrap(), stop.clone())
        .await
        .unwrap();
    let addr = running.addr;
    let s = eventually(WAIT, "3 probes verified on every partition", || {
        let s = scrape(addr);
        (0..PARTITIONS)
            .all(|p| {
                s.sum(
                    "losswatch_probes_received_total",
                    &[("partition", &p.to_string())],
                ) >= 3.0
            })
            .then_some(s)
    })
    .await;
    stop.cancel();
    running.wait().await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_series_per_partition_stay_within_budget() {
    let s = steady_scrape(false).await;
    let by_name = per_partition(&s);
    let total: usize = by_name.values().sum();
    eprintln!(
        "{} series, {total} with a partition label at {PARTITIONS} partitions: {by_name:?}",
        s.0.len()
    );
    assert!(
        total <= BUDGET * PARTITIONS as usize,
        "{total} series with a partition label at {PARTITIONS} partitions, more than {BUDGET} each: {by_name:?}"
    );
    // The latency histograms are per leader broker, never per partition.
    for h in [
        "losswatch_e2e_latency_seconds_bucket",
        "losswatch_ack_latency_seconds_bucket",
    ] {
        assert!(!by_name.contains_key(h), "{h} carries a partition label");
        let brokers = s.label_values(h, "broker");
        assert!(
            !brokers.is_empty() && brokers.len() <= 3,
            "{h}: brokers {brokers:?}"
        );
    }
    assert!(s.sum("losswatch_e2e_latency_seconds_count", &[]) >= 3.0 * PARTITIONS as f64);
    // The page stays per partition.
    assert_eq!(
        s.label_values("losswatch_probes_received_total", "partition")
            .len(),
        PARTITIONS as usize
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_partition_histograms_are_opt_in() {
    let s = steady_scrape(true).await;
    for h in [
        "losswatch_e2e_latency_seconds_count",
        "losswatch_ack_latency_seconds_count",
    ] {
        assert_eq!(
            s.label_values(h, "partition").len(),
            PARTITIONS as usize,
            "{h} per partition"
        );
        assert!(!s.label_values(h, "broker").is_empty(), "{h} per broker");
    }
}
