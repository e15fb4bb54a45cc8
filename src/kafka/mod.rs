//! Kafka client construction, one place for every client of the agent (the canary producer,
//! the verifier, the lag poller and the lag election):
//!
//! | module | concern |
//! |---|---|
//! | [`Clients`] | the librdkafka settings built from the validated config: bootstrap servers, `kafka.properties`, the values of `kafka.secret_files`; every admin client ([`Admin`], whose log lines and errors reach its context) |
//! | [`context`] | the one client context: librdkafka's log lines and errors, with hooks for delivery reports and rebalances |
//! | [`errors`] | `losswatch_kafka_errors_total{kind}`, the error log line and the last error `/readyz` shows |
//! | [`log_context`] | librdkafka's log lines routed into `tracing` |
//!
//! Secrets (SASL passwords, key passwords, the contents of secret files) never leave this
//! module in clear except into librdkafka itself: every log line and error text of a client
//! goes through [`Scrubber`] first.

pub mod context;
pub mod errors;
pub mod log_context;

use std::sync::Arc;

use rdkafka::admin::AdminClient;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;

pub use context::{Context, Delivery, Hooks};
pub use errors::{ErrorKind, KafkaErrors};

use crate::config::ValidConfig;

/// An admin client whose log lines and errors reach its context. rust-rdkafka's own
/// `AdminClient` never polls the client's main queue, where librdkafka puts both: an
/// [`rdkafka_admin_ext::Admin`] over it does, so every admin client is made by
/// [`Clients::admin`]. Its `client()` is the rust-rdkafka client, for the calls that crate binds.
pub type Admin = rdkafka_admin_ext::Admin<Context>;

/// Prefix of the verifiers' group ids (see `verifier`): never joined, but listed by brokers
/// that keep a group for every id that asked for a coordinator.
pub const VERIFIER_GROUP_PREFIX: &str = "losswatch-verifier-";

/// Group id of the lag poller's own client. It is never joined and never commits; librdkafka
/// wants one to assign partitions.
pub const LAG_READER_GROUP: &str = "losswatch-lag-reader";

/// Replaces every secret value found in a text with `**REDACTED**`.
#[derive(Debug, Default)]
pub struct Scrubber {
    /// Longest first, so that a secret containing another is replaced whole.
    secrets: Vec<crate::config::Sensitive>,
}

impl Scrubber {
    pub fn new(mut secrets: Vec<crate::config::Sensitive>) -> Scrubber {
        secrets.retain(|s| !s.expose().is_empty());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
        Scrubber { secrets }
    }

    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            if out.contains(s.expose()) {
                out = out.replace(s.expose(), "**REDACTED**");
            }
        }
        out
    }
}

/// What every client of the agent is built from. Cheap to clone.
#[derive(Clone)]
pub struct Clients {
    /// Never printed: it holds the secrets (`ClientConfig`'s `Debug` shows every value).
    config: ClientConfig,
    errors: KafkaErrors,
    scrubber: Arc<Scrubber>,
}

impl Clients {
    pub fn new(cfg: &ValidConfig, errors: KafkaErrors) -> Clients {
        let mut config = ClientConfig::new();
        // rust-rdkafka takes librdkafka's log level from the `log` crate, which is not set
        // up here (logs go through `tracing`): without this, the `debug` property of
        // kafka.properties would print nothing.
        config.set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
        config.set("bootstrap.servers", &cfg.kafka.bootstrap_servers);
        for (k, v) in cfg.kafka_properties() {
            config.set(k, v.expose());
        }
        Clients {
            config,
            errors,
            scrubber: Arc::new(Scrubber::new(cfg.secret_values())),
        }
    }

    /// The shared librdkafka settings, to which each client adds its own.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    pub fn errors(&self) -> &KafkaErrors {
        &self.errors
    }

    /// Removes the secrets from a text about a client (an error, a log line).
    pub fn scrub(&self, text: &str) -> String {
        self.scrubber.scrub(text)
    }

    /// An admin client named `client` in logs and errors (see [`Admin`]).
    pub fn admin(&self, client: &'static str) -> Result<Arc<Admin>, KafkaError> {
        let c: AdminClient<Context> = self.config.create_with_context(self.context(client))?;
        Admin::new(Arc::new(c))
            .map(Arc::new)
            .map_err(|e| KafkaError::AdminOpCreation(e.to_string()))
    }

    /// The context of a client without hooks; `client` names it in logs.
    pub fn context(&self, client: &'static str) -> Context {
        self.context_with(client, ())
    }

    /// The context of a client whose delivery reports or rebalances `hooks` handle.
    pub fn context_with<H: Hooks>(&self, client: &'static str, hooks: H) -> Context<H> {
        Context::new(client, self.errors.clone(), self.scrubber.clone(), hooks)
    }
}
