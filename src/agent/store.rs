//! The ledger's worker thread. SQLite calls block, so they run on a thread of their own; the
//! agent sends batches and sequence reservations over a channel and never waits for a batch.

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
                while let Ok(cmd) = rx.recv() {
                    match cmd {
                        Cmd::Write(batch) => {
                            let batch = match carry.take() {
                                Some(mut old) => {
                                    old.inserted.extend(batch.inserted);
                                    old.removed.extend(batch.removed);
                                    old.partitions = batch.partitions;
                                    old.events.extend(batch.events);
                                    old.exact_reservations = batch.exact_reservations;
                                    old
                                }
                                None => batch,
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
