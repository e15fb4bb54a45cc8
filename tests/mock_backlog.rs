//! An agent that restarts far behind on a canary topic many agents share: a large backlog of
//! other instances' probes must not starve probing, the state flush or the `/livez` heartbeat
//! while the verifier reads through it, and every backlog record counts as another
//! instance's probe (never foreign, never a loss).

mod common;

use std::time::{Duration, Instant};

use common::{assert_identity, config, eventually, get, scrape, Mock};
use losswatch::probe::{Probe, HEADER_LEN};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tokio_util::sync::CancellationToken;

const T: &str = "canary";
const PARTITIONS: i32 = 48;
/// 50 000 bare-header probes on each of 48 partitions: about 3 MB, inside the mock's retention (about
/// 5 MiB per partition), so none expires before it is read.
const BACKLOG: usize = 2_400_000;
const WAIT: Duration = Duration::from_secs(120);
/// The longest the effect of a 100 ms tick (probe, flush) may go unseen.
const MAX_GAP_FAST: Duration = Duration::from_millis(600);
/// The longest the effect of the 1 s housekeeping tick (status, heartbeat) may go unseen.
const MAX_GAP_HOUSE: Duration = Duration::from_millis(1500);

/// Writes `records` valid probes of 8 other instance ids, round-robin over the partitions,
/// in large batches (as a fleet of agents produces them).
fn write_backlog(bootstrap: &str, records: usize) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("backlog producer");
    let instances: Vec<uuid::Uuid> = (0..8).map(|_| uuid::Uuid::new_v4()).collect();
    let now = chrono::Utc::now().timestamp_micros();
    let mut buf = Vec::new();
    for i in 0..records {
        let partition = i32::try_from(i).unwrap() % PARTITIONS;
        Probe {
            instance: instances[i % instances.len()],
            partition,
            seq: i as u64,
            produced_at_us: now,
        }
        .encode_into(HEADER_LEN, &mut buf);
        let mut rec = BaseRecord::<(), [u8]>::to(T)
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
    producer.flush(Duration::from_secs(60)).expect("flush");
}

/// One look at the agent while it reads the backlog.
struct Sample {
    at: Instant,
    other: f64,
    sent: f64,
    acked: f64,
    flushes: f64,
    livez: u16,
    status: String,
}

/// The longest time between two samples in `window` where `value` did not change.
fn longest_still(window: &[Sample], value: impl Fn(&Sample) -> f64) -> Duration {
    let mut longest = Duration::ZERO;
    let mut since = window[0].at;
    for w in window.windows(2) {
        if value(&w[1]) != value(&w[0]) {
            since = w[1].at;
        }
        longest = longest.max(w[1].at - since);
    }
    longest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_of_other_instances_does_not_starve_the_loop() {
    let mock = Mock::new(T, PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.db");

    let stop = CancellationToken::new();
    let running = losswatch::start(config(&mock, T, &state).build().unwrap(), stop.clone())
        .await
        .unwrap();
    let addr = running.addr;
    eventually(WAIT, "probes verified on every partition", || {
        let s = scrape(addr);
        (0..PARTITIONS)
            .all(|p| {
                s.sum(
                    "losswatch_probes_received_total",
                    &[("partition", &p.to_string())],
                ) >= 2.0
            })
            .then_some(())
    })
    .await;
    stop.cancel();
    running.wait().await.unwrap();

    let bootstrap = mock.cluster.bootstrap_servers();
    tokio::task::spawn_blocking(move || write_backlog(&bootstrap, BACKLOG))
        .await
        .unwrap();

    // The restarted agent resumes at its saved positions, behind the whole backlog.
    let stop = CancellationToken::new();
    let running = losswatch::start(config(&mock, T, &state).build().unwrap(), stop.clone())
        .await
        .unwrap();
    let addr = running.addr;
    // Watched from a thread of its own: a loop that never yields holds a runtime worker.
    let samples = std::thread::spawn(move || {
        let deadline = Instant::now() + WAIT;
        let mut samples = Vec::new();
        loop {
            let s = scrape(addr);
            let sample = Sample {
                at: Instant::now(),
                other: s.sum("losswatch_other_instance_probes_total", &[]),
                sent: s.sum("losswatch_probes_sent_total", &[]),
                acked: s.sum("losswatch_probes_acked_total", &[]),
                // Handed over by the loop, not committed: the writer's own fsync latency on
                // a busy machine is not the loop's starvation.
                flushes: s.sum("losswatch_ledger_batches_total", &[]),
                livez: get(addr, "/livez").0,
                status: get(addr, "/api/status").1,
            };
            let done = sample.other >= BACKLOG as f64;
            samples.push(sample);
            if done || Instant::now() > deadline {
                return samples;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .join()
    .unwrap();

    let last = samples.last().unwrap();
    assert_eq!(
        last.other, BACKLOG as f64,
        "backlog not read within {WAIT:?}"
    );
    let first = samples.iter().position(|s| s.other > 0.0).unwrap();
    let window = &samples[first..];
    let reading = last.at - window[0].at;
    eprintln!(
        "read {BACKLOG} backlog records in about {reading:.1?} ({} samples)",
        window.len()
    );
    // A backlog read faster than this leaves nothing to starve, and the test would prove
    // nothing.
    assert!(
        reading >= 2 * MAX_GAP_HOUSE,
        "the backlog was read in {reading:?}: too fast to show starvation; make it larger"
    );
    let gaps = [
        (
            "probes sent",
            longest_still(window, |s| s.sent),
            MAX_GAP_FAST,
        ),
        (
            "probes acked",
            longest_still(window, |s| s.acked),
            MAX_GAP_FAST,
        ),
        (
            "state flushes",
            longest_still(window, |s| s.flushes),
            MAX_GAP_FAST,
        ),
        // The status is republished by the 1 s housekeeping tick, which beats the heartbeat.
        (
            "status (housekeeping)",
            longest_still(window, |s| s.status.len() as f64 + fnv(&s.status)),
            MAX_GAP_HOUSE,
        ),
    ];
    for (what, gap, max) in &gaps {
        eprintln!("{what}: longest still {gap:.2?} (at most {max:?})");
    }
    let starved: Vec<_> = gaps.iter().filter(|(_, gap, max)| gap > max).collect();
    let livez_failed = window.iter().filter(|s| s.livez != 200).count();
    assert!(
        starved.is_empty() && livez_failed == 0,
        "while the backlog was read ({reading:?}): stood still {starved:?}; /livez failed on {livez_failed} of {} polls",
        window.len()
    );

    let s = scrape(addr);
    assert_eq!(s.sum("losswatch_foreign_records_total", &[]), 0.0);
    assert_eq!(s.sum("losswatch_probes_lost_total", &[]), 0.0);
    assert_eq!(s.sum("losswatch_probes_duplicated_total", &[]), 0.0);
    assert_eq!(s.sum("losswatch_partition_truncations_total", &[]), 0.0);
    assert_identity(&s, T, PARTITIONS);
    stop.cancel();
    running.wait().await.unwrap();
}

/// A cheap fingerprint of a status body, so that any change of it shows.
fn fnv(s: &str) -> f64 {
    let h = s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (h >> 11) as f64
}
