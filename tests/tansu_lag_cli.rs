//! `losswatch lag` against a real broker (Tansu): the one-shot command prints the values the
//! lag poller's tests expect for the same commits (tests/tansu_lag.rs), as a table and as
//! JSON, for every group or one.

mod common;
mod lag_tansu;

use std::process::Command;

use common::commit;
use lag_tansu::{create_topic, now_ms, produce, Tansu};

fn lag(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_losswatch"))
        .arg("lag")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_command_matches_the_poller() {
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

    let (code, stdout, stderr) = lag(&["--bootstrap-servers", &b, "--json", "--group", "billing"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows = rows.as_array().unwrap();
    let got: Vec<(i64, i64, i64, i64)> = rows
        .iter()
        .map(|r| {
            assert_eq!(r["group"], "billing");
            assert_eq!(r["topic"], "orders");
            (
                r["partition"].as_i64().unwrap(),
                r["current_offset"].as_i64().unwrap(),
                r["log_end_offset"].as_i64().unwrap(),
                r["lag"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![(0, 4, 10, 6), (1, 20, 20, 0), (2, 0, 30, 30)],
        "{stdout}"
    );
    // Time lag from the record timestamps: the unread records were written at `now`.
    let waited = (now_ms() - now) as f64 / 1000.0;
    for r in rows {
        let s = r["lag_seconds"].as_f64().unwrap();
        if r["lag"].as_i64() == Some(0) {
            assert_eq!(s, 0.0, "{r}");
        } else {
            assert!(s > 0.0 && s <= waited + 1.0, "{r} (waited {waited}s)");
        }
    }

    // Every group, as a table: both groups, the header of kafka-consumer-groups plus what it
    // cannot show.
    let (code, table, stderr) = lag(&["--bootstrap-servers", &b]);
    assert_eq!(code, 0, "{table}\n{stderr}");
    let header = table.lines().next().unwrap();
    for col in [
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "LAG-SECONDS",
        "STATUS",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let line = |g: &str, p: &str| {
        table
            .lines()
            .find(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.first() == Some(&g) && f.get(2) == Some(&p)
            })
            .unwrap_or_else(|| panic!("no row {g}/{p}:\n{table}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let a = line("audit", "0");
    assert_eq!(
        (a[3].as_str(), a[4].as_str(), a[5].as_str()),
        ("10", "10", "0"),
        "{table}"
    );
    let b0 = line("billing", "0");
    assert_eq!(
        (b0[3].as_str(), b0[4].as_str(), b0[5].as_str()),
        ("4", "10", "6"),
        "{table}"
    );
}

#[test]
fn lag_command_fails_clearly_when_the_cluster_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("losswatch.toml");
    std::fs::write(
        &file,
        format!(
            "[kafka]\nbootstrap_servers = \"127.0.0.1:{port}\"\n[lag]\nrequest_timeout = \"1s\"\n"
        ),
    )
    .unwrap();
    let (code, _, stderr) = lag(&["--config", file.to_str().unwrap()]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("losswatch lag"), "{stderr}");
}
