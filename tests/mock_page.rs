//! The status page and the `/api/lag` data behind it, served by the real agent against
//! librdkafka's MockCluster (the page itself is rendered in Chromium by scripts/check-page.sh).

mod common;

use std::time::Duration;

use common::{commit, config, eventually, get, produce_raw, Broker, Mock};
use losswatch::lag::LagMode;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_and_lag_json_are_served() {
    let mock = Mock::new("canary", 2);
    mock.cluster.create_topic("orders", 2, 3).unwrap();
    let b = mock.bootstrap();
    produce_raw(&b, "orders", 0, &vec![Some(b"x".to_vec()); 10]);
    commit(&b, "app", &[("orders", 0, 3), ("orders", 1, 0)]);

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&mock, "canary", &dir.path().join("s.db"));
    cfg.lag.mode = LagMode::Always;
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

    let (code, page) = get(addr, "/");
    assert_eq!(code, 200);
    assert!(page.contains("<title>losswatch</title>"), "{page}");
    assert!(
        !page.contains("src=\"http"),
        "the page loads nothing from outside"
    );

    let groups = eventually(Duration::from_secs(30), "app in /api/lag", || {
        let (code, body) = get(addr, "/api/lag");
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let app = v.as_array()?.iter().find(|g| g["group"] == "app")?.clone();
        (app["partitions"].as_array()?.len() == 2 && app["status"].is_string()).then_some(app)
    })
    .await;
    let p0 = groups["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["topic"] == "orders" && p["partition"] == 0)
        .cloned()
        .unwrap();
    assert_eq!(p0["committed"], 3.0, "{groups}");
    assert_eq!(p0["log_end"], 10.0, "{groups}");
    assert_eq!(p0["lag"], 7.0, "{groups}");
    stop.cancel();
    running.wait().await.unwrap();
}
