//! The lag poller against a real broker (Tansu), asserting on the scraped `/metrics`:
//! exact lag from known commits, a deleted group, a consumer that stops or stalls, and
//! retention passing a committed offset (expired unread). Time lag: `tansu_lag_time.rs`.

mod common;
mod lag_tansu;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{commit, eventually, group_status as status, scrape};
use lag_tansu::agent::{gtp, has, Agent};
use lag_tansu::{create_topic, now_ms, produce, Tansu};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_exact_for_known_commits() {
    let t = Tansu::memory();
    let b = t.bootstrap();
    create_topic(&b, "orders", 3, &[]).await;
    let now = now_ms();
    for (p, n) in [(0, 10), (1, 20), (2, 30)] {
        produce(&b, "orders", p, &vec![now; n]);
    }
    commit(
        &b,
        "billing",
        &[("orders", 0, 4), ("orders", 1, 20), ("orders", 2, 0)],
    );
    commit(&b, "audit", &[("orders", 0, 10)]);

    let agent = Agent::start(&t, Duration::from_secs(1), |_| {}).await;
    let addr = agent.addr;
    let s = eventually(WAIT, "lag of billing and audit", || {
        let s = scrape(addr);
        (has(
            &s,
            "losswatch_consumergroup_lag",
            &gtp("billing", "orders", "2"),
        ) && has(
            &s,
            "losswatch_consumergroup_lag",
            &gtp("audit", "orders", "0"),
        ))
        .then_some(s)
    })
    .await;
    let v = |name: &str, f: &[(&str, &str)]| s.sum(name, f);
    for (p, committed, end, lag) in [
        ("0", 4.0, 10.0, 6.0),
        ("1", 20.0, 20.0, 0.0),
        ("2", 0.0, 30.0, 30.0),
    ] {
        let f = gtp("billing", "orders", p);
        assert_eq!(
            v("losswatch_consumergroup_lag", &f),
            lag,
            "billing lag on partition {p}"
        );
        assert_eq!(v("losswatch_consumergroup_committed_offset", &f), committed);
        let tp = [("topic", "orders"), ("partition", p)];
        assert_eq!(v("losswatch_partition_log_end_offset", &tp), end);
        assert_eq!(v("losswatch_partition_log_start_offset", &tp), 0.0);
        assert_eq!(v("losswatch_consumergroup_expired_unread_total", &f), 0.0);
    }
    assert_eq!(
        v("losswatch_consumergroup_lag", &gtp("audit", "orders", "0")),
        0.0
    );
    // audit committed only partition 0: no series for the others.
    assert!(!has(
        &s,
        "losswatch_consumergroup_lag",
        &[("group", "audit"), ("partition", "1")]
    ));
    // The agent's own groups (verifier, poller) are not polled.
    assert_eq!(
        s.label_values("losswatch_consumergroup_status", "group"),
        ["audit", "billing"]
    );
    assert_eq!(
        v("losswatch_consumergroup_members", &[("group", "billing")]),
        0.0
    );
    assert_eq!(status(&s, "billing").as_deref(), Some("OK"));
    assert_eq!(v("losswatch_lag_poller_leader", &[]), 1.0);
    assert_eq!(v("losswatch_lag_negative_total", &[]), 0.0);
    // Time lag: the records at the committed offsets are read.
    assert_eq!(
        v(
            "losswatch_consumergroup_lag_seconds_method",
            &[
                ("group", "billing"),
                ("partition", "2"),
                ("method", "timestamp")
            ]
        ),
        1.0
    );
    assert_eq!(
        v(
            "losswatch_consumergroup_lag_seconds_method",
            &[
                ("group", "billing"),
                ("partition", "1"),
                ("method", "caught_up")
            ]
        ),
        1.0
    );

    // The next commit shows at the next poll.
    commit(&b, "billing", &[("orders", 0, 9)]);
    eventually(WAIT, "billing lag on partition 0 drops to 1", || {
        (scrape(addr).sum(
            "losswatch_consumergroup_lag",
            &gtp("billing", "orders", "0"),
        ) == 1.0)
            .then_some(())
    })
    .await;

    // A deleted group's series disappear.
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new()
            .set("bootstrap.servers", &b)
            .create()
            .unwrap();
    let deleted = admin
        .delete_groups(&["audit"], &rdkafka::admin::AdminOptions::new())
        .await
        .expect("delete_groups");
    assert!(deleted.iter().all(|r| r.is_ok()), "{deleted:?}");
    let s = eventually(WAIT, "audit's series removed", || {
        let s = scrape(addr);
        (!s.0
            .iter()
            .any(|(_, l, _)| l.get("group").map(String::as_str) == Some("audit")))
        .then_some(s)
    })
    .await;
    assert!(has(
        &s,
        "losswatch_consumergroup_lag",
        &gtp("billing", "orders", "0")
    ));
    agent.stop().await;
}

/// A consumer that reads and commits every record of `topic` until `stop` is set; then it
/// either leaves the group (`leave`) or stays a member without reading or committing until
/// `quit` is set.
fn consumer(
    b: &str,
    group: &str,
    topic: &str,
    stop: Arc<AtomicBool>,
    quit: Arc<AtomicBool>,
    leave: bool,
) -> std::thread::JoinHandle<()> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", b)
        .set("group.id", group)
        .set("session.timeout.ms", "6000")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    std::thread::spawn(move || {
        let mut paused = false;
        loop {
            let stopping = stop.load(Ordering::SeqCst);
            if (stopping && leave) || quit.load(Ordering::SeqCst) {
                return; // dropping the consumer leaves the group
            }
            if stopping && !paused {
                let a = c.assignment().unwrap();
                if a.count() > 0 {
                    c.pause(&a).unwrap();
                    paused = true;
                }
            }
            match c.poll(Duration::from_millis(100)) {
                Some(Ok(m)) if !paused => {
                    c.commit_message(&m, CommitMode::Sync).unwrap();
                }
                _ => {}
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_and_stalled_consumers_within_the_window() {
    let t = Tansu::memory();
    let b = t.bootstrap();
    create_topic(&b, "jobs", 1, &[]).await;
    // A steady producer: one record every 100 ms.
    let producing = Arc::new(AtomicBool::new(true));
    let producer = {
        let (b, on) = (b.clone(), producing.clone());
        std::thread::spawn(move || {
            while on.load(Ordering::SeqCst) {
                produce(&b, "jobs", 0, &[now_ms()]);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let stop = Arc::new(AtomicBool::new(false));
    let quit = Arc::new(AtomicBool::new(false));
    let stopper = consumer(&b, "stopper", "jobs", stop.clone(), quit.clone(), true);
    let staller = consumer(&b, "staller", "jobs", stop.clone(), quit.clone(), false);

    let interval = Duration::from_secs(1);
    let agent = Agent::start(&t, interval, |_| {}).await;
    let addr = agent.addr;
    // Both consume: members present, committing, status OK.
    eventually(WAIT, "both groups consuming and OK", || {
        let s = scrape(addr);
        let ok = |g| {
            status(&s, g).as_deref() == Some("OK")
                && s.sum("losswatch_consumergroup_members", &[("group", g)]) == 1.0
                && s.sum("losswatch_consumergroup_committed_offset", &[("group", g)]) > 5.0
        };
        (ok("stopper") && ok("staller")).then_some(())
    })
    .await;

    stop.store(true, Ordering::SeqCst);
    let stopped = Instant::now();
    stopper.join().unwrap();
    let (mut stop_after, mut stall_after) = (None, None);
    eventually(WAIT, "stopper STOP and staller STALL", || {
        let s = scrape(addr);
        if stop_after.is_none() && status(&s, "stopper").as_deref() == Some("STOP") {
            stop_after = Some(stopped.elapsed());
        }
        if stall_after.is_none() && status(&s, "staller").as_deref() == Some("STALL") {
            stall_after = Some(stopped.elapsed());
        }
        (stop_after.is_some() && stall_after.is_some()).then_some(())
    })
    .await;
    // The window is 3 polls of 1 s: the status must change within the window, plus the poll
    // that sees the last commit and the time the stopping consumer takes to leave.
    let (stop_after, stall_after) = (stop_after.unwrap(), stall_after.unwrap());
    eprintln!("STOP after {stop_after:?}, STALL after {stall_after:?}");
    let limit = interval * 3 + interval * 2 + Duration::from_secs(2);
    assert!(stop_after <= limit, "STOP after {stop_after:?} > {limit:?}");
    assert!(
        stall_after <= limit,
        "STALL after {stall_after:?} > {limit:?}"
    );
    let s = scrape(addr);
    assert_eq!(
        s.sum("losswatch_consumergroup_members", &[("group", "stopper")]),
        0.0
    );
    assert_eq!(
        s.sum("losswatch_consumergroup_members", &[("group", "staller")]),
        1.0
    );
    assert!(s.sum("losswatch_consumergroup_lag", &[("group", "staller")]) > 0.0);

    producing.store(false, Ordering::SeqCst);
    producer.join().unwrap();
    quit.store(true, Ordering::SeqCst);
    staller.join().unwrap();
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_past_the_committed_offset_is_expired_unread() {
    let mut t = Tansu::sqlite();
    let b = t.bootstrap();
    create_topic(
        &b,
        "events",
        1,
        &[("cleanup.policy", "delete"), ("retention.ms", "60000")],
    )
    .await;
    // Ten records an hour old (past the 60 s retention), then five fresh ones.
    produce(&b, "events", 0, &[now_ms() - 3_600_000; 10]);
    produce(&b, "events", 0, &[now_ms(); 5]);
    commit(&b, "slow", &[("events", 0, 3)]);
    // Tansu applies retention when it starts (then every 10 minutes).
    t.restart();

    // sqlite:// cannot list groups: name the group.
    let agent = Agent::start(&t, Duration::from_secs(1), |c| {
        c.lag.groups = vec!["slow".into()]
    })
    .await;
    let addr = agent.addr;
    let f = gtp("slow", "events", "0");
    let s = eventually(WAIT, "lag of slow", || {
        let s = scrape(addr);
        has(&s, "losswatch_consumergroup_lag", &f).then_some(s)
    })
    .await;
    let tp = [("topic", "events"), ("partition", "0")];
    assert_eq!(
        s.sum("losswatch_partition_log_start_offset", &tp),
        10.0,
        "retention did not run"
    );
    assert_eq!(s.sum("losswatch_partition_log_end_offset", &tp), 15.0);
    assert_eq!(s.sum("losswatch_consumergroup_committed_offset", &f), 3.0);
    // Offsets 3..10 were removed before the group read them; it can still read 10..15.
    assert_eq!(
        s.sum("losswatch_consumergroup_expired_unread_total", &f),
        7.0
    );
    assert_eq!(s.sum("losswatch_consumergroup_lag", &f), 5.0);
    // The same gap is not counted again at later polls.
    let polls = s.sum("losswatch_lag_poll_duration_seconds_count", &[]);
    let s = eventually(WAIT, "three more polls", || {
        let s = scrape(addr);
        (s.sum("losswatch_lag_poll_duration_seconds_count", &[]) >= polls + 3.0).then_some(s)
    })
    .await;
    assert_eq!(
        s.sum("losswatch_consumergroup_expired_unread_total", &f),
        7.0
    );
    agent.stop().await;
}
