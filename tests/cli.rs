//! The real `losswatch` binary, driven the way a user does: config files, exit codes,
//! signals, and `kill -9` in the middle of a run.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::process::{AgentProcess, AgentSettings};
use common::{assert_identity, eventually, scrape, Broker, Mock};

use common::process::BIN;
const T: &str = "canary";
const WAIT: Duration = Duration::from_secs(60);

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_key_exits_64_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    write(&f, "[canary]\nprobe_intervall = \"1s\"\n");
    let (code, _, err) = run(&["check-config", "--config", f.to_str().unwrap()]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("probe_intervall"), "{err}");
}

#[test]
fn invalid_value_exits_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    write(&f, "[canary]\npayload_bytes = 3\n");
    let (code, _, err) = run(&["check-config", "--config", f.to_str().unwrap()]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("canary.payload_bytes"), "{err}");
    write(&f, "[http]\nlisten = \"not an address\"\n");
    let (code, _, err) = run(&["run", "--config", f.to_str().unwrap()]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("listen"), "{err}");
}

#[test]
fn check_config_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    write(
        &f,
        "[kafka]\nbootstrap_servers = \"k:9092\"\n[kafka.properties]\n\"sasl.password\" = \"hunter2\"\n",
    );
    let out = Command::new(BIN)
        .args(["check-config", "--config", f.to_str().unwrap()])
        .env("LOSSWATCH_KAFKA_SASL_USERNAME", "svc")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        !text.contains("hunter2") && text.contains("**REDACTED**"),
        "{text}"
    );
    assert!(text.contains("svc"), "{text}");
}

#[test]
fn unknown_librdkafka_property_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    let state = dir.path().join("s.db");
    write(
        &f,
        &format!(
            "[kafka.properties]\n\"no.such.property\" = \"x\"\n[http]\nlisten = \"127.0.0.1:0\"\n[state]\npath = {:?}\n",
            state.to_str().unwrap()
        ),
    );
    let (code, _, err) = run(&["run", "--config", f.to_str().unwrap()]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("kafka.properties") && err.contains("no.such.property"),
        "{err}"
    );
}

#[test]
fn unusable_state_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(&[
        "run",
        "--listen",
        "127.0.0.1:0",
        "--state",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 74, "{err}");
    assert!(err.contains("state file"), "{err}");
}

#[test]
fn bad_demo_flags_exit_64_naming_the_flag() {
    for (args, flag) in [
        (&["demo", "--probe-interval", "0s"][..], "--probe-interval"),
        (&["demo", "--summary-every", "0s"][..], "--summary-every"),
        (&["demo", "--duration", "0s"][..], "--duration"),
    ] {
        let (code, _, err) = run(args);
        assert_eq!(code, 64, "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn report_without_state_is_a_usage_error() {
    let (code, _, err) = run(&["report"]);
    assert_eq!(code, 64, "{err}");
}

fn status(agent: &AgentProcess) -> serde_json::Value {
    agent.json("/api/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_invents_no_loss_or_duplicate() {
    let mock = Mock::new(T, 3);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = AgentSettings::new(mock.bootstrap(), T, dir.path());
    settings.delivery_timeout = "3s";
    let mut agent = AgentProcess::start(settings);
    let addr = agent.addr;
    let before = eventually(WAIT, "first run verifies probes on 3 partitions", || {
        let st = std::panic::catch_unwind(|| status(&agent)).ok()?;
        let parts = st["partitions"].as_array()?.clone();
        (parts.len() == 3
            && parts
                .iter()
                .all(|p| p["totals"]["received"].as_u64() >= Some(10)))
        .then_some(parts)
    })
    .await;
    // Make probes linger unverified, then kill without warning.
    for b in 1..=3 {
        mock.cluster
            .broker_round_trip_time(b, Duration::from_millis(200))
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    agent.kill9();
    // What the killed agent left unverified in its state file, to be carried over.
    let saved_pending: usize = {
        let mut ledger = losswatch::ledger::Ledger::open(&agent.settings.state(), 10_000).unwrap();
        let loaded = ledger.load(T).unwrap();
        loaded
            .partitions
            .values()
            .map(|p| p.snapshot.pending.len())
            .sum()
    };
    for b in 1..=3 {
        mock.cluster
            .broker_round_trip_time(b, Duration::ZERO)
            .unwrap();
    }

    agent.crash_and_restart();
    let after = eventually(WAIT, "second run verifies probes again", || {
        let st = std::panic::catch_unwind(|| status(&agent)).ok()?;
        let parts = st["partitions"].as_array()?.clone();
        let s = scrape(addr);
        (parts.len() == 3
            && s.sum("losswatch_probes_received_total", &[]) >= 30.0
            && s.sum("losswatch_probes_pending", &[]) <= 3.0)
            .then_some(parts)
    })
    .await;
    let s = scrape(addr);
    assert_eq!(
        s.sum("losswatch_probes_lost_total", &[]),
        0.0,
        "kill -9 must not invent a loss"
    );
    assert_eq!(
        s.sum("losswatch_probes_duplicated_total", &[]),
        0.0,
        "nor a duplicate"
    );
    assert_eq!(s.sum("losswatch_partition_truncations_total", &[]), 0.0);
    assert_identity(&s, T, 3);
    for (a, b) in after.iter().zip(&before) {
        assert_eq!(a["partition"], b["partition"]);
        assert!(
            a["next_seq"].as_u64() > b["next_seq"].as_u64(),
            "sequences continue: {} then {}",
            b["next_seq"],
            a["next_seq"]
        );
        assert_eq!(a["totals"]["lost"], 0);
        // Lifetime totals survive the crash (they are at least what the first run had saved).
        let received = |p: &serde_json::Value| p["totals"]["received"].as_u64().expect("received");
        assert!(received(a) >= received(b), "{a} then {b}");
    }
    // Every probe the killed agent left unverified is carried over, no more, no less.
    let restored: f64 = s.sum("losswatch_probes_restored", &[]);
    assert_eq!(
        restored, saved_pending as f64,
        "restored = pending in the state file"
    );

    // SIGTERM: drains and exits 0 within the grace period.
    let t = std::time::Instant::now();
    let code = agent.terminate();
    assert!(code.success(), "exit after SIGTERM: {code:?}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "drained within the grace period"
    );

    // A clean stop saves exact sequences: the next run continues without a gap.
    let last: Vec<u64> = {
        agent.crash_and_restart();
        let parts = eventually(WAIT, "third run starts probing", || {
            let st = std::panic::catch_unwind(|| status(&agent)).ok()?;
            let parts = st["partitions"].as_array()?.clone();
            (parts.len() == 3).then_some(parts)
        })
        .await;
        agent.kill9();
        parts
            .iter()
            .map(|p| p["next_seq"].as_u64().unwrap())
            .collect()
    };
    for (l, a) in last.iter().zip(&after) {
        let a = a["next_seq"].as_u64().unwrap();
        assert!(
            *l >= a && *l < a + 100,
            "no gap after a clean stop: {a} then {l}"
        );
    }
}
