//! The loss schedule: one cycle of [`CYCLE`] (the simulated application's cycle, so that its
//! group is stalled during the consumer stage), repeated. Seconds into each cycle:
//!
//! | s | stage | what happens |
//! |---|---|---|
//! | 4–27 | producer | leader move, broker 3 down 3 s, a latency spike, then every produce refused for 6 s (longer than the 5 s delivery timeout), then a short error burst that is retried |
//! | 30–38 | consumer | the verifier held back (every fetch fails), 7 MiB of filler per partition: retention removes acked probes it had not read, and messages `demo-app` (stalled) had not read |
//! | 43–55 | broker | the verifier held back while acked probes pile up, then a power loss of the whole cluster and the agent; a fresh, empty cluster; the agent restarts on its state file |
//!
//! Each stage is judged once the agent's counts equal what was injected, or at its deadline
//! (27, 42 and 63 s) with whatever it counted by then: a count still missing then is a miss,
//! and one that arrives later falls outside every stage and is a false alarm.
//!
//! Ground truth for each stage comes from [`super::truth`]: the probes really in a log range
//! (producer stage: sequence numbers missing between those appended), watermarks and the
//! demo's own filler offsets (consumer stage), the probes the old cluster held that the
//! verifier had not read when the power went (broker stage). Before the verifier is held,
//! appends pause for a second so that it has read everything appended so far: every probe
//! appended while it is held is then known unread.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::truth;
use super::verdict::{Stage, Tally};
use super::world::{lock, new_cluster, World};
use super::{Counters, DemoError, APP_GROUP, APP_PARTITIONS, APP_TOPIC};
use super::{PARTITIONS, TOPIC};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

/// One cycle of the schedule.
pub const CYCLE: Duration = Duration::from_secs(crate::lag::simulate::CYCLE_SECS);
/// Filler written to each partition: more than the mock's ~5 MiB per partition.
const FILLER_BYTES: usize = 7 << 20;

async fn at(c0: Instant, secs: f64) {
    tokio::time::sleep_until(c0 + Duration::from_secs_f64(secs)).await;
}

async fn blocking<T, F>(f: F) -> Result<T, DemoError>
where
    F: FnOnce() -> Result<T, DemoError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

async fn watermarks(
    w: &World,
    topic: &'static str,
    n: i32,
) -> Result<BTreeMap<i32, (i64, i64)>, DemoError> {
    let b = w.bootstrap();
    blocking(move || Ok(truth::watermarks(&b, topic, n)?)).await
}

/// Runs cycles until the future is dropped.
pub(super) async fn cycles(w: &mut World) -> Result<(), DemoError> {
    for cycle in 0u64.. {
        let c0 = w.started + CYCLE * u32::try_from(cycle).unwrap_or(u32::MAX);
        if cycle > 0 {
            at(c0, 0.0).await;
            w.start_app()?;
        }
        producer(w, cycle, c0).await?;
        consumer(w, cycle, c0).await?;
        broker(w, cycle, c0).await?;
    }
    Ok(())
}

fn chaos(w: &World, what: &str, r: rdkafka::error::KafkaResult<()>) {
    match r {
        Ok(()) => w.say(format!("chaos: {what}")),
        Err(e) => w.say(format!("chaos step failed ({what}): {e}")),
    }
}

async fn producer(w: &mut World, cycle: u64, c0: Instant) -> Result<(), DemoError> {
    at(c0, 4.0).await;
    w.open_stage(Stage::Producer, cycle);
    let start = watermarks(w, TOPIC, PARTITIONS).await?;
    at(c0, 5.0).await;
    chaos(
        w,
        "leader of partition 0 moved to broker 2; broker 3 down (an availability event: nothing is lost)",
        w.mock
            .partition_leader(TOPIC, 0, Some(2))
            .and_then(|_| w.mock.broker_down(3)),
    );
    at(c0, 6.0).await;
    chaos(
        w,
        "latency spike: broker 1 round trip 400ms",
        w.mock.broker_round_trip_time(1, Duration::from_millis(400)),
    );
    at(c0, 8.0).await;
    chaos(
        w,
        "broker 3 up; latency back to normal",
        w.mock
            .broker_up(3)
            .and_then(|_| w.mock.broker_round_trip_time(1, Duration::ZERO)),
    );
    at(c0, 9.0).await;
    w.refuse_appends();
    w.say("chaos: every produce refused (NOT_ENOUGH_REPLICAS) for 6 s, longer than the 5 s delivery timeout");
    at(c0, 15.0).await;
    w.allow_appends();
    w.mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 12],
    );
    w.say("chaos: produce accepted again, after a burst of 12 NOT_ENOUGH_REPLICAS (retried, delivered)");
    at(c0, 19.0).await;
    chaos(
        w,
        "leader of partition 0 moved back to broker 1",
        w.mock.partition_leader(TOPIC, 0, Some(1)),
    );
    at(c0, 20.5).await;
    let end = watermarks(w, TOPIC, PARTITIONS).await?;
    // Every failure is reported within the delivery timeout of its send.
    at(c0, 23.0).await;
    let ranges: BTreeMap<i32, (i64, i64)> = start
        .iter()
        .map(|(&p, &(_, from))| (p, (from, end.get(&p).map_or(from, |e| e.1))))
        .collect();
    let b = w.bootstrap();
    let found = blocking(move || Ok(truth::read(&b, TOPIC, &ranges)?)).await?;
    let mut seqs: BTreeMap<i32, Vec<u64>> = BTreeMap::new();
    for f in &found {
        if let Some(p) = f.probe {
            seqs.entry(f.partition).or_default().push(p.seq);
        }
    }
    let mut missing = 0u64;
    for s in seqs.values_mut() {
        s.sort_unstable();
        s.dedup();
        if let (Some(first), Some(last)) = (s.first(), s.last()) {
            missing += last - first + 1 - s.len() as u64;
        }
    }
    let injected = Tally {
        not_appended: missing as f64,
        ..Tally::default()
    };
    w.settle(&injected, c0 + Duration::from_secs(27)).await;
    w.close_stage(injected, true);
    Ok(())
}

async fn consumer(w: &mut World, cycle: u64, c0: Instant) -> Result<(), DemoError> {
    at(c0, 30.0).await;
    w.open_stage(Stage::Consumer, cycle);
    w.refuse_appends();
    at(c0, 31.0).await;
    w.hold_reads();
    let held = watermarks(w, TOPIC, PARTITIONS).await?;
    w.allow_appends();
    w.say("chaos: verifier held back (every fetch fails with KAFKA_STORAGE_ERROR); probes are still acked");
    at(c0, 34.0).await;
    w.say(format!(
        "chaos: writing {} MiB of filler to every partition of {TOPIC} and {APP_TOPIC} \
         (the mock keeps about 5 MiB per partition); {APP_GROUP} is stalled",
        FILLER_BYTES >> 20
    ));
    let b = w.bootstrap();
    let filler = blocking(move || Ok(truth::fill(&b, TOPIC, PARTITIONS, FILLER_BYTES)?)).await?;
    let b = w.bootstrap();
    blocking(move || Ok(truth::fill(&b, APP_TOPIC, APP_PARTITIONS, FILLER_BYTES)?)).await?;
    let after = watermarks(w, TOPIC, PARTITIONS).await?;
    let app = watermarks(w, APP_TOPIC, APP_PARTITIONS).await?;
    let b = w.bootstrap();
    let committed =
        blocking(move || Ok(truth::committed(&b, APP_GROUP, APP_TOPIC, APP_PARTITIONS)?)).await?;
    // Offsets [held, log start) that are not filler are probes acked while the verifier was
    // held: removed unread.
    let mut expired = 0i64;
    for (p, &(_, from)) in &held {
        let low = after.get(p).map_or(0, |a| a.0);
        if low > from {
            let fill = filler
                .get(p)
                .map_or(0, |f| f.iter().filter(|&&o| o >= from && o < low).count());
            expired += low - from - i64::try_from(fill).unwrap_or(0);
        }
    }
    let group_expired: i64 = committed
        .iter()
        .map(|(p, &c)| (app.get(p).map_or(0, |a| a.0) - c).max(0))
        .sum();
    w.release_reads();
    w.say(format!(
        "chaos: verifier released; retention removed {expired} acked probes it had not read, \
         and {group_expired} messages {APP_GROUP} had not read"
    ));
    let injected = Tally {
        expired_unread: expired as f64,
        group_expired: group_expired as f64,
        ..Tally::default()
    };
    at(c0, 38.0).await;
    w.settle(&injected, c0 + Duration::from_secs(42)).await;
    w.close_stage(injected, true);
    Ok(())
}

async fn broker(w: &mut World, cycle: u64, c0: Instant) -> Result<(), DemoError> {
    at(c0, 43.0).await;
    w.open_stage(Stage::Broker, cycle);
    w.refuse_appends();
    at(c0, 44.0).await;
    w.hold_reads();
    let held = watermarks(w, TOPIC, PARTITIONS).await?;
    w.allow_appends();
    w.say("chaos: verifier held back; acked probes pile up unverified");
    at(c0, 50.0).await;
    w.refuse_appends();
    w.say("chaos: appends stop 1.5 s before the power cut, so that every ack has reached the state file");
    at(c0, 51.5).await;
    let b = w.bootstrap();
    let leaders = blocking(move || Ok(truth::leaders(&b, TOPIC)?)).await?;

    // The power cut: the agent and the application stop at once.
    let cut_us = crate::agent::now_us();
    if let Some(running) = w.running.take() {
        let registry = super::summary::Registries::of(&running);
        running.kill().await;
        let mut books = lock(&w.books);
        books.earlier = books.earlier.plus(&Counters::read(&registry));
        books.registry = None;
    }
    // What the old cluster held that the verifier had not read: every probe appended while
    // it was held.
    w.release_reads();
    w.allow_appends();
    w.stop_app().await;
    let end = watermarks(w, TOPIC, PARTITIONS).await?;
    let ranges: BTreeMap<i32, (i64, i64)> = held
        .iter()
        .map(|(&p, &(_, from))| (p, (from, end.get(&p).map_or(from, |e| e.1))))
        .collect();
    let b = w.bootstrap();
    let found = blocking(move || Ok(truth::read(&b, TOPIC, &ranges)?)).await?;
    let mut injected = Tally::default();
    for f in found.iter().filter(|f| f.probe.is_some()) {
        injected.lost += 1.0;
        let broker = leaders.get(&f.partition).copied().unwrap_or(-1);
        *injected
            .lost_by_broker
            .entry(broker.to_string())
            .or_insert(0.0) += 1.0;
    }
    injected.truncations = end.values().filter(|(_, high)| *high > 0).count() as f64;
    let old = w.bootstrap();
    w.mock = new_cluster()?;
    w.say(format!(
        "chaos: POWER LOSS of the whole cluster and the agent: {} acked probes the verifier had \
         not read are gone; a fresh, empty cluster replaces it ({old} -> {}); the agent \
         restarts on its state file",
        injected.lost,
        w.bootstrap()
    ));
    w.start_agent().await?;
    at(c0, 55.0).await;
    w.settle(&injected, c0 + Duration::from_secs(63)).await;
    print_losses(w, cut_us).await?;
    w.close_stage(injected, true);
    Ok(())
}

/// Prints the loss events the restarted agent recorded, one line per partition.
async fn print_losses(w: &World, since_us: i64) -> Result<(), DemoError> {
    let path = w.cfg.state.path.clone();
    let events = blocking(move || Ok(crate::ledger::read_events(&path, 10_000)?)).await?;
    let mut by_part: BTreeMap<i32, Vec<&crate::ledger::Event>> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.at_us >= since_us && e.kind == "lost")
    {
        by_part.entry(e.partition).or_default().push(e);
    }
    for (p, mut evs) in by_part {
        evs.sort_by_key(|e| e.seq);
        let seqs: Vec<String> = evs
            .iter()
            .map(|e| {
                format!(
                    "{}@{}",
                    e.seq.map_or("-".into(), |s| s.to_string()),
                    e.offset.map_or("-".into(), |o| o.to_string())
                )
            })
            .collect();
        let brokers: std::collections::BTreeSet<String> = evs
            .iter()
            .map(|e| e.broker.map_or("-".into(), |b| b.to_string()))
            .collect();
        w.say(format!(
            "loss events: partition {p} broker {} lost {} probes (seq@offset): {}",
            brokers.into_iter().collect::<Vec<_>>().join(","),
            evs.len(),
            seqs.join(" ")
        ));
    }
    Ok(())
}
