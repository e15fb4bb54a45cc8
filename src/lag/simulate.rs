//! A simulated application for `losswatch demo`: a producer writing a steady stream to a
//! topic, and a consumer group reading it that, in each cycle, keeps up, falls behind,
//! stalls, and catches up again, so that the lag poller has something to show.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

/// What the application does at one moment of its cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reads everything produced and commits.
    KeepUp,
    /// Reads at a quarter of the production rate and commits: lag grows (WARN).
    Behind,
    /// Neither reads nor commits (STOP).
    Stalled,
    /// Reads everything again (back to OK).
    CatchUp,
}

/// Seconds into each cycle at which each phase starts, and the cycle length.
pub const SCHEDULE: [(u64, Phase); 4] = [
    (0, Phase::KeepUp),
    (12, Phase::Behind),
    (30, Phase::Stalled),
    (48, Phase::CatchUp),
];
pub const CYCLE_SECS: u64 = 66;

pub fn phase_at(elapsed: Duration) -> Phase {
    let s = elapsed.as_secs() % CYCLE_SECS;
    SCHEDULE
        .iter()
        .rev()
        .find(|(at, _)| s >= *at)
        .map_or(Phase::KeepUp, |(_, p)| *p)
}

#[derive(Debug, Clone)]
pub struct App {
    pub bootstrap: String,
    pub topic: String,
    pub partitions: i32,
    pub group: String,
    /// Records produced per second over all partitions.
    pub rate: u32,
}

const TICK: Duration = Duration::from_millis(100);

impl App {
    /// Runs the application on a thread of its own until `stop` fires.
    pub fn spawn(self, stop: CancellationToken) -> Result<std::thread::JoinHandle<()>, KafkaError> {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", "5")
            .set("message.timeout.ms", "5000")
            .create()?;
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition_offset(&self.topic, p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        std::thread::Builder::new()
            .name("demo-app".into())
            .spawn(move || self.run(&producer, &consumer, &stop))
            .map_err(|e| KafkaError::ClientCreation(e.to_string()))
    }

    fn run(&self, producer: &BaseProducer, consumer: &BaseConsumer, stop: &CancellationToken) {
        let started = Instant::now();
        let mut produced = 0u64;
        let mut next = vec![None::<i64>; usize::try_from(self.partitions).unwrap_or(0)];
        let mut committed = next.clone();
        let mut read_credit = 0.0f64;
        while !stop.is_cancelled() {
            let elapsed = started.elapsed();
            // Produce to catch up with the steady rate.
            let due = (elapsed.as_secs_f64() * f64::from(self.rate)) as u64;
            while produced < due {
                let p =
                    i32::try_from(produced % u64::try_from(self.partitions.max(1)).unwrap_or(1))
                        .unwrap_or(0);
                let body = format!("order {produced}");
                let _ = producer.send(
                    BaseRecord::<(), str>::to(&self.topic)
                        .partition(p)
                        .payload(&body),
                );
                produced += 1;
            }
            producer.poll(Duration::ZERO);
            // Read what this phase allows.
            let budget = match phase_at(elapsed) {
                Phase::KeepUp | Phase::CatchUp => u32::MAX,
                Phase::Behind => {
                    read_credit += f64::from(self.rate) / 4.0 * TICK.as_secs_f64();
                    let whole = read_credit.floor();
                    read_credit -= whole;
                    whole as u32
                }
                Phase::Stalled => 0,
            };
            let mut read = 0;
            while read < budget {
                match consumer.poll(Duration::ZERO) {
                    Some(Ok(m)) => {
                        if let Some(n) = usize::try_from(m.partition())
                            .ok()
                            .and_then(|p| next.get_mut(p))
                        {
                            *n = Some(m.offset() + 1);
                        }
                        read += 1;
                    }
                    Some(Err(_)) => {}
                    None => break,
                }
            }
            if next != committed {
                let mut tpl = TopicPartitionList::new();
                for (p, o) in next.iter().enumerate() {
                    if let (Some(o), Ok(p)) = (o, i32::try_from(p)) {
                        let _ = tpl.add_partition_offset(&self.topic, p, Offset::Offset(*o));
                    }
                }
                if consumer.commit(&tpl, CommitMode::Async).is_ok() {
                    committed.clone_from(&next);
                }
            }
            std::thread::sleep(TICK);
        }
        let _ = producer.flush(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cycle_goes_through_every_phase() {
        let at = |s| phase_at(Duration::from_secs(s));
        assert_eq!(at(0), Phase::KeepUp);
        assert_eq!(at(12), Phase::Behind);
        assert_eq!(at(35), Phase::Stalled);
        assert_eq!(at(50), Phase::CatchUp);
        assert_eq!(at(CYCLE_SECS), Phase::KeepUp);
    }
}
