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
    /// Where clients connect: the broker itself, or a [`VersionCap`] in front of it.
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

    /// Starts a broker whose Fetch API is capped at v12 (topic names, no topic ids) by a
    /// [`VersionCap`] proxy, for scenarios in which a topic id changes under a live client.
    pub fn start_fetch_by_name(storage: Storage, log_dir: &Path) -> Tansu {
        let port = free_port();
        let cap = VersionCap::start(port, 1, 12);
        Tansu::start_at(storage, log_dir, port, cap.port)
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

/// A byte-forwarding TCP proxy in front of a broker that lowers the highest version of one
/// API the broker advertises in its ApiVersions response; everything else passes untouched.
///
/// Tansu 0.6.0 answers a Fetch by topic id for a topic id it does not know (the topic was
/// recreated, or the broker lost it on restart) with a zero topic id, a null name and a
/// CurrentLeader tag; librdkafka 2.12.1 then dereferences the null name and the client
/// process dies (SIGSEGV in `rd_kafka_metadata_update_op`). Capping Fetch at v12 (Kafka
/// 2.8's highest: topic names, no topic ids) lets the scenarios that recreate a topic run.
pub struct VersionCap {
    pub port: u16,
}

impl VersionCap {
    /// Listens on a free port and forwards to `127.0.0.1:upstream`.
    pub fn start(upstream: u16, api_key: i16, max_version: i16) -> VersionCap {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let asked: std::sync::Arc<Mutex<BTreeMap<i32, (i16, i16)>>> = Default::default();
                let (c2, s2, asked2) = (
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    asked.clone(),
                );
                std::thread::spawn(move || pump(c2, s2, |f| note_request(f, &asked2)));
                std::thread::spawn(move || {
                    pump(server, client, |f| {
                        cap_response(f, &asked, api_key, max_version)
                    })
                });
            }
        });
        VersionCap { port }
    }
}

/// Copies length-prefixed Kafka frames from `from` to `to`, passing each through `edit`.
fn pump(mut from: TcpStream, mut to: TcpStream, mut edit: impl FnMut(&mut [u8])) {
    use std::io::{Read, Write};
    loop {
        let mut len = [0u8; 4];
        if from.read_exact(&mut len).is_err() {
            break;
        }
        let mut frame = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
        if from.read_exact(&mut frame).is_err() {
            break;
        }
        edit(&mut frame);
        if to.write_all(&len).is_err() || to.write_all(&frame).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

/// Remembers (api key, version) of each request by correlation id.
fn note_request(frame: &mut [u8], asked: &Mutex<BTreeMap<i32, (i16, i16)>>) {
    if frame.len() >= 8 {
        let key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let corr = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        asked.lock().unwrap().insert(corr, (key, version));
    }
}

const API_VERSIONS: i16 = 18;

/// In an ApiVersions response, lowers `api_key`'s max version to `max` (in place).
fn cap_response(
    frame: &mut [u8],
    asked: &Mutex<BTreeMap<i32, (i16, i16)>>,
    api_key: i16,
    max: i16,
) {
    if frame.len() < 8 {
        return;
    }
    let corr = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    let Some((API_VERSIONS, version)) = asked.lock().unwrap().remove(&corr) else {
        return;
    };
    // Header v0 (correlation id), error code, then the array of api keys.
    let mut at = 6;
    let count = if version >= 3 {
        let (n, used) = uvarint(&frame[at..]);
        at += used;
        n.saturating_sub(1) as usize
    } else {
        let n = i32::from_be_bytes(frame[at..at + 4].try_into().unwrap());
        at += 4;
        n.max(0) as usize
    };
    for _ in 0..count {
        if at + 6 > frame.len() {
            return;
        }
        let key = i16::from_be_bytes([frame[at], frame[at + 1]]);
        let hi = i16::from_be_bytes([frame[at + 4], frame[at + 5]]);
        if key == api_key && hi > max {
            frame[at + 4..at + 6].copy_from_slice(&max.to_be_bytes());
        }
        at += 6;
        if version >= 3 {
            // Tagged fields of the entry: a count, then (tag, size, bytes) each.
            let (tags, used) = uvarint(&frame[at..]);
            at += used;
            for _ in 0..tags {
                let (_, used) = uvarint(&frame[at..]);
                at += used;
                let (size, used) = uvarint(&frame[at..]);
                at += used + size as usize;
            }
        }
    }
}

fn uvarint(b: &[u8]) -> (u64, usize) {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return (v, i + 1);
        }
    }
    (v, b.len())
}
