//! How fast a restarted agent reads through a backlog of other instances' probes: the read
//! path of an agent that comes back far behind on a canary topic many agents share.
//!
//! On librdkafka's MockCluster (in this process): an agent starts, verifies a few probes and
//! stops; `RECORDS` valid probes of 8 other instance ids are written round-robin over the
//! `PARTITIONS` partitions; the agent restarts on the same state file, so it resumes behind all
//! of them. The figure is records read per second, from the first backlog record counted to
//! the last, by `losswatch_other_instance_probes_total` (read from the agent's registry every
//! 10 ms); the time from the restart is printed beside it. Fails if a backlog record is
//! counted as foreign or anything is lost.
//!
//! ```sh
//! cargo run --release --example backlog_bench -- [RECORDS] [PARTITIONS]
//! ```
//!
//! `BATCH` (records per produce batch, default 10000), `LINGER_MS` (default 20) and `PAYLOAD`
//! (probe size in bytes, default the bare header) shape the backlog. Note that the MockCluster
//! answers a fetch with one batch per partition and finds it by a linear search of the
//! partition's batches, so single-record batches (`BATCH=1`) measure the mock, not the agent.

use std::time::{Duration, Instant};

use losswatch::config::Config;
use losswatch::probe::{Probe, HEADER_LEN};
use prometheus::Registry;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "canary";

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .map_or(default, |v| v.parse().expect("a number"))
}

/// Sum of every series of `name` in the registry.
fn total(reg: &Registry, name: &str) -> f64 {
    reg.gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        // A counter's gauge part is unset (zero), and the other way round.
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}

fn config(bootstrap: &str, state: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.kafka.bootstrap_servers = bootstrap.into();
    c.canary.topic = TOPIC.into();
    c.canary.probe_interval = Duration::from_millis(100);
    c.canary.metadata_refresh = Duration::from_secs(1);
    c.canary.delivery_timeout = Duration::from_secs(3);
    c.canary.create_topic = false;
    c.http.listen = "127.0.0.1:0".parse().expect("loopback address");
    c.state.path = state.to_owned();
    c.state.flush_interval = Duration::from_millis(100);
    c.shutdown.grace = Duration::from_secs(5);
    c
}

async fn wait_for(reg: &Registry, what: &str, timeout: Duration, ok: impl Fn(&Registry) -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok(reg) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes `records` probes of 8 other instances, round-robin over the partitions.
fn write_backlog(bootstrap: &str, records: usize, partitions: i32) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "linger.ms",
            std::env::var("LINGER_MS").unwrap_or_else(|_| "20".into()),
        )
        .set("queue.buffering.max.messages", "1000000")
        .set(
            "batch.num.messages",
            std::env::var("BATCH").unwrap_or_else(|_| "10000".into()),
        )
        .create()
        .expect("backlog producer");
    let instances: Vec<uuid::Uuid> = (0..8).map(|_| uuid::Uuid::new_v4()).collect();
    let mut buf = Vec::new();
    let now = chrono::Utc::now().timestamp_micros();
    for i in 0..records {
        let partition = i32::try_from(i).expect("record count fits i32") % partitions;
        Probe {
            instance: instances[i % instances.len()],
            partition,
            seq: u64::try_from(i).expect("index fits u64"),
            produced_at_us: now,
        }
        .encode_into(
            std::env::var("PAYLOAD").map_or(HEADER_LEN, |v| v.parse().expect("a number")),
            &mut buf,
        );
        let mut rec = BaseRecord::<(), [u8]>::to(TOPIC)
            .partition(partition)
            .payload(buf.as_slice());
        while let Err((e, r)) = producer.send(rec) {
            assert!(
                matches!(
                    e.rdkafka_error_code(),
                    Some(rdkafka::error::RDKafkaErrorCode::QueueFull)
                ),
                "produce failed: {e}"
            );
            rec = r;
            producer.poll(Duration::from_millis(10));
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("flush the backlog");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let records = arg(1, 300_000);
    let partitions = i32::try_from(arg(2, 6)).expect("partitions fit i32");
    let mock: MockCluster<'static, DefaultProducerContext> =
        MockCluster::new(3).expect("mock cluster");
    mock.create_topic(TOPIC, partitions, 3)
        .expect("create topic");
    let bootstrap = mock.bootstrap_servers();
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("s.db");

    let stop = CancellationToken::new();
    let running = losswatch::start(
        config(&bootstrap, &state).build().expect("config"),
        stop.clone(),
    )
    .await
    .expect("agent starts");
    let reg = running.partition_series.clone();
    let p = f64::from(partitions);
    wait_for(&reg, "probes verified", Duration::from_secs(60), |r| {
        total(r, "losswatch_probes_received_total") >= 3.0 * p
    })
    .await;
    stop.cancel();
    running.wait().await.expect("agent stops");

    let t = Instant::now();
    write_backlog(&bootstrap, records, partitions);
    eprintln!("wrote {records} backlog records in {:.1?}", t.elapsed());

    let stop = CancellationToken::new();
    let started = Instant::now();
    let running = losswatch::start(
        config(&bootstrap, &state).build().expect("config"),
        stop.clone(),
    )
    .await
    .expect("agent restarts");
    let reg = running.registry.clone();
    let n = records as f64;
    let mut last = (Instant::now(), 0.0);
    let mut first_read = None;
    loop {
        let read = total(&reg, "losswatch_other_instance_probes_total");
        if read > 0.0 && first_read.is_none() {
            first_read = Some((Instant::now(), read));
        }
        if read >= n {
            break;
        }
        if last.0.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "{:>6.1} s: {read} read ({:.0} records/s over the last {:.1?})",
                started.elapsed().as_secs_f64(),
                (read - last.1) / last.0.elapsed().as_secs_f64(),
                last.0.elapsed()
            );
            last = (Instant::now(), read);
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "backlog not read within 600 s: {read} of {records}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let (t0, r0) = first_read.expect("records were read");
    let reading = t0.elapsed().as_secs_f64();
    let foreign = total(&reg, "losswatch_foreign_records_total");
    let lost = total(&reg, "losswatch_probes_lost_total");
    stop.cancel();
    running.wait().await.expect("agent stops");
    assert_eq!(foreign, 0.0, "backlog records counted as foreign");
    assert_eq!(lost, 0.0, "probes counted lost");
    println!(
        "backlog of {records} other-instance records on {partitions} partitions: {:.0} records/s ({} records in {reading:.3} s after the first; {secs:.3} s from the restart)",
        (n - r0) / reading,
        n - r0,
    );
}
