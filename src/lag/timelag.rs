//! Lag in time, sans-IO: the age of the first unconsumed record.
//!
//! Best is the record's own timestamp, read by the poller (method `timestamp`). When it
//! cannot be read (fetch refused or timed out, `lag.read_timestamps = false`) the time the
//! record was appended is estimated from a per-partition history of log-end offsets seen at
//! each poll: record `o` was appended after the last poll that saw the log end at or below
//! `o` and no later than the first poll that saw it above `o`, so the estimate, linear in the
//! offset between those two polls, is off by at most the time between them (method
//! `interpolated`). A record older than the whole history gets the age of the oldest sample,
//! a lower bound (method `lower_bound`).

use std::collections::VecDeque;

/// How a `losswatch_consumergroup_lag_seconds` value was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// No unread message: the time lag is 0.
    CaughtUp,
    /// The first unconsumed record's timestamp was read.
    Timestamp,
    /// Interpolated between two polls of the log-end offset.
    Interpolated,
    /// The record is older than the history: at least this old.
    LowerBound,
}

impl Method {
    pub const ALL: [Method; 4] = [
        Method::CaughtUp,
        Method::Timestamp,
        Method::Interpolated,
        Method::LowerBound,
    ];

    pub fn as_label(self) -> &'static str {
        match self {
            Method::CaughtUp => "caught_up",
            Method::Timestamp => "timestamp",
            Method::Interpolated => "interpolated",
            Method::LowerBound => "lower_bound",
        }
    }
}

/// One distinct log-end offset and the first and last poll that saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    end: i64,
    first_ms: i64,
    last_ms: i64,
}

/// Log-end offsets of one partition over time. Bounded: when full, every other sample of the
/// older half is dropped, so the history keeps reaching back while recent polls stay exact.
#[derive(Debug, Clone)]
pub struct History {
    samples: VecDeque<Sample>,
    capacity: usize,
}

impl Default for History {
    fn default() -> Self {
        History::new(256)
    }
}

impl History {
    pub fn new(capacity: usize) -> History {
        History {
            samples: VecDeque::new(),
            capacity: capacity.max(4),
        }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Records that a poll at `at_ms` saw the log end at `end`.
    pub fn record(&mut self, end: i64, at_ms: i64) {
        match self.samples.back_mut() {
            Some(s) if s.end == end => {
                s.last_ms = s.last_ms.max(at_ms);
                return;
            }
            // The log end went backwards (truncation or a re-created topic): what was learnt
            // about offsets above it no longer holds.
            Some(s) if s.end > end => self.samples.clear(),
            _ => {}
        }
        if self.samples.len() >= self.capacity {
            self.thin();
        }
        self.samples.push_back(Sample {
            end,
            first_ms: at_ms,
            last_ms: at_ms,
        });
    }

    fn thin(&mut self) {
        let half = self.samples.len() / 2;
        let mut i = 0;
        self.samples.retain(|_| {
            let keep = i >= half || i % 2 == 0;
            i += 1;
            keep
        });
    }

    /// When record `offset` was appended, in ms, and how that was found. `None` when no poll
    /// has seen the log end above `offset` yet.
    pub fn appended_at(&self, offset: i64) -> Option<(i64, Method)> {
        let i = self.samples.iter().position(|s| s.end > offset)?;
        let after = self.samples[i];
        if i == 0 {
            return Some((after.first_ms, Method::LowerBound));
        }
        let before = self.samples[i - 1];
        // Record `offset` was appended in (before.last_ms, after.first_ms], with the records
        // from before.end to after.end - 1 spread over that span.
        let span = (after.first_ms - before.last_ms) as f64;
        let frac = (offset + 1 - before.end) as f64 / (after.end - before.end) as f64;
        Some((
            before.last_ms + (span * frac).round() as i64,
            Method::Interpolated,
        ))
    }
}

/// Seconds between `appended_ms` and `now_ms`, never negative (a clock ahead of ours gives 0).
pub fn age_seconds(appended_ms: i64, now_ms: i64) -> f64 {
    (now_ms.saturating_sub(appended_ms)).max(0) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn between_two_polls_is_interpolated() {
        let mut h = History::default();
        h.record(100, 0);
        h.record(100, 10_000);
        h.record(200, 20_000);
        // Offsets 100..200 were appended between 10 s and 20 s.
        assert_eq!(h.appended_at(100), Some((10_100, Method::Interpolated)));
        assert_eq!(h.appended_at(149), Some((15_000, Method::Interpolated)));
        assert_eq!(h.appended_at(199), Some((20_000, Method::Interpolated)));
        assert_eq!(h.appended_at(200), None);
        assert_eq!(h.appended_at(50), Some((0, Method::LowerBound)));
    }

    #[test]
    fn truncation_forgets_the_history() {
        let mut h = History::default();
        h.record(100, 0);
        h.record(200, 1000);
        h.record(50, 2000);
        assert_eq!(h.len(), 1);
        assert_eq!(h.appended_at(10), Some((2000, Method::LowerBound)));
    }

    #[test]
    fn bounded_and_still_reaching_back() {
        let mut h = History::new(16);
        for i in 0..1000 {
            h.record(i * 10, i * 1000);
        }
        assert!(h.len() <= 16, "{}", h.len());
        // The oldest sample is kept: the history still reaches back to the start.
        assert_eq!(h.appended_at(-1), Some((0, Method::LowerBound)));
        // The newest polls are exact.
        assert_eq!(h.appended_at(9985), Some((998_600, Method::Interpolated)));
    }

    /// Measures the interpolation error against the truth: records appended at a rate that
    /// changes every few seconds (with idle gaps), polled every 5 s, with the estimate
    /// checked for every offset. The error must stay within one poll interval.
    #[test]
    fn interpolation_error_is_within_one_poll_interval() {
        let poll_ms = 5_000;
        // (duration ms, records per second); 0 = idle.
        let phases = [
            (12_000, 50),
            (7_000, 0),
            (20_000, 5),
            (3_000, 400),
            (9_000, 0),
            (30_000, 20),
        ];
        let mut appended = Vec::new(); // appended[o] = append time of offset o
        let mut t = 0i64;
        for (dur, rate) in phases {
            if rate > 0 {
                let step = 1000 / rate;
                let mut at = t;
                while at < t + dur {
                    appended.push(at);
                    at += step;
                }
            }
            t += dur;
        }
        let mut h = History::default();
        let mut poll = 0;
        while poll <= t + poll_ms {
            let end = appended.iter().filter(|&&a| a < poll).count() as i64;
            h.record(end, poll);
            poll += poll_ms;
        }
        let mut worst = 0i64;
        for (o, &truth) in appended.iter().enumerate() {
            let (est, m) = h.appended_at(o as i64).unwrap();
            if m == Method::Interpolated {
                worst = worst.max((est - truth).abs());
            }
        }
        assert!(worst <= poll_ms, "worst error {worst} ms");
        // And it is a real estimate, not a constant: the error is far below the run length.
        assert!(worst < t / 10);
    }

    #[test]
    fn age_is_never_negative() {
        assert_eq!(age_seconds(5_000, 2_000), 0.0);
        assert_eq!(age_seconds(1_000, 3_500), 2.5);
    }
}
