//! Every verdict of the tracker is logged, counted and (when it matters) recorded as a loss
//! event here, in one place, so that logs, metrics and `/api/losses` never disagree.

use crate::ledger::Event;
use crate::tracker::{PendingProbe, Verdict};

use super::{now_us, Agent, SeqAt};

impl Agent {
    /// Applies what the tracker decided: the seeks go to the reader (a command, run off the
    /// runtime once the scrape lock is released), the verdicts to telemetry and the ledger.
    pub(super) fn apply_outcome(&mut self) {
        for seek in self.outcome.seeks.drain(..) {
            self.reader.seek(seek.partition, seek.offset);
        }
        let verdicts = std::mem::take(&mut self.outcome.verdicts);
        for &v in &verdicts {
            self.emit(v);
        }
        self.outcome.verdicts = verdicts;
        self.outcome.verdicts.clear();
    }

    /// Queues a loss event for the ledger (and so for `/api/losses` and `losswatch report`).
    fn record_event(
        &mut self,
        partition: i32,
        seq: Option<u64>,
        offset: i64,
        broker: Option<i32>,
        kind: &str,
        detail: &str,
    ) {
        self.batch.events.push(Event {
            at_us: now_us(),
            topic: self.topic.clone(),
            partition,
            seq,
            offset: Some(offset),
            broker,
            kind: kind.into(),
            detail: detail.into(),
        });
    }

    /// A pending probe was resolved as lost or expired: it leaves the saved pending set and
    /// the event is recorded, in the same batch.
    fn close_probe(&mut self, partition: i32, probe: &PendingProbe, kind: &str, detail: &str) {
        self.batch.removed.push((partition, probe.seq));
        let (seq, offset, broker) = (Some(probe.seq), probe.offset, Some(probe.broker));
        self.record_event(partition, seq, offset, broker, kind, detail);
    }

    fn emit(&mut self, v: Verdict) {
        let topic = self.topic.as_str();
        let m = &self.metrics;
        match v {
            Verdict::Delivered {
                partition,
                seq,
                offset,
                broker,
                e2e_us,
                late,
                reordered,
            } => {
                let cells = self.cells(partition);
                cells.received.inc();
                m.e2e_latency
                    .observe(topic, partition, broker, e2e_us as f64 / 1e6);
                if late {
                    cells.late.inc();
                    tracing::warn!(partition, seq, offset, e2e_ms = e2e_us / 1000, "late probe");
                }
                if reordered {
                    cells.reordered.inc();
                    tracing::warn!(partition, seq, offset, "reordered probe");
                }
                self.batch.removed.push((partition, seq));
                if let Some(ps) = self.parts.get_mut(&partition) {
                    ps.last_verified = Some(SeqAt { seq, offset });
                }
            }
            Verdict::Duplicate {
                partition,
                seq,
                offset,
            } => {
                self.cells(partition).duplicated.inc();
                tracing::warn!(partition, seq, offset, "duplicate probe");
            }
            Verdict::Lost {
                partition,
                probe,
                cause,
            } => {
                let p = partition.to_string();
                let b = probe.broker.to_string();
                m.lost
                    .with_label_values(&[topic, p.as_str(), b.as_str()])
                    .inc();
                tracing::error!(
                    partition,
                    seq = probe.seq,
                    offset = probe.offset,
                    broker = probe.broker,
                    cause = cause.as_str(),
                    stage = "broker",
                    "probe lost: acked, then gone from the log"
                );
                self.close_probe(partition, &probe, "lost", cause.as_str());
            }
            Verdict::ExpiredUnread { partition, probe } => {
                self.cells(partition).expired_unread.inc();
                tracing::warn!(
                    partition,
                    seq = probe.seq,
                    offset = probe.offset,
                    stage = "consumer",
                    "probe expired unread: retention removed it before the verifier read it"
                );
                self.close_probe(partition, &probe, "expired_unread", "retention");
            }
            Verdict::Truncation {
                partition,
                offset,
                evidence,
            } => {
                self.cells(partition).truncations.inc();
                let leader = self.parts.get(&partition).map(|s| s.info.leader);
                tracing::error!(
                    partition,
                    offset,
                    leader,
                    evidence = evidence.as_str(),
                    "partition log truncated"
                );
                self.record_event(
                    partition,
                    None,
                    offset,
                    leader,
                    "truncation",
                    evidence.as_str(),
                );
            }
            Verdict::Unmatched { partition, seq } => {
                self.cells(partition).unmatched.inc();
                tracing::debug!(
                    partition,
                    seq,
                    "own probe read back without a delivery report in this run"
                );
            }
            Verdict::FailedButArrived {
                partition,
                seq,
                offset,
            } => {
                self.cells(partition).failed_arrived.inc();
                tracing::warn!(
                    partition,
                    seq,
                    offset,
                    "probe reported failed was written anyway"
                );
            }
        }
    }
}
