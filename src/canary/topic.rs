//! Canary topic discovery and creation. These calls block (librdkafka's metadata API), so
//! the agent runs them on the blocking pool.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::types::RDKafkaRespErr;

/// One partition as metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Leader broker id; -1 when leaderless.
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// The canary topic as metadata describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicView {
    pub partitions: BTreeMap<i32, PartitionInfo>,
    pub brokers: Vec<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("canary topic {0} does not exist")]
    Missing(String),
    #[error("metadata request failed: {0}")]
    Metadata(#[source] KafkaError),
    #[error("cannot create canary topic {topic}: {reason}")]
    Create { topic: String, reason: String },
}

/// Reads the topic's partitions and the cluster's brokers.
pub fn describe<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<TopicView, TopicError> {
    let md = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(TopicError::Metadata)?;
    let brokers = md.brokers().iter().map(|b| b.id()).collect();
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Err(TopicError::Missing(topic.to_owned()));
    };
    match t.error() {
        None => {}
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => {
            return Err(TopicError::Missing(topic.to_owned()))
        }
        Some(e) => {
            return Err(TopicError::Metadata(KafkaError::MetadataFetch(
                RDKafkaErrorCode::from(e),
            )))
        }
    }
    if t.partitions().is_empty() {
        return Err(TopicError::Missing(topic.to_owned()));
    }
    let partitions = t
        .partitions()
        .iter()
        .map(|p| {
            (
                p.id(),
                PartitionInfo {
                    leader: p.leader(),
                    replicas: p.replicas().to_vec(),
                    isr: p.isr().to_vec(),
                },
            )
        })
        .collect();
    Ok(TopicView {
        partitions,
        brokers,
    })
}

/// Creates the topic: `partitions` (0 = one per broker, so that every broker leads a
/// partition) and `replication` (0 = min(3, brokers)).
pub async fn create(
    base: &ClientConfig,
    topic: &str,
    brokers: usize,
    partitions: i32,
    replication: i32,
    timeout: Duration,
) -> Result<(), TopicError> {
    let err = |reason: String| TopicError::Create {
        topic: topic.to_owned(),
        reason,
    };
    let admin: AdminClient<DefaultClientContext> = base.create().map_err(|e| err(e.to_string()))?;
    let brokers = i32::try_from(brokers.max(1)).unwrap_or(i32::MAX);
    let partitions = if partitions == 0 { brokers } else { partitions };
    let replication = if replication == 0 {
        brokers.min(3)
    } else {
        replication
    };
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication)).set(
        "min.insync.replicas",
        if replication >= 3 { "2" } else { "1" },
    );
    let opts = AdminOptions::new().operation_timeout(Some(timeout));
    let results = admin
        .create_topics([&new], &opts)
        .await
        .map_err(|e| err(e.to_string()))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(err(code.to_string())),
        }
    }
    tracing::info!(topic, partitions, replication, "created canary topic");
    Ok(())
}
