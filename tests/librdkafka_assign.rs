//! The vendored librdkafka's assignment teardown (`crates/rdkafka-sys/PATCHES.md`, patch 4):
//! a partition removed from the assignment, added back and removed again before its fetcher
//! confirmed the first stop used to get a second stop request; the second confirmation then
//! failed `rd_kafka_assignment_partition_stopped`'s `rktp_started` assertion and aborted the
//! process. The verifier replaces its assignment this way whenever a seek is refused (e.g.
//! after retention removed what it was about to read), and the lag poller reads record
//! timestamps by assigning chunk after chunk, so back-to-back assignments must be safe.
//!
//! On librdkafka's own mock cluster: many rounds of assignments replacing each other with no
//! pause, then a read from the last one, which must deliver every record from its offsets.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "reassigned";
const PARTITIONS: i32 = 8;
const RECORDS: i64 = 20;

fn fill(cluster: &MockCluster<'_, DefaultProducerContext>) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    for p in 0..PARTITIONS {
        for i in 0..RECORDS {
            let body = format!("{p}-{i}");
            producer
                .send(BaseRecord::<(), str>::to(TOPIC).partition(p).payload(&body))
                .map_err(|(e, _)| e)
                .expect("enqueued");
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");
}

fn consumer(cluster: &MockCluster<'_, DefaultProducerContext>) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("group.id", "reassigned")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer")
}

fn assignment(offset: i64) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, Offset::Offset(offset))
            .expect("partition");
    }
    tpl
}

#[test]
fn assignments_replacing_each_other_back_to_back_do_not_abort_and_read_from_the_last() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, PARTITIONS, 1).expect("topic");
    fill(&cluster);
    let consumer = consumer(&cluster);

    for round in 0..200i64 {
        // Start every fetcher, then replace the assignment twice with no pause: the second
        // replacement removes partitions whose first stop is not confirmed yet.
        consumer
            .assign(&assignment(round % RECORDS))
            .expect("assign");
        let _ = consumer.poll(Duration::from_millis(1));
        consumer.assign(&assignment(0)).expect("assign");
        consumer.assign(&assignment(1)).expect("assign");
        if round % 20 == 0 {
            consumer.unassign().expect("unassign");
        }
    }

    let from = 5;
    consumer.assign(&assignment(from)).expect("assign");
    let mut next: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, from)).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while next.values().any(|&o| o < RECORDS) {
        assert!(Instant::now() < deadline, "read stalled at {next:?}");
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => panic!("consumer error: {e}"),
            Some(Ok(m)) => {
                let at = next.get_mut(&m.partition()).expect("assigned partition");
                assert_eq!(m.offset(), *at, "partition {} read in order", m.partition());
                *at += 1;
            }
        }
    }
}
