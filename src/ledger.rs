//! The ledger: agent state in SQLite (WAL), so a restart never invents a loss or a duplicate.
//!
//! It holds the producer instance id, per partition the next sequence number and the
//! reserved sequence range, the verifier position, the truncation epoch and lifetime totals,
//! the acked-but-unverified probes, and a bounded log of loss events.
//!
//! Writes come in [`Batch`]es, each one transaction, taken by the agent at a consistent point
//! (pending probes, positions and totals agree). Sequence numbers are *reserved* in blocks
//! before use and the reservation is committed before any of them is sent, so that a crash can
//! never lead to a sequence number being used twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use uuid::Uuid;

use crate::tracker::{PartitionSnapshot, PendingProbe, Totals};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS partitions (
    partition INTEGER PRIMARY KEY,
    next_seq INTEGER NOT NULL,
    reserved_seq INTEGER NOT NULL,
    position INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    acked INTEGER NOT NULL, received INTEGER NOT NULL, lost INTEGER NOT NULL,
    expired_unread INTEGER NOT NULL, late INTEGER NOT NULL, duplicated INTEGER NOT NULL,
    reordered INTEGER NOT NULL, truncations INTEGER NOT NULL, unmatched INTEGER NOT NULL,
    failed_arrived INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pending (
    partition INTEGER NOT NULL, seq INTEGER NOT NULL, "offset" INTEGER NOT NULL,
    broker INTEGER NOT NULL, produced_at_us INTEGER NOT NULL, acked_at_us INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    PRIMARY KEY (partition, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_us INTEGER NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    seq INTEGER, "offset" INTEGER, broker INTEGER, kind TEXT NOT NULL, detail TEXT NOT NULL
);
"#;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot open state file {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state file {path} is not writable: {source}")]
    ReadOnly {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state file {path} is not a losswatch state file or is damaged: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create directory for state file {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file write failed: {0}")]
    Write(#[from] rusqlite::Error),
}

/// What one partition had saved.
#[derive(Debug, Clone, Default)]
pub struct SavedPartition {
    /// First sequence number not yet used.
    pub next_seq: u64,
    /// First sequence number not covered by the committed reservation.
    pub reserved_seq: u64,
    pub snapshot: PartitionSnapshot,
}

/// Everything loaded at start.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub instance: Uuid,
    pub partitions: BTreeMap<i32, SavedPartition>,
}

/// One row of per-partition state in a batch.
#[derive(Debug, Clone)]
pub struct PartitionRow {
    pub partition: i32,
    pub next_seq: u64,
    pub reserved_seq: u64,
    pub position: i64,
    pub epoch: u64,
    pub totals: Totals,
}

/// A loss event as stored and served by `/api/losses`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Event {
    pub at_us: i64,
    pub topic: String,
    pub partition: i32,
    pub seq: Option<u64>,
    pub offset: Option<i64>,
    pub broker: Option<i32>,
    /// `lost`, `expired_unread` or `truncation` (the canary), `topic_truncation` or
    /// `topic_recreated` (an application topic read by consumer groups; partition -1: the
    /// whole topic).
    pub kind: String,
    /// How it was proven (the loss cause or the truncation evidence).
    pub detail: String,
}

/// Changes since the last write, applied in one transaction.
#[derive(Debug, Default)]
pub struct Batch {
    pub inserted: Vec<(i32, PendingProbe)>,
    pub removed: Vec<(i32, u64)>,
    pub partitions: Vec<PartitionRow>,
    pub events: Vec<Event>,
    /// Set by a clean shutdown: the reservations are exactly `next_seq`, so the next start
    /// continues the sequences without a gap.
    pub exact_reservations: bool,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.inserted.is_empty()
            && self.removed.is_empty()
            && self.partitions.is_empty()
            && self.events.is_empty()
    }
}

pub struct Ledger {
    conn: Connection,
    max_events: usize,
}

fn u(v: u64) -> i64 {
    // SQLite integers are i64; sequence numbers and counters stay far below 2^63.
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn un(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Ledger {
    /// Opens (creating if needed) the state file and checks that it can be written.
    pub fn open(path: &Path, max_events: usize) -> Result<Ledger, LedgerError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| LedgerError::Dir {
                path: path.to_owned(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| LedgerError::Open {
            path: path.to_owned(),
            source,
        })?;
        let classify = |source: rusqlite::Error| match source.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ReadOnly)
            | Some(rusqlite::ErrorCode::CannotOpen)
            | Some(rusqlite::ErrorCode::PermissionDenied) => LedgerError::ReadOnly {
                path: path.to_owned(),
                source,
            },
            Some(rusqlite::ErrorCode::NotADatabase)
            | Some(rusqlite::ErrorCode::DatabaseCorrupt) => LedgerError::Corrupt {
                path: path.to_owned(),
                source,
            },
            _ => LedgerError::Open {
                path: path.to_owned(),
                source,
            },
        };
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(classify)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(classify)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(classify)?;
        conn.execute_batch(SCHEMA).map_err(classify)?;
        // Prove the file is writable now rather than at the first flush.
        conn.execute(
            "INSERT INTO meta(key, value) VALUES ('schema_version', '1') \
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [],
        )
        .map_err(classify)?;
        Ok(Ledger { conn, max_events })
    }

    /// Loss events the file keeps (older ones are deleted).
    pub fn max_events(&self) -> usize {
        self.max_events
    }

    /// Loads state for `topic`. State saved for another topic is dropped (its offsets mean
    /// nothing on this one); the instance id and the event log are kept.
    pub fn load(&mut self, topic: &str) -> Result<Loaded, LedgerError> {
        let tx = self.conn.transaction()?;
        let instance: Option<String> = tx
            .query_row(
                "SELECT value FROM meta WHERE key = 'instance_id'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let instance = match instance.and_then(|s| Uuid::parse_str(&s).ok()) {
            Some(id) => id,
            None => {
                let id = Uuid::new_v4();
                tx.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('instance_id', ?1)",
                    [id.to_string()],
                )?;
                id
            }
        };
        let saved_topic: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = 'topic'", [], |r| {
                r.get(0)
            })
            .optional()?;
        if saved_topic.as_deref() != Some(topic) {
            tx.execute("DELETE FROM partitions", [])?;
            tx.execute("DELETE FROM pending", [])?;
            tx.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('topic', ?1)",
                [topic],
            )?;
        }
        let mut partitions = BTreeMap::new();
        {
            let mut st = tx.prepare(
                "SELECT partition, next_seq, reserved_seq, position, epoch, acked, received, lost, \
                 expired_unread, late, duplicated, reordered, truncations, unmatched, failed_arrived \
                 FROM partitions",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, i32>(0)?,
                    SavedPartition {
                        next_seq: un(r.get(1)?),
                        reserved_seq: un(r.get(2)?),
                        snapshot: PartitionSnapshot {
                            position: r.get(3)?,
                            epoch: un(r.get(4)?),
                            totals: Totals {
                                acked: un(r.get(5)?),
                                received: un(r.get(6)?),
                                lost: un(r.get(7)?),
                                expired_unread: un(r.get(8)?),
                                late: un(r.get(9)?),
                                duplicated: un(r.get(10)?),
                                reordered: un(r.get(11)?),
                                truncations: un(r.get(12)?),
                                unmatched: un(r.get(13)?),
                                failed_arrived: un(r.get(14)?),
                            },
                            pending: Vec::new(),
                        },
                    },
                ))
            })?;
            for row in rows {
                let (p, saved) = row?;
                partitions.insert(p, saved);
            }
            let mut st = tx.prepare(
                "SELECT partition, seq, \"offset\", broker, produced_at_us, acked_at_us, epoch \
                 FROM pending ORDER BY partition, \"offset\"",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, i32>(0)?,
                    PendingProbe {
                        seq: un(r.get(1)?),
                        offset: r.get(2)?,
                        broker: r.get(3)?,
                        produced_at_us: r.get(4)?,
                        acked_at_us: r.get(5)?,
                        epoch: un(r.get(6)?),
                    },
                ))
            })?;
            for row in rows {
                let (p, probe) = row?;
                // A pending probe always has its partition row (written in the same batch).
                if let Some(saved) = partitions.get_mut(&p) {
                    saved.snapshot.pending.push(probe);
                }
            }
        }
        tx.commit()?;
        Ok(Loaded {
            instance,
            partitions,
        })
    }

    /// Commits a reservation of sequence numbers below `reserved_seq` for `partition`.
    pub fn reserve(
        &mut self,
        partition: i32,
        next_seq: u64,
        reserved_seq: u64,
    ) -> Result<(), LedgerError> {
        self.conn.execute(
            "INSERT INTO partitions (partition, next_seq, reserved_seq, position, epoch, acked, \
             received, lost, expired_unread, late, duplicated, reordered, truncations, unmatched, \
             failed_arrived) VALUES (?1, ?2, ?3, -1, 0, 0,0,0,0,0,0,0,0,0,0) \
             ON CONFLICT(partition) DO UPDATE SET reserved_seq = excluded.reserved_seq",
            params![partition, u(next_seq), u(reserved_seq)],
        )?;
        Ok(())
    }

    /// Applies a batch in one transaction.
    pub fn write(&mut self, batch: &Batch) -> Result<(), LedgerError> {
        let tx = self.conn.transaction()?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT OR REPLACE INTO pending (partition, seq, \"offset\", broker, produced_at_us, \
                 acked_at_us, epoch) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (p, probe) in &batch.inserted {
                ins.execute(params![
                    p,
                    u(probe.seq),
                    probe.offset,
                    probe.broker,
                    probe.produced_at_us,
                    probe.acked_at_us,
                    u(probe.epoch)
                ])?;
            }
            let mut del =
                tx.prepare_cached("DELETE FROM pending WHERE partition = ?1 AND seq = ?2")?;
            for (p, seq) in &batch.removed {
                del.execute(params![p, u(*seq)])?;
            }
            let mut up = tx.prepare_cached(
                "INSERT INTO partitions (partition, next_seq, reserved_seq, position, epoch, acked, \
                 received, lost, expired_unread, late, duplicated, reordered, truncations, \
                 unmatched, failed_arrived) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
                 ON CONFLICT(partition) DO UPDATE SET next_seq = excluded.next_seq, \
                 reserved_seq = CASE WHEN ?16 THEN excluded.reserved_seq \
                 ELSE MAX(reserved_seq, excluded.reserved_seq) END, \
                 position = excluded.position, epoch = excluded.epoch, acked = excluded.acked, \
                 received = excluded.received, lost = excluded.lost, \
                 expired_unread = excluded.expired_unread, late = excluded.late, \
                 duplicated = excluded.duplicated, reordered = excluded.reordered, \
                 truncations = excluded.truncations, unmatched = excluded.unmatched, \
                 failed_arrived = excluded.failed_arrived",
            )?;
            for r in &batch.partitions {
                let t = &r.totals;
                up.execute(params![
                    r.partition,
                    u(r.next_seq),
                    u(r.reserved_seq),
                    r.position,
                    u(r.epoch),
                    u(t.acked),
                    u(t.received),
                    u(t.lost),
                    u(t.expired_unread),
                    u(t.late),
                    u(t.duplicated),
                    u(t.reordered),
                    u(t.truncations),
                    u(t.unmatched),
                    u(t.failed_arrived),
                    batch.exact_reservations
                ])?;
            }
            let mut ev = tx.prepare_cached(
                "INSERT INTO events (at_us, topic, partition, seq, \"offset\", broker, kind, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for e in &batch.events {
                ev.execute(params![
                    e.at_us,
                    e.topic,
                    e.partition,
                    e.seq.map(u),
                    e.offset,
                    e.broker,
                    e.kind,
                    e.detail
                ])?;
            }
            if !batch.events.is_empty() {
                tx.execute(
                    "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?1",
                    [i64::try_from(self.max_events).unwrap_or(i64::MAX)],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// Reads loss events, newest first, from a state file (read-only; safe beside a running agent).
pub fn read_events(path: &Path, limit: usize) -> Result<Vec<Event>, LedgerError> {
    let conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|source| {
            LedgerError::Open {
                path: path.to_owned(),
                source,
            }
        })?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    events_from(&conn, limit).map_err(|source| LedgerError::Corrupt {
        path: path.to_owned(),
        source,
    })
}

fn events_from(conn: &Connection, limit: usize) -> Result<Vec<Event>, rusqlite::Error> {
    let mut st = conn.prepare(
        "SELECT at_us, topic, partition, seq, \"offset\", broker, kind, detail FROM events \
         ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = st.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
        Ok(Event {
            at_us: r.get(0)?,
            topic: r.get(1)?,
            partition: r.get(2)?,
            seq: r.get::<_, Option<i64>>(3)?.map(un),
            offset: r.get(4)?,
            broker: r.get(5)?,
            kind: r.get(6)?,
            detail: r.get(7)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(seq: u64, offset: i64) -> PendingProbe {
        PendingProbe {
            seq,
            offset,
            broker: 1,
            produced_at_us: 10,
            acked_at_us: 20,
            epoch: 0,
        }
    }

    #[test]
    fn round_trip_and_instance_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.db");
        let mut l = Ledger::open(&path, 100).unwrap();
        let first = l.load("t").unwrap();
        assert!(first.partitions.is_empty());
        l.reserve(0, 0, 1000).unwrap();
        let batch = Batch {
            inserted: vec![(0, probe(1, 5)), (0, probe(2, 6)), (0, probe(3, 7))],
            removed: vec![(0, 2)],
            partitions: vec![PartitionRow {
                partition: 0,
                next_seq: 4,
                reserved_seq: 1000,
                position: 6,
                epoch: 0,
                totals: Totals {
                    acked: 3,
                    received: 1,
                    ..Totals::default()
                },
            }],
            events: vec![Event {
                at_us: 1,
                topic: "t".into(),
                partition: 0,
                seq: Some(9),
                offset: Some(3),
                broker: Some(2),
                kind: "lost".into(),
                detail: "skipped".into(),
            }],
            ..Batch::default()
        };
        l.write(&batch).unwrap();
        drop(l);
        let mut l = Ledger::open(&path, 100).unwrap();
        let again = l.load("t").unwrap();
        assert_eq!(again.instance, first.instance);
        let p = &again.partitions[&0];
        assert_eq!(
            (p.next_seq, p.reserved_seq, p.snapshot.position),
            (4, 1000, 6)
        );
        let seqs: Vec<u64> = p.snapshot.pending.iter().map(|p| p.seq).collect();
        assert_eq!(seqs, [1, 3]);
        assert_eq!(p.snapshot.totals.acked, 3);
        let ev = read_events(&path, 10).unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, "lost");
    }

    #[test]
    fn another_topic_starts_fresh_but_keeps_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut l = Ledger::open(&path, 100).unwrap();
        let a = l.load("a").unwrap();
        l.reserve(0, 0, 10).unwrap();
        let b = l.load("b").unwrap();
        assert_eq!(a.instance, b.instance);
        assert!(b.partitions.is_empty());
    }

    #[test]
    fn events_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut l = Ledger::open(&path, 3).unwrap();
        l.load("t").unwrap();
        for i in 0..10 {
            let e = Event {
                at_us: i,
                topic: "t".into(),
                partition: 0,
                seq: None,
                offset: None,
                broker: None,
                kind: "truncation".into(),
                detail: "out_of_range".into(),
            };
            l.write(&Batch {
                events: vec![e],
                ..Batch::default()
            })
            .unwrap();
        }
        let ev = read_events(&path, 100).unwrap();
        assert_eq!(ev.iter().map(|e| e.at_us).collect::<Vec<_>>(), [9, 8, 7]);
    }

    #[test]
    fn garbage_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
        let err = Ledger::open(&path, 10)
            .err()
            .expect("must fail")
            .to_string();
        assert!(err.contains("state.db"), "{err}");
    }

    #[test]
    fn unusable_paths_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        // The path is a directory.
        let err = Ledger::open(dir.path(), 10)
            .err()
            .expect("must fail")
            .to_string();
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        // A parent of the path is a regular file.
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        let path = file.join("state.db");
        let err = Ledger::open(&path, 10)
            .err()
            .expect("must fail")
            .to_string();
        assert!(err.contains("state.db"), "{err}");
    }
}
