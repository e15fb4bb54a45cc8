//! Truncation of application topics seen by the lag poller, against a real broker (Tansu):
//! a durable restart is not a truncation; a tail really removed under an unchanged topic id
//! is counted once per partition with the exact message count. (A topic coming back with a
//! new id is not tested here: librdkafka 2.12.1 crashed in its metadata cache on it, which is
//! why `lag.track_truncation` is off by default.)

mod common;
mod lag_tansu;

use std::path::Path;
use std::time::Duration;

use common::tansu::Storage;
use common::{commit, eventually, get, scrape, Scrape};
use lag_tansu::agent::Agent;
use lag_tansu::{create_topic, now_ms, produce, Tansu};

const WAIT: Duration = Duration::from_secs(60);

fn polls(s: &Scrape) -> f64 {
    s.sum("losswatch_lag_poll_duration_seconds_count", &[])
}

fn tp<'a>(t: &'a str, p: &'a str) -> [(&'a str, &'a str); 2] {
    [("topic", t), ("partition", p)]
}

fn truncations(s: &Scrape, t: &str, p: &str) -> f64 {
    s.sum("losswatch_partition_log_truncations_total", &tp(t, p))
}

fn removed(s: &Scrape, t: &str, p: &str) -> f64 {
    s.sum("losswatch_partition_truncated_messages_total", &tp(t, p))
}

/// Loss events of `kind` on `/api/losses`.
fn events(addr: std::net::SocketAddr, kind: &str) -> Vec<serde_json::Value> {
    let (code, body) = get(addr, "/api/losses");
    assert_eq!(code, 200, "{body}");
    let all: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    all.into_iter().filter(|e| e["kind"] == kind).collect()
}

/// Waits until the agent has polled `n` more times.
async fn more_polls(addr: std::net::SocketAddr, n: f64) -> Scrape {
    let from = polls(&scrape(addr));
    eventually(WAIT, "more lag polls", || {
        let s = scrape(addr);
        (polls(&s) >= from + n).then_some(s)
    })
    .await
}

/// Removes the records from offset `keep` on of a partition in a stopped broker's SQLite
/// store, and lowers its high watermark to match: the tail is gone, the topic (and its id)
/// stays. The way a leader that lost its page cache comes back.
fn remove_tail_in_store(db: &Path, topic: &str, partition: i32, keep: i64) {
    let c = rusqlite::Connection::open(db).expect("open the broker's store");
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    let tp: i64 = c
        .query_row(
            "select tp.id from topition tp join topic t on tp.topic = t.id \
             where t.name = ?1 and tp.partition = ?2",
            rusqlite::params![topic, partition],
            |r| r.get(0),
        )
        .expect("topition row");
    let n = c
        .execute(
            "delete from record where topition = ?1 and offset_id >= ?2",
            rusqlite::params![tp, keep],
        )
        .unwrap();
    assert!(n > 0, "no record removed from {topic}/{partition}");
    c.execute(
        "update watermark set high = ?1 where topition = ?2",
        rusqlite::params![keep, tp],
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_restart_is_not_a_truncation_and_a_removed_tail_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tansu.db");
    let mut t = Tansu::start(Storage::Sqlite(store.clone()), dir.path());
    let b = t.bootstrap();
    create_topic(&b, "orders", 2, &[]).await;
    let now = now_ms();
    produce(&b, "orders", 0, &[now; 10]);
    produce(&b, "orders", 1, &[now; 6]);
    commit(&b, "app", &[("orders", 0, 2), ("orders", 1, 1)]);

    let agent = Agent::start(&t, Duration::from_secs(1), |c| {
        c.lag.track_truncation = true
    })
    .await;
    let addr = agent.addr;
    eventually(WAIT, "log ends of orders read", || {
        let s = scrape(addr);
        (s.sum("losswatch_partition_log_end_offset", &tp("orders", "0")) == 10.0
            && s.sum("losswatch_partition_log_end_offset", &tp("orders", "1")) == 6.0)
            .then_some(())
    })
    .await;

    // A durable restart: same records, same ids. Nothing counted.
    t.restart();
    let s = more_polls(addr, 4.0).await;
    for p in ["0", "1"] {
        assert!(
            s.0.iter()
                .any(|(n, l, _)| n == "losswatch_partition_log_truncations_total"
                    && l.get("partition").map(String::as_str) == Some(p)),
            "truncation series of orders/{p} exist at 0 before any truncation"
        );
        assert_eq!(truncations(&s, "orders", p), 0.0);
        assert_eq!(removed(&s, "orders", p), 0.0);
    }
    assert!(events(addr, "topic_truncation").is_empty());

    // The tails really removed, the topic kept: 3 messages of partition 0, 4 of partition 1.
    t.kill9();
    remove_tail_in_store(&store, "orders", 0, 7);
    remove_tail_in_store(&store, "orders", 1, 2);
    t.restart();
    eventually(WAIT, "both truncations counted", || {
        let s = scrape(addr);
        (truncations(&s, "orders", "0") >= 1.0 && truncations(&s, "orders", "1") >= 1.0)
            .then_some(())
    })
    .await;
    // Counted once, however many polls follow.
    let s = more_polls(addr, 3.0).await;
    assert_eq!(truncations(&s, "orders", "0"), 1.0);
    assert_eq!(truncations(&s, "orders", "1"), 1.0);
    assert_eq!(removed(&s, "orders", "0"), 3.0);
    assert_eq!(removed(&s, "orders", "1"), 4.0);
    let ev = events(addr, "topic_truncation");
    assert_eq!(ev.len(), 2, "{ev:?}");
    for (p, old, new) in [(0, 10, 7), (1, 6, 2)] {
        let e = ev
            .iter()
            .find(|e| e["partition"] == p)
            .unwrap_or_else(|| panic!("no event for partition {p}: {ev:?}"));
        assert_eq!(e["topic"], "orders");
        assert_eq!(e["offset"], new);
        let detail = e["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!("log end went from {old} to {new}")),
            "{detail}"
        );
    }
    assert!(events(addr, "topic_recreated").is_empty());
    agent.stop().await;
}
