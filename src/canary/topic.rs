//! Canary topic discovery and creation. These calls block (librdkafka's metadata API), so
//! the agent runs them on the blocking pool.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::types::RDKafkaRespErr;

use crate::kafka::Clients;

/// The admin client of topic creation and growth, with the agent's client context: its
/// connection errors are counted and logged (secrets scrubbed) like every other client's.
fn admin(clients: &Clients) -> Result<std::sync::Arc<crate::kafka::Admin>, KafkaError> {
    clients.admin("topic-admin")
}

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

/// The settings a created canary topic gets: `partitions` (0 = `per_broker` × brokers, so
/// that every broker leads a partition), `replication` (0 = min(3, brokers)),
/// `min.insync.replicas` = max(1, RF − 1) (an acks=all write survives one replica down and is
/// on two replicas when RF is 3) and no unclean leader election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub partitions: i32,
    pub replication: i32,
    pub min_insync: i32,
}

impl Layout {
    pub fn new(brokers: usize, partitions: i32, per_broker: i32, replication: i32) -> Layout {
        let brokers = i32::try_from(brokers.max(1)).unwrap_or(i32::MAX);
        let partitions = if partitions == 0 {
            brokers.saturating_mul(per_broker.max(1))
        } else {
            partitions
        };
        let replication = if replication == 0 {
            brokers.min(3)
        } else {
            replication
        };
        Layout {
            partitions,
            replication,
            min_insync: (replication - 1).max(1),
        }
    }
}

/// Creates the topic with `layout`.
pub async fn create(
    clients: &Clients,
    topic: &str,
    layout: Layout,
    timeout: Duration,
) -> Result<(), TopicError> {
    let err = |reason: String| TopicError::Create {
        topic: topic.to_owned(),
        reason,
    };
    let admin = admin(clients).map_err(|e| err(clients.scrub(&e.to_string())))?;
    let min_insync = layout.min_insync.to_string();
    let new = NewTopic::new(
        topic,
        layout.partitions,
        TopicReplication::Fixed(layout.replication),
    )
    .set("min.insync.replicas", &min_insync)
    .set("unclean.leader.election.enable", "false");
    let opts = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let call = admin.client().create_topics([&new], &opts);
    let results = match tokio::time::timeout(timeout + Duration::from_secs(1), call).await {
        Err(_) => return Err(err("CreateTopics did not answer in time".into())),
        Ok(r) => r.map_err(|e| err(e.to_string()))?,
    };
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(err(code.to_string())),
        }
    }
    tracing::info!(
        topic,
        partitions = layout.partitions,
        replication = layout.replication,
        min_insync = layout.min_insync,
        "created canary topic"
    );
    Ok(())
}

/// Adds partitions: the topic grows to `plan.total`, each new partition with its replicas.
/// Another agent growing the topic first is not an error.
pub async fn grow(
    clients: &Clients,
    topic: &str,
    plan: &super::coverage::Plan,
    timeout: Duration,
) -> Result<(), String> {
    let admin = admin(clients).map_err(|e| clients.scrub(&e.to_string()))?;
    let assignment: Vec<&[i32]> = plan.assignments.iter().map(|a| a.as_slice()).collect();
    let new = rdkafka::admin::NewPartitions::new(topic, plan.total).assign(&assignment);
    let opts = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let call = admin.client().create_partitions([&new], &opts);
    let results = match tokio::time::timeout(timeout + Duration::from_secs(1), call).await {
        Err(_) => return Err("CreatePartitions did not answer in time".into()),
        Ok(r) => r.map_err(|e| e.to_string())?,
    };
    for r in results {
        match r {
            Ok(_) => {}
            // The count is already there (another agent added them).
            Err((_, RDKafkaErrorCode::InvalidPartitions)) => {}
            Err((_, code)) => return Err(code.to_string()),
        }
    }
    tracing::info!(
        topic,
        partitions = plan.total,
        new = ?plan.assignments,
        "added canary partitions so that every broker leads one"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{create, grow, Layout};
    use crate::canary::coverage::Plan;
    use crate::config::Config;
    use crate::kafka::{Clients, ErrorKind, KafkaErrors};

    /// Clients whose every connection is refused: a loopback port nothing listens on.
    fn refused() -> (Clients, KafkaErrors) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut cfg = Config::default();
        cfg.kafka.bootstrap_servers = format!("127.0.0.1:{port}");
        let errors = KafkaErrors::register(&prometheus::Registry::new()).unwrap();
        (Clients::new(&cfg.build().unwrap(), errors.clone()), errors)
    }

    /// The topic admin client's connection errors are counted and named like every other
    /// client's, and a cluster that cannot be reached bounds the call by its timeout.
    #[tokio::test]
    async fn topic_admin_errors_are_counted_and_bounded() {
        let (clients, errors) = refused();
        let timeout = Duration::from_secs(2);
        let start = Instant::now();
        let created = create(&clients, "canary", Layout::new(1, 1, 1, 1), timeout).await;
        assert!(created.is_err(), "{created:?}");
        let plan = Plan {
            total: 2,
            assignments: vec![vec![1]],
        };
        let grown = grow(&clients, "canary", &plan, timeout).await;
        assert!(grown.is_err(), "{grown:?}");
        assert!(
            start.elapsed() < 2 * (timeout + Duration::from_secs(2)),
            "{:?}",
            start.elapsed()
        );
        assert!(
            errors.count(ErrorKind::Transport) >= 2,
            "transport errors counted: {}",
            errors.count(ErrorKind::Transport)
        );
        let last = errors.last().expect("an error is remembered");
        assert_eq!(
            (last.client, last.kind),
            ("topic-admin", ErrorKind::Transport),
            "{}",
            last.reason
        );
    }

    #[test]
    fn layout_table() {
        // (brokers, partitions, per broker, replication) -> (partitions, RF, min ISR)
        for (args, want) in [
            ((1, 0, 1, 0), (1, 1, 1)),
            ((2, 0, 1, 0), (2, 2, 1)),
            ((3, 0, 1, 0), (3, 3, 2)),
            ((5, 0, 2, 0), (10, 3, 2)),
            ((3, 12, 1, 0), (12, 3, 2)),
            ((6, 0, 1, 5), (6, 5, 4)),
        ] {
            let l = Layout::new(args.0, args.1, args.2, args.3);
            assert_eq!(
                (l.partitions, l.replication, l.min_insync),
                want,
                "{args:?}"
            );
        }
    }
}
