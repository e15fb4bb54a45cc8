//! A real Kafka-protocol broker for tests: Tansu, as a process on a free loopback port.
//!
//! The binary comes from `scripts/install-tansu.sh` (the test command runs it). A test that
//! cannot find it fails with that hint; it is never skipped. Brokers are killed by PID when
//! the handle drops, also when the test panics.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use losswatch::probe::{self, Probe};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// Where the broker keeps its data.
#[derive(Debug, Clone)]
pub enum Storage {
    /// Lost on restart: `kill -9` + restart is a real loss of acked data.
    Memory,
    /// A SQLite file: survives restarts.
    Sqlite(PathBuf),
}

impl Storage {
    /// The storage URL, and the directory to start the broker in (Tansu 0.6.0 resolves a
    /// `sqlite://` path against its working directory, even an absolute one).
    fn url(&self, log_dir: &Path) -> (String, PathBuf) {
        match self {
            Storage::Memory => ("memory://tansu/".into(), log_dir.to_owned()),
            Storage::Sqlite(path) => (
                format!("sqlite://{}", path.file_name().unwrap().to_str().unwrap()),
                path.parent().unwrap().to_owned(),
            ),
        }
    }
}

/// Tests against Tansu share two cores with the brokers and agents they start; one at a time
/// keeps their timings meaningful.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Tansu binary: `$LOSSWATCH_TANSU`, then cargo's bin directory, then `PATH`.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("LOSSWATCH_TANSU") {
        return PathBuf::from(p);
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(p) = cargo_home
        .map(|h| h.join("bin/tansu"))
        .filter(|p| p.exists())
    {
        return p;
    }
    if let Some(dir) = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .find(|d| d.join("tansu").is_file())
    {
        return dir.join("tansu");
    }
    panic!(
        "the Tansu broker is not installed: run scripts/install-tansu.sh \
         (scripts/test.sh does), or point LOSSWATCH_TANSU at the binary"
    );
}

/// The canary topic of the scenarios run against Tansu.
pub const CANARY: &str = "losswatch-canary";

/// Runs `f` (an admin request) to completion on a runtime of its own.
pub fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// `name` on partition `p` of the canary topic.
pub fn part(s: &super::Scrape, name: &str, p: i32) -> f64 {
    let ps = p.to_string();
    s.sum(name, &[("topic", CANARY), ("partition", ps.as_str())])
}

/// `name` summed over the canary topic.
pub fn total(s: &super::Scrape, name: &str) -> f64 {
    s.sum(name, &[("topic", CANARY)])
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Tansu {
    bin: PathBuf,
    /// Where the broker listens.
    port: u16,
    /// Where clients connect: the broker itself, or a TLS terminator in front of it
    /// ([`Tansu::sqlite_advertising`]).
    advertised: u16,
    storage: Storage,
    log: PathBuf,
    child: Option<Child>,
    /// More arguments of `tansu broker` (e.g. `--authentication`), used from the next
    /// [`Tansu::restart`] on.
    pub extra_args: Vec<String>,
    /// The directory of [`Tansu::memory`] and [`Tansu::sqlite`], removed on drop.
    _dir: Option<tempfile::TempDir>,
}

impl Tansu {
    /// Everything in memory, in a temporary directory for its log.
    pub fn memory() -> Tansu {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Tansu::start(Storage::Memory, dir.path());
        t._dir = Some(dir);
        t
    }

    /// SQLite storage in a temporary directory (kept across [`Tansu::restart`]).
    pub fn sqlite() -> Tansu {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Tansu::start(Storage::Sqlite(dir.path().join("tansu.db")), dir.path());
        t._dir = Some(dir);
        t
    }

    /// SQLite storage in a temporary directory, advertising `127.0.0.1:advertised` instead of
    /// its own port: clients reach it through whatever listens there (a TLS terminator that
    /// forwards to [`Tansu::port`]), also after the metadata names the broker.
    pub fn sqlite_advertising(advertised: u16) -> Tansu {
        let dir = tempfile::tempdir().unwrap();
        let store = Storage::Sqlite(dir.path().join("tansu.db"));
        let mut t = Tansu::start_at(store, dir.path(), free_port(), advertised);
        t._dir = Some(dir);
        t
    }

    /// Starts a broker on a free port; its output goes to `log_dir/tansu.log`.
    pub fn start(storage: Storage, log_dir: &Path) -> Tansu {
        let port = free_port();
        Tansu::start_at(storage, log_dir, port, port)
    }

    fn start_at(storage: Storage, log_dir: &Path, port: u16, advertised: u16) -> Tansu {
        let mut t = Tansu {
            bin: binary(),
            port,
            advertised,
            storage,
            log: log_dir.join("tansu.log"),
            child: None,
            extra_args: Vec::new(),
            _dir: None,
        };
        t.spawn();
        t
    }

    /// `tansu broker --listener-url` of this broker, for `tansu user create --broker`.
    /// Creates a SCRAM user (`mechanism`: scram256 or scram512) with `tansu user create`.
    pub fn create_user(&self, user: &str, password: &str, mechanism: &str) {
        let out = std::process::Command::new(binary())
            .args(["user", "create", "--broker", &self.url(), user, password])
            .args(["--mechanism", mechanism])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tansu user create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// The port the broker itself listens on (plain TCP).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.advertised)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker is running").id()
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("broker log file");
        let (storage, cwd) = self.storage.url(self.log.parent().unwrap());
        let mut child = Command::new(&self.bin)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &advertised])
            .args(["--storage-engine", &storage])
            .args(&self.extra_args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "tansu exited at start ({status}); log {}:\n{}",
                    self.log.display(),
                    tail(&self.log)
                );
            }
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {} within 20 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// Power loss: SIGKILL, nothing flushed.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A fresh broker process on the same port and storage.
    pub fn restart(&mut self) {
        self.kill9();
        // The port can stay busy for a moment after the kill.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpListener::bind(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "port {} stays busy", self.port);
            std::thread::sleep(Duration::from_millis(100));
        }
        self.spawn();
    }

    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{sig} {pid} failed");
}

pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))
}

/// Creates `topic` with `partitions` partitions (replication 1: Tansu is one node).
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let res = admin(bootstrap)
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &opts(),
        )
        .await
        .expect("create_topics request");
    for r in res {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
}

pub async fn delete_topic(bootstrap: &str, topic: &str) {
    let res = admin(bootstrap)
        .delete_topics(&[topic], &opts())
        .await
        .expect("delete_topics request");
    for r in res {
        r.unwrap_or_else(|(t, e)| panic!("delete topic {t}: {e}"));
    }
}

/// Grows `topic` to `total` partitions. Tansu 0.6.0 has no CreatePartitions API, so this
/// writes what that API would write into the broker's SQLite store (`sqlite://` only): the
/// partition count, and a partition row and a watermark row per new partition.
pub fn add_partitions_in_store(db: &Path, topic: &str, total: i32) {
    let c = rusqlite::Connection::open(db).expect("open the broker's store");
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    let (id, before): (i64, i32) = c
        .query_row(
            "select id, partitions from topic where name = ?1",
            [topic],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("topic row");
    for p in before..total {
        c.execute(
            "insert into topition (topic, partition) values (?1, ?2)",
            rusqlite::params![id, p],
        )
        .unwrap();
        let tp = c.last_insert_rowid();
        c.execute("insert into watermark (topition) values (?1)", [tp])
            .unwrap();
    }
    c.execute(
        "update topic set partitions = ?1 where id = ?2",
        rusqlite::params![total, id],
    )
    .unwrap();
}

/// One record as the independent reader saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub offset: i64,
    pub probe: Option<Probe>,
}

/// Ground truth: every record of `partitions` partitions of `topic`, read with a plain
/// consumer from the beginning until nothing new arrived for `quiet`. It does not trust the
/// high watermark (Tansu's `memory://` can under-report it).
pub fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    quiet: Duration,
) -> BTreeMap<i32, Vec<Seen>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "losswatch-test-truth-reader")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.message.max.bytes", "2000000")
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).expect("assign reader");
    let mut out: BTreeMap<i32, Vec<Seen>> = (0..partitions).map(|p| (p, vec![])).collect();
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            last = Instant::now();
            out.entry(m.partition()).or_default().push(Seen {
                offset: m.offset(),
                probe: probe::decode(m.payload()).ok(),
            });
        }
    }
    out
}
