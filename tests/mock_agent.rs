//! The whole agent against librdkafka's MockCluster, with fault injection, asserting on the
//! scraped `/metrics` the way a user sees them.

mod common;

use std::time::Duration;

use common::{assert_identity, config, eventually, get, produce_raw, scrape, Broker, Mock};
use losswatch::probe::Probe;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tokio_util::sync::CancellationToken;

const T: &str = "canary";
const WAIT: Duration = Duration::from_secs(60);

/// Every partition has at least `n` first arrivals.
fn all_received(s: &common::Scrape, partitions: i32, n: f64) -> bool {
    (0..partitions).all(|p| {
        s.sum(
            "losswatch_probes_received_total",
            &[("partition", &p.to_string())],
        ) >= n
    })
}

fn lost(s: &common::Scrape) -> f64 {
    s.sum("losswatch_probes_lost_total", &[])
}

/// An agent running against `mock`, with its own state file.
struct Agent {
    addr: std::net::SocketAddr,
    stop: CancellationToken,
    running: losswatch::Running,
    _dir: tempfile::TempDir,
}

impl Agent {
    async fn start(mock: &Mock, topic: &str) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let stop = CancellationToken::new();
        let running = losswatch::start(
            config(mock, topic, &dir.path().join("s.db"))
                .build()
                .unwrap(),
            stop.clone(),
        )
        .await
        .unwrap();
        Agent {
            addr: running.addr,
            stop,
            running,
            _dir: dir,
        }
    }

    /// Starts it and waits until every partition has verified a few probes.
    async fn steady(mock: &Mock, partitions: i32) -> Agent {
        let a = Agent::start(mock, T).await;
        let addr = a.addr;
        eventually(WAIT, "steady state", || {
            all_received(&scrape(addr), partitions, 3.0).then_some(())
        })
        .await;
        a
    }

    async fn stop(self) {
        self.stop.cancel();
        self.running.wait().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_verifies_every_partition() {
    let mock = Mock::new(T, 6);
    let agent = Agent::start(&mock, T).await;
    let addr = agent.addr;
    let s = eventually(WAIT, "5 probes verified on each of 6 partitions", || {
        let s = scrape(addr);
        all_received(&s, 6, 5.0).then_some(s)
    })
    .await;
    assert_eq!(lost(&s), 0.0);
    assert_eq!(s.sum("losswatch_probes_duplicated_total", &[]), 0.0);
    assert_eq!(s.sum("losswatch_partition_truncations_total", &[]), 0.0);
    assert_eq!(s.sum("losswatch_probes_send_failed_total", &[]), 0.0);
    assert_eq!(s.sum("losswatch_build_info", &[]), 1.0);
    assert_eq!(
        s.label_values("losswatch_partition_leader", "partition")
            .len(),
        6
    );
    assert!(s.sum("losswatch_e2e_latency_seconds_count", &[]) >= 30.0);
    assert!(s.sum("losswatch_ack_latency_seconds_count", &[]) >= 30.0);
    // Loss series exist at zero for every replica (here every broker) before any loss, so a first loss is visible
    // to increase().
    assert_eq!(
        s.label_values("losswatch_probes_lost_total", "broker"),
        ["1", "2", "3"]
    );
    assert_identity(&s, T, 6);

    assert_eq!(get(addr, "/livez").0, 200);
    assert_eq!(get(addr, "/readyz").0, 200);
    // The status is published once a second.
    let status = eventually(WAIT, "/api/status lists 6 verified partitions", || {
        let (code, body) = get(addr, "/api/status");
        assert_eq!(code, 200);
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        let parts = status["partitions"].as_array()?;
        (parts.len() == 6
            && parts
                .iter()
                .all(|p| p["last_verified"]["seq"].as_u64().is_some()))
        .then_some(status)
    })
    .await;
    assert_eq!(status["ready"], true);
    assert_eq!(status["partitions"][0]["totals"]["lost"], 0);
    let (code, body) = get(addr, "/api/losses?limit=5");
    assert_eq!((code, body.trim()), (200, "[]"));
    assert_eq!(get(addr, "/nope").0, 404);

    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_moves_and_broker_outage_are_failures_not_losses() {
    let mock = Mock::new(T, 6);
    let agent = Agent::steady(&mock, 6).await;
    let addr = agent.addr;

    for p in 0..6 {
        mock.cluster
            .partition_leader(T, p, Some(1 + (p + 1) % 3))
            .unwrap();
    }
    mock.cluster
        .broker_round_trip_time(1, Duration::from_millis(300))
        .unwrap();
    mock.cluster.broker_down(2).unwrap();
    eventually(WAIT, "send failures while broker 2 is down", || {
        (scrape(addr).sum("losswatch_probes_send_failed_total", &[]) > 0.0).then_some(())
    })
    .await;
    mock.cluster.broker_up(2).unwrap();
    mock.cluster
        .broker_round_trip_time(1, Duration::ZERO)
        .unwrap();
    let before = scrape(addr);
    let s = eventually(
        WAIT,
        "every partition verifies new probes after the outage",
        || {
            let s = scrape(addr);
            (0..6)
                .all(|p| {
                    let f = [("partition", p.to_string())];
                    let f = [(f[0].0, f[0].1.as_str())];
                    s.sum("losswatch_probes_received_total", &f)
                        >= before.sum("losswatch_probes_received_total", &f) + 3.0
                })
                .then_some(s)
        },
    )
    .await;
    assert_eq!(lost(&s), 0.0, "an outage is not a loss");
    assert_eq!(s.sum("losswatch_probes_duplicated_total", &[]), 0.0);
    assert_eq!(s.sum("losswatch_partition_truncations_total", &[]), 0.0);
    let failed = s.sum("losswatch_probes_send_failed_total", &[]);
    let by_reason: f64 = ["timeout", "broker_down", "not_enough_replicas", "other"]
        .iter()
        .map(|r| s.sum("losswatch_probes_send_failed_total", &[("reason", r)]))
        .sum();
    assert_eq!(failed, by_reason);
    assert!(failed > 0.0);
    // The latency spike shows in the ack latency histogram.
    assert!(
        s.sum("losswatch_ack_latency_seconds_bucket", &[("le", "0.25")])
            < s.sum("losswatch_ack_latency_seconds_count", &[])
    );
    assert_identity(&s, T, 6);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_error_burst_is_a_producer_stage_failure() {
    let mock = Mock::new(T, 2);
    let agent = Agent::steady(&mock, 2).await;
    let addr = agent.addr;
    mock.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 200],
    );
    eventually(WAIT, "send failures from the error burst", || {
        (scrape(addr).sum("losswatch_probes_send_failed_total", &[]) >= 2.0).then_some(())
    })
    .await;
    mock.cluster.clear_request_errors(RDKafkaApiKey::Produce);
    let acked = scrape(addr).sum("losswatch_probes_acked_total", &[]);
    let s = eventually(WAIT, "probes acked and verified again", || {
        let s = scrape(addr);
        (s.sum("losswatch_probes_acked_total", &[]) >= acked + 6.0
            && s.sum("losswatch_probes_pending", &[]) == 0.0)
            .then_some(s)
    })
    .await;
    assert_eq!(lost(&s), 0.0);
    assert_identity(&s, T, 2);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_same_state_continues_without_false_loss() {
    let mock = Mock::new(T, 3);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.db");
    let cfg = config(&mock, T, &state);

    let stop = CancellationToken::new();
    let first = losswatch::start(cfg.clone().build().unwrap(), stop.clone())
        .await
        .unwrap();
    let addr = first.addr;
    eventually(WAIT, "steady state", || {
        all_received(&scrape(addr), 3, 5.0).then_some(())
    })
    .await;
    // Slow the brokers so that probes are acked but not yet read when the agent stops.
    for b in 1..=3 {
        mock.cluster
            .broker_round_trip_time(b, Duration::from_millis(150))
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let status = first.status.borrow().clone();
    stop.cancel();
    first.wait().await.unwrap();
    let seqs_before: Vec<u64> = status.partitions.iter().map(|p| p.next_seq).collect();

    let stop = CancellationToken::new();
    let second = losswatch::start(cfg.build().unwrap(), stop.clone())
        .await
        .unwrap();
    let addr = second.addr;
    for b in 1..=3 {
        mock.cluster
            .broker_round_trip_time(b, Duration::ZERO)
            .unwrap();
    }
    let s = eventually(WAIT, "probes verified after restart", || {
        let s = scrape(addr);
        (all_received(&s, 3, 5.0) && s.sum("losswatch_probes_pending", &[]) < 3.0).then_some(s)
    })
    .await;
    assert_eq!(
        lost(&s),
        0.0,
        "a restart must not invent a loss: {:?}",
        s.0.iter()
            .filter(|(n, _, v)| n.contains("lost") && *v > 0.0)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        s.sum("losswatch_probes_duplicated_total", &[]),
        0.0,
        "nor a duplicate"
    );
    assert_eq!(s.sum("losswatch_partition_truncations_total", &[]), 0.0);
    assert_identity(&s, T, 3);
    let after = second.status.borrow().clone();
    for (p, before) in after.partitions.iter().zip(&seqs_before) {
        assert!(
            p.next_seq > *before,
            "partition {}: sequences continue ({} > {before})",
            p.partition,
            p.next_seq
        );
        assert_eq!(p.totals.tracked.lost, 0);
        // Lifetime totals carry over the restart.
        assert!(p.totals.tracked.received >= 5);
    }
    stop.cancel();
    second.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_canary_topic_is_counted_as_foreign() {
    let mock = Mock::new(T, 2);
    let agent = Agent::steady(&mock, 2).await;
    let addr = agent.addr;

    let good = Probe {
        instance: uuid::Uuid::from_u128(7),
        partition: 0,
        seq: 1,
        produced_at_us: 0,
    }
    .encode(100);
    let mut unknown_version = good.clone();
    unknown_version[4] = 9;
    let mut wrong_partition = good.clone();
    wrong_partition[26..30].copy_from_slice(&5i32.to_be_bytes());
    let records = vec![
        Some(b"definitely not a probe".to_vec()),
        Some(good[..20].to_vec()),
        Some(good[..99].to_vec()),
        Some(unknown_version),
        Some(wrong_partition),
        Some(Vec::new()),
        None,
        Some(vec![0xab; 1 << 20]),
        Some(good.clone()),
    ];
    produce_raw(&mock.bootstrap(), T, 0, &records);
    let received = scrape(addr).sum("losswatch_probes_received_total", &[]);
    let s = eventually(WAIT, "garbage counted and probing goes on", || {
        let s = scrape(addr);
        (s.sum("losswatch_foreign_records_total", &[]) >= 8.0
            && s.sum("losswatch_probes_received_total", &[]) >= received + 4.0)
            .then_some(s)
    })
    .await;
    for (reason, n) in [
        ("bad_magic", 2.0),
        ("truncated", 1.0),
        ("bad_length", 1.0),
        ("unknown_version", 1.0),
        ("wrong_partition", 1.0),
        ("empty", 2.0),
    ] {
        assert_eq!(
            s.sum("losswatch_foreign_records_total", &[("reason", reason)]),
            n,
            "{reason}"
        );
    }
    // Another instance's probe is a probe, not garbage.
    assert_eq!(s.sum("losswatch_other_instance_probes_total", &[]), 1.0);
    assert_eq!(lost(&s), 0.0);
    assert_identity(&s, T, 2);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_overrun_while_verifier_is_held_back_is_expired_unread_not_lost() {
    let mock = Mock::new(T, 1);
    let agent = Agent::steady(&mock, 1).await;
    let addr = agent.addr;

    // Hold the verifier back: every fetch fails while the producer goes on.
    mock.cluster.request_errors(
        RDKafkaApiKey::Fetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 2000],
    );
    eventually(WAIT, "probes pile up unverified", || {
        (scrape(addr).sum("losswatch_probes_pending", &[]) >= 5.0).then_some(())
    })
    .await;
    // Push the partition past the mock's retention (about 5 MiB) so the log start passes
    // the unverified probes.
    let chunk: Vec<Option<Vec<u8>>> = (0..80).map(|_| Some(vec![0x11u8; 100_000])).collect();
    produce_raw(&mock.bootstrap(), T, 0, &chunk);
    mock.cluster.clear_request_errors(RDKafkaApiKey::Fetch);

    let s = eventually(WAIT, "expired unread counted", || {
        let s = scrape(addr);
        (s.sum("losswatch_probes_expired_unread_total", &[]) > 0.0).then_some(s)
    })
    .await;
    assert_eq!(lost(&s), 0.0, "retention is not broker loss");
    assert_eq!(s.sum("losswatch_partition_truncations_total", &[]), 0.0);
    let received = s.sum("losswatch_probes_received_total", &[]);
    let s = eventually(WAIT, "verifying again after the overrun", || {
        let s = scrape(addr);
        (s.sum("losswatch_probes_received_total", &[]) >= received + 3.0).then_some(s)
    })
    .await;
    assert_eq!(lost(&s), 0.0);
    assert_identity(&s, T, 1);
    // `/api/losses` reads the state file, which the agent writes every flush interval.
    eventually(WAIT, "the expiry in /api/losses", || {
        let (_, body) = get(addr, "/api/losses");
        body.contains("expired_unread").then_some(())
    })
    .await;
    let (_, body) = get(addr, "/api/losses");
    assert!(!body.contains("\"lost\""), "{body}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_topic_is_reported_on_readyz() {
    let mock = Mock::new(T, 1);
    let agent = Agent::start(&mock, "no-such-topic").await;
    let addr = agent.addr;
    let body = eventually(WAIT, "readyz names the missing topic", || {
        let (code, body) = get(addr, "/readyz");
        (code == 503 && body.contains("no-such-topic")).then_some(body)
    })
    .await;
    assert!(body.contains("create_topic"), "{body}");
    assert_eq!(get(addr, "/livez").0, 200);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probing_survives_an_error_that_breaks_the_idempotent_producer() {
    let mock = Mock::new(T, 2);
    let agent = Agent::steady(&mock, 2).await;
    let addr = agent.addr;
    mock.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER; 3],
    );
    let acked = scrape(addr).sum("losswatch_probes_acked_total", &[]);
    let s = eventually(WAIT, "probes acked and verified after the error", || {
        let s = scrape(addr);
        (s.sum("losswatch_probes_acked_total", &[]) >= acked + 10.0
            && s.sum("losswatch_probes_received_total", &[]) >= acked + 8.0)
            .then_some(s)
    })
    .await;
    // librdkafka declares the idempotent producer dead on this error; the agent replaces it.
    assert!(s.sum("losswatch_producer_restarts_total", &[]) >= 1.0);
    assert!(s.sum("losswatch_probes_send_failed_total", &[]) >= 1.0);
    assert_eq!(lost(&s), 0.0);
    assert_identity(&s, T, 2);
    agent.stop().await;
}
