//! The probing part of the agent: the canary producer (and its replacement after a fatal
//! error), the channel its delivery reports arrive on, and the encoding of each probe.
//!
//! It knows nothing of the tracker or the ledger: the loop asks it to send a probe and
//! hands the reports it returns to the accounting (`Agent::on_report`).

use std::sync::Arc;
use std::time::Instant;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::canary::producer::{self, CanaryProducer, Report, SentProbe};
use crate::kafka::Clients;
use crate::probe::Probe;

pub(super) struct Prober {
    clients: Clients,
    instance: Uuid,
    topic: String,
    payload_bytes: usize,
    delivery_timeout_ms: u64,
    producer: Arc<CanaryProducer>,
    /// When the current producer was created.
    since: Instant,
    /// Why the producer refused a probe in a way it never recovers from, if it did.
    refuses: Option<String>,
    reports: mpsc::UnboundedReceiver<Report>,
    /// Kept to build a replacement producer; also keeps `reports` open.
    report_tx: mpsc::UnboundedSender<Report>,
    /// The encoded probe, reused for every send.
    payload: Vec<u8>,
}

impl Prober {
    pub(super) fn new(
        clients: &Clients,
        instance: Uuid,
        topic: &str,
        payload_bytes: usize,
        delivery_timeout_ms: u64,
    ) -> Result<Prober, KafkaError> {
        let (report_tx, reports) = mpsc::unbounded_channel();
        let producer = producer::create(clients, delivery_timeout_ms, report_tx.clone())?;
        Ok(Prober {
            clients: clients.clone(),
            instance,
            topic: topic.to_string(),
            payload_bytes,
            delivery_timeout_ms,
            producer: Arc::new(producer),
            since: Instant::now(),
            refuses: None,
            reports,
            report_tx,
            payload: Vec::new(),
        })
    }

    /// The current producer, for a metadata refresh off the loop.
    pub(super) fn producer(&self) -> Arc<CanaryProducer> {
        self.producer.clone()
    }

    /// Probes handed to the producer and not reported yet.
    pub(super) fn in_flight(&self) -> i32 {
        rdkafka::producer::Producer::in_flight_count(&*self.producer)
    }

    /// Waits for up to `limit` delivery reports. Never returns 0: the prober holds a sender.
    pub(super) async fn reports(&mut self, buf: &mut Vec<Report>, limit: usize) -> usize {
        self.reports.recv_many(buf, limit).await
    }

    /// A report already waiting, if any.
    pub(super) fn try_report(&mut self) -> Option<Report> {
        self.reports.try_recv().ok()
    }

    /// Encodes probe `seq` of `partition` and hands it to the producer. A probe the producer
    /// refuses at once comes back as its failure report.
    pub(super) fn send(
        &mut self,
        partition: i32,
        seq: u64,
        produced_at_us: i64,
        sent_epoch: u64,
    ) -> Result<(), Report> {
        Probe {
            instance: self.instance,
            partition,
            seq,
            produced_at_us,
        }
        .encode_into(self.payload_bytes, &mut self.payload);
        let sent = SentProbe {
            partition,
            seq,
            produced_at_us,
            sent_at: Instant::now(),
            sent_epoch,
        };
        producer::send(&self.producer, &self.topic, &self.payload, sent)
    }

    /// Notes a failed send: a probe of the current producer refused because its id or epoch
    /// is no longer accepted. librdkafka does not always flag this as fatal, yet every later
    /// probe fails the same way, so the producer is replaced at the next tick.
    pub(super) fn note_failure(&mut self, code: Option<RDKafkaErrorCode>, sent_at: Instant) {
        if code.is_some_and(producer::is_unusable) && sent_at >= self.since {
            self.refuses = Some(format!("probe refused: {code:?}"));
        }
    }

    /// Replaces a producer that hit a fatal error (or keeps refusing probes). The old one is
    /// dropped on the blocking pool: dropping purges its queue, which reports the purged
    /// probes as failed. Returns whether it was replaced.
    pub(super) fn replace_if_fatal(&mut self) -> bool {
        let refused = self.refuses.take();
        let Some(fatal) = producer::fatal_error(&self.producer).or(refused) else {
            return false;
        };
        tracing::error!(
            error = fatal,
            "fatal producer error; recreating the producer"
        );
        match producer::create(
            &self.clients,
            self.delivery_timeout_ms,
            self.report_tx.clone(),
        ) {
            Ok(p) => {
                let old = std::mem::replace(&mut self.producer, Arc::new(p));
                self.since = Instant::now();
                tokio::task::spawn_blocking(move || drop(old));
                tracing::warn!("canary producer recreated after a fatal error");
                true
            }
            Err(error) => {
                tracing::error!(%error, "cannot recreate the canary producer");
                false
            }
        }
    }
}
