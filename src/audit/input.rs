//! What the audit is given: the cluster as metadata and DescribeConfigs show it. Plain data,
//! built by [`super::fetch`] from librdkafka's answers and by tests from tables.

use std::collections::BTreeMap;

/// Where a configuration value comes from, as DescribeConfigs reports it. The order of the
/// variants is the precedence Kafka applies: a topic override beats a dynamic broker value,
/// which beats the cluster-wide dynamic default, the static `server.properties` and the
/// built-in default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    TopicOverride,
    DynamicBroker,
    DynamicDefaultBroker,
    StaticBroker,
    Default,
    /// The broker did not say (brokers before Kafka 1.1).
    Unknown,
}

impl Source {
    /// How the source is named in findings and the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::TopicOverride => "topic override",
            Source::DynamicBroker => "dynamic broker config",
            Source::DynamicDefaultBroker => "dynamic cluster-wide default",
            Source::StaticBroker => "static broker config (server.properties)",
            Source::Default => "Kafka default",
            Source::Unknown => "unknown source",
        }
    }
}

/// One configuration entry: its value (`None` for a sensitive or unset one) and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Option<String>,
    pub source: Source,
}

impl Entry {
    pub fn new(value: &str, source: Source) -> Entry {
        Entry {
            value: Some(value.to_owned()),
            source,
        }
    }
}

/// The configuration of one resource (a topic or a broker), or why it could not be read.
/// A resource whose configs are unavailable is never reported clean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Configs {
    Known(BTreeMap<String, Entry>),
    Unavailable(String),
}

impl Configs {
    pub fn known(&self) -> Option<&BTreeMap<String, Entry>> {
        match self {
            Configs::Known(m) => Some(m),
            Configs::Unavailable(_) => None,
        }
    }

    /// Builds known configs from `(name, value, source)` rows (tests and tables).
    pub fn from_rows(rows: &[(&str, &str, Source)]) -> Configs {
        Configs::Known(
            rows.iter()
                .map(|(k, v, s)| ((*k).to_owned(), Entry::new(v, *s)))
                .collect(),
        )
    }
}

/// One partition as metadata shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMeta {
    pub id: i32,
    /// `None` when the partition has no leader (offline).
    pub leader: Option<i32>,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// One audited topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInput {
    pub name: String,
    pub partitions: Vec<PartitionMeta>,
    pub configs: Configs,
}

/// Everything one audit looks at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Input {
    /// Brokers in metadata, with their configs (or why they are unavailable).
    pub brokers: BTreeMap<i32, Configs>,
    pub topics: Vec<TopicInput>,
}
