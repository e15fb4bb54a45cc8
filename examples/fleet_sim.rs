//! The rest of a simulated fleet for `scripts/bench-fleet.sh`: writes valid probes of
//! `OTHERS` instance ids (never the real agent's) into every partition of `TOPIC`, one probe
//! per instance and partition every `INTERVAL_MS`, for `SECONDS`. The real agent must count
//! them as other instances' probes, never as foreign records.
//!
//! ```sh
//! cargo run --release --example fleet_sim -- BOOTSTRAP TOPIC OTHERS INTERVAL_MS SECONDS
//! ```

use std::time::{Duration, Instant};

use losswatch::probe::Probe;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn arg(i: usize) -> String {
    std::env::args()
        .nth(i)
        .expect("usage: fleet_sim BOOTSTRAP TOPIC OTHERS INTERVAL_MS SECONDS")
}

fn main() {
    let (bootstrap, topic) = (arg(1), arg(2));
    let others: u128 = arg(3).parse().expect("OTHERS: a number");
    let every = Duration::from_millis(arg(4).parse().expect("INTERVAL_MS: a number"));
    let seconds: u64 = arg(5).parse().expect("SECONDS: a number");
    let meta: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("client");
    let partitions: Vec<i32> = loop {
        let md = meta
            .fetch_metadata(Some(&topic), Duration::from_secs(5))
            .expect("metadata");
        let ps: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
        if !ps.is_empty() {
            break ps;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let ids: Vec<uuid::Uuid> = (0..others)
        .map(|i| uuid::Uuid::from_u128(0x000f_1ee7_0000_0000 + i))
        .collect();
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut next = Instant::now();
    let (mut seq, mut sent) = (0u64, 0u64);
    while Instant::now() < end {
        seq += 1;
        let now_us = chrono::Utc::now().timestamp_micros();
        for id in &ids {
            for &partition in &partitions {
                let value = Probe {
                    instance: *id,
                    partition,
                    seq,
                    produced_at_us: now_us,
                }
                .encode(100);
                let rec = BaseRecord::<(), [u8]>::to(&topic)
                    .partition(partition)
                    .payload(&value);
                if producer.send(rec).is_ok() {
                    sent += 1;
                }
            }
            producer.poll(Duration::ZERO);
        }
        next += every;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let _ = producer.flush(Duration::from_secs(10));
    eprintln!(
        "fleet_sim: {sent} probes of {others} instances on {} partitions",
        partitions.len()
    );
}
