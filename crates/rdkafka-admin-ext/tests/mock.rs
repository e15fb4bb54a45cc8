//! What librdkafka's MockCluster answers to each call (the crate README's table).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use rdkafka_admin_ext::{Admin, Error, OffsetSpec, Options};

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

fn produce(bootstrap: &str, topic: &str, partition: i32, n: usize) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for _ in 0..n {
        p.send(
            BaseRecord::<(), str>::to(topic)
                .partition(partition)
                .payload("x"),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

fn commit(bootstrap: &str, group: &str, offsets: &[(&str, i32, i64)]) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in offsets {
        tpl.add_partition_offset(t, *p, Offset::Offset(*o)).unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).unwrap();
}

fn tpl(parts: &[(&str, i32)]) -> TopicPartitionList {
    let mut t = TopicPartitionList::new();
    for (topic, p) in parts {
        t.add_partition(topic, *p);
    }
    t
}

/// Offsets of an answer, by (topic, partition).
fn offsets(
    v: &[rdkafka_admin_ext::ListedOffset],
) -> Vec<(String, i32, Result<i64, RDKafkaErrorCode>)> {
    let mut out: Vec<_> = v
        .iter()
        .map(|o| {
            (
                o.topic.clone(),
                o.partition,
                o.offset.clone().map_err(|e| e.code),
            )
        })
        .collect();
    out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_on_the_mock_cluster() {
    let mock = MockCluster::new(3).unwrap();
    mock.create_topic("orders", 2, 3).unwrap();
    let b = mock.bootstrap_servers();
    produce(&b, "orders", 0, 7);
    produce(&b, "orders", 1, 3);
    commit(&b, "app", &[("orders", 0, 4), ("orders", 1, 3)]);
    let a = admin(&b);

    let latest = a
        .list_offsets(
            &[
                ("orders", 0, OffsetSpec::Latest),
                ("orders", 1, OffsetSpec::Latest),
            ],
            &opts(),
        )
        .await
        .unwrap();
    assert_eq!(
        offsets(&latest),
        [("orders".into(), 0, Ok(7)), ("orders".into(), 1, Ok(3))]
    );
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
    assert_eq!(
        offsets(&earliest),
        [
            (
                "nope".into(),
                0,
                Err(RDKafkaErrorCode::UnknownTopicOrPartition)
            ),
            ("orders".into(), 0, Ok(0)),
        ]
    );
    // librdkafka refuses a partition asked twice in one call.
    let twice = a
        .list_offsets(
            &[
                ("orders", 0, OffsetSpec::Earliest),
                ("orders", 0, OffsetSpec::Latest),
            ],
            &opts(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&twice, Error::Kafka(e) if e.code == RDKafkaErrorCode::InvalidArgument),
        "{twice:?}"
    );

    let named = a
        .list_consumer_group_offsets(
            "app",
            Some(&tpl(&[("orders", 0), ("orders", 1), ("other", 0)])),
            &opts(),
        )
        .await
        .unwrap();
    let got: Vec<_> = named
        .iter()
        .map(|c| (c.topic.as_str(), c.partition, c.offset))
        .collect();
    assert_eq!(
        got,
        [
            ("orders", 0, Some(4)),
            ("orders", 1, Some(3)),
            ("other", 0, None)
        ]
    );
    // The mock answers an OffsetFetch for all topics with nothing.
    let all = a
        .list_consumer_group_offsets("app", None, &opts())
        .await
        .unwrap();
    assert!(all.is_empty(), "{all:?}");
    // Many calls in flight at once, all answered, over the one client.
    let replies: Vec<_> = (0..200)
        .map(|_| a.list_consumer_group_offsets("app", Some(&tpl(&[("orders", 0)])), &opts()))
        .collect();
    // Dropping the Admin leaves the calls in flight answered.
    drop(a);
    for r in replies {
        assert_eq!(r.await.unwrap()[0].offset, Some(4));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_topics_and_cluster_on_the_mock_cluster() {
    let mock = MockCluster::new(3).unwrap();
    mock.create_topic("orders", 2, 3).unwrap();
    let b = mock.bootstrap_servers();
    commit(&b, "app", &[("orders", 0, 1)]);
    let a = admin(&b);
    let short = Options {
        request_timeout: Duration::from_secs(2),
        ..Options::default()
    };

    // The mock brokers do not implement ListGroups or DescribeGroups.
    let listed = a.list_consumer_groups(&opts()).await.unwrap();
    assert!(listed.groups.is_empty());
    assert_eq!(listed.errors.len(), 3, "{listed:?}");
    assert!(listed
        .errors
        .iter()
        .all(|e| e.code == RDKafkaErrorCode::UnsupportedFeature));
    let described = a
        .describe_consumer_groups(&["app", "nobody"], &opts())
        .await
        .unwrap();
    assert_eq!(described.len(), 2);
    for d in &described {
        assert_eq!(
            d.error.as_ref().map(|e| e.code),
            Some(RDKafkaErrorCode::UnsupportedFeature)
        );
    }
    // DescribeTopics and DescribeCluster wait for a controller the mock never names.
    for e in [
        a.describe_topics(&["orders"], &short).await.unwrap_err(),
        a.describe_cluster(&short).await.unwrap_err(),
    ] {
        assert!(
            matches!(&e, Error::Kafka(k) if k.code == RDKafkaErrorCode::OperationTimedOut),
            "{e:?}"
        );
    }
    // Arguments librdkafka cannot take are refused before anything is sent.
    let e = a
        .describe_consumer_groups(&["a\0b"], &opts())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    let e = a
        .list_offsets(&[("a\0b", 0, OffsetSpec::Latest)], &opts())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    // The client stays usable for rust-rdkafka's own calls.
    let md = a
        .client()
        .inner()
        .fetch_metadata(Some("orders"), Duration::from_secs(5))
        .unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 2);
}
