//! Tracker throughput, in tracker events (one `on_ack` or one `on_record` call) per second on
//! one core.
//!
//! Every scenario drives one tracker with 6 partitions, probes sent round-robin over them,
//! and keeps going across iterations (sequence numbers, offsets and the clock carry on), so
//! the duplicate window is full as in a long-running agent. Every acked probe is read back in
//! the same iteration, so the state stays bounded; after each timed batch (outside the timing)
//! the bench asserts that every probe was delivered, nothing was declared lost, duplicated,
//! unmatched or skipped, and no partition has anything pending.
//!
//! Verdicts go into one reused `Outcome` that is drained and cleared after every call,
//! as the agent does.
//!
//! Scenarios:
//! - `ack_then_record`: the steady state; the delivery report arrives, then the record is read.
//! - `record_then_ack`: the race; the record is read before its delivery report arrives.
//! - `mixed_10pct_other`: like `ack_then_record`, but one record in ten read back is another
//!   instance's probe, written just before one of ours (ack ours, read theirs, read ours).
//!
//! Run: `cargo bench --bench tracker -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use losswatch::tracker::{Ack, Outcome, Record, Tracker, TrackerConfig, Verdict};

const PARTITIONS: i32 = 6;
/// Probes per timed batch, spread round-robin over the partitions (a multiple of
/// `PARTITIONS * OTHER_EVERY`, so every batch has the same mix on every partition).
const PROBES: u64 = 5_400;
/// Microseconds the clock advances per probe.
const STEP_US: i64 = 10;
/// End-to-end latency of every probe, well under the late threshold.
const E2E_US: i64 = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    AckThenRecord,
    RecordThenAck,
    /// Every `OTHER_EVERY`th own probe of a partition is preceded in the log by another
    /// instance's record.
    MixedOther,
}

/// One in `OTHER_EVERY` own probes has a foreign record before it: with 9, one record in ten
/// read back is not ours.
const OTHER_EVERY: u64 = 9;
const _: () = assert!(PROBES % (PARTITIONS as u64 * OTHER_EVERY) == 0);

impl Scenario {
    /// Tracker events in one batch of `PROBES` probes.
    fn events_per_batch(self) -> u64 {
        match self {
            Scenario::AckThenRecord | Scenario::RecordThenAck => 2 * PROBES,
            Scenario::MixedOther => 2 * PROBES + PROBES / OTHER_EVERY,
        }
    }
}

/// What the drained verdicts added up to.
#[derive(Debug, Default)]
struct Tally {
    delivered: u64,
    other: u64,
}

impl Tally {
    #[inline]
    fn drain(&mut self, out: &mut Outcome) {
        self.other += out.seeks.len() as u64;
        for v in out.verdicts.iter() {
            match v {
                Verdict::Delivered { late: false, .. } => self.delivered += 1,
                _ => self.other += 1,
            }
        }
        out.clear();
    }
}

struct Bench {
    tracker: Tracker,
    out: Outcome,
    /// Next sequence number and next offset, per partition.
    next_seq: [u64; PARTITIONS as usize],
    next_offset: [i64; PARTITIONS as usize],
    now_us: i64,
    /// Own probes sent so far.
    probes: u64,
    tally: Tally,
}

impl Bench {
    fn new() -> Self {
        let mut tracker = Tracker::new(TrackerConfig::default());
        for p in 0..PARTITIONS {
            tracker.add_partition(p, 0);
        }
        Bench {
            tracker,
            out: Outcome::default(),
            next_seq: [0; PARTITIONS as usize],
            next_offset: [0; PARTITIONS as usize],
            now_us: 1_700_000_000_000_000,
            probes: 0,
            tally: Tally::default(),
        }
    }

    fn ack(&self, seq: u64, offset: i64) -> Ack {
        Ack {
            seq,
            offset,
            broker: 1,
            produced_at_us: self.now_us - E2E_US,
            sent_epoch: 0,
        }
    }

    /// Runs one batch of `PROBES` probes.
    #[inline(never)]
    fn batch(&mut self, scenario: Scenario) {
        for _ in 0..PROBES {
            let p = (self.probes % PARTITIONS as u64) as usize;
            let pi = p as i32;
            self.now_us += STEP_US;
            let seq = self.next_seq[p];
            self.next_seq[p] += 1;
            let own = Record::Own {
                seq,
                produced_at_us: self.now_us - E2E_US,
            };
            match scenario {
                Scenario::AckThenRecord => {
                    let offset = self.next_offset[p];
                    self.next_offset[p] += 1;
                    let ack = self.ack(seq, offset);
                    self.tracker.on_ack(pi, ack, self.now_us, &mut self.out);
                    self.tally.drain(&mut self.out);
                    self.tracker
                        .on_record(pi, offset, own, self.now_us, &mut self.out);
                    self.tally.drain(&mut self.out);
                }
                Scenario::RecordThenAck => {
                    let offset = self.next_offset[p];
                    self.next_offset[p] += 1;
                    self.tracker
                        .on_record(pi, offset, own, self.now_us, &mut self.out);
                    self.tally.drain(&mut self.out);
                    let ack = self.ack(seq, offset);
                    self.tracker.on_ack(pi, ack, self.now_us, &mut self.out);
                    self.tally.drain(&mut self.out);
                }
                Scenario::MixedOther => {
                    let foreign = seq % OTHER_EVERY == OTHER_EVERY - 1;
                    let other_offset = self.next_offset[p];
                    if foreign {
                        self.next_offset[p] += 1;
                    }
                    let offset = self.next_offset[p];
                    self.next_offset[p] += 1;
                    let ack = self.ack(seq, offset);
                    self.tracker.on_ack(pi, ack, self.now_us, &mut self.out);
                    self.tally.drain(&mut self.out);
                    if foreign {
                        self.tracker.on_record(
                            pi,
                            other_offset,
                            Record::Other,
                            self.now_us,
                            &mut self.out,
                        );
                        self.tally.drain(&mut self.out);
                    }
                    self.tracker
                        .on_record(pi, offset, own, self.now_us, &mut self.out);
                    self.tally.drain(&mut self.out);
                }
            }
            self.probes += 1;
        }
    }

    /// Checks, outside the timing, that the scenario stayed on the intended path.
    fn check(&self) {
        assert_eq!(self.tally.other, 0, "unexpected verdicts");
        assert_eq!(
            self.tally.delivered, self.probes,
            "not every probe delivered"
        );
        for p in 0..PARTITIONS {
            assert_eq!(self.tracker.pending_len(p), 0, "pending left on {p}");
            let t = self.tracker.totals(p);
            assert_eq!(t.acked, t.received, "partition {p}: {t:?}");
            assert_eq!(
                t.lost + t.duplicated + t.unmatched + t.truncations + t.expired_unread,
                0,
                "partition {p}: {t:?}"
            );
            assert_eq!(
                self.tracker.position(p),
                Some(self.next_offset[p as usize]),
                "partition {p} not read up to the end"
            );
        }
    }
}

fn tracker(c: &mut Criterion) {
    let mut group = c.benchmark_group("tracker");
    for (name, scenario) in [
        ("ack_then_record", Scenario::AckThenRecord),
        ("record_then_ack", Scenario::RecordThenAck),
        ("mixed_10pct_other", Scenario::MixedOther),
    ] {
        group.throughput(Throughput::Elements(scenario.events_per_batch()));
        let mut bench = Bench::new();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    bench.batch(black_box(scenario));
                    elapsed += start.elapsed();
                    bench.check();
                }
                black_box(&bench.tally);
                elapsed
            });
        });
    }
    group.finish();
}

criterion_group!(benches, tracker);
criterion_main!(benches);
