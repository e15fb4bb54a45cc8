//! The client-side steps the lag tests need against a Tansu broker (topics, records with known
//! timestamps, commits). The broker itself is `common::tansu::Tansu`.

#![allow(dead_code)]

pub mod agent;

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

pub use crate::common::tansu::Tansu;

fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// Creates a topic (with topic configs), waiting for the answer.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create().unwrap();
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let r = admin
        .create_topics(
            [&new],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create_topics");
    for x in r {
        x.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
}

/// Produces one record per timestamp (ms) to `partition`, each in its own batch (exact log
/// ends on memory://), and waits for every ack.
pub fn produce(bootstrap: &str, topic: &str, partition: i32, timestamps_ms: &[i64]) {
    let p: BaseProducer = client(bootstrap)
        .set("linger.ms", "0")
        .set("batch.num.messages", "1")
        .set("max.in.flight.requests.per.connection", "1")
        .create()
        .unwrap();
    for (i, ts) in timestamps_ms.iter().enumerate() {
        let body = format!("record {i}");
        p.send(
            BaseRecord::<(), str>::to(topic)
                .partition(partition)
                .payload(&body)
                .timestamp(*ts),
        )
        .map_err(|(e, _)| e)
        .expect("produce");
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(30)).expect("flush");
    assert_eq!(p.in_flight_count(), 0);
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
