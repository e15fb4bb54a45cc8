//! The one client context of every Kafka client: librdkafka's log lines go to `tracing`
//! (secrets scrubbed), its errors are counted by kind and logged once in a while, and the
//! client's own callbacks (delivery reports, rebalances) are handed to its [`Hooks`].
//!
//! librdkafka calls these from its own threads: every hook must return quickly.

use std::sync::Arc;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::util::IntoOpaque;
use rdkafka::ClientContext;

use super::errors::KafkaErrors;
use super::log_context::log_librdkafka;
use super::Scrubber;

/// A client's own callbacks. The unit type has none.
pub trait Hooks: Send + Sync + 'static {
    /// After a consumer group rebalance (consumers only).
    fn post_rebalance(&self, _rebalance: &Rebalance<'_>) {}
}

impl Hooks for () {}

/// The delivery report callback of a producer.
pub trait Delivery: Hooks {
    type Opaque: IntoOpaque;
    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Self::Opaque);
}

pub struct Context<H = ()> {
    client: &'static str,
    errors: KafkaErrors,
    scrubber: Arc<Scrubber>,
    hooks: H,
}

impl<H> Context<H> {
    pub(super) fn new(
        client: &'static str,
        errors: KafkaErrors,
        scrubber: Arc<Scrubber>,
        hooks: H,
    ) -> Context<H> {
        Context {
            client,
            errors,
            scrubber,
            hooks,
        }
    }

    pub fn hooks(&self) -> &H {
        &self.hooks
    }
}

impl<H: Hooks> ClientContext for Context<H> {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        log_librdkafka(self.client, level, fac, &self.scrubber.scrub(msg));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.errors
            .record(self.client, &error, &self.scrubber.scrub(reason));
    }
}

impl<H: Hooks> ConsumerContext for Context<H> {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.hooks.post_rebalance(rebalance);
    }
}

impl<H: Delivery> ProducerContext for Context<H> {
    type DeliveryOpaque = H::Opaque;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: H::Opaque) {
        self.hooks.delivery(result, opaque);
    }
}
