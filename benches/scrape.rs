//! One `/metrics` scrape at 1 000 canary partitions: the time `render_scrape` takes on one
//! core with nothing else running, and how long it holds the scrape lock (the agent loop
//! waits for the lock, not for the rest).
//!
//! The registry is the agent's own (`Metrics::register`, default histograms per broker),
//! with every per-partition series created and non-zero, latencies observed on 3 brokers,
//! 10 other instances' counters and an empty lag poller. After the timing the bench checks
//! that the text has a `losswatch_probes_sent_total` line for every partition.
//!
//! Run: `cargo bench --bench scrape -- --warm-up-time 1 --measurement-time 5`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use losswatch::metrics::{render_scrape, Metrics};
use prometheus::Registry;

const PARTITIONS: i32 = 1_000;
const TOPIC: &str = "losswatch-canary";

fn agent() -> (Registry, Metrics, losswatch::lag::LagMetrics) {
    let reg = Registry::new();
    let m = Metrics::register(&reg, false).expect("metrics register");
    let lag = losswatch::lag::LagMetrics::register(&Registry::new()).expect("lag register");
    for p in 0..PARTITIONS {
        let c = m.partition(TOPIC, p);
        for _ in 0..=(p % 7) {
            c.sent.inc();
            c.acked.inc();
            c.received.inc();
        }
        c.leader.set(i64::from(p % 3));
        c.pending.set(i64::from(p % 5));
        c.oldest_pending_age.set(0.001 * f64::from(p % 11));
        m.lost
            .with_label_values(&[TOPIC, &p.to_string(), &(p % 3).to_string()]);
        m.ack_latency
            .observe(TOPIC, p, p % 3, 0.002 + 0.0001 * f64::from(p));
        m.e2e_latency
            .observe(TOPIC, p, p % 3, 0.004 + 0.0001 * f64::from(p));
    }
    for i in 0..10 {
        m.other_instance
            .with_label_values(&[TOPIC, &format!("00000000-0000-0000-0000-{i:012}")])
            .inc();
    }
    (reg, m, lag)
}

fn bench(c: &mut Criterion) {
    let (reg, m, lag) = agent();
    let text = render_scrape(&reg, &m.scrape_lock, &m.series, &lag);
    let bytes = text.len() as u64;
    let mut g = c.benchmark_group("scrape_1000_partitions");
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("render_scrape", |b| {
        b.iter(|| black_box(render_scrape(&reg, &m.scrape_lock, &m.series, &lag)))
    });
    g.bench_function("under_the_lock", |b| {
        b.iter(|| {
            let _held = m.scrape_lock.hold();
            black_box((reg.gather(), m.series.snapshot()))
        })
    });
    g.finish();
    let text = render_scrape(&reg, &m.scrape_lock, &m.series, &lag);
    let sent = text
        .lines()
        .filter(|l| l.starts_with("losswatch_probes_sent_total{"))
        .count();
    assert_eq!(sent, PARTITIONS as usize, "one sent series per partition");
    println!(
        "scrape text: {} bytes, {} lines",
        text.len(),
        text.lines().count()
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
