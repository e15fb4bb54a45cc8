//! An admin client's log lines and errors reach its context: rust-rdkafka's `AdminClient`
//! leaves them in the client's main queue, which an [`Admin`] over it serves.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::AdminClient;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka_admin_ext::Admin;

#[derive(Default)]
struct Counting {
    errors: AtomicUsize,
    logs: AtomicUsize,
}

impl ClientContext for Counting {
    fn log(&self, _: RDKafkaLogLevel, _: &str, _: &str) {
        self.logs.fetch_add(1, Ordering::Relaxed);
    }
    fn error(&self, _: KafkaError, _: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// A client of a loopback port nothing listens on: every connection is refused, which
/// librdkafka reports as an error and a log line on the main queue.
fn refused_client() -> AdminClient<Counting> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .set("reconnect.backoff.ms", "50")
        .create_with_context(Counting::default())
        .unwrap()
}

fn wait_for(what: &str, done: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < until, "{what} within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn errors_and_log_lines_reach_the_context() {
    let client = Arc::new(refused_client());
    let admin = Admin::new(client.clone()).unwrap();
    let ctx = client.inner().context().clone();
    wait_for("errors and log lines", || {
        ctx.errors.load(Ordering::Relaxed) >= 2 && ctx.logs.load(Ordering::Relaxed) >= 1
    });
    // Once the `Admin` is gone, the client's main queue is no longer forwarded to it (the
    // client lives on) and nothing is served any more.
    drop(admin);
    std::thread::sleep(Duration::from_millis(500));
    let after = ctx.errors.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(ctx.errors.load(Ordering::Relaxed), after);
}

#[test]
fn without_an_admin_nothing_reaches_the_context() {
    // What rust-rdkafka's AdminClient does alone (why the forward exists).
    let client = refused_client();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(client.inner().context().errors.load(Ordering::Relaxed), 0);
}
