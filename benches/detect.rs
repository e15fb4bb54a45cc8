//! Detection time against the probe interval: how long after a power loss the agent says so.
//!
//! For each probe interval (`DETECT_INTERVALS`, default `100ms,1s,10s`), a Tansu `memory://`
//! broker with a 4-partition canary topic and the real `losswatch` binary probing it. Each of
//! `DETECT_CYCLES` cycles (default 3):
//! 1. waits until the agent holds an acked probe it has not read back yet (acked > received
//!    on its own counters, scraped every few milliseconds), so the power loss has something
//!    to lose, as in `tests/tansu.rs`'s power-loss scenario; if none shows within
//!    3 intervals + 5 s it goes on without;
//! 2. freezes the agent (SIGSTOP), kills the broker with -9 and starts it again empty on the
//!    same port, recreates the topic, resumes the agent (SIGCONT);
//! 3. scrapes every 20 ms and records, from the broker restart, when
//!    `losswatch_probes_lost_total` first rose, when the first and the last partition counted
//!    a truncation (`losswatch_partition_truncations_total`);
//! 4. waits 2 intervals + 6 s before the next cycle, so each power loss is proved by probes
//!    sent after the previous one was detected.
//!
//! It prints one row per cycle and a summary per interval, with the goal of ≤ 2 probe
//! intervals + 1 s from the restart to the first signal an alert fires on (a truncation or a
//! loss), and the agent's CPU over a steady window before the cycles. It exits non-zero if a
//! cycle detects nothing within 3 intervals + 60 s.
//!
//! `cargo bench --bench detect` (needs Tansu: `scripts/install-tansu.sh`, or
//! `LOSSWATCH_TANSU`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::process::{cpu_ticks, AgentProcess, AgentSettings};
use common::tansu::{block, create_topic, part, total, Storage, Tansu, CANARY};

const T: &str = CANARY;
const PARTITIONS: i32 = 4;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// What one power loss showed, in seconds from the broker restart.
struct Cycle {
    unread_at_freeze: bool,
    lost: f64,
    lost_after: Option<f64>,
    first_truncation: Option<f64>,
    all_truncated: Option<f64>,
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |s| format!("{s:.2}"))
}

fn cycle(broker: &mut Tansu, agent: &AgentProcess, interval: Duration, n: f64) -> Cycle {
    let b = broker.bootstrap();
    let before = agent.scrape();
    let lost_before = total(&before, "losswatch_probes_lost_total");

    // 1. A moment when an acked probe is still unread.
    let look = Instant::now() + interval * 3 + Duration::from_secs(5);
    let mut unread_at_freeze = false;
    while Instant::now() < look {
        let s = agent.scrape();
        let acked = total(&s, "losswatch_probes_acked_total");
        let read =
            total(&s, "losswatch_probes_received_total") + total(&s, "losswatch_probes_lost_total");
        if acked > read {
            unread_at_freeze = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }

    // 2. The power loss.
    agent.signal("STOP");
    broker.restart();
    let restarted = Instant::now();
    block(create_topic(&b, T, PARTITIONS));
    agent.signal("CONT");

    // 3. What the agent says, and when.
    let deadline = restarted + interval * 3 + Duration::from_secs(60);
    let (mut lost_after, mut first_truncation, mut all_truncated) = (None, None, None);
    let mut lost = 0.0;
    while Instant::now() < deadline {
        let s = agent.scrape();
        let at = restarted.elapsed().as_secs_f64();
        lost = total(&s, "losswatch_probes_lost_total") - lost_before;
        if lost_after.is_none() && lost > 0.0 {
            lost_after = Some(at);
        }
        let truncated = (0..PARTITIONS)
            .filter(|&p| part(&s, "losswatch_partition_truncations_total", p) >= n)
            .count();
        if first_truncation.is_none() && truncated > 0 {
            first_truncation = Some(at);
        }
        if truncated == PARTITIONS as usize {
            let all = *all_truncated.get_or_insert(at);
            // Give a loss that is being proved up to 5 s more to be counted.
            if lost_after.is_some() || !unread_at_freeze || at > all + 5.0 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    agent.assert_alive();
    Cycle {
        unread_at_freeze,
        lost,
        lost_after,
        first_truncation,
        all_truncated,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; this bench has no options of its own.
    let intervals = env_or("DETECT_INTERVALS", "100ms,1s,10s");
    let cycles: u32 = env_or("DETECT_CYCLES", "3")
        .parse()
        .ok()
        .filter(|&n| n >= 1)
        .expect("DETECT_CYCLES is a number of at least 1");
    let mut failed = false;
    println!(
        "detect: Tansu memory://, {PARTITIONS} canary partitions, metadata refresh 1s, {cycles} power losses per interval"
    );
    println!(
        "{:>9} {:>5} {:>7} {:>6} {:>8} {:>10} {:>10} {:>7} {:>6}",
        "interval", "cycle", "unread", "lost", "lost_s", "first_tr_s", "all_tr_s", "goal_s", "met"
    );
    let mut summary = vec![];
    for spec in intervals.split(',') {
        let interval = humantime::parse_duration(spec.trim()).expect("an interval like 100ms");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut broker = Tansu::start(Storage::Memory, dir.path());
        block(create_topic(&broker.bootstrap(), T, PARTITIONS));
        let mut settings = AgentSettings::new(broker.bootstrap(), T, dir.path());
        settings.probe_interval = Box::leak(spec.trim().to_owned().into_boxed_str());
        let agent = AgentProcess::start(settings);
        common::wait_until(
            interval * 4 + Duration::from_secs(60),
            "every partition verifies a probe",
            || {
                let s = agent.scrape();
                (0..PARTITIONS)
                    .all(|p| part(&s, "losswatch_probes_received_total", p) >= 1.0)
                    .then_some(())
            },
        );
        // CPU over a steady window: at least 10 s and 3 intervals.
        let window = (interval * 3).max(Duration::from_secs(10));
        let t0 = cpu_ticks(agent.pid());
        std::thread::sleep(window);
        let ticks = cpu_ticks(agent.pid()) - t0;
        let cpu_pct = ticks as f64 / 100.0 / window.as_secs_f64() * 100.0;

        let goal = 2.0 * interval.as_secs_f64() + 1.0;
        let mut firsts = vec![];
        for c in 1..=cycles {
            let r = cycle(&mut broker, &agent, interval, f64::from(c));
            let first = match (r.lost_after, r.first_truncation) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let met = first.is_some_and(|f| f <= goal);
            if first.is_none() {
                failed = true;
            }
            firsts.push(first.unwrap_or(f64::INFINITY));
            println!(
                "{:>9} {:>5} {:>7} {:>6} {:>8} {:>10} {:>10} {:>7.1} {:>6}",
                spec.trim(),
                c,
                if r.unread_at_freeze { "yes" } else { "no" },
                r.lost,
                fmt(r.lost_after),
                fmt(r.first_truncation),
                fmt(r.all_truncated),
                goal,
                if met { "yes" } else { "no" }
            );
            if c < cycles {
                // Power losses apart: the next one starts once every probe sent before this
                // detection has been answered (the delivery timeout is 5 s), so its evidence
                // is its own. Back to back, a second truncation proved only by probes sent
                // before the first was detected is not counted again (the tracker cannot
                // tell it from a late victim of the first); its losses are.
                std::thread::sleep(interval * 2 + Duration::from_secs(6));
            }
        }
        firsts.sort_by(f64::total_cmp);
        summary.push((spec.trim().to_owned(), cpu_pct, firsts, goal));
    }
    println!();
    println!(
        "interval  agent_cpu_pct({PARTITIONS} partitions)  first_signal_s(min/median/max)  goal_s"
    );
    for (spec, cpu, f, goal) in &summary {
        println!(
            "{spec:>8}  {cpu:>29.2}  {:>8.2} {:>8.2} {:>8.2}  {goal:>7.1}",
            f[0],
            f[f.len() / 2],
            f[f.len() - 1]
        );
    }
    if failed {
        eprintln!("detect: a power loss went undetected");
        std::process::exit(1);
    }
}
