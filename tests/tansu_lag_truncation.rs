//! Truncation of application topics seen by the lag poller, against a real broker (Tansu):
//! a durable restart is not a truncation; a tail really removed under an unchanged topic id
//! is counted once per partition with the exact message count; a topic that comes back with
//! a new id (`memory://` power loss, or deleted and created again) is `topic_recreated` and
//! never a truncation; a topic no group reads is tracked through `lag.truncation_topics`.
//! Fixtures use single-record batches (exact log ends on `memory://`).
//!
//! Both recreations run on a plain broker. The poller's record reader, which reads the
//! recreated topic, is replaced when the id changes (see `lag::poller`). The `memory://`
//! power loss also recreates the agent's canary and election topics under their live
//! consumers, which fetch by the forgotten topic id; that crashed librdkafka 2.12.1 on Tansu
//! before the patch in `crates/rdkafka-sys` (TRUTH.md).

mod common;
mod lag_tansu;

use std::path::Path;
use std::time::Duration;

use common::tansu::Storage;
use common::{commit, eventually, get, scrape, Scrape};
use lag_tansu::agent::has;
use lag_tansu::agent::Agent;
use lag_tansu::{create_topic, now_ms, produce, Tansu};

const WAIT: Duration = Duration::from_secs(60);

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

fn last_poll(s: &Scrape) -> f64 {
    s.sum("losswatch_lag_last_poll_timestamp_seconds", &[])
}

/// Waits until `n` more polls have succeeded. A failed poll publishes nothing (it still
/// counts in `losswatch_lag_poll_duration_seconds`), so each success is a new
/// `losswatch_lag_last_poll_timestamp_seconds`.
async fn more_polls(addr: std::net::SocketAddr, n: usize) -> Scrape {
    let mut at = last_poll(&scrape(addr));
    let mut done = 0;
    eventually(WAIT, "more successful lag polls", || {
        let s = scrape(addr);
        if last_poll(&s) > at {
            at = last_poll(&s);
            done += 1;
        }
        (done >= n).then_some(s)
    })
    .await
}

/// The agent of these tests: polls every second, tracks truncation of the topics the groups
/// read and of `events`, which no group reads (`lag.truncation_topics`).
///
/// Tansu 0.6.0 on `sqlite://` cannot read back the group it stored for a commit (`invalid
/// type: string ..., expected struct GroupDetail` in its log): a DescribeConsumerGroups of
/// that group ends the connection, at every poll. librdkafka doubles its reconnect backoff at
/// each reconnect less than `reconnect.backoff.max.ms` (10 s) after the previous one, so with
/// one poll a second the backoff reaches 10 s and the next requests of every poll wait for
/// the connection past their 5 s timeout (the poller "never recovered" after a restart,
/// which adds refused connects). A cap below the poll interval keeps each poll's requests
/// on a live connection; at the default `lag.interval` (30 s) the backoff resets between
/// polls by itself.
async fn agent(t: &Tansu) -> Agent {
    Agent::start(t, Duration::from_secs(1), |c| {
        c.lag.track_truncation = true;
        c.lag.truncation_topics = vec!["^events$".into()];
        c.kafka.properties.insert(
            "reconnect.backoff.max.ms".into(),
            losswatch::config::Sensitive("500".into()),
        );
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
    // Read by no group: tracked through lag.truncation_topics only.
    create_topic(&b, "events", 1, &[]).await;
    produce(&b, "events", 0, &[now; 5]);

    let agent = agent(&t).await;
    let addr = agent.addr;
    eventually(WAIT, "log ends of orders read, events tracked", || {
        let s = scrape(addr);
        (s.sum("losswatch_partition_log_end_offset", &tp("orders", "0")) == 10.0
            && s.sum("losswatch_partition_log_end_offset", &tp("orders", "1")) == 6.0
            && has(
                &s,
                "losswatch_partition_log_truncations_total",
                &tp("events", "0"),
            ))
        .then_some(())
    })
    .await;
    let s = scrape(addr);
    assert!(
        !has(&s, "losswatch_partition_log_end_offset", &tp("events", "0"))
            && !has(&s, "losswatch_consumergroup_lag", &[("topic", "events")]),
        "events is tracked for truncation, not polled for lag"
    );

    // A durable restart: same records, same ids. Nothing counted. A record appended after
    // it, read as the new log end, shows that the poller reads the log ends again.
    t.restart();
    produce(&b, "orders", 0, &[now_ms()]);
    eventually(
        WAIT,
        "the log end of orders/0 after the restart read",
        || {
            let s = scrape(addr);
            (s.sum("losswatch_partition_log_end_offset", &tp("orders", "0")) == 11.0).then_some(())
        },
    )
    .await;
    let s = more_polls(addr, 4).await;
    assert_eq!(truncations(&s, "events", "0"), 0.0);
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

    // The tails really removed, the topics kept: 4 messages of orders/0, 4 of orders/1, 3 of
    // events/0.
    t.kill9();
    remove_tail_in_store(&store, "orders", 0, 7);
    remove_tail_in_store(&store, "orders", 1, 2);
    remove_tail_in_store(&store, "events", 0, 2);
    t.restart();
    eventually(WAIT, "the three truncations counted", || {
        let s = scrape(addr);
        (truncations(&s, "orders", "0") >= 1.0
            && truncations(&s, "orders", "1") >= 1.0
            && truncations(&s, "events", "0") >= 1.0)
            .then_some(())
    })
    .await;
    // Counted once, however many polls follow.
    let s = more_polls(addr, 3).await;
    assert_eq!(truncations(&s, "orders", "0"), 1.0);
    assert_eq!(truncations(&s, "orders", "1"), 1.0);
    assert_eq!(removed(&s, "orders", "0"), 4.0);
    assert_eq!(removed(&s, "orders", "1"), 4.0);
    assert_eq!(truncations(&s, "events", "0"), 1.0);
    assert_eq!(removed(&s, "events", "0"), 3.0);
    let ev = events(addr, "topic_truncation");
    assert_eq!(ev.len(), 3, "{ev:?}");
    for (topic, p, old, new) in [
        ("orders", 0, 11, 7),
        ("orders", 1, 6, 2),
        ("events", 0, 5, 2),
    ] {
        let e = ev
            .iter()
            .find(|e| e["topic"] == topic && e["partition"] == p)
            .unwrap_or_else(|| panic!("no event for {topic}/{p}: {ev:?}"));
        assert_eq!(e["offset"], new);
        let detail = e["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!("log end went from {old} to {new}")),
            "{detail}"
        );
        // One broker: the same leader before and after.
        let leader = e["broker"]
            .as_i64()
            .expect("the leader after, as the event's broker");
        assert!(
            detail.contains(&format!("leader {leader} before, {leader} after")),
            "{detail}"
        );
    }
    assert!(events(addr, "topic_recreated").is_empty());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_on_memory_storage_is_a_recreation_not_a_truncation() {
    let mut t = Tansu::memory();
    let b = t.bootstrap();
    create_topic(&b, "orders", 1, &[]).await;
    produce(&b, "orders", 0, &[now_ms(); 8]);
    commit(&b, "app", &[("orders", 0, 3)]);
    let agent = agent(&t).await;
    let addr = agent.addr;
    eventually(WAIT, "log end of orders read", || {
        let s = scrape(addr);
        (s.sum("losswatch_partition_log_end_offset", &tp("orders", "0")) == 8.0).then_some(())
    })
    .await;
    more_polls(addr, 2).await;

    // kill -9 of a memory:// broker: everything gone. The topic comes back (a new id) with
    // fewer messages, and the group commits on it again.
    t.restart();
    create_topic(&b, "orders", 1, &[]).await;
    produce(&b, "orders", 0, &[now_ms(); 2]);
    commit(&b, "app", &[("orders", 0, 1)]);
    let ev = eventually(WAIT, "topic_recreated event", || {
        let ev = events(addr, "topic_recreated");
        (!ev.is_empty()).then_some(ev)
    })
    .await;
    let s = more_polls(addr, 3).await;
    assert_eq!(
        s.sum("losswatch_partition_log_end_offset", &tp("orders", "0")),
        2.0
    );
    assert_eq!(truncations(&s, "orders", "0"), 0.0);
    assert_eq!(removed(&s, "orders", "0"), 0.0);
    assert!(events(addr, "topic_truncation").is_empty());
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["topic"], "orders");
    let detail = ev[0]["detail"].as_str().unwrap();
    assert!(detail.contains("held 8 messages"), "{detail}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_deleted_and_created_again_is_a_recreation_not_a_truncation() {
    let t = Tansu::memory();
    let b = t.bootstrap();
    create_topic(&b, "orders", 2, &[]).await;
    produce(&b, "orders", 0, &[now_ms(); 5]);
    produce(&b, "orders", 1, &[now_ms(); 4]);
    commit(&b, "app", &[("orders", 0, 5), ("orders", 1, 0)]);
    let agent = agent(&t).await;
    let addr = agent.addr;
    eventually(WAIT, "log ends of orders read", || {
        let s = scrape(addr);
        (s.sum("losswatch_partition_log_end_offset", &tp("orders", "0")) == 5.0).then_some(())
    })
    .await;
    more_polls(addr, 2).await;

    common::tansu::delete_topic(&b, "orders").await;
    create_topic(&b, "orders", 2, &[]).await;
    produce(&b, "orders", 0, &[now_ms(); 1]);
    commit(&b, "app", &[("orders", 0, 0), ("orders", 1, 0)]);
    let ev = eventually(WAIT, "topic_recreated event", || {
        let ev = events(addr, "topic_recreated");
        (!ev.is_empty()).then_some(ev)
    })
    .await;
    let s = more_polls(addr, 3).await;
    for p in ["0", "1"] {
        assert_eq!(truncations(&s, "orders", p), 0.0);
    }
    assert!(events(addr, "topic_truncation").is_empty());
    assert_eq!(ev.len(), 1, "{ev:?}");
    let detail = ev[0]["detail"].as_str().unwrap();
    assert!(detail.contains("held 9 messages"), "{detail}");
    agent.stop().await;
}
