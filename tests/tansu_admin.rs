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
    eprintln!("describe_cluster: {:?}", a.describe_cluster(&opts()).await);
    eprintln!(
        "list_consumer_groups: {:?}",
        a.list_consumer_groups(&opts()).await
    );
    eprintln!(
        "describe_consumer_groups: {:?}",
        a.describe_consumer_groups(&["app", "live", "nobody"], &opts())
            .await
    );
    eprintln!(
        "offsets(all): {:?}",
        a.list_consumer_group_offsets("app", None, &opts()).await
    );
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("orders", 0);
    tpl.add_partition("orders", 1);
    eprintln!(
        "offsets(named): {:?}",
        a.list_consumer_group_offsets("app", Some(&tpl), &opts())
            .await
    );
    eprintln!(
        "offsets(nobody): {:?}",
        a.list_consumer_group_offsets("nobody", Some(&tpl), &opts())
            .await
    );
    for spec in [
        OffsetSpec::Latest,
        OffsetSpec::Earliest,
        OffsetSpec::MaxTimestamp,
        OffsetSpec::Timestamp(0),
    ] {
        eprintln!(
            "list_offsets({spec:?}): {:?}",
            a.list_offsets(
                &[("orders", 0, spec), ("orders", 1, spec), ("nope", 0, spec)],
                &opts()
            )
            .await
        );
    }
    eprintln!(
        "describe_topics: {:?}",
        a.describe_topics(&["orders", "nope"], &opts()).await
    );
    panic!("explore");
}
