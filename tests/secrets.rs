//! Secrets from files, and a known password that must appear in no output of a run: the
//! log (librdkafka's own debug lines included), `check-config`, every endpoint, and the
//! error of a configuration librdkafka refuses.

mod common;

use std::process::Command;
use std::time::Duration;

use common::process::{AgentProcess, AgentSettings, BIN};
use common::{eventually, get, Broker, Mock};

const T: &str = "canary";
const PASSWORD: &str = "pw-7Hq2-known-to-the-test";

fn secret_file(dir: &std::path::Path, name: &str, value: &str) -> String {
    let f = dir.join(name);
    // As a Kubernetes Secret mounted from a file written with `echo`: a trailing newline.
    std::fs::write(&f, format!("{value}\n")).unwrap();
    f.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_password_appears_in_no_output() {
    let mock = Mock::new(T, 2);
    let dir = tempfile::tempdir().unwrap();
    let pw = secret_file(dir.path(), "password", PASSWORD);
    let key_pw = secret_file(dir.path(), "key-password", &format!("key-{PASSWORD}"));
    let mut s = AgentSettings::new(mock.bootstrap(), T, dir.path());
    // `debug` makes librdkafka log its whole configuration, secrets included unless it
    // redacts them itself.
    s.extra_toml = format!(
        "[kafka.properties]\n\"sasl.username\" = \"svc\"\n\"debug\" = \"conf,broker,security\"\n\
         [kafka.secret_files]\n\"sasl.password\" = {pw:?}\n\"ssl.key.password\" = {key_pw:?}\n"
    );
    s.env = vec![("LOSSWATCH_LOG".into(), "trace".into())];
    let agent = AgentProcess::start(s.clone());
    let mut outputs = vec![];
    eventually(Duration::from_secs(60), "probes verified", || {
        let st = agent.json("/api/status");
        let parts = st["partitions"].as_array()?.clone();
        (parts.len() == 2
            && parts
                .iter()
                .all(|p| p["totals"]["received"].as_u64() >= Some(3)))
        .then_some(())
    })
    .await;
    for path in [
        "/metrics",
        "/api/status",
        "/api/losses",
        "/readyz",
        "/livez",
    ] {
        let (code, body) = get(agent.addr, path);
        assert_eq!(code, 200, "{path}");
        outputs.push((path.to_owned(), body));
    }
    let check = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(dir.path().join("agent.toml"))
        .output()
        .unwrap();
    assert!(check.status.success());
    let shown = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(
        shown.contains("[kafka.secret_files]") && shown.contains(&pw),
        "{shown}"
    );
    outputs.push(("check-config".into(), shown));
    outputs.push((
        "check-config stderr".into(),
        String::from_utf8_lossy(&check.stderr).into_owned(),
    ));
    let log = agent.log_text();
    assert!(
        log.contains("Client configuration"),
        "librdkafka's configuration dump is in the log:\n{}",
        log.lines()
            .filter(|l| l.contains("CONF") || l.contains("TRACE"))
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    outputs.push(("log".into(), log));
    for (what, text) in &outputs {
        assert!(
            !text.contains(PASSWORD),
            "the password is in the output of {what}"
        );
    }
}

#[test]
fn a_refused_secret_value_is_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    // librdkafka refuses this value, and its error names the property and the value.
    let v = secret_file(dir.path(), "mechanism", &format!("NOT-{PASSWORD}"));
    let f = dir.path().join("c.toml");
    std::fs::write(
        &f,
        format!(
            "[kafka.properties]\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n\
             [kafka.secret_files]\n\"sasl.mechanisms\" = {v:?}\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [state]\npath = {:?}\n",
            dir.path().join("s.db")
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&f)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the agent did not refuse the configuration within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("SASL mechanism"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
}

#[test]
fn secret_files_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    let cases = [
        (
            "[kafka.secret_files]\n\"sasl.password\" = \"/no/such/file\"\n".to_owned(),
            "/no/such/file",
        ),
        (
            format!(
                "[kafka.properties]\n\"sasl.password\" = \"x\"\n[kafka.secret_files]\n\"sasl.password\" = {:?}\n",
                secret_file(dir.path(), "p", "y")
            ),
            "set it in one place",
        ),
        (
            format!(
                "[kafka.secret_files]\n\"sasl.password\" = {:?}\n",
                secret_file(dir.path(), "empty", "")
            ),
            "is empty",
        ),
    ];
    for (text, why) in cases {
        std::fs::write(&f, text).unwrap();
        let out = Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&f)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{err}");
        assert!(
            err.contains("kafka.secret_files") && err.contains(why),
            "{err}"
        );
    }
}
