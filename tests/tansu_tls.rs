//! TLS and mutual TLS to a real broker: Tansu 0.6.0 (plain TCP only) behind stunnel, which
//! terminates TLS with certificates made here by openssl. Tansu advertises the terminator's
//! address, so the bootstrap connection and the connections to the broker the metadata names
//! are all TLS. The real `losswatch` binary runs with `kafka.properties`:
//! - `SSL` with the test CA: probes produced and verified, no loss;
//! - mutual TLS (the terminator requires a client certificate signed by the CA): a client
//!   certificate with an encrypted key whose password comes from `kafka.secret_files` works;
//!   no client certificate fails, named and counted;
//! - a CA that did not sign the server's certificate: an ERROR line naming `kind="tls"` and
//!   the cause, `losswatch_kafka_errors_total{kind="tls"}`, `/readyz` 503 naming it, bounded
//!   CPU, no crash;
//! - nothing listening (never, or the terminator stopped under a running agent): transport
//!   errors, no crash, bounded CPU;
//! - `SASL_SSL`: SCRAM-SHA-256 over TLS against Tansu with `--authentication`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::process::{cpu_ticks, AgentProcess, AgentSettings};
use common::tansu::{free_port, serial, Tansu};
use common::tls::{Certs, Terminator};
use common::{get, wait_until, Scrape};

const T: &str = "canary";
const SCRAM_PW: &str = "scram-over-tls-pw-Hn63";

/// A broker behind a TLS terminator, and the certificates.
struct Endpoint {
    certs: Certs,
    broker: Tansu,
    tls: Terminator,
    _dir: tempfile::TempDir,
}

impl Endpoint {
    /// With `mutual`, the terminator requires a client certificate signed by the test CA.
    /// With `scram`, the broker runs with `--authentication` and knows user alice.
    fn start(mutual: bool, scram: bool) -> Endpoint {
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::make(dir.path());
        let tls_port = free_port();
        let mut broker = Tansu::sqlite_advertising(tls_port);
        if scram {
            broker.create_user("alice", SCRAM_PW, "scram256");
            broker.extra_args = vec!["--authentication".into()];
            broker.restart();
        }
        let client_ca = mutual.then_some(certs.ca.as_path());
        let tls = Terminator::start(dir.path(), tls_port, broker.port(), &certs, client_ca);
        assert_eq!(broker.bootstrap(), format!("127.0.0.1:{tls_port}"));
        Endpoint {
            certs,
            broker,
            tls,
            _dir: dir,
        }
    }
}

/// An agent on `bootstrap` with `properties` (TOML lines of `[kafka.properties]`) and
/// secret files holding `secrets` (property, value).
fn agent(
    bootstrap: String,
    dir: &Path,
    properties: &str,
    secrets: &[(&str, &str)],
) -> AgentProcess {
    let mut s = AgentSettings::new(bootstrap, T, dir);
    s.create_topic = true;
    let mut toml = format!("[kafka.properties]\n{properties}\n[kafka.secret_files]\n");
    for (i, (key, value)) in secrets.iter().enumerate() {
        let file = dir.join(format!("secret-{i}"));
        std::fs::write(&file, format!("{value}\n")).unwrap();
        toml.push_str(&format!("{key:?} = {:?}\n", file.to_str().unwrap()));
    }
    toml.push_str("[lag]\nmode = \"off\"\n");
    s.extra_toml = toml;
    AgentProcess::start(s)
}

fn ssl_properties(ca: &Path) -> String {
    format!(
        "\"security.protocol\" = \"SSL\"\n\"ssl.ca.location\" = {:?}",
        ca.to_str().unwrap()
    )
}

/// Waits for a ready agent that has verified probes, and checks there was no loss and no
/// TLS or authentication error.
fn assert_verifies(a: &AgentProcess, what: &str) -> Scrape {
    wait_until(
        Duration::from_secs(60),
        &format!("{what}: probes verified"),
        || {
            let (code, _) = get(a.addr, "/readyz");
            let s = a.scrape();
            (code == 200 && s.sum("losswatch_probes_received_total", &[]) >= 5.0).then_some(())
        },
    );
    let s = a.scrape();
    assert_eq!(s.sum("losswatch_probes_lost_total", &[]), 0.0, "{what}");
    for kind in ["tls", "authentication"] {
        assert_eq!(
            s.sum("losswatch_kafka_errors_total", &[("kind", kind)]),
            0.0,
            "{what}: kind={kind} errors\n{}",
            a.log_tail()
        );
    }
    s
}

/// Waits until `/readyz` is 503 and at least one error of `kind` is counted; returns the
/// `/readyz` body.
fn not_ready_with(a: &AgentProcess, kind: &str) -> String {
    wait_until(
        Duration::from_secs(30),
        &format!("kind={kind} errors counted and /readyz 503"),
        || {
            let s = a.scrape();
            let (code, body) = get(a.addr, "/readyz");
            (s.sum("losswatch_kafka_errors_total", &[("kind", kind)]) >= 1.0 && code == 503)
                .then_some(body)
        },
    )
}

/// librdkafka retries with a backoff: a failing agent must not spin. Same bound as the bad
/// SCRAM password test (1.5 s of CPU in 5 s).
fn assert_bounded_cpu(a: &AgentProcess, what: &str) {
    let before = cpu_ticks(a.pid());
    std::thread::sleep(Duration::from_secs(5));
    let burnt = cpu_ticks(a.pid()) - before;
    eprintln!("{what}: {burnt} ticks of CPU in 5 s");
    assert!(burnt < 150, "{what}: {burnt} ticks of CPU in 5 s");
}

/// Lines of the agent's log naming `kind="…"`.
fn kind_lines(log: &str, kind: &str) -> Vec<String> {
    let needle = format!("kind=\"{kind}\"");
    log.lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_owned)
        .collect()
}

#[test]
fn ssl_with_the_test_ca_verifies_probes() {
    let _serial = serial();
    let e = Endpoint::start(false, false);
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(
        e.broker.bootstrap(),
        dir.path(),
        &ssl_properties(&e.certs.ca),
        &[],
    );
    assert_verifies(&a, "SSL");
    // The admin clients made the canary and election topics over TLS.
    let log = a.log_text();
    for line in ["created canary topic", "created the lag election topic"] {
        assert!(log.contains(line), "no {line:?} in the log:\n{log}");
    }
    // Every connection went through the terminator: it accepted them and did TLS.
    let tls_log = e.tls.log_text();
    assert!(
        tls_log.contains("accepted connection"),
        "stunnel saw no connection:\n{tls_log}"
    );
    assert!(a.terminate().success());
}

#[test]
fn mutual_tls_with_an_encrypted_key_works_and_without_a_certificate_is_refused() {
    let _serial = serial();
    let e = Endpoint::start(true, false);
    let c = &e.certs;
    let dir = tempfile::tempdir().unwrap();
    let props = format!(
        "{}\n\"ssl.certificate.location\" = {:?}\n\"ssl.key.location\" = {:?}",
        ssl_properties(&c.ca),
        c.client_cert.to_str().unwrap(),
        c.client_key.to_str().unwrap()
    );
    let mut a = agent(
        e.broker.bootstrap(),
        dir.path(),
        &props,
        &[("ssl.key.password", &c.client_key_password)],
    );
    assert_verifies(&a, "mTLS");
    assert!(
        !a.log_text().contains(&c.client_key_password),
        "the key password is in the log"
    );
    assert!(a.terminate().success());

    // The same endpoint without a client certificate.
    let dir = tempfile::tempdir().unwrap();
    let a = agent(
        e.broker.bootstrap(),
        dir.path(),
        &ssl_properties(&c.ca),
        &[],
    );
    let why = not_ready_with(&a, "tls");
    assert!(why.contains("tls"), "/readyz: {why}");
    assert_bounded_cpu(&a, "no client certificate");
    let log = a.log_text();
    let lines = kind_lines(&log, "tls");
    assert!(
        (1..=8).contains(&lines.len()),
        "{} tls error lines (one a minute per client):\n{}",
        lines.len(),
        a.log_tail()
    );
    assert_eq!(a.scrape().sum("losswatch_probes_received_total", &[]), 0.0);
    let tls_log = e.tls.log_text();
    assert!(
        tls_log.contains("peer did not return a certificate"),
        "stunnel did not refuse for want of a certificate:\n{tls_log}"
    );
}

#[test]
fn a_wrong_ca_is_named_counted_and_not_ready() {
    let _serial = serial();
    let e = Endpoint::start(false, false);
    let dir = tempfile::tempdir().unwrap();
    let a = agent(
        e.broker.bootstrap(),
        dir.path(),
        &ssl_properties(&e.certs.other_ca),
        &[],
    );
    let why = not_ready_with(&a, "tls");
    assert!(
        why.contains("tls") && why.contains("certificate verify failed"),
        "/readyz: {why}"
    );
    assert_bounded_cpu(&a, "wrong CA");
    let log = a.log_text();
    let lines = kind_lines(&log, "tls");
    assert!(
        (1..=8).contains(&lines.len()),
        "{} tls error lines (one a minute per client):\n{}",
        lines.len(),
        a.log_tail()
    );
    assert!(
        lines
            .iter()
            .all(|l| l.contains("ERROR") && l.contains("certificate verify failed")),
        "{lines:#?}"
    );
    let s = a.scrape();
    assert_eq!(s.sum("losswatch_probes_received_total", &[]), 0.0);
    assert_eq!(s.sum("losswatch_probes_acked_total", &[]), 0.0);
    assert!(get(a.addr, "/livez").0 == 200, "the agent is not alive");
}

#[test]
fn an_unreachable_tls_endpoint_is_a_transport_error() {
    let _serial = serial();
    // Nothing ever listens on the port.
    let e = Endpoint::start(false, false);
    let dir = tempfile::tempdir().unwrap();
    let nowhere = format!("127.0.0.1:{}", free_port());
    let a = agent(nowhere, dir.path(), &ssl_properties(&e.certs.ca), &[]);
    let why = not_ready_with(&a, "transport");
    assert!(
        why.contains("transport") && why.contains("Connection refused"),
        "/readyz: {why}"
    );
    assert_bounded_cpu(&a, "nothing listening");
    let s = a.scrape();
    assert_eq!(
        s.sum("losswatch_kafka_errors_total", &[("kind", "tls")]),
        0.0
    );
    assert!(get(a.addr, "/livez").0 == 200, "the agent is not alive");
    drop(a);

    // The terminator stops under an agent that was verifying probes.
    let mut e = e;
    let dir = tempfile::tempdir().unwrap();
    let a = agent(
        e.broker.bootstrap(),
        dir.path(),
        &ssl_properties(&e.certs.ca),
        &[],
    );
    let before = assert_verifies(&a, "before the terminator stops");
    e.tls.stop();
    let transport = |s: &Scrape| s.sum("losswatch_kafka_errors_total", &[("kind", "transport")]);
    wait_until(Duration::from_secs(30), "transport errors counted", || {
        (transport(&a.scrape()) > transport(&before)).then_some(())
    });
    assert_bounded_cpu(&a, "terminator stopped");
    // A connection in its handshake when the terminator dies reports `SSL handshake failed:
    // Disconnected: connection reset by peer` (librdkafka adds "connecting to a PLAINTEXT
    // broker listener?"), counted as tls by its reason; every other error is transport.
    let tls_lines = kind_lines(&a.log_text(), "tls");
    assert!(
        tls_lines.iter().all(|l| l.contains("Disconnected")),
        "{tls_lines:#?}"
    );
    assert!(get(a.addr, "/livez").0 == 200, "the agent is not alive");
}

#[test]
fn sasl_ssl_scram_over_tls_authenticates_and_probes_verify() {
    let _serial = serial();
    let e = Endpoint::start(false, true);
    let dir = tempfile::tempdir().unwrap();
    let props = format!(
        "\"security.protocol\" = \"SASL_SSL\"\n\"ssl.ca.location\" = {:?}\n\
         \"sasl.mechanism\" = \"SCRAM-SHA-256\"\n\"sasl.username\" = \"alice\"",
        e.certs.ca.to_str().unwrap()
    );
    let mut a = agent(
        e.broker.bootstrap(),
        dir.path(),
        &props,
        &[("sasl.password", SCRAM_PW)],
    );
    assert_verifies(&a, "SASL_SSL");
    assert!(
        !a.log_text().contains(SCRAM_PW),
        "the password is in the log"
    );
    assert!(a.terminate().success());
}
