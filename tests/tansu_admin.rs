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

    let cluster = a.describe_cluster(&opts()).await.expect("describe_cluster");
    assert_eq!(cluster.nodes.len(), 1, "{cluster:?}");
    assert!(
        cluster.cluster_id.is_some() && cluster.controller.is_some(),
        "{cluster:?}"
    );

    // Tansu lists groups that committed offsets.
    let listed = a
        .list_consumer_groups(&opts())
        .await
        .expect("list_consumer_groups");
    assert!(
        listed.groups.iter().any(|g| g.group_id == "app"),
        "{listed:?}"
    );

    // Every named group is described; Tansu 0.6.0 reports a live group as Stable but
    // with no members, and an unknown group as Empty.
    let described = a
        .describe_consumer_groups(&["app", "live", "nobody"], &opts())
        .await
        .expect("describe_consumer_groups");
    assert_eq!(described.len(), 3, "{described:?}");
    assert!(described.iter().all(|g| g.error.is_none()), "{described:?}");
    let live_group = described.iter().find(|g| g.group_id == "live").unwrap();
    assert_eq!(
        format!("{:?}", live_group.state),
        "Stable",
        "{live_group:?}"
    );

    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("orders", 0);
    tpl.add_partition("orders", 1);
    for named in [None, Some(&tpl)] {
        let got = a
            .list_consumer_group_offsets("app", named, &opts())
            .await
            .expect("list_consumer_group_offsets");
        let offsets: Vec<(i32, Option<i64>)> =
            got.iter().map(|c| (c.partition, c.offset)).collect();
        assert_eq!(offsets, vec![(0, Some(4)), (1, Some(0))], "{got:?}");
    }
    let nobody = a
        .list_consumer_group_offsets("nobody", Some(&tpl), &opts())
        .await
        .expect("offsets of a group without commits");
    assert!(nobody.iter().all(|c| c.offset.is_none()), "{nobody:?}");

    let asked = [
        ("orders", 0, OffsetSpec::Earliest),
        ("orders", 1, OffsetSpec::Earliest),
        ("nope", 0, OffsetSpec::Earliest),
    ];
    let earliest = a.list_offsets(&asked, &opts()).await.expect("list_offsets");
    assert_eq!(earliest.len(), 3, "{earliest:?}");
    assert_eq!(earliest[0].offset.as_ref().ok(), Some(&0), "{earliest:?}");
    assert!(earliest[2].offset.is_err(), "unknown topic: {earliest:?}");
    let latest = a
        .list_offsets(
            &[
                ("orders", 0, OffsetSpec::Latest),
                ("orders", 1, OffsetSpec::Latest),
            ],
            &opts(),
        )
        .await
        .expect("list_offsets latest");
    // memory:// reports the high watermark of a multi-record batch as its base offset + 1
    // (TESTING.md); the seven records went out in librdkafka batches, so at least 1.
    assert!(
        matches!(latest[0].offset, Ok(n) if (1..=7).contains(&n)),
        "{latest:?}"
    );
    assert_eq!(latest[1].offset.as_ref().ok(), Some(&0), "{latest:?}");

    let topics = a
        .describe_topics(&["orders", "nope"], &opts())
        .await
        .expect("describe_topics");
    let orders = topics.iter().find(|t| t.name == "orders").unwrap();
    assert!(
        orders.error.is_none() && orders.partitions.len() == 2,
        "{orders:?}"
    );
    assert_ne!(
        format!("{:?}", orders.topic_id),
        "TopicId(0)",
        "a real topic has an id"
    );
    let nope = topics.iter().find(|t| t.name == "nope").unwrap();
    assert!(nope.error.is_some(), "{nope:?}");
}
