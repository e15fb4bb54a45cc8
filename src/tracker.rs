//! The loss tracker: a sans-IO state machine that turns delivery reports and records read
//! back into verdicts about this instance's probes.
//!
//! Nothing in here knows about Kafka clients, SQLite, tokio or the clock: callers pass events
//! and the current time (µs since the Unix epoch) and get an [`Outcome`] back: [`Verdict`]s
//! and, beside them, the [`Seek`]s the reader must make (the tracker decides where reading
//! continues; the caller moves the consumer). That makes it
//! property-testable against generated ground truth (see `tests` below) and cheap to run.
//!
//! # What counts as proof
//!
//! Kafka offsets are immutable and assigned in append order, and the verifier reads each
//! partition in offset order. From that, per partition:
//!
//! 1. **Append order.** A delivery report that puts a new probe at offset `o` proves the log
//!    ended at or below `o` when it was appended. Every probe acked *earlier* at an offset
//!    `>= o` is therefore gone: **lost**, and the log was truncated.
//! 2. **Read past.** If the reader is already past `o` when the report for `o` arrives and it
//!    did not see that probe there, what it read at `o` was something else: the log was
//!    truncated and rewritten below the read position. The reader is rewound to `o`.
//! 3. **Skipped or overwritten.** When the reader reads the record at `o'`, every pending probe
//!    at an offset below `o'` was not in the log (**lost**), and a pending probe at exactly `o'`
//!    whose record differs was overwritten (**lost**, truncation).
//! 4. **Out of range.** A fetch refused as out of range is classified by the watermarks read
//!    after it: below the log start means retention removed unread data (**expired unread**,
//!    the consumer stage); above the log end means truncation. Watermarks that arrive after
//!    the reader has moved or a truncation was detected are stale and only resume it (they
//!    were read for a position it has left). An out-of-range alone never
//!    declares a loss (a late watermark read could race a new append); the rules above do, one
//!    probe interval later at most.
//!
//! Probes are never declared lost by a timeout. A probe whose delivery report never arrives is
//! the producer's business (a send failure), never a loss.
//!
//! Per partition the tracker keeps `acked = received + lost + expired_unread + pending`.

use std::collections::{BTreeMap, VecDeque};

/// Tunables. Times are in microseconds.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// A first arrival later than this after production is also counted late.
    pub late_threshold_us: i64,
    /// An own probe read back with no delivery report is forgotten after this long.
    pub unmatched_after_us: i64,
    /// Most acked-but-unverified probes kept per partition; the producer holds back beyond it.
    pub max_pending: usize,
    /// Most read-before-acked probes kept per partition.
    pub max_early: usize,
    /// How many recently delivered sequence numbers are remembered, per partition, to
    /// recognise duplicates. 16 bytes each: at 1 000 partitions the default is 4 MiB. A
    /// duplicate that arrives further back than this is not recognised as one; it waits as a
    /// read-before-ack probe and is counted unmatched after `unmatched_after_us`.
    pub seen_window: usize,
    /// How many recent send failures are remembered to recognise probes that landed anyway.
    pub failed_window: usize,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            late_threshold_us: 10_000_000,
            unmatched_after_us: 600_000_000,
            max_pending: 10_000,
            max_early: 10_000,
            seen_window: 256,
            failed_window: 1024,
        }
    }
}

/// An acked probe not yet seen by the verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingProbe {
    pub seq: u64,
    pub offset: i64,
    /// Leader broker at ack time, the broker a loss is attributed to.
    pub broker: i32,
    pub produced_at_us: i64,
    pub acked_at_us: i64,
    /// Truncation epoch of the partition when the probe was sent.
    pub epoch: u64,
}

/// Lifetime counters of one partition. Persisted, so they survive restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub acked: u64,
    pub received: u64,
    pub lost: u64,
    pub expired_unread: u64,
    pub late: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub truncations: u64,
    pub unmatched: u64,
    pub failed_arrived: u64,
}

/// How a loss was proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossCause {
    /// Rule 1: a later append landed at or below its offset.
    Truncated,
    /// Rule 3: the reader read past its offset without seeing it.
    Skipped,
    /// Rule 3: the reader found a different record at its offset.
    Overwritten,
}

impl LossCause {
    pub fn as_str(self) -> &'static str {
        match self {
            LossCause::Truncated => "truncated",
            LossCause::Skipped => "skipped",
            LossCause::Overwritten => "overwritten",
        }
    }
}

/// What proved a truncation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TruncationEvidence {
    /// A new append landed at or below an offset acked earlier.
    AppendBelowAcked,
    /// A new append landed below the read position without having been read there.
    AppendBelowRead,
    /// A different record was read at an acked offset.
    DifferentRecord,
    /// A fetch was refused as out of range above the log end.
    OutOfRange,
}

impl TruncationEvidence {
    pub fn as_str(self) -> &'static str {
        match self {
            TruncationEvidence::AppendBelowAcked => "append_below_acked",
            TruncationEvidence::AppendBelowRead => "append_below_read",
            TruncationEvidence::DifferentRecord => "different_record",
            TruncationEvidence::OutOfRange => "out_of_range",
        }
    }
}

/// A classification of a probe or of a partition's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First arrival of an acked probe.
    Delivered {
        partition: i32,
        seq: u64,
        offset: i64,
        /// Leader of the partition when the probe was acked.
        broker: i32,
        e2e_us: i64,
        late: bool,
        reordered: bool,
    },
    /// An already delivered probe read again at another offset.
    Duplicate {
        partition: i32,
        seq: u64,
        offset: i64,
    },
    /// Acked, then provably gone.
    Lost {
        partition: i32,
        probe: PendingProbe,
        cause: LossCause,
    },
    /// Retention removed an acked probe before the verifier read it.
    ExpiredUnread { partition: i32, probe: PendingProbe },
    /// The partition's log was truncated. `offset` is where the evidence was found.
    Truncation {
        partition: i32,
        offset: i64,
        evidence: TruncationEvidence,
    },
    /// An own probe read back that no delivery report in this run ever matched (acked by an
    /// earlier run that crashed before saving it, or re-read after a rewind). Not an alarm.
    Unmatched { partition: i32, seq: u64 },
    /// A probe whose send was reported failed turned up in the log after all.
    FailedButArrived {
        partition: i32,
        seq: u64,
        offset: i64,
    },
}

/// A command for the reader: continue partition `partition` from `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seek {
    pub partition: i32,
    pub offset: i64,
}

/// What the tracker decided in one or more calls: the verdicts, for telemetry and the
/// ledger, and beside them the seeks the reader must make, in the order they were decided
/// (for one partition the last one counts).
#[derive(Debug, Default)]
pub struct Outcome {
    pub verdicts: Vec<Verdict>,
    pub seeks: Vec<Seek>,
}

impl Outcome {
    fn seek(&mut self, partition: i32, offset: i64) {
        self.seeks.push(Seek { partition, offset });
    }

    pub fn is_empty(&self) -> bool {
        self.verdicts.is_empty() && self.seeks.is_empty()
    }

    pub fn clear(&mut self) {
        self.verdicts.clear();
        self.seeks.clear();
    }
}

/// A delivery report of an acked probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub seq: u64,
    pub offset: i64,
    /// Leader broker of the partition when the report arrived.
    pub broker: i32,
    pub produced_at_us: i64,
    /// [`Tracker::epoch`] of the partition when the probe was sent.
    pub sent_epoch: u64,
}

/// The reader's position and truncation epoch when a fetch was refused as out of range
/// ([`Tracker::refused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub position: i64,
    pub epoch: u64,
}

/// What the verifier read at an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// A probe of this instance.
    Own { seq: u64, produced_at_us: i64 },
    /// Anything else: another instance's probe or a foreign record.
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Early {
    offset: i64,
    arrived_at_us: i64,
}

/// Per-partition state.
#[derive(Debug, Default)]
struct Partition {
    /// Next offset the reader will read; everything below was read or predates tracking.
    position: i64,
    /// Acked, unverified probes in offset order (acks arrive in offset order).
    pending: VecDeque<PendingProbe>,
    /// Own probes read before their delivery report arrived, by seq. Kept across rewinds:
    /// a probe the verifier has read was delivered, whatever happens to the log later.
    early: BTreeMap<u64, Early>,
    /// Recently delivered (seq, offset), in seq order.
    seen: VecDeque<(u64, i64)>,
    /// Recently failed sends, in seq order.
    failed: VecDeque<u64>,
    max_seq_delivered: Option<u64>,
    /// Highest log start seen in an out-of-range: offsets below it were removed by retention.
    log_start: i64,
    /// Incremented on each detected truncation so one truncation is counted once.
    epoch: u64,
    totals: Totals,
}

/// State a partition is restored from after a restart.
#[derive(Debug, Clone, Default)]
pub struct PartitionSnapshot {
    pub position: i64,
    pub epoch: u64,
    pub totals: Totals,
    pub pending: Vec<PendingProbe>,
}

/// The tracker for all partitions of the canary topic.
#[derive(Debug)]
pub struct Tracker {
    cfg: TrackerConfig,
    parts: BTreeMap<i32, Partition>,
}

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Self {
        Tracker {
            cfg,
            parts: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.cfg
    }

    /// Starts tracking a partition whose reader begins at `position`. Re-adding an existing
    /// partition is a no-op.
    pub fn add_partition(&mut self, partition: i32, position: i64) {
        self.parts.entry(partition).or_insert_with(|| Partition {
            position,
            ..Partition::default()
        });
    }

    /// Restores a partition saved by an earlier run.
    pub fn restore_partition(&mut self, partition: i32, snap: PartitionSnapshot) {
        let mut pending: Vec<_> = snap.pending;
        pending.sort_by_key(|p| p.offset);
        self.parts.insert(
            partition,
            Partition {
                position: snap.position,
                pending: pending.into(),
                epoch: snap.epoch,
                totals: snap.totals,
                ..Partition::default()
            },
        );
    }

    pub fn has_partition(&self, partition: i32) -> bool {
        self.parts.contains_key(&partition)
    }

    pub fn partitions(&self) -> impl Iterator<Item = i32> + '_ {
        self.parts.keys().copied()
    }

    pub fn position(&self, partition: i32) -> Option<i64> {
        self.parts.get(&partition).map(|p| p.position)
    }

    pub fn epoch(&self, partition: i32) -> u64 {
        self.parts.get(&partition).map_or(0, |p| p.epoch)
    }

    pub fn totals(&self, partition: i32) -> Totals {
        self.parts
            .get(&partition)
            .map(|p| p.totals)
            .unwrap_or_default()
    }

    pub fn pending_len(&self, partition: i32) -> usize {
        self.parts.get(&partition).map_or(0, |p| p.pending.len())
    }

    pub fn pending(&self, partition: i32) -> impl Iterator<Item = &PendingProbe> + '_ {
        self.parts
            .get(&partition)
            .into_iter()
            .flat_map(|p| p.pending.iter())
    }

    /// Whether another probe may be sent: false once the unverified set is full, so that a
    /// dead verifier cannot grow state without bound.
    pub fn can_send(&self, partition: i32) -> bool {
        self.pending_len(partition) < self.cfg.max_pending
    }

    /// Ack time of the oldest unverified probe.
    pub fn oldest_pending_acked_at(&self, partition: i32) -> Option<i64> {
        self.parts
            .get(&partition)?
            .pending
            .iter()
            .map(|p| p.acked_at_us)
            .min()
    }

    /// A delivery report: the probe was acked.
    pub fn on_ack(&mut self, partition: i32, ack: Ack, now_us: i64, out: &mut Outcome) {
        let cfg = &self.cfg;
        let part = self.parts.entry(partition).or_default();
        part.totals.acked += 1;
        let offset = ack.offset;
        // A probe sent after the last detected truncation was appended after it, so evidence
        // against it is evidence of a new truncation. One sent before may be a victim of the
        // truncation already counted (its report can arrive after the detection).
        let fresh = ack.sent_epoch == part.epoch;
        let mut truncated = None;

        // Rule 1: every probe acked earlier at an offset >= `offset` is gone.
        while part.pending.back().is_some_and(|p| p.offset >= offset) {
            let Some(gone) = part.pending.pop_back() else {
                break;
            };
            if gone.epoch == part.epoch {
                truncated = Some(TruncationEvidence::AppendBelowAcked);
            }
            part.totals.lost += 1;
            out.verdicts.push(Verdict::Lost {
                partition,
                probe: gone,
                cause: LossCause::Truncated,
            });
        }

        let probe = PendingProbe {
            seq: ack.seq,
            offset,
            broker: ack.broker,
            produced_at_us: ack.produced_at_us,
            acked_at_us: now_us,
            epoch: ack.sent_epoch,
        };

        if let Some(e) = part.early.remove(&ack.seq) {
            // The ordinary race: the verifier read the probe before its report arrived.
            if let Some(ev) = truncated {
                part.note_truncation(partition, offset, ev, out);
            }
            part.deliver(cfg, partition, probe, e.arrived_at_us, out);
            return;
        }

        if offset < part.log_start {
            // The reader jumped over it because retention had already removed it. What rule 1
            // proved above still stands: the log was truncated before this append.
            if let Some(ev) = truncated {
                part.note_truncation(partition, offset, ev, out);
            }
            part.totals.expired_unread += 1;
            out.verdicts
                .push(Verdict::ExpiredUnread { partition, probe });
            return;
        }

        // Rule 2: the reader is past `offset` and did not see the probe there.
        if offset < part.position {
            if fresh && truncated.is_none() {
                truncated = Some(TruncationEvidence::AppendBelowRead);
            }
            part.position = offset;
            out.seek(partition, offset);
        }
        if let Some(ev) = truncated {
            part.note_truncation(partition, offset, ev, out);
        }
        part.pending.push_back(probe);
    }

    /// A delivery report that the send of `seq` failed (a producer-stage failure).
    pub fn on_send_failed(&mut self, partition: i32, seq: u64, out: &mut Outcome) {
        let cfg = &self.cfg;
        let part = self.parts.entry(partition).or_default();
        // It may have landed anyway (e.g. a timeout after the broker appended it).
        if let Some(e) = part.early.remove(&seq) {
            part.totals.failed_arrived += 1;
            out.verdicts.push(Verdict::FailedButArrived {
                partition,
                seq,
                offset: e.offset,
            });
            return;
        }
        if part.failed.len() >= cfg.failed_window {
            part.failed.pop_front();
        }
        part.failed.push_back(seq);
    }

    /// The verifier read `record` at `offset`.
    pub fn on_record(
        &mut self,
        partition: i32,
        offset: i64,
        record: Record,
        now_us: i64,
        out: &mut Outcome,
    ) {
        let cfg = &self.cfg;
        let part = self.parts.entry(partition).or_default();
        if offset < part.position {
            // Fetched before a rewind and already superseded by it; reading it again later
            // is what counts.
            return;
        }
        part.position = offset + 1;

        // Rule 3: pending probes below `offset` were not in the log.
        while part.pending.front().is_some_and(|p| p.offset < offset) {
            let Some(gone) = part.pending.pop_front() else {
                break;
            };
            part.totals.lost += 1;
            out.verdicts.push(Verdict::Lost {
                partition,
                probe: gone,
                cause: LossCause::Skipped,
            });
        }

        if let Some(front) = part.pending.front().copied() {
            if front.offset == offset {
                part.pending.pop_front();
                match record {
                    Record::Own { seq, .. } if seq == front.seq => {
                        part.deliver(cfg, partition, front, now_us, out);
                        return;
                    }
                    _ => {
                        part.totals.lost += 1;
                        out.verdicts.push(Verdict::Lost {
                            partition,
                            probe: front,
                            cause: LossCause::Overwritten,
                        });
                        if front.epoch == part.epoch {
                            part.note_truncation(
                                partition,
                                offset,
                                TruncationEvidence::DifferentRecord,
                                out,
                            );
                        }
                    }
                }
            }
        }

        let Record::Own { seq, .. } = record else {
            return;
        };
        if let Ok(i) = part.seen.binary_search_by_key(&seq, |&(s, _)| s) {
            if part.seen[i].1 != offset {
                part.totals.duplicated += 1;
                out.verdicts.push(Verdict::Duplicate {
                    partition,
                    seq,
                    offset,
                });
            }
            return;
        }
        if let Ok(i) = part.failed.binary_search(&seq) {
            part.failed.remove(i);
            part.totals.failed_arrived += 1;
            out.verdicts.push(Verdict::FailedButArrived {
                partition,
                seq,
                offset,
            });
            return;
        }
        if part.early.contains_key(&seq) {
            // Read again after a rewind; the first arrival is what counts.
            return;
        }
        if part.early.len() >= cfg.max_early {
            if let Some((seq, _)) = part.early.pop_first() {
                part.totals.unmatched += 1;
                out.verdicts.push(Verdict::Unmatched { partition, seq });
            }
        }
        part.early.insert(
            seq,
            Early {
                offset,
                arrived_at_us: now_us,
            },
        );
    }

    /// Where the reader of `partition` stands now: taken when a fetch is refused as out of
    /// range, and handed back with the watermarks read afterwards.
    pub fn refused(&self, partition: i32) -> Refused {
        self.parts.get(&partition).map_or(
            Refused {
                position: 0,
                epoch: 0,
            },
            |p| Refused {
                position: p.position,
                epoch: p.epoch,
            },
        )
    }

    /// A fetch at `refused.position` was refused as out of range; `low` and `high` are the
    /// watermarks read afterwards. If the reader has moved or a truncation was detected while
    /// they were read, they judge a position the reader has left: it only resumes.
    pub fn on_out_of_range(
        &mut self,
        partition: i32,
        refused: Refused,
        low: i64,
        high: i64,
        out: &mut Outcome,
    ) {
        let part = self.parts.entry(partition).or_default();
        let position = part.position;
        if refused.position != position || refused.epoch != part.epoch {
            out.seek(partition, position);
            return;
        }
        if position < low {
            // Retention removed [position, low) before the reader got there.
            while part.pending.front().is_some_and(|p| p.offset < low) {
                let Some(gone) = part.pending.pop_front() else {
                    break;
                };
                part.totals.expired_unread += 1;
                out.verdicts.push(Verdict::ExpiredUnread {
                    partition,
                    probe: gone,
                });
            }
            part.position = low;
            part.log_start = part.log_start.max(low);
        } else if position > high {
            part.note_truncation(partition, position, TruncationEvidence::OutOfRange, out);
            part.position = high.max(low);
        }
        // Otherwise the refusal was stale (the reader has moved since) or transient: resume.
        out.seek(partition, part.position);
    }

    /// Housekeeping: forgets own probes read back that no report matched in time.
    pub fn on_tick(&mut self, now_us: i64, out: &mut Outcome) {
        let horizon = now_us.saturating_sub(self.cfg.unmatched_after_us);
        for (&partition, part) in &mut self.parts {
            part.early.retain(|&seq, e| {
                let keep = e.arrived_at_us >= horizon;
                if !keep {
                    part.totals.unmatched += 1;
                    out.verdicts.push(Verdict::Unmatched { partition, seq });
                }
                keep
            });
        }
    }

    /// The state to persist for a partition.
    pub fn snapshot(&self, partition: i32) -> Option<PartitionSnapshot> {
        self.parts.get(&partition).map(|p| PartitionSnapshot {
            position: p.position,
            epoch: p.epoch,
            totals: p.totals,
            pending: p.pending.iter().copied().collect(),
        })
    }
}

impl Partition {
    fn note_truncation(
        &mut self,
        partition: i32,
        offset: i64,
        evidence: TruncationEvidence,
        out: &mut Outcome,
    ) {
        self.epoch += 1;
        self.totals.truncations += 1;
        out.verdicts.push(Verdict::Truncation {
            partition,
            offset,
            evidence,
        });
    }

    fn deliver(
        &mut self,
        cfg: &TrackerConfig,
        partition: i32,
        probe: PendingProbe,
        arrived_at_us: i64,
        out: &mut Outcome,
    ) {
        let e2e_us = arrived_at_us.saturating_sub(probe.produced_at_us).max(0);
        let late = e2e_us > cfg.late_threshold_us;
        let reordered = self.max_seq_delivered.is_some_and(|m| probe.seq < m);
        self.max_seq_delivered = Some(
            self.max_seq_delivered
                .map_or(probe.seq, |m| m.max(probe.seq)),
        );
        self.totals.received += 1;
        self.totals.late += u64::from(late);
        self.totals.reordered += u64::from(reordered);
        // Remember it to recognise duplicates; seqs arrive almost always in order.
        let entry = (probe.seq, probe.offset);
        // Make room first, so the deque never holds more than the window and its capacity
        // does not double past it.
        if self.seen.len() >= cfg.seen_window {
            self.seen.pop_front();
        }
        match self.seen.back() {
            Some(&(last, _)) if last > probe.seq => {
                if let Err(i) = self.seen.binary_search_by_key(&probe.seq, |&(s, _)| s) {
                    self.seen.insert(i, entry);
                }
            }
            _ => self.seen.push_back(entry),
        }
        out.verdicts.push(Verdict::Delivered {
            partition,
            seq: probe.seq,
            offset: probe.offset,
            broker: probe.broker,
            e2e_us,
            late,
            reordered,
        });
    }
}

#[cfg(test)]
mod tests;
