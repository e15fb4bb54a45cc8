//! Backing off a refused or failing admin request (sans-IO; time in Unix milliseconds):
//! after `n` consecutive failures the next attempt waits `interval × 2^(n-1)`, at most an
//! hour; the first retry is at the next regular attempt. A failure with a new reason is worth
//! a WARN, a repeat only DEBUG, so that an outage does not flood the log.

use std::time::Duration;

const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The state of one backed-off request.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
    until_ms: i64,
    last: Option<String>,
}

impl Backoff {
    /// `Ok` when a request may be sent now, else the reason resources are unavailable.
    pub fn allow(&self, now_ms: i64) -> Result<(), String> {
        if now_ms >= self.until_ms {
            return Ok(());
        }
        Err(format!(
            "backed off after {} failure(s) (last: {}); next attempt in {}s",
            self.failures,
            self.last.as_deref().unwrap_or("?"),
            (self.until_ms - now_ms + 999) / 1000
        ))
    }

    /// Records a failure; returns whether it is new (worth a WARN).
    pub fn failed(&mut self, now_ms: i64, interval: Duration, why: &str) -> bool {
        self.failures = self.failures.saturating_add(1);
        let factor = 1u32 << self.failures.saturating_sub(1).min(16);
        let wait = interval.saturating_mul(factor).min(MAX_BACKOFF);
        // The next audit tick after the first failure retries; later ones skip ticks.
        self.until_ms = if self.failures == 1 {
            now_ms
        } else {
            now_ms + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)
        };
        let new = self.last.as_deref() != Some(why);
        self.last = Some(why.to_owned());
        new
    }

    /// Records a success; returns whether it ends a run of failures.
    pub fn succeeded(&mut self) -> bool {
        let recovered = self.failures > 0;
        *self = Backoff::default();
        recovered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_retries_once_then_doubles_up_to_an_hour() {
        let i = Duration::from_secs(300);
        let mut b = Backoff::default();
        assert!(b.allow(0).is_ok());
        assert!(b.failed(0, i, "timeout"));
        // The next tick may try again.
        assert!(b.allow(0).is_ok());
        assert!(!b.failed(0, i, "timeout"), "same reason: not logged again");
        // Two failures: one interval (x2^1 = 600 s) skipped.
        assert!(b.allow(599_000).is_err());
        assert!(b.allow(600_000).is_ok());
        for _ in 0..20 {
            b.failed(0, i, "timeout");
        }
        assert!(b.allow(3_599_000).is_err());
        assert!(b.allow(3_600_000).is_ok(), "capped at one hour");
        let why = b.allow(0).unwrap_err();
        assert!(why.contains("timeout"), "{why}");
        assert!(b.failed(0, i, "refused"), "a new reason is logged");
        assert!(b.succeeded());
        assert!(b.allow(0).is_ok());
        assert!(!b.succeeded());
    }
}
