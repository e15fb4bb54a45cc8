//! The durability audit against a real broker (Tansu 0.6.0, one node): topics with one
//! replica are found fragile, the configs Tansu does not describe (it answers DescribeConfigs
//! with a topic's creation configs only, and with nothing for the broker) are reported
//! unavailable and never clean, and `losswatch audit` prints its table and exits 1. The agent
//! audits its own canary topic like any other.

mod common;
mod lag_tansu;

use std::process::Command;
use std::time::Duration;

use common::{eventually, get, scrape, Scrape};
use lag_tansu::agent::{has, Agent};
use lag_tansu::{create_topic, Tansu};
use losswatch::config::AuditMode;

const WAIT: Duration = Duration::from_secs(60);

fn risk(s: &Scrape, topic: &str, risk: &str) -> bool {
    has(
        s,
        "losswatch_topic_config_risk",
        &[("topic", topic), ("risk", risk)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_1_topics_are_fragile_and_unknown_configs_are_not_clean() {
    let t = Tansu::memory();
    let b = t.bootstrap();
    create_topic(&b, "orders", 2, &[]).await;

    let agent = Agent::start(&t, Duration::from_secs(1), |c| {
        c.audit.mode = AuditMode::Always;
        c.audit.interval = Duration::from_secs(1);
        c.audit.request_timeout = Duration::from_secs(5);
    })
    .await;
    let addr = agent.addr;
    let s = eventually(WAIT, "canary and orders audited", || {
        let s = scrape(addr);
        (risk(&s, "canary", "replication_factor_below_3")
            && risk(&s, "orders", "replication_factor_below_3"))
        .then_some(s)
    })
    .await;
    // Tansu answers DescribeConfigs with the configs a topic was created with (labelled as
    // defaults) and nothing else. The agent created its canary topic with min.insync.replicas
    // 1 (replication 1 allows no more) and unclean election off: both known, both judged.
    assert!(risk(&s, "canary", "min_insync_below_2"));
    assert!(risk(&s, "canary", "min_insync_not_below_rf"));
    assert!(!risk(&s, "canary", "unclean_election_enabled"));
    assert!(!risk(&s, "canary", "configs_unavailable"));
    // "orders" was created with no configs: Tansu describes none, which is unknown, not clean.
    assert!(risk(&s, "orders", "configs_unavailable"));
    assert!(has(
        &s,
        "losswatch_audit_configs_unavailable",
        &[("resource", "topic:orders")]
    ));
    // The partition is at its min ISR (1 of 1).
    assert!(has(
        &s,
        "losswatch_partition_at_min_isr",
        &[("topic", "canary"), ("partition", "0")]
    ));
    // One broker, leading everything: nothing offline, ISR complete.
    assert!(s
        .label_values("losswatch_partition_offline", "topic")
        .is_empty());
    assert!(s
        .label_values("losswatch_partition_under_replicated", "topic")
        .is_empty());
    let brokers = s.label_values("losswatch_broker_config_risk", "broker");
    assert_eq!(brokers.len(), 1, "{brokers:?}");
    assert!(has(
        &s,
        "losswatch_broker_config_risk",
        &[("risk", "configs_unavailable")]
    ));
    // Coverage: the one broker leads the canary partition.
    assert_eq!(s.sum("losswatch_brokers_without_canary_leader", &[]), 0.0);
    assert_eq!(s.sum("losswatch_broker_canary_partitions", &[]), 1.0);

    let (code, body) = get(addr, "/api/audit");
    assert_eq!(code, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let f = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["resource"] == "topic:orders" && f["risk"] == "configs_unavailable")
        .expect("orders configs_unavailable");
    assert!(
        f["source"].as_str().unwrap().contains("no config entries"),
        "{f}"
    );

    // A topic deleted from the cluster loses its series at the next audit.
    common::tansu::delete_topic(&b, "orders").await;
    eventually(WAIT, "orders series gone", || {
        let s = scrape(addr);
        (!s.label_values("losswatch_topic_config_risk", "topic")
            .contains(&"orders".to_string()))
        .then_some(())
    })
    .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_command_against_tansu() {
    let t = Tansu::memory();
    let b = t.bootstrap();
    create_topic(&b, "losswatch-canary", 1, &[]).await;
    create_topic(&b, "payments", 3, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("losswatch.toml");
    std::fs::write(&file, format!("[kafka]\nbootstrap_servers = \"{b}\"\n")).unwrap();
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
        stdout.starts_with("audited 1 broker(s), 2 topic(s), 4 partition(s)"),
        "{stdout}"
    );
    for needle in [
        "topic:losswatch-canary",
        "topic:payments",
        "replication factor 1 (partition 0)",
        "configs_unavailable",
        "the broker returned no config entries",
        "broker:",
        "why it can lose data, and the fix:",
    ] {
        assert!(stdout.contains(needle), "{needle} missing:\n{stdout}");
    }
    let rows = stdout
        .lines()
        .filter(|l| l.starts_with("topic:payments") && l.contains("replication_factor_below_3"))
        .count();
    assert_eq!(rows, 1, "{stdout}");
}
