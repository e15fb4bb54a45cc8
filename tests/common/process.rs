//! The real `losswatch` binary as a process: a config file, signals, and its endpoints.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::tansu::{free_port, signal, tail};
use super::{try_get, Scrape};

pub const BIN: &str = env!("CARGO_BIN_EXE_losswatch");

/// Settings of one agent run; rendered into a TOML config file.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub bootstrap: String,
    pub topic: String,
    pub probe_interval: &'static str,
    pub metadata_refresh: &'static str,
    pub delivery_timeout: &'static str,
    pub create_topic: bool,
    pub dir: PathBuf,
    /// TOML appended to the config file (more sections or keys).
    pub extra_toml: String,
    /// A command the agent runs under, e.g. `["prlimit", "--nofile=64"]`.
    pub prefix: Vec<String>,
    /// Environment of the agent besides `LOSSWATCH_LOG`.
    pub env: Vec<(String, String)>,
}

impl AgentSettings {
    pub fn new(bootstrap: String, topic: &str, dir: &Path) -> AgentSettings {
        AgentSettings {
            bootstrap,
            topic: topic.into(),
            probe_interval: "100ms",
            metadata_refresh: "1s",
            delivery_timeout: "5s",
            create_topic: false,
            dir: dir.to_owned(),
            extra_toml: String::new(),
            prefix: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join("state.db")
    }
}

pub struct AgentProcess {
    pub settings: AgentSettings,
    pub addr: SocketAddr,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl AgentProcess {
    pub fn start(settings: AgentSettings) -> AgentProcess {
        let port = free_port();
        let config = settings.dir.join("agent.toml");
        let s = &settings;
        let text = format!(
            r#"[kafka]
bootstrap_servers = "{bootstrap}"
[canary]
topic = "{topic}"
probe_interval = "{pi}"
metadata_refresh = "{mr}"
delivery_timeout = "{dt}"
create_topic = {ct}
[http]
listen = "127.0.0.1:{port}"
{http}
[state]
path = {state:?}
flush_interval = "100ms"
[shutdown]
grace = "5s"
{extra}
"#,
            bootstrap = s.bootstrap,
            topic = s.topic,
            pi = s.probe_interval,
            mr = s.metadata_refresh,
            dt = s.delivery_timeout,
            ct = s.create_topic,
            state = s.state().to_str().unwrap(),
            // Keys of [http] must be inside its table: lines of `extra_toml` starting
            // with `http.` go there.
            http = s
                .extra_toml
                .lines()
                .filter_map(|l| l.strip_prefix("http."))
                .collect::<Vec<_>>()
                .join("\n"),
            extra = s
                .extra_toml
                .lines()
                .filter(|l| !l.starts_with("http."))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        std::fs::write(&config, text).unwrap();
        let mut a = AgentProcess {
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            log: settings.dir.join("agent.log"),
            settings,
            config,
            child: None,
        };
        a.spawn();
        a
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = match self.settings.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let child = cmd
            .args(["run", "--config", self.config.to_str().unwrap()])
            .env(
                "LOSSWATCH_LOG",
                std::env::var("LOSSWATCH_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.settings.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(self.addr).is_err() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("agent exited at start ({st}):\n{}", self.log_tail());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "agent did not listen within 20 s:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("agent is running").id()
    }

    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }

    /// `kill -9`, then a new process on the same config and state file.
    pub fn crash_and_restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.child.take().unwrap().wait().unwrap()
    }

    /// Panics if the agent process has died, naming how (a signal such as 11, SIGSEGV, or an
    /// exit code) with the end of its log. A dead child stays a zombie until it is waited
    /// for, and `/proc/PID/stat` then holds its wait status (field 52, `exit_code`), so this
    /// needs no `&mut` and every scrape can check it.
    pub fn assert_alive(&self) {
        let Some(child) = &self.child else {
            panic!("the agent is not running");
        };
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
            .expect("/proc/PID/stat of the agent");
        // Fields after the command name, which is in parentheses: state is field 3.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        if fields.first() != Some(&"Z") {
            return;
        }
        let status: i32 = fields
            .get(52 - 3)
            .and_then(|f| f.parse().ok())
            .unwrap_or(-1);
        let how = match (status & 0x7f, (status >> 8) & 0xff) {
            _ if status < 0 => "in an unknown way".to_owned(),
            (0, code) => format!("with exit code {code}"),
            (sig, _) => format!("by signal {sig}"),
        };
        panic!("the agent process died {how}:\n{}", self.log_tail());
    }

    /// GET `path` from the agent. A failed request panics, naming the agent's death if that
    /// was the cause (it can die while the request is in flight).
    fn get(&self, path: &str) -> (u16, String) {
        self.assert_alive();
        match try_get(self.addr, path) {
            // Code 0: the connection closed before an HTTP answer.
            Ok((code, body)) if code != 0 => (code, body),
            failed => {
                let error = failed.map_or_else(|e| e.to_string(), |_| "no answer".to_owned());
                // A process that just died becomes a zombie within moments.
                for _ in 0..20 {
                    std::thread::sleep(Duration::from_millis(50));
                    self.assert_alive();
                }
                panic!("GET {path} from the live agent failed: {error}");
            }
        }
    }

    pub fn scrape(&self) -> Scrape {
        let (code, body) = self.get("/metrics");
        assert_eq!(code, 200, "/metrics answered {code}");
        Scrape::parse(&body)
    }

    pub fn json(&self, path: &str) -> serde_json::Value {
        let (code, body) = self.get(path);
        assert_eq!(code, 200, "{path} answered {code}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }

    /// Everything the agent wrote to stdout and stderr.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A stopped process must be continued to die promptly on SIGKILL's reaping.
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
        }
        self.kill9();
    }
}

/// utime + stime of a process, in clock ticks (100 a second).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}
