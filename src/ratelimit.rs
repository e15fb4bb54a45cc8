//! A limiter for repeated log lines (sans-IO: time is a parameter). While a broker is down,
//! librdkafka repeats the same connection error every few hundred milliseconds for every
//! client; one line per window, carrying how many identical ones were held back, says the
//! same without burying everything else.
//!
//! Lines are compared without their parenthesised parts, where librdkafka puts timings and
//! counts: "failed: Connection refused (after 12ms in state CONNECT)" and the same with
//! "(after 31ms …)" are the same line, while the broker address before it still tells
//! brokers apart.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// What to do with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Log it; `suppressed` identical lines were held back since it was last logged.
    Log { suppressed: u64 },
    /// Hold it back.
    Suppress,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    logged_at: Instant,
    suppressed: u64,
}

/// Logs each distinct line at most once per `window`.
#[derive(Debug)]
pub struct RateLimiter {
    window: Duration,
    max_keys: usize,
    seen: HashMap<u64, Entry>,
}

/// The key of a line: its parts hashed, parenthesised text left out.
pub fn key(parts: &[&str]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for part in parts {
        let mut depth = 0usize;
        for b in part.bytes() {
            match b {
                b'(' => depth += 1,
                b')' => depth = depth.saturating_sub(1),
                _ if depth == 0 => b.hash(&mut h),
                _ => {}
            }
        }
        0xffu8.hash(&mut h);
    }
    h.finish()
}

impl RateLimiter {
    /// `max_keys` bounds the memory: beyond it, lines older than the window are forgotten,
    /// and if all are recent, everything is.
    pub fn new(window: Duration, max_keys: usize) -> RateLimiter {
        RateLimiter {
            window,
            max_keys: max_keys.max(1),
            seen: HashMap::new(),
        }
    }

    pub fn check(&mut self, key: u64, now: Instant) -> Decision {
        if let Some(e) = self.seen.get_mut(&key) {
            if now.saturating_duration_since(e.logged_at) < self.window {
                e.suppressed += 1;
                return Decision::Suppress;
            }
            let suppressed = e.suppressed;
            *e = Entry {
                logged_at: now,
                suppressed: 0,
            };
            return Decision::Log { suppressed };
        }
        if self.seen.len() >= self.max_keys {
            let window = self.window;
            self.seen
                .retain(|_, e| now.saturating_duration_since(e.logged_at) < window);
            if self.seen.len() >= self.max_keys {
                self.seen.clear();
            }
        }
        self.seen.insert(
            key,
            Entry {
                logged_at: now,
                suppressed: 0,
            },
        );
        Decision::Log { suppressed: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_held_back_within_the_window_and_counted_after_it() {
        let t0 = Instant::now();
        let w = Duration::from_secs(30);
        let mut l = RateLimiter::new(w, 100);
        let line = |port, ms| {
            format!("127.0.0.1:{port}/3: Connect failed: Connection refused (after {ms}ms in state CONNECT)")
        };
        let a = key(&["producer", "FAIL", &line(9092, 3)]);
        let a2 = key(&["producer", "FAIL", &line(9092, 17)]);
        let b = key(&["verifier", "FAIL", &line(9092, 3)]);
        assert_eq!(
            a, a2,
            "lines differing only in parenthesised timings are the same line"
        );
        assert_ne!(a, b, "another client's line is another line");
        assert_ne!(
            a,
            key(&["producer", "FAIL", &line(9093, 3)]),
            "another broker's too"
        );
        assert_eq!(l.check(a, t0), Decision::Log { suppressed: 0 });
        assert_eq!(l.check(b, t0), Decision::Log { suppressed: 0 });
        for i in 1..=5 {
            assert_eq!(l.check(a2, t0 + Duration::from_secs(i)), Decision::Suppress);
        }
        assert_eq!(l.check(a, t0 + w), Decision::Log { suppressed: 5 });
        assert_eq!(
            l.check(a, t0 + w + Duration::from_secs(1)),
            Decision::Suppress
        );
    }

    #[test]
    fn memory_stays_bounded() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(Duration::from_secs(30), 10);
        for i in 0..1000u64 {
            assert_eq!(l.check(i, t0), Decision::Log { suppressed: 0 });
            assert!(l.seen.len() <= 10);
        }
    }
}
