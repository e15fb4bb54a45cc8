//! Sets up consumer groups on a broker for `scripts/bench-lag.sh`: `GROUPS` groups, each
//! with commits on every partition of one topic of `PARTITIONS` partitions, ten groups per
//! topic (so 1 000 groups read 100 topics, 1 000 partitions). Every partition gets `RECORDS`
//! records, one per batch, so that log ends are exact on Tansu's memory storage.
//!
//! ```sh
//! cargo run --release --example lag_bench_setup -- BOOTSTRAP GROUPS [PARTITIONS] [RECORDS]
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const GROUPS_PER_TOPIC: usize = 10;

fn arg(i: usize, default: Option<usize>) -> usize {
    match std::env::args().nth(i) {
        Some(v) => v.parse().expect("a number"),
        None => default.expect("usage: lag_bench_setup BOOTSTRAP GROUPS [PARTITIONS] [RECORDS]"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let bootstrap = std::env::args()
        .nth(1)
        .expect("usage: lag_bench_setup BOOTSTRAP GROUPS [PARTITIONS] [RECORDS]");
    let groups = arg(2, None);
    let partitions = arg(3, Some(10));
    let records = arg(4, Some(5));
    let topics = groups.div_ceil(GROUPS_PER_TOPIC);
    let started = Instant::now();
    let mut base = ClientConfig::new();
    base.set("bootstrap.servers", &bootstrap);

    let admin: AdminClient<DefaultClientContext> = base.create().expect("admin client");
    let names: Vec<String> = (0..topics).map(|t| format!("bench-{t:04}")).collect();
    let news: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| {
            NewTopic::new(
                n,
                i32::try_from(partitions).unwrap(),
                TopicReplication::Fixed(1),
            )
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
    for chunk in news.chunks(50) {
        for r in admin
            .create_topics(chunk, &opts)
            .await
            .expect("create_topics")
        {
            if let Err((t, e)) = r {
                assert!(
                    e == rdkafka::error::RDKafkaErrorCode::TopicAlreadyExists,
                    "create {t}: {e}"
                );
            }
        }
    }
    eprintln!(
        "{topics} topics of {partitions} partitions in {:?}",
        started.elapsed()
    );

    let producer: BaseProducer = base
        .clone()
        .set("linger.ms", "0")
        .set("batch.num.messages", "1")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    for name in &names {
        for p in 0..partitions {
            for i in 0..records {
                let body = format!("record {i}");
                let rec = BaseRecord::<(), str>::to(name)
                    .partition(i32::try_from(p).unwrap())
                    .payload(&body);
                producer.send(rec).map_err(|(e, _)| e).expect("produce");
            }
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(300)).expect("flush");
    eprintln!(
        "{} records produced in {:?}",
        topics * partitions * records,
        started.elapsed()
    );

    // Each group commits (group index mod RECORDS) on every partition of its topic.
    let next = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (next, base, names) = (next.clone(), base.clone(), names.clone());
            std::thread::spawn(move || loop {
                let g = next.fetch_add(1, Ordering::SeqCst);
                if g >= groups {
                    return;
                }
                let topic = &names[g / GROUPS_PER_TOPIC];
                let c: BaseConsumer = base
                    .clone()
                    .set("group.id", format!("bench-group-{g:05}"))
                    .set("enable.auto.commit", "false")
                    .create()
                    .expect("consumer");
                let mut tpl = TopicPartitionList::new();
                for p in 0..partitions {
                    let o = i64::try_from(g % records.max(1)).unwrap();
                    tpl.add_partition_offset(topic, i32::try_from(p).unwrap(), Offset::Offset(o))
                        .unwrap();
                }
                c.commit(&tpl, CommitMode::Sync).expect("commit");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    eprintln!(
        "{groups} groups x {partitions} partitions committed in {:?}",
        started.elapsed()
    );
}
