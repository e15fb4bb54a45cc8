//! The `[lag]` section: which consumer groups are polled, how often, and which agent polls.

use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// Which agents poll consumer-group lag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LagMode {
    /// One agent of all those sharing the election group polls (one poller per DaemonSet).
    Elected,
    /// This agent always polls.
    Always,
    /// This agent never polls.
    Off,
}

/// How a group's committed offsets are asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetsFetch {
    /// One request per group for every partition it has a commit on (an OffsetFetch naming
    /// no topics: Kafka 0.10.2 and later, Tansu). Costs what the group has committed.
    Group,
    /// Name the partitions: every partition of every topic when a group is first seen and
    /// about every `discovery_interval`, the topics it has commits on in between. For brokers
    /// that answer an all-partitions fetch with nothing (librdkafka's MockCluster, which the
    /// demo runs on). A search costs groups × partitions of the cluster.
    Named,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LagConfig {
    pub mode: LagMode,
    /// Time between polls; a slow poll skips ticks.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Poll exactly these groups instead of listing the cluster's groups.
    pub groups: Vec<String>,
    /// Listed groups are polled when they match one of these regexes (all when empty) …
    pub include: Vec<String>,
    /// … and none of these.
    pub exclude: Vec<String>,
    /// Also poll the agents' own groups (verifier and election groups).
    pub include_own_groups: bool,
    /// Polls per partition in the status window.
    pub window: usize,
    /// Groups whose committed offsets are fetched at the same time.
    pub concurrency: usize,
    /// Read the timestamp of the first unconsumed record (else only interpolate).
    pub read_timestamps: bool,
    /// How committed offsets are asked for: `group` (every partition a group committed, one
    /// request per group) or `named` (the partitions named, found by searching every topic).
    pub offsets_fetch: OffsetsFetch,
    /// With `offsets_fetch = "named"`: how often every topic is searched for new commits of
    /// each group (a group's known topics, and those its members are assigned, are fetched at
    /// every poll).
    #[serde(with = "humantime_serde")]
    pub discovery_interval: Duration,
    /// Timeout of each request of a poll.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Consumer group through which the agents elect the poller.
    pub election_group: String,
    /// One-partition topic the election group subscribes to (created when missing).
    pub election_topic: String,
    /// Session timeout of the election group: how fast a dead poller is replaced.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Track truncation of the topics the groups read (DescribeTopics for topic ids). Off by
    /// default: librdkafka 2.12.1 crashed (SIGSEGV in its metadata cache) when a topic read
    /// this way was deleted and created again with a new id.
    pub track_truncation: bool,
}

impl Default for LagConfig {
    fn default() -> Self {
        LagConfig {
            mode: LagMode::Elected,
            interval: Duration::from_secs(30),
            groups: Vec::new(),
            include: Vec::new(),
            exclude: Vec::new(),
            include_own_groups: false,
            window: 10,
            concurrency: 8,
            read_timestamps: true,
            offsets_fetch: OffsetsFetch::Group,
            discovery_interval: Duration::from_secs(300),
            request_timeout: Duration::from_secs(10),
            election_group: "losswatch-lag-election".into(),
            election_topic: "losswatch-lag-election".into(),
            session_timeout: Duration::from_secs(10),
            track_truncation: false,
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 249
        && s.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'))
}

fn compile(key: &'static str, patterns: &[String]) -> Result<Vec<Regex>, ConfigError> {
    patterns
        .iter()
        .map(|p| Regex::new(p).map_err(|e| invalid(key, format!("bad regex {p:?}: {e}"))))
        .collect()
}

impl LagConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interval < Duration::from_millis(100) || self.interval > Duration::from_secs(3600) {
            return Err(invalid("lag.interval", "expected between 100ms and 1h"));
        }
        if let Some(g) = self.groups.iter().find(|g| g.trim().is_empty()) {
            return Err(invalid(
                "lag.groups",
                format!("expected non-empty group ids, got {g:?}"),
            ));
        }
        compile("lag.include", &self.include)?;
        compile("lag.exclude", &self.exclude)?;
        if !(2..=1000).contains(&self.window) {
            return Err(invalid(
                "lag.window",
                format!("expected 2 to 1000 polls, got {}", self.window),
            ));
        }
        if !(1..=256).contains(&self.concurrency) {
            return Err(invalid(
                "lag.concurrency",
                format!("expected 1 to 256, got {}", self.concurrency),
            ));
        }
        if self.discovery_interval < self.interval {
            return Err(invalid(
                "lag.discovery_interval",
                "expected at least lag.interval",
            ));
        }
        if self.request_timeout < Duration::from_millis(100)
            || self.request_timeout > Duration::from_secs(300)
        {
            return Err(invalid(
                "lag.request_timeout",
                "expected between 100ms and 5m",
            ));
        }
        if self.election_group.trim().is_empty() {
            return Err(invalid("lag.election_group", "expected a group id"));
        }
        if !valid_name(&self.election_topic) {
            return Err(invalid(
                "lag.election_topic",
                format!(
                    "expected 1-249 characters of [a-zA-Z0-9._-], got {:?}",
                    self.election_topic
                ),
            ));
        }
        // Kafka brokers refuse a session timeout outside group.min.session.timeout.ms (6s by
        // default) and group.max.session.timeout.ms; the election would then never complete.
        if self.session_timeout < Duration::from_secs(6)
            || self.session_timeout > Duration::from_secs(300)
        {
            return Err(invalid(
                "lag.session_timeout",
                "expected between 6s (the brokers' default minimum) and 5m",
            ));
        }
        Ok(())
    }

    /// The group filter this config describes. Call after [`LagConfig::validate`].
    pub fn filter(&self) -> Result<GroupFilter, ConfigError> {
        Ok(GroupFilter {
            include: compile("lag.include", &self.include)?,
            exclude: compile("lag.exclude", &self.exclude)?,
            own: if self.include_own_groups {
                None
            } else {
                Some(self.election_group.clone())
            },
        })
    }
}

pub use crate::kafka::VERIFIER_GROUP_PREFIX;

/// Which listed groups are polled.
#[derive(Debug, Clone)]
pub struct GroupFilter {
    include: Vec<Regex>,
    exclude: Vec<Regex>,
    /// The election group, when the agents' own groups (verifiers, the poller's reader, the
    /// election) are excluded.
    own: Option<String>,
}

impl GroupFilter {
    pub fn accepts(&self, group: &str) -> bool {
        if let Some(election) = &self.own {
            if group == election
                || group == crate::kafka::LAG_READER_GROUP
                || group.starts_with(VERIFIER_GROUP_PREFIX)
            {
                return false;
            }
        }
        (self.include.is_empty() || self.include.iter().any(|r| r.is_match(group)))
            && !self.exclude.iter().any(|r| r.is_match(group))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        LagConfig::default().validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        type Spoil = Box<dyn Fn(&mut LagConfig)>;
        let cases: Vec<(&str, Spoil)> = vec![
            ("lag.interval", Box::new(|c| c.interval = Duration::ZERO)),
            ("lag.groups", Box::new(|c| c.groups = vec![" ".into()])),
            ("lag.include", Box::new(|c| c.include = vec!["(".into()])),
            ("lag.exclude", Box::new(|c| c.exclude = vec!["[".into()])),
            ("lag.window", Box::new(|c| c.window = 1)),
            ("lag.concurrency", Box::new(|c| c.concurrency = 0)),
            (
                "lag.discovery_interval",
                Box::new(|c| c.discovery_interval = Duration::from_secs(1)),
            ),
            (
                "lag.request_timeout",
                Box::new(|c| c.request_timeout = Duration::ZERO),
            ),
            ("lag.election_group", Box::new(|c| c.election_group.clear())),
            (
                "lag.election_topic",
                Box::new(|c| c.election_topic = "a b".into()),
            ),
            (
                "lag.session_timeout",
                Box::new(|c| c.session_timeout = Duration::from_secs(5)),
            ),
        ];
        for (key, spoil) in cases {
            let mut c = LagConfig::default();
            spoil(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn lag_section_of_the_config_file() {
        use crate::config::Config;
        let cfg = Config::parse(
            "[lag]\nmode = \"always\"\ninterval = \"2s\"\ngroups = [\"orders\"]\nwindow = 5\n",
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.lag.mode, LagMode::Always);
        assert_eq!(cfg.lag.interval, Duration::from_secs(2));
        assert!(cfg.to_redacted_toml().contains("[lag]"));
        let err = Config::parse("[lag]\nintervall = \"2s\"\n").unwrap_err();
        assert!(err.contains("intervall"), "{err}");
        let err = Config::parse("[lag]\nmode = \"sometimes\"\n").unwrap_err();
        assert!(err.contains("sometimes"), "{err}");
        let cfg = Config::parse("[lag]\nwindow = 1\n").unwrap();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("lag.window"), "{err}");
    }

    #[test]
    fn own_groups_are_excluded_by_default() {
        let mut c = LagConfig {
            exclude: vec!["^tmp-".into()],
            ..LagConfig::default()
        };
        let f = c.filter().unwrap();
        assert!(f.accepts("orders"));
        assert!(!f.accepts("tmp-1"));
        assert!(!f.accepts("losswatch-lag-election"));
        assert!(!f.accepts("losswatch-verifier-0b5e"));
        assert!(!f.accepts("losswatch-lag-reader"));
        c.include_own_groups = true;
        c.include = vec!["^losswatch-".into()];
        let f = c.filter().unwrap();
        assert!(f.accepts("losswatch-lag-election"));
        assert!(!f.accepts("orders"));
    }
}
