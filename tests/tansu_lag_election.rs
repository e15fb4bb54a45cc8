//! One lag poller per DaemonSet: real `losswatch` processes against one Tansu broker elect
//! exactly one poller through the election group (never two at once); when it is killed
//! (`kill -9`, no goodbye) or shut down (SIGTERM) another takes over. The durability audit
//! follows the same election.

mod common;
mod lag_tansu;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::tansu::free_port;
use common::{commit, scrape, Scrape};
use lag_tansu::{create_topic, now_ms, produce, Tansu};

const BIN: &str = env!("CARGO_BIN_EXE_losswatch");
const SESSION: Duration = Duration::from_secs(6);

struct Agent {
    name: &'static str,
    child: Child,
    addr: std::net::SocketAddr,
}

impl Agent {
    fn start(name: &'static str, t: &Tansu, dir: &Path) -> Agent {
        let port = free_port();
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                r#"
[kafka]
bootstrap_servers = "{}"
[canary]
topic = "canary"
partitions = 1
replication_factor = 1
probe_interval = "500ms"
[http]
listen = "127.0.0.1:{port}"
[state]
path = "{}"
[lag]
mode = "elected"
interval = "1s"
session_timeout = "{}s"
"#,
                t.bootstrap(),
                dir.join(format!("{name}.db")).display(),
                SESSION.as_secs()
            ),
        )
        .unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config", config.to_str().unwrap()])
            .env(
                "LOSSWATCH_LOG",
                std::env::var("LOSSWATCH_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "agent {name} did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Agent { name, child, addr }
    }

    fn scrape(&self) -> Scrape {
        scrape(self.addr)
    }

    /// Whether it exports consumer-group lag. One that does says it is the poller (the
    /// gauge turns 1 at the election, the series come with the first poll after it).
    fn polls(&self) -> bool {
        let s = self.scrape();
        let exports =
            s.0.iter()
                .any(|(n, _, _)| n == "losswatch_consumergroup_lag");
        if exports {
            assert_eq!(
                s.sum("losswatch_lag_poller_leader", &[]),
                1.0,
                "{}",
                self.name
            );
            // The durability audit follows the same election: the poller audits.
            assert_eq!(
                s.sum("losswatch_audit_running", &[]),
                1.0,
                "{} polls but does not audit",
                self.name
            );
        } else if s.sum("losswatch_lag_poller_leader", &[]) == 0.0 {
            // An agent that is not elected neither audits nor exports findings.
            assert_eq!(s.sum("losswatch_audit_running", &[]), 0.0, "{}", self.name);
            assert!(
                s.label_values("losswatch_topic_config_risk", "topic")
                    .is_empty(),
                "{} exports audit findings without being elected",
                self.name
            );
        }
        exports
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn term(&mut self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        self.child.wait().unwrap();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until exactly one of `agents` polls, and stays the only one for `stable`; returns
/// its index. Never two at once.
fn one_poller(agents: &[&Agent], within: Duration, stable: Duration) -> usize {
    let deadline = Instant::now() + within;
    let mut since: Option<(usize, Instant)> = None;
    loop {
        let polling: Vec<usize> = (0..agents.len()).filter(|&i| agents[i].polls()).collect();
        assert!(
            polling.len() <= 1,
            "several agents poll at once: {polling:?}"
        );
        match (polling.first(), since) {
            (Some(&i), Some((j, t))) if i == j => {
                if t.elapsed() >= stable {
                    return i;
                }
            }
            (Some(&i), _) => since = Some((i, Instant::now())),
            (None, _) => since = None,
        }
        assert!(
            Instant::now() < deadline,
            "no single poller within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Time until `agent` polls.
fn takes_over(agent: &Agent, since: Instant, within: Duration) -> Duration {
    loop {
        if agent.polls() {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < within,
            "{} did not take over within {within:?}",
            agent.name
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_agent_polls_and_another_takes_over() {
    let t = Tansu::memory();
    let b = t.bootstrap();
    create_topic(&b, "orders", 2, &[]).await;
    produce(&b, "orders", 0, &[now_ms(); 5]);
    commit(&b, "app", &[("orders", 0, 2)]);
    let dir = tempfile::tempdir().unwrap();

    let mut a = Agent::start("a", &t, dir.path());
    let mut b2 = Agent::start("b", &t, dir.path());
    let leader = one_poller(&[&a, &b2], Duration::from_secs(60), Duration::from_secs(4));
    let (dead, survivor) = if leader == 0 {
        (&mut a, &b2)
    } else {
        (&mut b2, &a)
    };
    assert_eq!(
        survivor.scrape().sum("losswatch_lag_poller_leader", &[]),
        0.0
    );
    assert_eq!(
        dead.scrape().sum(
            "losswatch_consumergroup_lag",
            &[("group", "app"), ("partition", "0")]
        ),
        3.0
    );

    // kill -9: the coordinator drops the dead member after the session timeout and
    // rebalances. A Kafka coordinator hands partition 0 to the survivor then (one session
    // timeout plus a heartbeat). Tansu 0.6.0 keeps a dead member that computed the last
    // assignment as the group's leader and assigns the survivor nothing; the survivor's
    // watchdog then sees no poller heartbeat for two session timeouts and rejoins. The bound
    // covers both: two session timeouts, one heartbeat check (a third of a session) and the
    // rejoin.
    dead.kill9();
    let killed = Instant::now();
    let took = takes_over(survivor, killed, SESSION * 4);
    eprintln!("takeover after kill -9: {took:?} (session timeout {SESSION:?})");
    let bound = SESSION * 2 + SESSION / 3 + Duration::from_secs(4);
    assert!(took <= bound, "takeover took {took:?} > {bound:?}");

    // A third agent joins: still exactly one poller after the rebalance.
    let c = Agent::start("c", &t, dir.path());
    let survivor_ref: &Agent = if leader == 0 { &b2 } else { &a };
    let now = one_poller(
        &[survivor_ref, &c],
        Duration::from_secs(60),
        Duration::from_secs(4),
    );
    let (mut stopping, other) = if now == 0 {
        (if leader == 0 { b2 } else { a }, c)
    } else {
        (c, if leader == 0 { b2 } else { a })
    };

    // SIGTERM: the poller leaves the group on its way out, so there is no session timeout
    // to wait for; but on Tansu, when it was the member that computed the assignment, the
    // survivor is again assigned nothing and the watchdog has to step in (same bound).
    stopping.term();
    let took = takes_over(&other, Instant::now(), SESSION * 4);
    eprintln!("takeover after SIGTERM: {took:?}");
    assert!(
        took <= bound,
        "takeover after a clean shutdown took {took:?} > {bound:?}"
    );
}
