//! What a real Kafka-protocol broker (Tansu) answers to each call of the `rdkafka-admin-ext`
//! crate (its README's table), asserted.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::tansu::{create_topic, Tansu};
use common::{commit, produce_raw};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::TopicPartitionList;
use rdkafka_admin_ext::{Admin, OffsetSpec, Options};

fn opts() -> Options {
    Options {
        request_timeout: Duration::from_secs(5),
        ..Options::default()
    }
}

fn admin(bootstrap: &str) -> Admin<DefaultClientContext> {
    let c: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    Admin::new(Arc::new(c)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_answers() {
    let t = Tansu::memory();
    let b = t.bootstrap();
    create_topic(&b, "orders", 2).await;
    produce_raw(&b, "orders", 0, &vec![Some(b"x".to_vec()); 7]);
    commit(&b, "app", &[("orders", 0, 4), ("orders", 1, 0)]);
    // A live member.
    let live: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", "live")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    live.subscribe(&["orders"]).unwrap();
    for _ in 0..100 {
        live.poll(Duration::from_millis(100));
        if !live.assignment().unwrap().elements().is_empty() {
            break;
        }
    }
    let a = admin(&b);
    let c = a.describe_cluster(&opts()).await.unwrap();
    assert_eq!(c.cluster_id.as_deref(), Some("tansu_cluster"));
    assert_eq!(c.nodes.len(), 1);
    assert_eq!(c.controller, Some(c.nodes[0].clone()));
    let listed = a.list_consumer_groups(&opts()).await.unwrap();
    assert!(listed.errors.is_empty(), "{listed:?}");
    assert!(
        listed.groups.iter().any(|g| g.group_id == "app"),
        "{listed:?}"
    );
    let d = a
        .describe_consumer_groups(&["live", "nobody"], &opts())
        .await
        .unwrap();
    assert_eq!(d[0].state, rdkafka_admin_ext::GroupState::Stable);
    // Tansu 0.6.0 describes a live group without its members.
    assert!(d[0].members.is_empty(), "{:?}", d[0]);
    assert_eq!(d[1].state, rdkafka_admin_ext::GroupState::Empty);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("orders", 0);
    tpl.add_partition("orders", 1);
    let off = |v: Vec<rdkafka_admin_ext::CommittedOffset>| -> Vec<(i32, Option<i64>)> {
        v.into_iter().map(|c| (c.partition, c.offset)).collect()
    };
    let named = off(a
        .list_consumer_group_offsets("app", Some(&tpl), &opts())
        .await
        .unwrap());
    assert_eq!(named, [(0, Some(4)), (1, Some(0))]);
    let all = off(a
        .list_consumer_group_offsets("app", None, &opts())
        .await
        .unwrap());
    assert_eq!(all, named, "Tansu answers an OffsetFetch for all topics");
    let none = off(a
        .list_consumer_group_offsets("nobody", Some(&tpl), &opts())
        .await
        .unwrap());
    assert_eq!(none, [(0, None), (1, None)]);
    let earliest = a
        .list_offsets(
            &[
                ("orders", 0, OffsetSpec::Earliest),
                ("nope", 0, OffsetSpec::Earliest),
            ],
            &opts(),
        )
        .await
        .unwrap();
    assert_eq!(earliest[0].offset, Ok(0));
    assert!(earliest[1].offset.is_err());
    // Tansu 0.6.0 does not implement the max-timestamp spec: librdkafka's invalid offset.
    let max = a
        .list_offsets(&[("orders", 0, OffsetSpec::MaxTimestamp)], &opts())
        .await
        .unwrap();
    assert_eq!(max[0].offset, Ok(-1001), "{max:?}");
    let topics = a
        .describe_topics(&["orders", "nope"], &opts())
        .await
        .unwrap();
    assert!(!topics[0].topic_id.is_zero() && topics[0].error.is_none());
    assert_eq!(topics[0].partitions.len(), 2);
    assert!(topics[1].error.is_some());
}
