//! Burrow-style consumer status, sans-IO: a sliding window of the last N polls of one
//! group-partition, classified by rules that look at the newest observation first.
//!
//! A poll sees committed offsets, not commits: Kafka's OffsetFetch carries no commit time.
//! So "commits the same offset" (STALL) and "does not commit" (STOP) are told apart by
//! the group's members: a group with live members whose offset does not move is stuck on
//! something (STALL); a group with no members, or whose members cannot be listed, has
//! nobody committing (STOP).
//!
//! Rules, first match wins:
//! 1. **REWIND** — the newest committed offset is below the one before it.
//! 2. **OK** — the newest lag is 0. An idle topic whose consumer is caught up never stops
//!    being OK, however old its last commit.
//! 3. **OK** — the window is not full yet: no verdict on less than N polls.
//! 4. **STALL** / **STOP** — the committed offset did not move through the whole window and
//!    the lag stayed above 0 at every poll.
//! 5. **WARN** — the lag grew from every poll to the next through the whole window (a single
//!    flat or falling step, as a consumer that keeps up shows, breaks it).
//! 6. **OK** otherwise.
//!
//! ERR is not decided here: it is the status of a partition or group the poll could not
//! read. The status of a group is its worst partition's ([`worst`]).

use std::collections::VecDeque;

/// Ordered from best to worst; a group shows its worst partition's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Ok,
    Warn,
    Rewind,
    Stall,
    Stop,
    Err,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Ok,
        Status::Warn,
        Status::Stall,
        Status::Stop,
        Status::Rewind,
        Status::Err,
    ];

    /// The `status` label value.
    pub fn as_label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Stall => "STALL",
            Status::Stop => "STOP",
            Status::Rewind => "REWIND",
            Status::Err => "ERR",
        }
    }
}

/// The worst of `statuses`; OK when there are none.
pub fn worst(statuses: impl IntoIterator<Item = Status>) -> Status {
    statuses.into_iter().max().unwrap_or(Status::Ok)
}

/// What one poll saw of one group-partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Obs {
    pub committed: i64,
    /// Unread messages (already clamped at 0).
    pub lag: i64,
}

/// The last `capacity` observations of one group-partition, oldest first.
#[derive(Debug, Clone)]
pub struct Window {
    capacity: usize,
    obs: VecDeque<Obs>,
}

impl Window {
    pub fn new(capacity: usize) -> Window {
        let capacity = capacity.max(2);
        Window {
            capacity,
            obs: VecDeque::with_capacity(capacity),
        }
    }

    pub fn push(&mut self, o: Obs) {
        if self.obs.len() == self.capacity {
            self.obs.pop_front();
        }
        self.obs.push_back(o);
    }

    pub fn len(&self) -> usize {
        self.obs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.obs.is_empty()
    }

    pub fn last(&self) -> Option<Obs> {
        self.obs.back().copied()
    }

    /// The status by the rules in the module docs. `members` is the group's member count,
    /// `None` when it could not be listed.
    pub fn status(&self, members: Option<usize>) -> Status {
        let Some(newest) = self.last() else {
            return Status::Ok;
        };
        let n = self.obs.len();
        if n >= 2 && newest.committed < self.obs[n - 2].committed {
            return Status::Rewind;
        }
        if newest.lag == 0 || n < self.capacity {
            return Status::Ok;
        }
        let oldest = self.obs[0];
        if self
            .obs
            .iter()
            .all(|o| o.committed == oldest.committed && o.lag > 0)
        {
            return match members {
                Some(m) if m > 0 => Status::Stall,
                _ => Status::Stop,
            };
        }
        if self
            .obs
            .iter()
            .zip(self.obs.iter().skip(1))
            .all(|(a, b)| b.lag > a.lag)
        {
            return Status::Warn;
        }
        Status::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (case, window size, members, observations as (committed, lag), expected status)
    type Case = (
        &'static str,
        usize,
        Option<usize>,
        &'static [(i64, i64)],
        Status,
    );

    const CASES: &[Case] = &[
        ("no observation yet", 3, Some(1), &[], Status::Ok),
        (
            "consumer keeps up",
            3,
            Some(1),
            &[(10, 2), (20, 1), (30, 3)],
            Status::Ok,
        ),
        (
            "lag growing through the window while committing",
            3,
            Some(1),
            &[(10, 5), (12, 8), (13, 9), (14, 20)],
            Status::Warn,
        ),
        (
            "lag flat for one step: a consumer that keeps up, not WARN",
            3,
            Some(1),
            &[(10, 5), (12, 8), (13, 8)],
            Status::Ok,
        ),
        (
            "lag growing but the window is not full",
            4,
            Some(1),
            &[(10, 5), (12, 8), (14, 20)],
            Status::Ok,
        ),
        (
            "lag dips once in the window: not growing",
            3,
            Some(1),
            &[(10, 5), (12, 4), (14, 20)],
            Status::Ok,
        ),
        (
            "lag flat through the window while committing",
            3,
            Some(1),
            &[(10, 5), (12, 5), (14, 5)],
            Status::Ok,
        ),
        (
            "members commit the same offset while lag > 0",
            3,
            Some(2),
            &[(7, 3), (7, 5), (7, 9)],
            Status::Stall,
        ),
        (
            "no member, committed offset unchanged while lag > 0",
            3,
            Some(0),
            &[(7, 3), (7, 3), (7, 3)],
            Status::Stop,
        ),
        (
            "members unknown, committed offset unchanged while lag > 0",
            3,
            None,
            &[(7, 3), (7, 4), (7, 5)],
            Status::Stop,
        ),
        (
            "committed offset went backwards",
            3,
            Some(1),
            &[(50, 0), (60, 0), (20, 40)],
            Status::Rewind,
        ),
        (
            "rewind is reported for one poll only",
            3,
            Some(1),
            &[(60, 0), (20, 40), (61, 0)],
            Status::Ok,
        ),
        (
            "rewind before the window is full",
            5,
            Some(1),
            &[(60, 0), (20, 40)],
            Status::Rewind,
        ),
        (
            "idle topic, caught-up consumer that never commits again: not STOP",
            3,
            Some(0),
            &[(100, 0), (100, 0), (100, 0), (100, 0)],
            Status::Ok,
        ),
        (
            "idle group caught up, members unknown: not STOP",
            3,
            None,
            &[(100, 0), (100, 0), (100, 0)],
            Status::Ok,
        ),
        (
            "lag 0 earlier in the window: the stop is not yet a window long",
            3,
            Some(0),
            &[(100, 0), (100, 4), (100, 9)],
            Status::Warn,
        ),
        (
            "caught up again after a stall",
            3,
            Some(1),
            &[(7, 3), (7, 3), (7, 3), (10, 0)],
            Status::Ok,
        ),
        (
            "older observations leave the window",
            3,
            Some(0),
            &[(1, 9), (2, 9), (2, 9), (2, 9)],
            Status::Stop,
        ),
    ];

    #[test]
    fn table() {
        for (case, size, members, obs, want) in CASES {
            let mut w = Window::new(*size);
            for &(committed, lag) in *obs {
                w.push(Obs { committed, lag });
            }
            assert_eq!(w.status(*members), *want, "{case}");
        }
    }

    #[test]
    fn every_status_but_err_has_a_case() {
        for s in Status::ALL {
            if s != Status::Err {
                assert!(CASES.iter().any(|c| c.4 == s), "no case for {s:?}");
            }
        }
    }

    #[test]
    fn worst_partition_wins() {
        assert_eq!(worst([]), Status::Ok);
        assert_eq!(
            worst([Status::Ok, Status::Stop, Status::Warn]),
            Status::Stop
        );
        assert_eq!(worst([Status::Err, Status::Stop]), Status::Err);
        assert_eq!(worst([Status::Rewind, Status::Warn]), Status::Rewind);
    }
}
