//! Typed configuration: a TOML file, then environment and command-line overrides, then
//! validation. Every error names the key at fault and what is expected; the binary prints it
//! and exits 64 (EX_USAGE).
//!
//! [`Config::build`] validates, reads the secret files and the web config, and returns a
//! [`ValidConfig`]: the only kind of configuration [`crate::start`] accepts.
//!
//! | module | section |
//! |---|---|
//! | this one | `[kafka]`, `[canary]`, `[http]`, `[state]`, `[shutdown]`, `[audit]`, `[metrics]` |
//! | [`lag`] | `[lag]` and the group filter |
//! | [`web`] | the exporter toolkit's web-config file named by `http.web_config_file` |

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod lag;
pub mod web;

pub use lag::{GroupFilter, LagConfig, LagMode};

/// The whole configuration. Unknown keys are rejected at every level.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub canary: CanaryConfig,
    pub http: HttpConfig,
    pub state: StateConfig,
    pub shutdown: ShutdownConfig,
    pub lag: LagConfig,
    pub audit: AuditConfig,
    pub metrics: MetricsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// Passed verbatim to librdkafka (SASL, TLS, timeouts …). Values of keys that look secret
    /// are redacted whenever the config is printed.
    pub properties: BTreeMap<String, Sensitive>,
    /// librdkafka properties whose value is the content of a file (a mounted Kubernetes
    /// Secret), read at start; a trailing newline is dropped. Always redacted.
    pub secret_files: BTreeMap<String, PathBuf>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "localhost:9092".into(),
            properties: BTreeMap::new(),
            secret_files: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CanaryConfig {
    pub topic: String,
    /// One probe per partition per interval (with `fleet_probe_rate`, the shortest interval).
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    /// Probes per partition per second the whole fleet writes: each agent probes every
    /// `max(probe_interval, live agents / fleet_probe_rate)` (`canary::fleet`). Unset: every
    /// agent probes every `probe_interval`.
    pub fleet_probe_rate: Option<f64>,
    /// Size of each probe record in bytes (at least the 46-byte header).
    pub payload_bytes: usize,
    /// A probe arriving later than this after it was produced is also counted late.
    #[serde(with = "humantime_serde")]
    pub late_threshold: Duration,
    /// How often partitions and leaders are re-read from metadata.
    #[serde(with = "humantime_serde")]
    pub metadata_refresh: Duration,
    /// Delivery timeout of one probe (librdkafka `message.timeout.ms`).
    #[serde(with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// Create the canary topic when it is missing.
    pub create_topic: bool,
    /// Partitions of a created topic; 0 means one per broker.
    pub partitions: i32,
    /// Replication factor of a created topic; 0 means min(3, brokers).
    pub replication_factor: i32,
    /// Most acked, unverified probes kept per partition; beyond it sends are held back.
    pub max_pending_per_partition: usize,
    /// Partitions the canary topic keeps per broker (created with, and grown to, at least
    /// this many times the brokers), so that every broker leads one.
    pub partitions_per_broker: i32,
    /// How often the canary topic's partition count and broker coverage are reconciled.
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// Create, grow and reconcile the canary topic. `false` (managed Kafka that forbids admin
    /// calls): no admin call at all, the topic is used as it is.
    pub manage_topic: bool,
    /// Accept `kafka.properties` that weaken the canary producer (acks below all, no
    /// idempotence); logged at start and exported as `losswatch_weak_producer 1`.
    pub allow_weak_producer: bool,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        CanaryConfig {
            topic: "losswatch-canary".into(),
            probe_interval: Duration::from_secs(1),
            fleet_probe_rate: None,
            payload_bytes: 100,
            late_threshold: Duration::from_secs(10),
            metadata_refresh: Duration::from_secs(30),
            delivery_timeout: Duration::from_secs(30),
            create_topic: true,
            partitions: 0,
            replication_factor: 0,
            max_pending_per_partition: 10_000,
            partitions_per_broker: 1,
            reconcile_interval: Duration::from_secs(60),
            manage_topic: true,
            allow_weak_producer: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// A web-config file of the Prometheus exporter toolkit: TLS and basic auth.
    pub web_config_file: Option<PathBuf>,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// A client that has not sent a whole request header (or finished the TLS handshake)
    /// within this is disconnected; so is an idle keep-alive connection.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 9840)),
            web_config_file: None,
            max_connections: 256,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// What `/metrics` exports beyond the fixed set.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Label the latency histograms by partition as well as by leader broker: 36 more series
    /// per canary partition. Off by default: the histograms are per (topic, broker).
    pub per_partition_histograms: bool,
    /// How many other agents get their own `losswatch_other_instance_probes_total` series
    /// (the first seen); the rest, and all of them by default, are counted under
    /// `instance="other"`. Each named one costs a series on every agent that reads it.
    pub other_instance_series: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// SQLite file holding the instance id, sequences, pending probes and loss events.
    pub path: PathBuf,
    /// How often state is written.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Most loss events kept in the state file.
    pub max_events: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            path: PathBuf::from("losswatch-state.db"),
            flush_interval: Duration::from_millis(500),
            max_events: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Longest time spent draining delivery reports and saving state after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            grace: Duration::from_secs(10),
        }
    }
}

/// Which agents run the durability audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditMode {
    /// The agent elected to poll consumer-group lag also audits (one per DaemonSet).
    Elected,
    /// This agent always audits.
    Always,
    /// This agent never audits.
    Off,
}

/// The `[audit]` section: which topics the durability audit reads, and how often.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    pub mode: AuditMode,
    /// Time between audits; a slow audit skips ticks.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Topics audited besides the canary topic: those matching one of these regexes …
    pub include: Vec<String>,
    /// … and none of these (default: internal topics).
    pub exclude: Vec<String>,
    /// Timeout of each metadata and DescribeConfigs request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            mode: AuditMode::Elected,
            interval: Duration::from_secs(300),
            include: vec![".*".into()],
            exclude: vec!["^__".into()],
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl AuditConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interval < Duration::from_secs(1) || self.interval > Duration::from_secs(86_400) {
            return Err(invalid("audit.interval", "expected between 1s and 24h"));
        }
        if self.request_timeout < Duration::from_millis(100)
            || self.request_timeout > Duration::from_secs(300)
        {
            return Err(invalid(
                "audit.request_timeout",
                "expected between 100ms and 5m",
            ));
        }
        self.filter().map(|_| ())
    }

    /// The compiled include/exclude filter.
    pub fn filter(&self) -> Result<TopicFilter, ConfigError> {
        let compile = |key: &'static str, patterns: &[String]| {
            patterns
                .iter()
                .map(|p| {
                    regex::Regex::new(p)
                        .map_err(|e| invalid(key, format!("invalid regex {p:?}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(TopicFilter {
            include: compile("audit.include", &self.include)?,
            exclude: compile("audit.exclude", &self.exclude)?,
        })
    }
}

/// Which topics the audit reads besides the canary topic.
#[derive(Debug, Clone)]
pub struct TopicFilter {
    include: Vec<regex::Regex>,
    exclude: Vec<regex::Regex>,
}

impl TopicFilter {
    pub fn matches(&self, topic: &str) -> bool {
        self.include.iter().any(|r| r.is_match(topic))
            && !self.exclude.iter().any(|r| r.is_match(topic))
    }
}

/// Overrides from the environment or the command line; `None` leaves the file's value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub bootstrap_servers: Option<String>,
    pub topic: Option<String>,
    pub listen: Option<SocketAddr>,
    pub state: Option<PathBuf>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<String>,
    pub web_config_file: Option<PathBuf>,
}

/// A configuration error. The message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("invalid value for `http.web_config_file`: {0}")]
    Web(#[from] web::WebConfigError),
}

pub(crate) fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

impl Config {
    /// Reads the file (if any), applies overrides, validates and reads the files it names.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<ValidConfig, ConfigError> {
        let mut cfg = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Config::parse(&text).map_err(|message| ConfigError::Parse {
                    path: path.to_owned(),
                    message,
                })?
            }
            None => Config::default(),
        };
        cfg.apply(overrides);
        cfg.build()
    }

    /// Validates, then reads the secret files and the web config: the configuration the
    /// agent can start with.
    pub fn build(self) -> Result<ValidConfig, ConfigError> {
        self.validate()?;
        let mut secrets = BTreeMap::new();
        for (key, path) in &self.kafka.secret_files {
            let text = std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    "kafka.secret_files",
                    format!("cannot read {key:?} from {}: {e}", path.display()),
                )
            })?;
            let value = text.trim_end_matches(['\n', '\r']);
            if value.is_empty() {
                return Err(invalid(
                    "kafka.secret_files",
                    format!("{key:?}: {} is empty", path.display()),
                ));
            }
            secrets.insert(key.clone(), Sensitive(value.to_owned()));
        }
        let web = match &self.http.web_config_file {
            Some(path) => web::WebConfig::load(path)?,
            None => web::WebConfig::default(),
        };
        Ok(ValidConfig {
            config: self,
            secrets,
            web,
        })
    }

    /// Parses TOML text; the error message carries the key and position.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    pub fn apply(&mut self, o: &Overrides) {
        if let Some(v) = &o.bootstrap_servers {
            self.kafka.bootstrap_servers = v.clone();
        }
        if let Some(v) = &o.topic {
            self.canary.topic = v.clone();
        }
        if let Some(v) = o.listen {
            self.http.listen = v;
        }
        if let Some(v) = &o.state {
            self.state.path = v.clone();
        }
        if let Some(v) = &o.sasl_username {
            self.kafka
                .properties
                .insert("sasl.username".into(), Sensitive(v.clone()));
        }
        if let Some(v) = &o.sasl_password {
            self.kafka
                .properties
                .insert("sasl.password".into(), Sensitive(v.clone()));
        }
        if let Some(v) = &o.web_config_file {
            self.http.web_config_file = Some(v.clone());
        }
    }

    /// Cross-field and range checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.kafka.bootstrap_servers.trim().is_empty() {
            return Err(invalid(
                "kafka.bootstrap_servers",
                "expected a comma-separated host:port list, got an empty string",
            ));
        }
        if self.kafka.properties.contains_key("bootstrap.servers") {
            return Err(invalid(
                "kafka.properties",
                "`bootstrap.servers` cannot be set here: set kafka.bootstrap_servers instead",
            ));
        }
        if let Some(weak) = self.weak_producer_settings().first() {
            if !self.canary.allow_weak_producer {
                return Err(invalid(
                    "kafka.properties",
                    format!(
                        "`{weak}` weakens the canary producer (probes are sent with acks=all and \
                         idempotence, so that a lost probe means the cluster lost it); remove it \
                         or set canary.allow_weak_producer = true"
                    ),
                ));
            }
        }
        for key in self.kafka.secret_files.keys() {
            if self.kafka.properties.contains_key(key) {
                return Err(invalid(
                    "kafka.secret_files",
                    format!("`{key}` is also set in kafka.properties: set it in one place"),
                ));
            }
            if ["enable.idempotence", "acks", "bootstrap.servers"].contains(&key.as_str()) {
                return Err(invalid(
                    "kafka.secret_files",
                    format!("`{key}` cannot be overridden"),
                ));
            }
        }
        if !(1..=100_000).contains(&self.http.max_connections) {
            return Err(invalid("http.max_connections", "expected 1 to 100000"));
        }
        if self.http.header_read_timeout < Duration::from_millis(100)
            || self.http.header_read_timeout > Duration::from_secs(300)
        {
            return Err(invalid(
                "http.header_read_timeout",
                "expected between 100ms and 5m",
            ));
        }
        let c = &self.canary;
        if c.topic.is_empty()
            || c.topic.len() > 249
            || !c
                .topic
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'))
        {
            return Err(invalid(
                "canary.topic",
                format!(
                    "expected 1-249 characters of [a-zA-Z0-9._-], got {:?}",
                    c.topic
                ),
            ));
        }
        if c.probe_interval < Duration::from_millis(10) {
            return Err(invalid("canary.probe_interval", "expected at least 10ms"));
        }
        if let Some(rate) = c.fleet_probe_rate {
            if !(rate.is_finite() && rate > 0.0 && rate <= 1000.0) {
                return Err(invalid(
                    "canary.fleet_probe_rate",
                    "expected probes per partition per second, above 0 and at most 1000",
                ));
            }
        }
        if !(crate::probe::HEADER_LEN..=1_000_000).contains(&c.payload_bytes) {
            return Err(invalid(
                "canary.payload_bytes",
                format!(
                    "expected {} to 1000000 bytes, got {}",
                    crate::probe::HEADER_LEN,
                    c.payload_bytes
                ),
            ));
        }
        if c.late_threshold.is_zero() {
            return Err(invalid("canary.late_threshold", "expected more than 0s"));
        }
        if c.metadata_refresh < Duration::from_millis(100) {
            return Err(invalid(
                "canary.metadata_refresh",
                "expected at least 100ms",
            ));
        }
        if c.delivery_timeout < Duration::from_millis(100)
            || c.delivery_timeout > Duration::from_secs(3600)
        {
            return Err(invalid(
                "canary.delivery_timeout",
                "expected between 100ms and 1h",
            ));
        }
        if c.partitions < 0 {
            return Err(invalid(
                "canary.partitions",
                "expected 0 (one per broker) or more",
            ));
        }
        if c.replication_factor < 0 {
            return Err(invalid(
                "canary.replication_factor",
                "expected 0 (min(3, brokers)) or more",
            ));
        }
        if c.max_pending_per_partition == 0 {
            return Err(invalid(
                "canary.max_pending_per_partition",
                "expected at least 1",
            ));
        }
        if !(1..=100).contains(&c.partitions_per_broker) {
            return Err(invalid(
                "canary.partitions_per_broker",
                format!("expected 1 to 100, got {}", c.partitions_per_broker),
            ));
        }
        if c.reconcile_interval < Duration::from_secs(1) {
            return Err(invalid("canary.reconcile_interval", "expected at least 1s"));
        }
        self.audit.validate()?;
        if self.state.path.as_os_str().is_empty() {
            return Err(invalid("state.path", "expected a file path"));
        }
        if self.state.flush_interval < Duration::from_millis(10)
            || self.state.flush_interval > Duration::from_secs(60)
        {
            return Err(invalid(
                "state.flush_interval",
                "expected between 10ms and 60s",
            ));
        }
        if self.state.max_events == 0 {
            return Err(invalid("state.max_events", "expected at least 1"));
        }
        if self.shutdown.grace.is_zero() {
            return Err(invalid("shutdown.grace", "expected more than 0s"));
        }
        self.lag.validate()
    }

    /// The `kafka.properties` entries that would weaken the canary producer, as `key=value`.
    pub fn weak_producer_settings(&self) -> Vec<String> {
        let mut weak = Vec::new();
        for (k, v) in &self.kafka.properties {
            let v = v.expose().trim().to_ascii_lowercase();
            let is_weak = match k.as_str() {
                "acks" | "request.required.acks" => !matches!(v.as_str(), "all" | "-1"),
                "enable.idempotence" => v != "true",
                "message.send.max.retries" | "retries" => v == "0",
                _ => false,
            };
            if is_weak {
                weak.push(format!("{k}={v}"));
            }
        }
        weak
    }

    /// The effective config as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// A configuration that passed [`Config::build`]: validated, its secret files read, its web
/// config parsed. It cannot be made any other way, so an unchecked configuration never
/// reaches [`crate::start`]. Reads as the [`Config`] it holds.
#[derive(Clone)]
pub struct ValidConfig {
    config: Config,
    /// The values read from `kafka.secret_files`.
    secrets: BTreeMap<String, Sensitive>,
    web: web::WebConfig,
}

impl Deref for ValidConfig {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.config
    }
}

impl fmt::Debug for ValidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidConfig")
            .field("config", &self.config)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ValidConfig {
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Every librdkafka property: `kafka.properties`, then the values of the secret files.
    pub fn kafka_properties(&self) -> impl Iterator<Item = (&String, &Sensitive)> {
        self.config.kafka.properties.iter().chain(&self.secrets)
    }

    /// The values that must never be printed: properties whose key looks secret, and the
    /// contents of every secret file.
    pub fn secret_values(&self) -> Vec<Sensitive> {
        self.config
            .kafka
            .properties
            .iter()
            .filter(|(k, _)| is_secret_key(k))
            .map(|(_, v)| v)
            .chain(self.secrets.values())
            .cloned()
            .collect()
    }

    pub fn web(&self) -> &web::WebConfig {
        &self.web
    }
}

/// A librdkafka property value. Values of keys that look secret are printed as
/// `**REDACTED**` by `Debug` and by serialization; [`Sensitive::expose`] gives the value.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Sensitive(pub String);

impl Sensitive {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**REDACTED**")
    }
}

/// Whether a librdkafka property holds a secret.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "key.pem", "ssl.key", "token", "jaas"]
        .iter()
        .any(|s| k.contains(s))
}

impl Serialize for KafkaConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let props: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_key(k) {
                    "**REDACTED**"
                } else {
                    v.expose()
                };
                (k.as_str(), shown)
            })
            .collect();
        let mut st = s.serialize_struct("KafkaConfig", 3)?;
        st.serialize_field("bootstrap_servers", &self.bootstrap_servers)?;
        st.serialize_field("properties", &props)?;
        st.serialize_field("secret_files", &self.secret_files)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn full_file_parses() {
        let cfg = Config::parse(
            r#"
            [kafka]
            bootstrap_servers = "a:9092,b:9092"
            [kafka.properties]
            "security.protocol" = "SASL_SSL"
            "sasl.password" = "hunter2"
            [canary]
            topic = "canary"
            probe_interval = "250ms"
            payload_bytes = 200
            late_threshold = "5s"
            [http]
            listen = "127.0.0.1:9999"
            [state]
            path = "/tmp/x.db"
            [shutdown]
            grace = "3s"
            [metrics]
            per_partition_histograms = true
            other_instance_series = 16
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.canary.probe_interval, Duration::from_millis(250));
        assert!(cfg.metrics.per_partition_histograms);
        assert_eq!(cfg.metrics.other_instance_series, 16);
        assert_eq!(Config::default().metrics.other_instance_series, 0);
        let shown = cfg.to_redacted_toml();
        assert!(shown.contains("**REDACTED**"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("SASL_SSL"));
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("[canary]\nprobe_intervall = \"1s\"\n").unwrap_err();
        assert!(err.contains("probe_intervall"), "{err}");
    }

    #[test]
    fn bad_value_is_named() {
        let err = Config::parse("[canary]\nprobe_interval = \"soon\"\n").unwrap_err();
        assert!(err.contains("probe_interval"), "{err}");
        let mut cfg = Config::default();
        cfg.canary.payload_bytes = 10;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("canary.payload_bytes"), "{err}");
    }

    #[test]
    fn overrides_win() {
        let o = Overrides {
            bootstrap_servers: Some("x:1".into()),
            sasl_password: Some("pw".into()),
            ..Overrides::default()
        };
        let mut cfg = Config::default();
        cfg.apply(&o);
        assert_eq!(cfg.kafka.bootstrap_servers, "x:1");
        assert_eq!(cfg.kafka.properties["sasl.password"].expose(), "pw");
    }

    #[test]
    fn weak_producer_settings_are_refused_unless_allowed() {
        for (key, value, weak) in [
            ("acks", "1", true),
            ("acks", "0", true),
            ("request.required.acks", "1", true),
            ("enable.idempotence", "false", true),
            ("message.send.max.retries", "0", true),
            ("acks", "all", false),
            ("acks", "-1", false),
            ("enable.idempotence", "true", false),
        ] {
            let mut cfg = Config::default();
            cfg.kafka
                .properties
                .insert(key.into(), Sensitive(value.into()));
            match cfg.validate() {
                Err(e) if weak => {
                    let e = e.to_string();
                    assert!(e.contains("kafka.properties") && e.contains(key), "{e}");
                    assert!(e.contains("canary.allow_weak_producer"), "{e}");
                }
                Ok(()) if !weak => {}
                other => panic!("{key}={value}: {other:?}"),
            }
            cfg.canary.allow_weak_producer = true;
            cfg.validate().unwrap();
            assert_eq!(cfg.weak_producer_settings().is_empty(), !weak);
        }
        let mut cfg = Config::default();
        cfg.kafka
            .properties
            .insert("bootstrap.servers".into(), Sensitive("x:1".into()));
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("bootstrap"));
    }

    #[test]
    fn audit_and_canary_management_keys_are_checked() {
        let cfg = Config::parse(
            "[audit]\nmode = \"always\"\ninterval = \"1m\"\ninclude = [\"^orders\"]\n\
             [canary]\npartitions_per_broker = 2\nmanage_topic = false\nreconcile_interval = \"30s\"\n",
        )
        .unwrap();
        cfg.validate().unwrap();
        let f = cfg.audit.filter().unwrap();
        assert!(f.matches("orders-eu") && !f.matches("payments"));
        let d = AuditConfig::default().filter().unwrap();
        assert!(d.matches("orders") && !d.matches("__consumer_offsets"));
        for (text, key) in [
            ("[audit]\ninclude = [\"(\"]\n", "audit.include"),
            ("[audit]\ninterval = \"0s\"\n", "audit.interval"),
            (
                "[audit]\nrequest_timeout = \"1ms\"\n",
                "audit.request_timeout",
            ),
            (
                "[canary]\npartitions_per_broker = 0\n",
                "canary.partitions_per_broker",
            ),
            (
                "[canary]\nreconcile_interval = \"10ms\"\n",
                "canary.reconcile_interval",
            ),
        ] {
            let err = Config::parse(text)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        assert!(Config::parse("[audit]\nmode = \"sometimes\"\n")
            .unwrap_err()
            .contains("mode"));
    }
}
