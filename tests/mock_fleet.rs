//! `canary.fleet_probe_rate` against librdkafka's MockCluster: the real agent beside a
//! simulated fleet (valid probes of other instance ids at their share of the rate) counts the
//! live agents from what it reads, probes at `agents / rate`, and goes back to its own
//! interval when the others stop. Their probes are other instances' probes, never foreign,
//! and nothing is lost.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{config, eventually, scrape, Broker, Mock, Scrape};
use losswatch::probe::Probe;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tokio_util::sync::CancellationToken;

const T: &str = "canary";
const PARTITIONS: i32 = 3;
const WAIT: Duration = Duration::from_secs(60);

/// Writes, for each of `others` instance ids, one probe per partition every `every`,
/// until `stop`.
fn simulate(bootstrap: String, others: usize, every: Duration, stop: Arc<AtomicBool>) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let ids: Vec<uuid::Uuid> = (0..others)
        .map(|i| uuid::Uuid::from_u128(0x000f_1ee7_0000 + i as u128))
        .collect();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let now_us = chrono::Utc::now().timestamp_micros();
        for id in &ids {
            for partition in 0..PARTITIONS {
                let value = Probe {
                    instance: *id,
                    partition,
                    seq,
                    produced_at_us: now_us,
                }
                .encode(100);
                let rec = BaseRecord::<(), [u8]>::to(T)
                    .partition(partition)
                    .payload(&value);
                p.send(rec).map_err(|(e, _)| e).expect("produce");
            }
        }
        p.poll(Duration::ZERO);
        std::thread::sleep(every);
    }
    p.flush(Duration::from_secs(5)).expect("flush");
}

fn agents(s: &Scrape) -> f64 {
    s.sum("losswatch_fleet_agents", &[])
}

fn interval(s: &Scrape) -> f64 {
    s.sum("losswatch_probe_interval_seconds", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_rate_follows_the_fleet_size() {
    let mock = Mock::new(T, PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&mock, T, &dir.path().join("s.db"));
    // 10 agents sharing 20 probes per partition per second: 0.5 s each.
    cfg.canary.fleet_probe_rate = Some(20.0);
    let stop = CancellationToken::new();
    let running = losswatch::start(cfg.build().unwrap(), stop.clone())
        .await
        .unwrap();
    let addr = running.addr;

    // Alone, it probes at canary.probe_interval (100 ms: 1 agent / 20 per s is faster).
    let s = eventually(WAIT, "alone: 1 agent, 100 ms", || {
        let s = scrape(addr);
        (s.sum("losswatch_probes_received_total", &[]) >= 6.0).then_some(s)
    })
    .await;
    assert_eq!(agents(&s), 1.0);
    assert!((interval(&s) - 0.1).abs() < 1e-9, "{}", interval(&s));

    let quit = Arc::new(AtomicBool::new(false));
    let sim = {
        let (b, q) = (mock.bootstrap(), quit.clone());
        std::thread::spawn(move || simulate(b, 9, Duration::from_millis(500), q))
    };
    eventually(WAIT, "10 agents, 0.5 s", || {
        let s = scrape(addr);
        (agents(&s) == 10.0 && (interval(&s) - 0.5).abs() < 1e-9).then_some(())
    })
    .await;
    // Over 6 s at 0.5 s per partition: about 12 probes per partition, not 60.
    let before = scrape(addr).sum("losswatch_probes_sent_total", &[]);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let s = scrape(addr);
    let sent = s.sum("losswatch_probes_sent_total", &[]) - before;
    let want = 6.0 / 0.5 * f64::from(PARTITIONS);
    assert!(
        (want - 4.0..=want + 4.0).contains(&sent),
        "{sent} probes sent in 6 s, want about {want}"
    );
    assert_eq!(agents(&s), 10.0);
    assert!(s.sum("losswatch_other_instance_probes_total", &[]) > 0.0);
    // Nine other agents, one series: the fleet pays N series for this counter, not N².
    assert_eq!(
        s.label_values("losswatch_other_instance_probes_total", "instance"),
        ["other"]
    );
    assert_eq!(s.sum("losswatch_foreign_records_total", &[]), 0.0);

    // The others stop: after 3 of its intervals it is alone again.
    quit.store(true, Ordering::Relaxed);
    sim.join().unwrap();
    eventually(WAIT, "alone again: 1 agent, 100 ms", || {
        let s = scrape(addr);
        (agents(&s) == 1.0 && (interval(&s) - 0.1).abs() < 1e-9).then_some(())
    })
    .await;
    let s = scrape(addr);
    assert_eq!(s.sum("losswatch_probes_lost_total", &[]), 0.0);
    common::assert_identity(&s, T, PARTITIONS);
    stop.cancel();
    running.wait().await.unwrap();
}
