//! An in-process agent polling lag against a [`Tansu`] broker, and the scrape helpers the
//! lag tests share.

use std::time::Duration;

use losswatch::config::Config;
use losswatch::lag::LagMode;
use tokio_util::sync::CancellationToken;

use super::Tansu;
use crate::common::{self, Scrape};

impl common::Broker for Tansu {
    fn bootstrap(&self) -> String {
        Tansu::bootstrap(self)
    }
}

pub struct Agent {
    pub addr: std::net::SocketAddr,
    stop: CancellationToken,
    running: losswatch::Running,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// An agent polling lag on its own (`always`), every `interval`, over a window of 3.
    pub async fn start(t: &Tansu, interval: Duration, tweak: impl FnOnce(&mut Config)) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = common::config(t, "canary", &dir.path().join("s.db"));
        cfg.canary.create_topic = true;
        cfg.canary.partitions = 1;
        cfg.canary.replication_factor = 1;
        cfg.canary.probe_interval = Duration::from_millis(500);
        cfg.lag.mode = LagMode::Always;
        cfg.lag.interval = interval;
        cfg.lag.window = 3;
        cfg.lag.request_timeout = Duration::from_secs(5);
        tweak(&mut cfg);
        let stop = CancellationToken::new();
        let running = losswatch::start(cfg.build().unwrap(), stop.clone())
            .await
            .unwrap();
        Agent {
            addr: running.addr,
            stop,
            running,
            _dir: dir,
        }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.running.wait().await.unwrap();
    }
}

pub fn gtp<'a>(g: &'a str, t: &'a str, p: &'a str) -> [(&'a str, &'a str); 3] {
    [("group", g), ("topic", t), ("partition", p)]
}

pub fn has(s: &Scrape, name: &str, filter: &[(&str, &str)]) -> bool {
    s.0.iter().any(|(n, l, _)| {
        n == name
            && filter
                .iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
    })
}
