//! librdkafka's log lines as the agent logs them: a refused connection is an availability
//! event (WARN, never ERROR), what an operator must fix is ERROR, and a line repeated while a
//! broker stays down is logged once per window with the count of those held back.

use std::io::Write;
use std::sync::{Arc, Mutex};

use losswatch::kafka::log_context::log_librdkafka;
use rdkafka::config::RDKafkaLogLevel;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What `f` logged at TRACE and above, one line per event.
fn logged(f: impl FnOnce()) -> Vec<String> {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .without_time()
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    text.lines().map(str::to_owned).collect()
}

#[test]
fn a_refused_connection_is_a_warning_logged_once_per_window() {
    let line = |ms: u32| {
        format!(
            "127.0.0.1:39001/3: Connect to ipv4#127.0.0.1:39001 failed: Connection refused (after {ms}ms in state CONNECT)"
        )
    };
    let lines = logged(|| {
        for ms in 0..50 {
            log_librdkafka("verifier", RDKafkaLogLevel::Error, "FAIL", &line(ms));
        }
    });
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with(" WARN"), "{lines:?}");
    assert!(lines[0].contains("Connection refused"), "{lines:?}");
    assert!(lines[0].contains("client=\"verifier\""), "{lines:?}");
    // Another client's line is its own.
    let other = logged(|| log_librdkafka("producer", RDKafkaLogLevel::Error, "FAIL", &line(3)));
    assert_eq!(other.len(), 1, "{other:?}");
}

#[test]
fn what_an_operator_must_fix_is_an_error() {
    let lines = logged(|| {
        log_librdkafka(
            "producer",
            RDKafkaLogLevel::Error,
            "FAIL",
            "127.0.0.1:39002/bootstrap: SASL authentication error: Authentication failed: Invalid username or password",
        );
        log_librdkafka(
            "producer",
            RDKafkaLogLevel::Critical,
            "FATAL",
            "fatal idempotence error 39002",
        );
    });
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| l.starts_with("ERROR")), "{lines:?}");
}

#[test]
fn routine_client_chatter_stays_below_info() {
    let lines = logged(|| {
        log_librdkafka("lag", RDKafkaLogLevel::Notice, "CONFWARN", "39003 notice");
        log_librdkafka("lag", RDKafkaLogLevel::Info, "STATE", "39003 info");
        log_librdkafka("lag", RDKafkaLogLevel::Debug, "BROKER", "39003 debug");
    });
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with("DEBUG") && lines[1].starts_with("DEBUG"),
        "{lines:?}"
    );
    assert!(lines[2].starts_with("TRACE"), "{lines:?}");
}
