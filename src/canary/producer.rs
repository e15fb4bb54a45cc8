//! The canary producer: sends probes (acks=all, idempotent) and turns every delivery report
//! into a [`Report`] on a channel.
//!
//! Delivery reports arrive on librdkafka's own thread; the callback only packs the result and
//! hands it to the agent's task. The channel is unbounded on purpose: a delivery report must
//! never be dropped or block librdkafka, and its length is bounded by the producer's own queue
//! (`queue.buffering.max.messages`) plus the per-partition cap on unverified probes.

use std::time::Instant;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, ThreadedProducer};
use tokio::sync::mpsc::UnboundedSender;

use crate::kafka::{Clients, Context, Delivery, Hooks};

/// Why a send failed. A bounded label set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailReason {
    Timeout,
    NotEnoughReplicas,
    BrokerDown,
    Other,
}

impl FailReason {
    pub const ALL: [FailReason; 4] = [
        FailReason::Timeout,
        FailReason::NotEnoughReplicas,
        FailReason::BrokerDown,
        FailReason::Other,
    ];

    /// The `reason` label of `losswatch_probes_send_failed_total`.
    pub fn as_label(self) -> &'static str {
        match self {
            FailReason::Timeout => "timeout",
            FailReason::NotEnoughReplicas => "not_enough_replicas",
            FailReason::BrokerDown => "broker_down",
            FailReason::Other => "other",
        }
    }

    pub fn from_error(err: &KafkaError) -> FailReason {
        match err.rdkafka_error_code() {
            Some(RDKafkaErrorCode::MessageTimedOut) | Some(RDKafkaErrorCode::RequestTimedOut) => {
                FailReason::Timeout
            }
            Some(RDKafkaErrorCode::NotEnoughReplicas)
            | Some(RDKafkaErrorCode::NotEnoughReplicasAfterAppend) => FailReason::NotEnoughReplicas,
            Some(RDKafkaErrorCode::BrokerTransportFailure)
            | Some(RDKafkaErrorCode::AllBrokersDown)
            | Some(RDKafkaErrorCode::BrokerNotAvailable)
            | Some(RDKafkaErrorCode::LeaderNotAvailable)
            | Some(RDKafkaErrorCode::NotLeaderForPartition) => FailReason::BrokerDown,
            _ => FailReason::Other,
        }
    }
}

/// What the agent remembers about a probe in flight; travels with it through librdkafka.
#[derive(Debug, Clone, Copy)]
pub struct SentProbe {
    pub partition: i32,
    pub seq: u64,
    pub produced_at_us: i64,
    pub sent_at: Instant,
    /// Truncation epoch of the partition at send time (see the tracker).
    pub sent_epoch: u64,
}

/// The outcome of one send.
#[derive(Debug, Clone, Copy)]
pub enum Report {
    Acked {
        probe: SentProbe,
        offset: i64,
        /// When librdkafka reported the ack: the agent handles reports in batches, so the
        /// ack latency is measured here rather than when the report is handled.
        acked_at: Instant,
    },
    Failed {
        probe: SentProbe,
        reason: FailReason,
        /// librdkafka's error code, for the log.
        code: Option<RDKafkaErrorCode>,
    },
}

/// The producer's hooks: every delivery report onto the agent's channel.
pub struct Reporter {
    reports: UnboundedSender<Report>,
}

impl Hooks for Reporter {}

impl Delivery for Reporter {
    type Opaque = Box<SentProbe>;

    fn delivery(&self, result: &DeliveryResult<'_>, probe: Box<SentProbe>) {
        let report = match result {
            // librdkafka's idempotent producer reports a retry that the broker answered with
            // DUPLICATE_SEQUENCE_NUMBER as delivered, with no offset (-1001). Without an offset
            // the tracker's proofs cannot place the probe (taken as an offset, -1001 would read
            // as below the log start: a false "expired unread"), and the log may not even hold
            // it (seen on the mock cluster after in-flight probes timed out). So it counts as a
            // send failure (`other`); if the verifier finds it later, it is counted
            // failed-but-arrived, like any failed send that landed.
            Ok(msg) if msg.offset() < 0 => {
                tracing::warn!(
                    partition = probe.partition,
                    seq = probe.seq,
                    offset = msg.offset(),
                    "delivery report without an offset; counted as a send failure"
                );
                Report::Failed {
                    probe: *probe,
                    reason: FailReason::Other,
                    code: None,
                }
            }
            Ok(msg) => Report::Acked {
                probe: *probe,
                offset: msg.offset(),
                acked_at: Instant::now(),
            },
            Err((err, _)) => Report::Failed {
                probe: *probe,
                reason: FailReason::from_error(err),
                code: err.rdkafka_error_code(),
            },
        };
        // The receiver is gone only when the agent is shutting down.
        let _ = self.reports.send(report);
    }
}

pub type CanaryProducer = ThreadedProducer<Context<Reporter>>;

/// Whether a send refused with `code` means the idempotent producer is stuck for good (its
/// producer id or epoch is no longer accepted) and must be replaced.
pub fn is_unusable(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::UnknownProducerId
            | RDKafkaErrorCode::InvalidProducerIdMapping
            | RDKafkaErrorCode::OutOfOrderSequenceNumber
            | RDKafkaErrorCode::Fatal
    )
}

/// The fatal error the producer hit, if any: e.g. an idempotent producer whose sequence
/// numbers fell out of step with the broker. It is unusable from then on and must be replaced.
pub fn fatal_error(producer: &CanaryProducer) -> Option<String> {
    rdkafka::producer::Producer::client(producer)
        .fatal_error()
        .map(|(code, reason)| format!("{code}: {reason}"))
}

/// Builds the producer on the shared client settings.
pub fn create(
    clients: &Clients,
    delivery_timeout_ms: u64,
    reports: UnboundedSender<Report>,
) -> Result<CanaryProducer, KafkaError> {
    let mut cfg = clients.config().clone();
    // acks=all and idempotence unless the configuration set them: validation refuses weaker
    // values unless canary.allow_weak_producer says they are wanted.
    if cfg.get("acks").is_none() && cfg.get("request.required.acks").is_none() {
        cfg.set("acks", "all");
    }
    if cfg.get("enable.idempotence").is_none() {
        cfg.set("enable.idempotence", "true");
    }
    cfg.set("message.timeout.ms", delivery_timeout_ms.to_string())
        // Probes are tiny and rare: send each at once rather than waiting to fill a batch.
        .set("linger.ms", "0")
        .set("queue.buffering.max.messages", "100000")
        // The canary topic is created on purpose (or not at all), never implicitly by a
        // metadata request with the broker's defaults.
        .set("allow.auto.create.topics", "false");
    cfg.create_with_context(clients.context_with("producer", Reporter { reports }))
}

/// Sends one probe. On an immediate refusal (queue full, unknown partition) the probe comes
/// back as a failure report.
pub fn send(
    producer: &CanaryProducer,
    topic: &str,
    payload: &[u8],
    probe: SentProbe,
) -> Result<(), Report> {
    let record = BaseRecord::<(), [u8], Box<SentProbe>>::with_opaque_to(topic, Box::new(probe))
        .partition(probe.partition)
        .payload(payload);
    producer.send(record).map_err(|(err, rec)| Report::Failed {
        probe: *rec.delivery_opaque,
        reason: FailReason::from_error(&err),
        code: err.rdkafka_error_code(),
    })
}
