//! The lag poller against librdkafka's MockCluster: exact lag for a named group, a broker
//! outage shown as ERR and counted (never a crash), and the demo's application group going
//! through WARN, STOP and back to OK, asserted on the scraped `/metrics`.

mod common;

use std::time::Duration;

use common::{
    commit, config, eventually, get, group_status as status, produce_raw, scrape, Broker, Mock,
    Scrape,
};
use losswatch::lag::LagMode;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_is_err_and_counted_not_a_crash() {
    let mock = Mock::new("canary", 2);
    mock.cluster.create_topic("orders", 2, 3).unwrap();
    let b = mock.bootstrap();
    produce_raw(&b, "orders", 0, &vec![Some(b"x".to_vec()); 10]);
    produce_raw(&b, "orders", 1, &vec![Some(b"y".to_vec()); 4]);
    commit(&b, "app", &[("orders", 0, 3), ("orders", 1, 4)]);

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&mock, "canary", &dir.path().join("s.db"));
    cfg.lag.mode = LagMode::Always;
    // The mock cannot list groups: name it.
    cfg.lag.groups = vec!["app".into()];
    // The mock cluster answers an all-partitions offset fetch with nothing.
    cfg.lag.offsets_fetch = losswatch::config::lag::OffsetsFetch::Named;
    cfg.lag.interval = Duration::from_millis(500);
    cfg.lag.window = 3;
    cfg.lag.request_timeout = Duration::from_secs(1);
    let stop = CancellationToken::new();
    let running = losswatch::start(cfg.build().unwrap(), stop.clone())
        .await
        .unwrap();
    let addr = running.addr;

    let lag = |s: &Scrape, p: &str| {
        s.sum(
            "losswatch_consumergroup_lag",
            &[("group", "app"), ("topic", "orders"), ("partition", p)],
        )
    };
    let s = eventually(WAIT, "app polled and OK", || {
        let s = scrape(addr);
        (status(&s, "app").as_deref() == Some("OK")).then_some(s)
    })
    .await;
    assert_eq!((lag(&s, "0"), lag(&s, "1")), (7.0, 0.0));
    assert_eq!(
        s.sum("losswatch_partition_log_end_offset", &[("topic", "orders")]),
        14.0
    );
    // Members cannot be listed on the mock: no members series, and the failure is counted.
    assert!(s
        .label_values("losswatch_consumergroup_members", "group")
        .is_empty());
    assert!(
        s.sum(
            "losswatch_lag_poll_errors_total",
            &[("reason", "list_groups")]
        ) >= 1.0
    );

    // Every partition of the topic led by broker 2, then broker 2 down.
    for p in 0..2 {
        mock.cluster.partition_leader("orders", p, Some(2)).unwrap();
    }
    mock.cluster.broker_down(2).unwrap();
    let s = eventually(WAIT, "app ERR while its partitions' leader is down", || {
        let s = scrape(addr);
        (status(&s, "app").as_deref() == Some("ERR")).then_some(s)
    })
    .await;
    let errors = s.sum(
        "losswatch_lag_poll_errors_total",
        &[("reason", "log_offsets")],
    ) + s.sum(
        "losswatch_lag_poll_errors_total",
        &[("reason", "committed_offsets")],
    );
    assert!(errors >= 1.0, "outage not counted");
    // The last values stay while the partitions cannot be read.
    assert_eq!(lag(&s, "0"), 7.0);
    assert_eq!(get(addr, "/livez").0, 200);

    mock.cluster.broker_up(2).unwrap();
    eventually(WAIT, "app OK again after the broker is back", || {
        (status(&scrape(addr), "app").as_deref() == Some("OK")).then_some(())
    })
    .await;
    stop.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_group_falls_behind_stops_and_catches_up() {
    common::init_log();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let opts = losswatch::demo::DemoOptions {
        duration: Some(Duration::from_secs(90)),
        listen,
        state: Some(dir.path().join("demo.db")),
        summary_every: Duration::from_secs(30),
        probe_interval: Duration::from_millis(500),
        chaos: false,
        ..losswatch::demo::DemoOptions::default()
    };
    let stop = CancellationToken::new();
    // The demo owns the mock cluster, which is not Send: it runs here, and the watcher, which
    // scrapes with blocking reads, on a thread of its own (never on a runtime worker).
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(85);
            let mut seen: Vec<String> = Vec::new();
            loop {
                let (code, body) = get_if_up(listen);
                if code == 200 {
                    if let Some(st) = status(&Scrape::parse(&body), losswatch::demo::APP_GROUP) {
                        if seen.last() != Some(&st) {
                            seen.push(st);
                        }
                    }
                }
                let done = seen.iter().position(|s| s == "WARN").and_then(|w| {
                    let stop = seen[w..].iter().position(|s| s == "STOP")? + w;
                    seen[stop..].iter().any(|s| s == "OK").then_some(())
                });
                if done.is_some() || std::time::Instant::now() > deadline {
                    stop.cancel();
                    return seen;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let summary = losswatch::demo::run(opts, stop).await.unwrap().summary;
    let seen = watcher.join().expect("watcher");
    eprintln!("demo-app statuses: {seen:?}");
    let warn = seen.iter().position(|s| s == "WARN").expect("WARN seen");
    let stop = seen[warn..]
        .iter()
        .position(|s| s == "STOP")
        .expect("STOP after WARN")
        + warn;
    assert!(
        seen[stop..].iter().any(|s| s == "OK"),
        "no OK after STOP: {seen:?}"
    );
    assert_eq!(summary.lost, 0.0);
}

/// GET /metrics, or (0, "") while the demo is not listening yet.
fn get_if_up(addr: std::net::SocketAddr) -> (u16, String) {
    if std::net::TcpStream::connect(addr).is_err() {
        return (0, String::new());
    }
    get(addr, "/metrics")
}
