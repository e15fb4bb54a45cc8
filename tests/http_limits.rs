//! The endpoints under hostile or broken clients: idle connections, half-sent headers, and a
//! process out of file descriptors. Each test runs the real agent against a MockCluster.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::process::{cpu_ticks, AgentProcess, AgentSettings};
use common::{config, get, Mock};
use tokio_util::sync::CancellationToken;

const T: &str = "canary";

/// `n` connections that send nothing, and `n / 4` that send half a request header.
/// The tests here measure descriptors and CPU of agents that share two cores: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn idle_connections(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::new();
    for i in 0..n + n / 4 {
        let mut s = TcpStream::connect(addr).expect("connect");
        if i >= n {
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
        }
        out.push(s);
    }
    out
}

/// GET on a blocking thread, with the time it took.
async fn timed_get(addr: SocketAddr, path: &'static str) -> (u16, Duration) {
    tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let (code, _) = get(addr, path);
        (code, t.elapsed())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_below_the_limit_do_not_delay_the_endpoints() {
    let _serial = SERIAL.lock().await;
    let mock = Mock::new(T, 2);
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let cfg = config(&mock, T, &dir.path().join("s.db"));
    let running = losswatch::start(cfg.build().unwrap(), stop.clone())
        .await
        .unwrap();
    let idle = idle_connections(running.addr, 160);
    for path in ["/metrics", "/livez", "/api/status"] {
        let (code, took) = timed_get(running.addr, path).await;
        assert_eq!(code, 200, "{path}");
        assert!(
            took < Duration::from_secs(2),
            "{path} answered in {took:?} beside 200 idle connections"
        );
    }
    drop(idle);
    stop.cancel();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_and_idle_ones_are_dropped() {
    let _serial = SERIAL.lock().await;
    let mock = Mock::new(T, 2);
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let mut cfg = config(&mock, T, &dir.path().join("s.db"));
    cfg.http.max_connections = 8;
    cfg.http.header_read_timeout = Duration::from_millis(500);
    let running = losswatch::start(cfg.build().unwrap(), stop.clone())
        .await
        .unwrap();
    // Four times the limit: they are served 8 at a time and each is dropped after 0.5 s.
    let mut idle = idle_connections(running.addr, 32);
    let (code, took) = timed_get(running.addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        took < Duration::from_secs(10),
        "/metrics waited {took:?} behind 40 idle connections"
    );
    // The first idle connection was closed by the agent (EOF, or a 408 then EOF).
    let first = &mut idle[0];
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = Vec::new();
    let closed = first.read_to_end(&mut buf);
    assert!(
        closed.is_ok(),
        "an idle connection was not closed: {closed:?}"
    );
    stop.cancel();
    running.wait().await.unwrap();
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_accept_loop_backs_off() {
    let _serial = SERIAL.lock().await;
    const NOFILE: usize = 128;
    // One partition per broker: the agent has no partitions to add, so no short-lived admin
    // client opens and closes descriptors while they are counted.
    let mock = Mock::new(T, 3);
    let dir = tempfile::tempdir().unwrap();
    let mut s = AgentSettings::new(common::Broker::bootstrap(&mock), T, dir.path());
    s.prefix = vec!["prlimit".into(), format!("--nofile={NOFILE}:{NOFILE}")];
    // No cluster-wide clients (lag poller, audit, their election) opening descriptors meanwhile.
    s.extra_toml =
        "http.header_read_timeout = \"5m\"\n[lag]\nmode = \"off\"\n[audit]\nmode = \"off\"\n"
            .into();
    let agent = AgentProcess::start(s);
    let pid = agent.pid();
    // Let the clients open their broker connections first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = open_fds(pid);
    assert!(used < NOFILE, "the agent already holds {used} descriptors");
    // Enough connections to exhaust the agent's descriptors, and some more in the backlog.
    let idle = idle_connections(agent.addr, NOFILE - used + 16);
    // The agent reaches the end of its descriptors once it has accepted them all; on a
    // loaded machine that can take a while.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !agent.log_text().contains("accept failed") {
        assert!(
            std::time::Instant::now() < deadline,
            "the descriptors were never exhausted:\n{}",
            agent.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before_log = agent.log_text().matches("accept failed").count();
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let burnt = cpu_ticks(pid) - before;
    let lines = agent.log_text().matches("accept failed").count() - before_log;
    // Without a backoff the loop spins: thousands of lines and a whole core (300 ticks).
    assert!(lines <= 10, "{lines} accept errors logged in 3 s");
    assert!(
        burnt < 100,
        "{burnt} ticks of CPU in 3 s while out of descriptors"
    );
    // Once the clients go, the endpoints answer again.
    drop(idle);
    let (code, took) = timed_get(agent.addr, "/livez").await;
    assert_eq!(code, 200, "{}", agent.log_tail());
    assert!(took < Duration::from_secs(5), "{took:?}");
}
