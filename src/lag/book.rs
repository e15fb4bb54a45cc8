//! What the lag poller remembers between polls, sans-IO: per group-partition a status window
//! and the expired-unread mark, per partition a log-end history, and the record timestamps
//! already read. Fed one poll's offsets, it returns a [`Snapshot`]: every series that should
//! exist now, with its value. What is not in the snapshot is removed from `/metrics`, so a
//! deleted group, a deleted topic or an idle group that lost its commits leaves no ghost.
//!
//! Definitions:
//! - **lag** = log end − max(committed, log start), clamped at 0. When the committed offset
//!   is below the log start, retention has removed messages the group never read: they are
//!   counted once in `expired` (and in `losswatch_consumergroup_expired_unread_total`), and
//!   the lag counts only the messages the group can still read. A negative raw lag is the
//!   race of a commit landing between the two reads; it is counted in `negative` and shown
//!   as 0.
//! - **time lag** = age of the first unconsumed record, offset max(committed, log start)
//!   (see [`super::timelag`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::status::{worst, Obs, Status, Window};
use super::timelag::{age_seconds, History, Method};

/// A topic and a partition.
pub type Tp = (String, i32);

/// Log start (low watermark) and log end (high watermark) of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOffsets {
    pub start: i64,
    pub end: i64,
}

/// What one poll of one group read.
#[derive(Debug, Clone, Default)]
pub struct GroupInput {
    /// Members of the group; `None` when the group list could not be read.
    pub members: Option<usize>,
    /// Committed offsets (only partitions with a commit); `None` when the fetch failed.
    pub committed: Option<BTreeMap<Tp, i64>>,
}

/// What one poll read.
#[derive(Debug, Clone, Default)]
pub struct PollInput {
    /// Wall-clock time of the poll, ms since the epoch (record timestamps use the same clock).
    pub now_ms: i64,
    /// Log offsets of every existing partition the groups committed to; `None` when they
    /// could not be read. A partition missing here no longer exists.
    pub logs: BTreeMap<Tp, Option<LogOffsets>>,
    pub groups: BTreeMap<String, GroupInput>,
}

/// One group-partition series set.
#[derive(Debug, Clone, PartialEq)]
pub struct PartRow {
    pub committed: i64,
    pub lag: i64,
    pub lag_seconds: f64,
    pub method: Method,
    pub status: Status,
    /// Messages found removed before the group read them, since the poller first saw this
    /// group-partition.
    pub expired_total: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    pub members: Option<usize>,
    pub status: Status,
}

/// Every series that should exist after a poll, and the counts to add.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The poll's wall-clock time, ms since the epoch: the time the values describe.
    pub at_ms: i64,
    pub groups: BTreeMap<String, GroupRow>,
    pub parts: BTreeMap<(String, Tp), PartRow>,
    pub logs: BTreeMap<Tp, LogOffsets>,
    /// Messages found removed before the group read them in this poll, by group-partition.
    pub expired: Vec<((String, Tp), u64)>,
    /// Raw lags below zero seen in this poll.
    pub negative: u64,
}

impl Snapshot {
    pub fn group_partitions(&self) -> usize {
        self.parts.len()
    }
}

struct PartState {
    window: Window,
    /// Expired messages were counted up to this offset.
    expired_to: i64,
    expired_total: u64,
    last: Option<PartRow>,
}

#[derive(Default)]
pub struct Book {
    window: usize,
    parts: HashMap<(String, Tp), PartState>,
    histories: HashMap<Tp, History>,
    /// Record timestamps (ms) by (partition, offset).
    timestamps: HashMap<(Tp, i64), i64>,
}

/// The first unconsumed offset, and the raw lag (may be negative).
fn position(committed: i64, log: LogOffsets) -> (i64, i64) {
    let first = committed.max(log.start);
    (first, log.end - first)
}

impl Book {
    pub fn new(window: usize) -> Book {
        Book {
            window,
            ..Book::default()
        }
    }

    /// Records whose timestamp this poll needs and that were not read before: the first
    /// unconsumed record of every group-partition with unread messages.
    pub fn wanted_timestamps(&self, input: &PollInput) -> Vec<(Tp, i64)> {
        let mut out = HashSet::new();
        for g in input.groups.values() {
            for (tp, &c) in g.committed.iter().flatten() {
                let Some(Some(log)) = input.logs.get(tp) else {
                    continue;
                };
                let (first, lag) = position(c, *log);
                if lag > 0 && !self.timestamps.contains_key(&(tp.clone(), first)) {
                    out.insert((tp.clone(), first));
                }
            }
        }
        let mut out: Vec<_> = out.into_iter().collect();
        out.sort();
        out
    }

    /// Folds in one poll; `read` holds the record timestamps read for it.
    pub fn apply(&mut self, input: PollInput, read: HashMap<(Tp, i64), i64>) -> Snapshot {
        let now = input.now_ms;
        self.timestamps.extend(read);
        self.histories.retain(|tp, _| input.logs.contains_key(tp));
        let mut snap = Snapshot {
            at_ms: now,
            ..Snapshot::default()
        };
        for (tp, log) in &input.logs {
            if let Some(log) = log {
                self.histories
                    .entry(tp.clone())
                    .or_default()
                    .record(log.end, now);
            }
        }
        let mut used_timestamps = HashSet::new();
        let mut seen = HashSet::new();
        for (group, g) in &input.groups {
            let Some(committed) = &g.committed else {
                // Keep what was known of the group, flagged ERR.
                for (key, st) in self.parts.iter().filter(|(k, _)| &k.0 == group) {
                    if let Some(row) = &st.last {
                        snap.parts.insert(
                            key.clone(),
                            PartRow {
                                status: Status::Err,
                                ..row.clone()
                            },
                        );
                    }
                    seen.insert(key.clone());
                }
                snap.groups.insert(
                    group.clone(),
                    GroupRow {
                        members: g.members,
                        status: Status::Err,
                    },
                );
                continue;
            };
            let mut statuses = Vec::new();
            for (tp, &c) in committed {
                // A partition that no longer exists (deleted topic) has no series.
                let Some(log) = input.logs.get(tp) else {
                    continue;
                };
                let key = (group.clone(), tp.clone());
                seen.insert(key.clone());
                let st = self.parts.entry(key.clone()).or_insert_with(|| PartState {
                    window: Window::new(self.window),
                    expired_to: i64::MIN,
                    expired_total: 0,
                    last: None,
                });
                let Some(log) = *log else {
                    statuses.push(Status::Err);
                    if let Some(row) = &st.last {
                        snap.parts.insert(
                            key,
                            PartRow {
                                status: Status::Err,
                                ..row.clone()
                            },
                        );
                    }
                    continue;
                };
                if c < log.start {
                    let from = c.max(st.expired_to);
                    if log.start > from {
                        let n = u64::try_from(log.start - from).unwrap_or(0);
                        st.expired_total += n;
                        st.expired_to = log.start;
                        snap.expired.push((key.clone(), n));
                    }
                }
                let (first, raw) = position(c, log);
                if raw < 0 {
                    snap.negative += 1;
                }
                let lag = raw.max(0);
                st.window.push(Obs { committed: c, lag });
                let status = st.window.status(g.members);
                statuses.push(status);
                let (lag_seconds, method) = if lag == 0 {
                    (0.0, Method::CaughtUp)
                } else if let Some(&ts) = self.timestamps.get(&(tp.clone(), first)) {
                    used_timestamps.insert((tp.clone(), first));
                    (age_seconds(ts, now), Method::Timestamp)
                } else {
                    match self.histories.get(tp).and_then(|h| h.appended_at(first)) {
                        Some((at, m)) => (age_seconds(at, now), m),
                        // Unreachable while lag > 0 (this poll's sample is above `first`);
                        // a lower bound of 0 is the honest answer if it ever happens.
                        None => (0.0, Method::LowerBound),
                    }
                };
                let row = PartRow {
                    committed: c,
                    lag,
                    lag_seconds,
                    method,
                    status,
                    expired_total: st.expired_total,
                };
                st.last = Some(row.clone());
                snap.parts.insert(key, row);
            }
            // A group with no commit on an existing partition and no member is gone (deleted,
            // or its offsets expired): no ghost series.
            if statuses.is_empty() && g.members.unwrap_or(0) == 0 {
                continue;
            }
            snap.groups.insert(
                group.clone(),
                GroupRow {
                    members: g.members,
                    status: worst(statuses),
                },
            );
        }
        self.parts.retain(|k, _| seen.contains(k));
        self.timestamps.retain(|k, _| used_timestamps.contains(k));
        snap.logs = input
            .logs
            .iter()
            .filter_map(|(tp, l)| l.map(|l| (tp.clone(), l)))
            .collect();
        snap
    }
}

#[cfg(test)]
mod tests;
