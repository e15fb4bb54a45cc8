//! Helpers shared by the integration tests: a broker to test against, scraping the agent's
//! endpoints the way a user does, and waiting for conditions with a deadline.
//!
//! The agent only needs bootstrap servers, so [`Broker`] can be backed by librdkafka's
//! MockCluster (fault injection) or, in other test files, by a real broker process.

#![allow(dead_code)]

pub mod process;
pub mod tansu;
pub mod tls;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use losswatch::config::Config;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// Anything that offers Kafka bootstrap servers.
pub trait Broker {
    fn bootstrap(&self) -> String;
}

pub struct Mock {
    pub cluster: MockCluster<'static, DefaultProducerContext>,
}

impl Mock {
    /// A 3-broker mock cluster with `topic` of `partitions` partitions, replication 3.
    pub fn new(topic: &str, partitions: i32) -> Mock {
        let cluster = MockCluster::new(3).expect("mock cluster");
        cluster
            .create_topic(topic, partitions, 3)
            .expect("create topic");
        Mock { cluster }
    }
}

impl Broker for Mock {
    fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}

/// Logs to stderr when `LOSSWATCH_TEST_LOG` holds a filter (e.g. `debug`).
pub fn init_log() {
    if let Ok(filter) = std::env::var("LOSSWATCH_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// An agent config for tests: fast probes and refreshes, loopback HTTP on a free port.
pub fn config(broker: &dyn Broker, topic: &str, state: &Path) -> Config {
    init_log();
    let mut c = Config::default();
    c.kafka.bootstrap_servers = broker.bootstrap();
    c.canary.topic = topic.into();
    c.canary.probe_interval = Duration::from_millis(100);
    c.canary.metadata_refresh = Duration::from_secs(1);
    c.canary.delivery_timeout = Duration::from_secs(3);
    c.canary.create_topic = false;
    c.http.listen = "127.0.0.1:0".parse().unwrap();
    c.state.path = state.to_owned();
    c.state.flush_interval = Duration::from_millis(100);
    c.shutdown.grace = Duration::from_secs(5);
    c
}

/// GET `path`; returns (status code, body).
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_get(addr, path).expect("GET from the agent")
}

/// GET `path`; returns (status code, body), or the connection's error.
pub fn try_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((code, body.to_owned()))
}

/// Parsed `/metrics`: (name, labels) → value.
#[derive(Debug, Default)]
pub struct Scrape(pub Vec<(String, BTreeMap<String, String>, f64)>);

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut out = vec![];
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = value.parse().expect("sample value");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => {
                    let body = rest.trim_end_matches('}');
                    let labels = body
                        .split("\",")
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').expect("label");
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect();
                    (n.to_owned(), labels)
                }
                None => (series.to_owned(), BTreeMap::new()),
            };
            out.push((name, labels, value));
        }
        Scrape(out)
    }

    /// Sum of `name` over series whose labels include all of `filter`.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && filter
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    /// Distinct values of label `label` on `name`.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .0
            .iter()
            .filter(|(n, _, _)| n == name)
            .filter_map(|(_, l, _)| l.get(label).cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

pub fn scrape(addr: SocketAddr) -> Scrape {
    let (code, body) = get(addr, "/metrics");
    assert_eq!(code, 200, "/metrics answered {code}: {body}");
    Scrape::parse(&body)
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout` (blocking).
pub fn wait_until<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// acked + restored and received + lost + expired + pending of one partition on a scrape.
pub fn identity_sides(s: &Scrape, topic: &str, partition: i32) -> (f64, f64) {
    let ps = partition.to_string();
    let f = [("topic", topic), ("partition", ps.as_str())];
    let acked = s.sum("losswatch_probes_acked_total", &f) + s.sum("losswatch_probes_restored", &f);
    let accounted = s.sum("losswatch_probes_received_total", &f)
        + s.sum("losswatch_probes_lost_total", &f)
        + s.sum("losswatch_probes_expired_unread_total", &f)
        + s.sum("losswatch_probes_pending", &f);
    (acked, accounted)
}

/// Per-partition identity on a scrape: acked + restored = received + lost + expired + pending.
pub fn assert_identity(s: &Scrape, topic: &str, partitions: i32) {
    for p in 0..partitions {
        let (acked, accounted) = identity_sides(s, topic, p);
        assert_eq!(
            acked, accounted,
            "partition {p}: acked+restored={acked} vs received+lost+expired+pending={accounted}"
        );
    }
}

/// Commits `offsets` (topic, partition, offset) for `group`, as a consumer of that group would.
pub fn commit(bootstrap: &str, group: &str, offsets: &[(&str, i32, i64)]) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in offsets {
        tpl.add_partition_offset(t, *p, Offset::Offset(*o)).unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).expect("commit");
}

/// The current `losswatch_consumergroup_status` of group `g` on a scrape.
pub fn group_status(s: &Scrape, g: &str) -> Option<String> {
    s.0.iter()
        .find(|(n, l, v)| {
            n == "losswatch_consumergroup_status"
                && l.get("group").map(String::as_str) == Some(g)
                && *v == 1.0
        })
        .and_then(|(_, l, _)| l.get("status").cloned())
}

/// Writes raw records to a partition with a plain producer (not through the agent).
pub fn produce_raw(bootstrap: &str, topic: &str, partition: i32, values: &[Option<Vec<u8>>]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.max.bytes", "2000000")
        .create()
        .expect("producer");
    for v in values {
        let mut rec = BaseRecord::<(), [u8]>::to(topic).partition(partition);
        if let Some(bytes) = v {
            rec = rec.payload(bytes.as_slice());
        }
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((e, r)) => {
                    assert!(
                        matches!(
                            e.rdkafka_error_code(),
                            Some(rdkafka::error::RDKafkaErrorCode::QueueFull)
                        ),
                        "produce failed: {e}"
                    );
                    rec = r;
                    p.poll(Duration::from_millis(50));
                }
            }
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(30)).expect("flush raw records");
}
