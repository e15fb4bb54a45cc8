//! How many agents probe the canary topic, and how often this one probes so that the whole
//! fleet writes `canary.fleet_probe_rate` probes per partition per second (sans-IO).
//!
//! Every agent reads every probe of the topic, so each one sees the others' instance ids:
//! an agent is live while this one has read a probe of it within the last
//! [`WINDOW_INTERVALS`] of its own probe intervals (all agents of a fleet share one config,
//! so their intervals agree), itself included. No admin call, no group membership: it works
//! the same with the lag poller off and against any broker.
//!
//! With a fleet rate set, this agent probes each partition every
//! `max(canary.probe_interval, live agents / fleet_probe_rate)`: at 300 agents and a fleet
//! rate of 1/s, every 300 s. So the topic carries about `fleet_probe_rate` probes per
//! partition per second whatever the fleet size, and each agent reads, stores and exports a
//! constant amount. The price is per-node detection: a loss is still found by the next probe
//! of *some* agent within about `1 / fleet_probe_rate`, but a node's own probes (the
//! per-node view of the path) only every interval.
//!
//! Time is counted in whole seconds of a coarse clock the agent advances once a second
//! ([`Fleet::tick`]), so reading a probe costs a map insert and no clock call.

use std::collections::HashMap;
use std::time::Duration;

use uuid::Uuid;

/// An agent is live while one of its probes was read within this many of our intervals.
pub const WINDOW_INTERVALS: u32 = 3;
/// At most this many other instances are remembered (a topic flooded with random instance
/// ids must not grow memory without bound); beyond it the count saturates.
pub const MAX_TRACKED: usize = 100_000;
/// A probe produced longer ago than this (or than the window, if longer) says nothing about
/// who is live now: an agent reading a backlog sees agents that left long ago. The margin
/// covers clocks that disagree between nodes.
pub const MAX_AGE_MARGIN: Duration = Duration::from_secs(60);
/// The interval is only changed when it moves by more than this fraction, so that one
/// agent coming or going in a large fleet does not reset every ticker.
const HYSTERESIS: f64 = 0.1;

#[derive(Debug, Clone)]
pub struct Fleet {
    me: Uuid,
    /// Probes per partition per second the whole fleet should write; `None`: every agent
    /// probes at `min_interval`.
    rate: Option<f64>,
    min_interval: Duration,
    /// Seconds of the coarse clock at which each other instance was last read.
    last_seen: HashMap<Uuid, u64>,
    now_s: u64,
    /// Wall clock at the last tick, microseconds since the Unix epoch.
    wall_us: i64,
    interval: Duration,
    live: usize,
    changed: bool,
}

impl Fleet {
    pub fn new(me: Uuid, min_interval: Duration, rate: Option<f64>) -> Fleet {
        let mut f = Fleet {
            me,
            rate,
            min_interval,
            last_seen: HashMap::new(),
            now_s: 0,
            wall_us: 0,
            interval: min_interval,
            live: 1,
            changed: false,
        };
        f.interval = f.wanted(1);
        f
    }

    /// A probe of `instance` produced at `produced_at_us` was read (our own, and probes
    /// older than the window plus [`MAX_AGE_MARGIN`], are ignored).
    pub fn seen(&mut self, instance: Uuid, produced_at_us: i64) {
        if instance == self.me {
            return;
        }
        let max_age = (self.interval * WINDOW_INTERVALS).max(MAX_AGE_MARGIN);
        let max_age_us = i64::try_from(max_age.as_micros()).unwrap_or(i64::MAX);
        if self.wall_us > 0 && self.wall_us.saturating_sub(produced_at_us) > max_age_us {
            return;
        }
        if self.last_seen.len() >= MAX_TRACKED && !self.last_seen.contains_key(&instance) {
            return;
        }
        self.last_seen.insert(instance, self.now_s);
    }

    /// Advances the coarse clock to `now_s` (seconds since the agent started) and the wall
    /// clock to `wall_us`, forgets agents not read within the window, and recomputes the
    /// interval.
    pub fn tick(&mut self, now_s: u64, wall_us: i64) {
        self.now_s = now_s;
        self.wall_us = wall_us;
        let window = (self.interval * WINDOW_INTERVALS).as_secs().max(1);
        let since = now_s.saturating_sub(window);
        self.last_seen.retain(|_, at| *at >= since);
        self.live = 1 + self.last_seen.len();
        let wanted = self.wanted(self.live);
        let (old, new) = (self.interval.as_secs_f64(), wanted.as_secs_f64());
        if (new - old).abs() > old * HYSTERESIS {
            self.interval = wanted;
            self.changed = true;
        }
    }

    fn wanted(&self, live: usize) -> Duration {
        match self.rate {
            Some(rate) if rate > 0.0 => {
                let secs = live as f64 / rate;
                Duration::try_from_secs_f64(secs)
                    .unwrap_or(Duration::MAX)
                    .max(self.min_interval)
            }
            _ => self.min_interval,
        }
    }

    /// Live agents, this one included.
    pub fn live(&self) -> usize {
        self.live
    }

    /// This agent's probe interval per partition.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The new interval if it changed since the last call.
    pub fn take_change(&mut self) -> Option<Duration> {
        std::mem::take(&mut self.changed).then_some(self.interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wall clock for the tests (microseconds).
    const T0: i64 = 1_800_000_000_000_000;

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|i| Uuid::from_u128(i as u128 + 1)).collect()
    }

    /// `n` agents (ids[0] is us) all probing every `every_s` seconds, for `secs` seconds.
    fn run(f: &mut Fleet, others: &[Uuid], every_s: u64, from: u64, secs: u64) {
        for t in from..from + secs {
            if t % every_s.max(1) == 0 {
                for o in others {
                    f.seen(*o, T0 + t as i64 * 1_000_000);
                }
            }
            f.tick(t, T0 + t as i64 * 1_000_000);
        }
    }

    #[test]
    fn without_a_fleet_rate_the_interval_is_the_configured_one() {
        let id = ids(50);
        let mut f = Fleet::new(id[0], Duration::from_secs(1), None);
        run(&mut f, &id[1..], 1, 0, 10);
        assert_eq!(f.live(), 50);
        assert_eq!(f.interval(), Duration::from_secs(1));
        assert_eq!(f.take_change(), None);
    }

    #[test]
    fn interval_grows_with_the_fleet_table() {
        // (agents, fleet rate per partition per second, min interval s) -> interval s
        for (agents, rate, min_s, want_s) in [
            (1, 1.0, 1, 1.0),
            (10, 1.0, 1, 10.0),
            (100, 1.0, 1, 100.0),
            (300, 1.0, 1, 300.0),
            (300, 10.0, 1, 30.0),
            (5, 10.0, 1, 1.0), // never faster than canary.probe_interval
            (20, 0.5, 1, 40.0),
        ] {
            let id = ids(agents);
            let mut f = Fleet::new(id[0], Duration::from_secs(min_s), Some(rate));
            // Others probe at the interval they would choose themselves.
            let every = (want_s as u64).max(1);
            run(&mut f, &id[1..], every, 0, every * 4);
            assert_eq!(f.live(), agents, "{agents} agents at {rate}/s");
            assert!(
                (f.interval().as_secs_f64() - want_s).abs() <= want_s * HYSTERESIS,
                "{agents} agents at {rate}/s: {:?}, want {want_s}s",
                f.interval()
            );
        }
    }

    #[test]
    fn a_fleet_converges_from_a_cold_start() {
        // 30 agents start at once, each knowing only itself: they all probe at the minimum
        // first, see each other within a second, and settle on 30 / rate.
        let id = ids(30);
        let mut f = Fleet::new(id[0], Duration::from_secs(1), Some(1.0));
        assert_eq!(f.interval(), Duration::from_secs(1));
        for t in 0..200 {
            let every = f.interval().as_secs().max(1);
            run(&mut f, &id[1..], every, t, 1);
        }
        assert_eq!(f.live(), 30);
        assert_eq!(f.interval(), Duration::from_secs(30));
    }

    #[test]
    fn agents_that_stop_probing_drop_out_after_the_window() {
        let id = ids(10);
        let mut f = Fleet::new(id[0], Duration::from_secs(1), Some(1.0));
        run(&mut f, &id[1..], 10, 0, 40);
        assert_eq!(f.live(), 10);
        assert_eq!(f.interval(), Duration::from_secs(10));
        // Five of them are gone; the rest keep probing every 10 s.
        run(
            &mut f,
            &id[1..5],
            10,
            40,
            10 * u64::from(WINDOW_INTERVALS) + 1,
        );
        assert_eq!(f.live(), 5);
        assert_eq!(f.take_change(), Some(Duration::from_secs(5)));
        assert_eq!(f.take_change(), None);
    }

    #[test]
    fn our_own_probes_and_a_flood_of_ids_are_bounded() {
        let me = Uuid::from_u128(7);
        let mut f = Fleet::new(me, Duration::from_secs(1), Some(1.0));
        f.seen(me, T0);
        f.tick(1, T0);
        assert_eq!(f.live(), 1);
        for i in 0..(MAX_TRACKED as u128 + 500) {
            f.seen(Uuid::from_u128(1_000_000 + i), T0);
        }
        f.tick(2, T0);
        assert_eq!(f.live(), MAX_TRACKED + 1);
    }

    #[test]
    fn old_probes_of_a_backlog_do_not_count() {
        // Restarted far behind: the probes read were produced an hour ago.
        let id = ids(20);
        let mut f = Fleet::new(id[0], Duration::from_secs(1), Some(1.0));
        f.tick(0, T0);
        for o in &id[1..] {
            f.seen(*o, T0 - 3_600_000_000);
        }
        f.tick(1, T0 + 1_000_000);
        assert_eq!(f.live(), 1);
        // A clock a few seconds off is still counted.
        f.seen(id[1], T0 + 1_000_000 - 20_000_000);
        f.seen(id[2], T0 + 1_000_000 + 5_000_000);
        f.tick(2, T0 + 2_000_000);
        assert_eq!(f.live(), 3);
    }

    #[test]
    fn small_changes_in_a_large_fleet_keep_the_interval() {
        let id = ids(301);
        let mut f = Fleet::new(id[0], Duration::from_secs(1), Some(1.0));
        run(&mut f, &id[1..301], 300, 0, 1200);
        let settled = f.interval();
        assert!((settled.as_secs_f64() - 301.0).abs() <= 30.1, "{settled:?}");
        let _ = f.take_change();
        // One agent fewer: within the hysteresis, nothing changes.
        run(&mut f, &id[1..300], 300, 1200, 1200);
        assert_eq!(f.live(), 300);
        assert_eq!(f.take_change(), None);
    }
}
