//! The durability audit and broker coverage against librdkafka's MockCluster: a leaderless
//! partition is reported offline (the metric the LosswatchPartitionOffline alert reads),
//! replication from metadata is judged, configs the mock cannot describe are reported
//! unavailable (never clean), coverage follows leader moves, and `losswatch audit` prints
//! its table and exits 1.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{config, eventually, get, scrape, Broker, Mock, Scrape};
use losswatch::config::AuditMode;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

fn has(s: &Scrape, name: &str, filter: &[(&str, &str)]) -> bool {
    s.0.iter().any(|(n, l, v)| {
        n == name
            && *v == 1.0
            && filter
                .iter()
                .all(|(k, want)| l.get(*k).map(String::as_str) == Some(*want))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_reports_offline_partition_replication_and_unknown_configs() {
    let mock = Mock::new("canary", 3);
    mock.cluster.create_topic("orders", 2, 1).unwrap();
    mock.cluster
        .create_topic("__consumer_offsets", 1, 1)
        .unwrap();
    mock.cluster.partition_leader("orders", 1, None).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&mock, "canary", &dir.path().join("s.db"));
    cfg.audit.mode = AuditMode::Always;
    cfg.audit.interval = Duration::from_secs(1);
    // The mock never answers DescribeConfigs: the audit's own timeout ends the wait.
    cfg.audit.request_timeout = Duration::from_millis(500);
    let stop = CancellationToken::new();
    let running = losswatch::start(cfg.build().unwrap(), stop.clone())
        .await
        .unwrap();
    let addr = running.addr;

    let s = eventually(WAIT, "an audit done", || {
        let s = scrape(addr);
        (s.sum("losswatch_audit_last_run_timestamp_seconds", &[]) > 0.0).then_some(s)
    })
    .await;
    let topic_risk = |t: &str, r: &str| {
        has(
            &s,
            "losswatch_topic_config_risk",
            &[("topic", t), ("risk", r)],
        )
    };
    assert!(has(
        &s,
        "losswatch_partition_offline",
        &[("topic", "orders"), ("partition", "1")]
    ));
    assert!(!has(
        &s,
        "losswatch_partition_offline",
        &[("topic", "orders"), ("partition", "0")]
    ));
    assert!(topic_risk("orders", "replication_factor_below_3"));
    // The canary topic has replication 3: no replication finding, but its configs are unknown.
    assert!(!topic_risk("canary", "replication_factor_below_3"));
    assert!(topic_risk("canary", "configs_unavailable"));
    assert!(topic_risk("orders", "configs_unavailable"));
    // Internal topics are left out by default.
    assert!(!s
        .label_values("losswatch_topic_config_risk", "topic")
        .contains(&"__consumer_offsets".to_string()));
    for b in ["1", "2", "3"] {
        assert!(
            has(
                &s,
                "losswatch_broker_config_risk",
                &[("broker", b), ("risk", "configs_unavailable")]
            ),
            "broker {b}"
        );
    }
    assert!(has(
        &s,
        "losswatch_audit_configs_unavailable",
        &[("resource", "topic:canary")]
    ));
    assert!(
        s.sum(
            "losswatch_audit_errors_total",
            &[("reason", "describe_configs")]
        ) >= 1.0
    );
    assert_eq!(s.sum("losswatch_audit_running", &[]), 1.0);
    // Min ISR is unknown, so the min-ISR states are not claimed either way.
    assert!(s
        .label_values("losswatch_partition_under_min_isr", "topic")
        .is_empty());

    let (code, body) = get(addr, "/api/audit");
    assert_eq!(code, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["auditing"], true);
    let findings = json["findings"].as_array().unwrap();
    let offline = findings
        .iter()
        .find(|f| f["risk"] == "partition_offline")
        .expect("offline finding");
    assert_eq!(offline["resource"], "partition:orders/1");
    assert_eq!(offline["topic"], "orders");
    assert_eq!(offline["partition"], 1);
    assert!(offline["why"].as_str().unwrap().contains("no leader"));
    assert!(!offline["fix"].as_str().unwrap().is_empty());

    // A partition that gets its leader back is no longer offline at the next audit.
    mock.cluster.partition_leader("orders", 1, Some(2)).unwrap();
    eventually(WAIT, "offline series gone", || {
        let s = scrape(addr);
        (!has(&s, "losswatch_partition_offline", &[("topic", "orders")])
            && s.sum("losswatch_audit_topics", &[]) == 2.0)
            .then_some(())
    })
    .await;
    // The canary kept probing through all of it.
    assert!(scrape(addr).sum("losswatch_probes_received_total", &[]) > 0.0);
    stop.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coverage_follows_leaders() {
    let mock = Mock::new("canary", 3);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&mock, "canary", &dir.path().join("s.db"));
    cfg.audit.mode = AuditMode::Off;
    let stop = CancellationToken::new();
    let running = losswatch::start(cfg.build().unwrap(), stop.clone())
        .await
        .unwrap();
    let addr = running.addr;
    let s = eventually(WAIT, "coverage exported", || {
        let s = scrape(addr);
        (s.label_values("losswatch_broker_canary_partitions", "broker")
            .len()
            == 3)
            .then_some(s)
    })
    .await;
    let led: f64 = s.sum("losswatch_broker_canary_partitions", &[]);
    assert_eq!(led, 3.0);
    // Every partition moves to broker 2: brokers 1 and 3 are no longer probed.
    for p in 0..3 {
        mock.cluster.partition_leader("canary", p, Some(2)).unwrap();
    }
    eventually(WAIT, "brokers 1 and 3 without a canary leader", || {
        let s = scrape(addr);
        (s.sum("losswatch_brokers_without_canary_leader", &[]) == 2.0
            && s.sum("losswatch_broker_canary_partitions", &[("broker", "2")]) == 3.0
            && s.sum("losswatch_broker_canary_partitions", &[("broker", "1")]) == 0.0)
            .then_some(())
    })
    .await;
    let status = eventually(WAIT, "coverage in /api/status", || {
        let (_, body) = get(addr, "/api/status");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        (status["coverage"]["brokers_without_canary_leader"] == serde_json::json!([1, 3]))
            .then_some(status)
    })
    .await;
    let note = status["coverage"]["note"].as_str().unwrap();
    assert!(
        note.contains("lead no canary partition") && note.contains("leadership imbalance"),
        "{note}"
    );
    stop.cancel();
    running.wait().await.unwrap();
}

#[test]
fn audit_command_prints_a_table_and_exits_1() {
    let mock = Mock::new("canary", 3);
    mock.cluster.create_topic("orders", 1, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("losswatch.toml");
    std::fs::write(
        &file,
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\n[canary]\ntopic = \"canary\"\n[audit]\nrequest_timeout = \"500ms\"\n",
            mock.bootstrap()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_losswatch"))
        .args(["audit", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("audited 3 broker(s), 2 topic(s), 4 partition(s)"),
        "{stdout}"
    );
    for needle in [
        "RESOURCE",
        "topic:orders",
        "replication_factor_below_3",
        "configs_unavailable",
        "DescribeConfigs failed: Admin operation error: OperationTimedOut",
        "fix: raise the replication factor to 3",
    ] {
        assert!(stdout.contains(needle), "{needle} missing:\n{stdout}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_losswatch"))
        .args(["audit", "--json", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["resource"] == "topic:orders" && f["risk"] == "replication_factor_below_3"));
}

#[test]
fn audit_command_exits_2_when_nothing_can_be_audited() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("losswatch.toml");
    std::fs::write(
        &file,
        format!("[kafka]\nbootstrap_servers = \"127.0.0.1:{port}\"\n[audit]\nrequest_timeout = \"1s\"\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_losswatch"))
        .args(["audit", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("nothing audited"), "{stderr}");
    // A bad key is a usage error.
    std::fs::write(&file, "[audit]\nintervall = \"1s\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_losswatch"))
        .args(["audit", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("intervall"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmanaged_topic_is_used_as_is_and_a_weak_producer_is_flagged() {
    // manage_topic = false: a missing canary topic is not created; /readyz says why.
    let mock = Mock::new("other", 1);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&mock, "canary", &dir.path().join("s.db"));
    cfg.canary.manage_topic = false;
    cfg.canary.create_topic = true;
    cfg.audit.mode = AuditMode::Off;
    let stop = CancellationToken::new();
    let running = losswatch::start(cfg.build().unwrap(), stop.clone())
        .await
        .unwrap();
    let addr = running.addr;
    let body = eventually(WAIT, "not ready, naming manage_topic", || {
        let (code, body) = get(addr, "/readyz");
        (code == 503 && body.contains("canary.manage_topic is false")).then_some(body)
    })
    .await;
    assert!(body.contains("canary"), "{body}");
    assert_eq!(
        scrape(addr).sum("losswatch_canary_admin_errors_total", &[]),
        0.0
    );
    stop.cancel();
    running.wait().await.unwrap();

    // allow_weak_producer: the weakened producer runs, says so, and is exported.
    let mock = Mock::new("canary", 2);
    let mut cfg = config(&mock, "canary", &dir.path().join("w.db"));
    cfg.canary.allow_weak_producer = true;
    cfg.audit.mode = AuditMode::Off;
    cfg.kafka
        .properties
        .insert("acks".into(), losswatch::config::Sensitive("1".into()));
    cfg.kafka.properties.insert(
        "enable.idempotence".into(),
        losswatch::config::Sensitive("false".into()),
    );
    let stop = CancellationToken::new();
    let running = losswatch::start(cfg.build().unwrap(), stop.clone())
        .await
        .unwrap();
    let addr = running.addr;
    let s = eventually(WAIT, "weak producer probing", || {
        let s = scrape(addr);
        (s.sum("losswatch_probes_received_total", &[]) > 0.0).then_some(s)
    })
    .await;
    assert_eq!(s.sum("losswatch_weak_producer", &[]), 1.0);
    stop.cancel();
    running.wait().await.unwrap();
}

#[test]
fn weak_producer_settings_exit_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("losswatch.toml");
    std::fs::write(&file, "[kafka.properties]\nacks = \"1\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_losswatch"))
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("kafka.properties")
            && stderr.contains("acks=1")
            && stderr.contains("canary.allow_weak_producer"),
        "{stderr}"
    );
    std::fs::write(
        &file,
        "[kafka.properties]\nacks = \"1\"\n[canary]\nallow_weak_producer = true\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_losswatch"))
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn demo_prints_its_audit_findings_once_at_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_losswatch"))
        .args(["demo", "--no-chaos", "--duration", "8s", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("durability audit:").count(), 1, "{stdout}");
    assert!(
        stdout.contains("topic:demo-scratch      replication_factor_below_3"),
        "{stdout}"
    );
    assert!(stdout.contains("configs_unavailable"), "{stdout}");
    // Nothing injected: nothing may be counted, and the demo says so and exits 0.
    assert!(
        stdout.contains("no chaos: nothing injected, nothing counted"),
        "{stdout}"
    );
    assert!(out.status.success(), "{:?}\n{stdout}", out.status);
}
