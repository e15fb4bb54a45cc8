//! The ledger's worker thread. SQLite calls block, so they run on a thread of their own; the
//! agent sends batches and sequence reservations over a channel and never waits for a batch.

use std::collections::HashSet;
use std::sync::mpsc;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::ledger::{Batch, Ledger, LedgerError};
use crate::metrics::Metrics;

enum Cmd {
    Write(Batch),
    Reserve {
        partition: i32,
        next_seq: u64,
        reserved_seq: u64,
        done: oneshot::Sender<Result<(), LedgerError>>,
    },
    Close(oneshot::Sender<()>),
}

/// Merges a batch that failed to commit (`old`) into the next one, so that nothing is lost
/// and everything stays in order, in bounded memory however long the file stays unwritable:
/// - an insert and a removal of the same probe, neither of which reached the file, cancel
///   out, so the carried inserts are at most the probes pending now, and the carried
///   removals at most the rows that were on file when writing stopped;
/// - the partition rows are the newest (each batch has every partition);
/// - loss events beyond `max_events` (the file keeps no more) are dropped, oldest first;
///   their count is returned. The metrics and the verdicts are unaffected.
fn merge_failed(old: Batch, new: Batch, max_events: usize) -> (Batch, usize) {
    let mut inserted = old.inserted;
    inserted.extend(new.inserted);
    let mut removed = old.removed;
    removed.extend(new.removed);
    let mut events = old.events;
    events.extend(new.events);
    let dropped = events.len().saturating_sub(max_events);
    events.drain(..dropped);
    let mut batch = Batch {
        inserted,
        removed,
        partitions: new.partitions,
        events,
        exact_reservations: new.exact_reservations,
    };
    cancel_resolved(&mut batch);
    (batch, dropped)
}

/// Drops the insert and the removal of every probe that was both acked and resolved within
/// the batch: neither is on file, and the file must not hold it. At 10 000 probes/s nearly
/// every probe is verified within one flush interval, so nearly nothing per probe reaches
/// SQLite. A removal of a probe inserted by an earlier batch stays.
fn cancel_resolved(batch: &mut Batch) {
    if batch.inserted.is_empty() || batch.removed.is_empty() {
        return;
    }
    let gone: HashSet<(i32, u64)> = batch.removed.iter().copied().collect();
    let mut cancelled = HashSet::new();
    batch.inserted.retain(|(p, probe)| {
        let key = (*p, probe.seq);
        let keep = !gone.contains(&key);
        if !keep {
            cancelled.insert(key);
        }
        keep
    });
    batch.removed.retain(|key| !cancelled.contains(key));
}

/// Handle to the worker.
pub struct Store {
    tx: mpsc::Sender<Cmd>,
}

impl Store {
    pub fn spawn(mut ledger: Ledger, metrics: Metrics) -> std::io::Result<Store> {
        let (tx, rx) = mpsc::channel::<Cmd>();
        std::thread::Builder::new()
            .name("losswatch-ledger".into())
            .spawn(move || {
                // A batch that failed to commit is merged into the next one, so that pending
                // inserts and removals are never lost and stay in order.
                let mut carry: Option<Batch> = None;
                let max_events = ledger.max_events();
                while let Ok(cmd) = rx.recv() {
                    match cmd {
                        Cmd::Write(batch) => {
                            let batch = match carry.take() {
                                Some(old) => {
                                    let (merged, dropped) = merge_failed(old, batch, max_events);
                                    if dropped > 0 {
                                        metrics.ledger_events_dropped.inc_by(dropped as u64);
                                    }
                                    merged
                                }
                                None => {
                                    let mut batch = batch;
                                    cancel_resolved(&mut batch);
                                    batch
                                }
                            };
                            let t = Instant::now();
                            match ledger.write(&batch) {
                                Ok(()) => metrics
                                    .ledger_write_seconds
                                    .observe(t.elapsed().as_secs_f64()),
                                Err(error) => {
                                    metrics.ledger_errors.inc();
                                    tracing::error!(%error, "state write failed; retrying with the next batch");
                                    carry = Some(batch);
                                }
                            }
                        }
                        Cmd::Reserve {
                            partition,
                            next_seq,
                            reserved_seq,
                            done,
                        } => {
                            let _ = done.send(ledger.reserve(partition, next_seq, reserved_seq));
                        }
                        Cmd::Close(done) => {
                            if let Some(batch) = carry.take() {
                                if let Err(error) = ledger.write(&batch) {
                                    tracing::error!(%error, "final state write failed");
                                }
                            }
                            let _ = done.send(());
                            return;
                        }
                    }
                }
            })?;
        Ok(Store { tx })
    }

    pub fn write(&self, batch: Batch) {
        if self.tx.send(Cmd::Write(batch)).is_err() {
            tracing::error!("state writer has stopped; state is not being saved");
        }
    }

    /// Commits a sequence reservation; returns once it is durable.
    pub async fn reserve(
        &self,
        partition: i32,
        next_seq: u64,
        reserved_seq: u64,
    ) -> Result<(), String> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Reserve {
                partition,
                next_seq,
                reserved_seq,
                done,
            })
            .map_err(|_| "state writer has stopped".to_string())?;
        match rx.await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("state writer has stopped".into()),
        }
    }

    /// Waits until everything sent before has been written.
    pub async fn close(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Cmd::Close(done)).is_ok() {
            let _ = rx.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Event;
    use crate::tracker::PendingProbe;

    fn probe(seq: u64) -> PendingProbe {
        PendingProbe {
            seq,
            offset: seq as i64,
            broker: 1,
            produced_at_us: 0,
            acked_at_us: 0,
            epoch: 0,
        }
    }

    fn event(n: u64) -> Event {
        Event {
            at_us: n as i64,
            topic: "c".into(),
            partition: 0,
            seq: Some(n),
            offset: Some(n as i64),
            broker: Some(1),
            kind: "lost".into(),
            detail: String::new(),
        }
    }

    /// The steady state of a long outage at 10 000 probes/s over 100 partitions, flushed every
    /// 100 ms: each batch acks 1 000 probes and verifies the 1 000 of the batch before. The
    /// carried batch stays at the probes pending now plus the rows on file when writing
    /// stopped, and what it would write is exactly what the file needs.
    #[test]
    fn a_long_outage_carries_a_bounded_batch() {
        let on_file: Vec<(i32, u64)> = (0..500).map(|s| (0, s)).collect();
        let mut carry: Option<Batch> = None;
        let mut next = 500u64;
        let mut acked_before: Vec<(i32, u64)> = on_file.clone();
        let mut events_dropped = 0;
        for batch_no in 0..1_200u64 {
            // 2 minutes of batches.
            let acked: Vec<(i32, u64)> = (0..1_000)
                .map(|i: i32| (i % 100, next + i as u64))
                .collect();
            next += 1_000;
            let batch = Batch {
                inserted: acked.iter().map(|&(p, s)| (p, probe(s))).collect(),
                removed: std::mem::replace(&mut acked_before, acked),
                partitions: vec![],
                events: (0..3).map(|i| event(batch_no * 3 + i)).collect(),
                exact_reservations: false,
            };
            let merged = match carry.take() {
                Some(old) => {
                    let (m, d) = merge_failed(old, batch, 1_000);
                    events_dropped += d;
                    m
                }
                None => batch,
            };
            assert!(merged.inserted.len() <= 1_000, "{}", merged.inserted.len());
            assert!(merged.removed.len() <= 500, "{}", merged.removed.len());
            assert!(merged.events.len() <= 1_000);
            carry = Some(merged);
        }
        let carry = carry.unwrap();
        // What the file needs: the rows on file removed, the last batch's probes inserted.
        let mut removed = carry.removed.clone();
        removed.sort_unstable();
        assert_eq!(removed, on_file);
        let inserted: Vec<u64> = carry.inserted.iter().map(|(_, p)| p.seq).collect();
        assert_eq!(inserted, (next - 1_000..next).collect::<Vec<_>>());
        // The newest events are kept; the older ones are counted as dropped.
        assert_eq!(carry.events.len(), 1_000);
        assert_eq!(carry.events.last().unwrap().seq, Some(1_200 * 3 - 1));
        assert_eq!(events_dropped, 1_200 * 3 - 1_000);
    }

    /// Probes acked and resolved within one batch never reach the file; a removal of a
    /// probe inserted earlier, and an insert still pending, do.
    #[test]
    fn a_probe_acked_and_resolved_in_one_batch_is_not_written() {
        let mut b = Batch {
            inserted: vec![(0, probe(1)), (0, probe(2)), (1, probe(1))],
            removed: vec![(0, 1), (1, 1), (0, 0)],
            ..Batch::default()
        };
        cancel_resolved(&mut b);
        assert_eq!(b.inserted, vec![(0, probe(2))]);
        assert_eq!(b.removed, vec![(0, 0)]);
    }

    #[test]
    fn an_insert_survives_until_its_removal_arrives() {
        let a = Batch {
            inserted: vec![(0, probe(1)), (0, probe(2))],
            ..Batch::default()
        };
        let b = Batch {
            removed: vec![(0, 1), (0, 9)],
            ..Batch::default()
        };
        let (m, dropped) = merge_failed(a, b, 10);
        assert_eq!(dropped, 0);
        assert_eq!(m.inserted, vec![(0, probe(2))]);
        assert_eq!(m.removed, vec![(0, 9)]);
    }
}
