//! A Tansu broker for the lag tests: started on a free loopback port, killed by PID on drop,
//! and the few client-side steps the tests need (topics, records with known timestamps,
//! commits). The binary is `LOSSWATCH_TANSU`, else `~/.cargo/bin/tansu`, else `tansu` on
//! the PATH; without one the test fails and says how to install it.

#![allow(dead_code)]

pub mod agent;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("LOSSWATCH_TANSU") {
        return PathBuf::from(p);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = Path::new(&home).join(".cargo/bin/tansu");
        if p.is_file() {
            return p;
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("tansu");
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "the Tansu broker is not installed (looked at $LOSSWATCH_TANSU, ~/.cargo/bin/tansu and \
         the PATH): run scripts/install-tansu.sh"
    );
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Tansu {
    child: Option<Child>,
    pub port: u16,
    storage: String,
    dir: tempfile::TempDir,
}

impl Tansu {
    /// Everything in memory (lists groups; lost on restart).
    pub fn memory() -> Tansu {
        Tansu::start("memory://tansu/".into(), None)
    }

    /// SQLite storage in a temporary directory (kept across [`Tansu::restart`]).
    pub fn sqlite() -> Tansu {
        let dir = tempfile::tempdir().unwrap();
        // Tansu takes the URL's path relative to its working directory: `sqlite:///` and an
        // absolute path.
        let storage = format!("sqlite:///{}", dir.path().join("tansu.db").display());
        Tansu::start(storage, Some(dir))
    }

    fn start(storage: String, dir: Option<tempfile::TempDir>) -> Tansu {
        let mut t = Tansu {
            child: None,
            port: free_port(),
            storage,
            dir: dir.unwrap_or_else(|| tempfile::tempdir().unwrap()),
        };
        t.spawn();
        t
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("tansu.log")
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                &self.storage,
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start tansu ({e}): run scripts/install-tansu.sh"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "tansu exited ({status}) before listening: {}",
                    std::fs::read_to_string(self.log_path()).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "tansu did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// `kill -9`, then starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(20);
        // The port can stay busy for a moment after the kill.
        while std::net::TcpListener::bind(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "port {} stays busy", self.port);
            std::thread::sleep(Duration::from_millis(100));
        }
        self.spawn();
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}

fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// Creates a topic (with topic configs), waiting for the answer.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create().unwrap();
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let r = admin
        .create_topics(
            [&new],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create_topics");
    for x in r {
        x.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
}

/// Produces one record per timestamp (ms) to `partition`, each in its own batch (exact log
/// ends on memory://), and waits for every ack.
pub fn produce(bootstrap: &str, topic: &str, partition: i32, timestamps_ms: &[i64]) {
    let p: BaseProducer = client(bootstrap)
        .set("linger.ms", "0")
        .set("batch.num.messages", "1")
        .set("max.in.flight.requests.per.connection", "1")
        .create()
        .unwrap();
    for (i, ts) in timestamps_ms.iter().enumerate() {
        let body = format!("record {i}");
        p.send(
            BaseRecord::<(), str>::to(topic)
                .partition(partition)
                .payload(&body)
                .timestamp(*ts),
        )
        .map_err(|(e, _)| e)
        .expect("produce");
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(30)).expect("flush");
    assert_eq!(p.in_flight_count(), 0);
}

/// Commits offsets for `group` the way a consumer that never joins does.
pub fn commit(bootstrap: &str, group: &str, offsets: &[(&str, i32, i64)]) {
    let c: BaseConsumer = client(bootstrap)
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

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
