//! Reads what the audit needs from the cluster: one metadata request (brokers, topics,
//! partitions, replicas, ISR) and DescribeConfigs for the audited topics (batched) and for each
//! broker (librdkafka sends a broker resource to that broker, one per request). Every call is
//! bounded by a timeout of its own — librdkafka's mock cluster never answers DescribeConfigs —
//! and a failed or timed-out DescribeConfigs leaves those resources `Unavailable`, never clean.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigSource, OwnedResourceSpecifier, ResourceSpecifier,
};
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;

use super::input::{Configs, Entry, Input, PartitionMeta, Source, TopicInput};
use crate::config::TopicFilter;

/// Topics per DescribeConfigs request.
const TOPICS_PER_REQUEST: usize = 100;
/// Brokers described at the same time.
const BROKERS_AT_ONCE: usize = 8;

/// Nothing could be audited: the cluster's metadata could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read cluster metadata: {0}")]
pub struct Unreachable(#[source] pub KafkaError);

/// What to read.
#[derive(Debug, Clone)]
pub struct Scope {
    pub canary_topic: String,
    pub filter: TopicFilter,
    pub timeout: Duration,
    /// Ask DescribeConfigs; `Err(why)` when a backoff holds it back (every resource is then
    /// reported unavailable with that reason).
    pub describe: Result<(), String>,
}

/// What the reads gave, with whether DescribeConfigs itself failed (for the backoff).
pub struct Gathered {
    pub input: Input,
    /// A DescribeConfigs request that failed or timed out as a whole, if any.
    pub describe_failure: Option<String>,
}

/// Reads metadata and configs. Only an unreadable metadata answer is an error.
pub async fn gather<C: ClientContext + 'static>(
    admin: &Arc<AdminClient<C>>,
    scope: &Scope,
) -> Result<Gathered, Unreachable> {
    let md = {
        let admin = admin.clone();
        let timeout = scope.timeout;
        tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(None, timeout))
            .await
            .map_err(|_| Unreachable(KafkaError::Canceled))?
            .map_err(Unreachable)?
    };
    let (mut input, topics) = from_metadata(&md, scope);
    let mut describe_failure = None;
    match &scope.describe {
        Err(why) => {
            for t in &mut input.topics {
                t.configs = Configs::Unavailable(why.clone());
            }
            for c in input.brokers.values_mut() {
                *c = Configs::Unavailable(why.clone());
            }
        }
        Ok(()) => {
            let mut topic_configs = BTreeMap::new();
            for chunk in topics.chunks(TOPICS_PER_REQUEST) {
                let specs: Vec<ResourceSpecifier<'_>> =
                    chunk.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
                match describe(admin, &specs, scope.timeout).await {
                    Ok(got) => topic_configs.extend(got),
                    Err(why) => {
                        describe_failure.get_or_insert(why.clone());
                        for t in chunk {
                            topic_configs
                                .insert(Key::Topic(t.clone()), Configs::Unavailable(why.clone()));
                        }
                    }
                }
            }
            let brokers: Vec<i32> = input.brokers.keys().copied().collect();
            let answers: Vec<(i32, Described)> = stream::iter(brokers)
                .map(|id| async move {
                    (
                        id,
                        describe(admin, &[ResourceSpecifier::Broker(id)], scope.timeout).await,
                    )
                })
                .buffer_unordered(BROKERS_AT_ONCE)
                .collect()
                .await;
            for (id, res) in answers {
                let configs = match res {
                    Ok(mut got) => got
                        .remove(&Key::Broker(id))
                        .unwrap_or_else(|| Configs::Unavailable("no answer for the broker".into())),
                    Err(why) => {
                        describe_failure.get_or_insert(why.clone());
                        Configs::Unavailable(why)
                    }
                };
                input.brokers.insert(id, configs);
            }
            for t in &mut input.topics {
                t.configs = topic_configs
                    .remove(&Key::Topic(t.name.clone()))
                    .unwrap_or_else(|| Configs::Unavailable("no answer for the topic".into()));
            }
        }
    }
    Ok(Gathered {
        input,
        describe_failure,
    })
}

/// The audited topics and the brokers, from metadata; configs not read yet.
fn from_metadata(md: &Metadata, scope: &Scope) -> (Input, Vec<String>) {
    let brokers = md
        .brokers()
        .iter()
        .map(|b| (b.id(), Configs::Unavailable("not read".into())))
        .collect();
    let mut topics = Vec::new();
    let mut names = Vec::new();
    for t in md.topics() {
        let name = t.name();
        if t.error().is_some() || !(name == scope.canary_topic || scope.filter.matches(name)) {
            continue;
        }
        let partitions = t
            .partitions()
            .iter()
            .map(|p| PartitionMeta {
                id: p.id(),
                leader: (p.leader() >= 0).then_some(p.leader()),
                replicas: p.replicas().to_vec(),
                isr: p.isr().to_vec(),
            })
            .collect();
        names.push(name.to_owned());
        topics.push(TopicInput {
            name: name.to_owned(),
            partitions,
            configs: Configs::Unavailable("not read".into()),
        });
    }
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    (Input { brokers, topics }, names)
}

/// The answer of one DescribeConfigs request, by resource, or why there is none.
type Described = Result<BTreeMap<Key, Configs>, String>;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Topic(String),
    Broker(i32),
}

/// One DescribeConfigs request, bounded by `timeout` twice over: librdkafka's request timeout,
/// and a timer of our own for a broker that never answers.
async fn describe<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    specs: &[ResourceSpecifier<'_>],
    timeout: Duration,
) -> Described {
    let opts = AdminOptions::new().request_timeout(Some(timeout));
    let call = admin.describe_configs(specs.iter(), &opts);
    let results = match tokio::time::timeout(timeout + Duration::from_secs(1), call).await {
        Err(_) => {
            return Err(format!(
                "DescribeConfigs did not answer within {}",
                humantime::format_duration(timeout)
            ))
        }
        Ok(Err(e)) => return Err(format!("DescribeConfigs failed: {e}")),
        Ok(Ok(r)) => r,
    };
    let mut out = BTreeMap::new();
    for (spec, r) in specs.iter().zip(results) {
        let key = match spec {
            ResourceSpecifier::Topic(t) => Key::Topic((*t).to_owned()),
            ResourceSpecifier::Broker(b) => Key::Broker(*b),
            ResourceSpecifier::Group(_) => continue,
        };
        let configs = match r {
            Err(code) => Configs::Unavailable(format!("DescribeConfigs refused: {code}")),
            Ok(res) => {
                // The answer names its resource; trust it over the request order.
                let key = match res.specifier {
                    OwnedResourceSpecifier::Topic(t) => Key::Topic(t),
                    OwnedResourceSpecifier::Broker(b) => Key::Broker(b),
                    OwnedResourceSpecifier::Group(_) => key,
                };
                let entries = res
                    .entries
                    .into_iter()
                    .map(|e| {
                        (
                            e.name,
                            Entry {
                                value: if e.is_sensitive { None } else { e.value },
                                source: source(&e.source),
                            },
                        )
                    })
                    .collect();
                out.insert(key, Configs::Known(entries));
                continue;
            }
        };
        out.insert(key, configs);
    }
    Ok(out)
}

fn source(s: &ConfigSource) -> Source {
    match s {
        ConfigSource::DynamicTopic => Source::TopicOverride,
        ConfigSource::DynamicBroker => Source::DynamicBroker,
        ConfigSource::DynamicDefaultBroker => Source::DynamicDefaultBroker,
        ConfigSource::StaticBroker => Source::StaticBroker,
        ConfigSource::Default => Source::Default,
        ConfigSource::Unknown => Source::Unknown,
    }
}
