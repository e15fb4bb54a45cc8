//! Errors of the Kafka clients, as librdkafka reports them through the client context: a
//! bounded-label counter, a log line naming the cause (at most one a minute per client and
//! kind: librdkafka reports a refused connection at every reconnect), and the last error,
//! which `/readyz` shows while the agent has never read the canary topic's metadata.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, Opts, Registry};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Identical error lines of one client are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// The `kind` label of `losswatch_kafka_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// SASL: bad credentials or a mechanism the broker does not offer.
    Authentication,
    /// TLS: handshake failed (unknown CA, wrong host name, a peer that does not speak TLS).
    Tls,
    /// The connection failed or was closed (refused, reset, unreachable).
    Transport,
    /// A broker host name does not resolve.
    Resolve,
    /// No broker of the cluster can be reached.
    AllBrokersDown,
    Timeout,
    Other,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Authentication,
        ErrorKind::Tls,
        ErrorKind::Transport,
        ErrorKind::Resolve,
        ErrorKind::AllBrokersDown,
        ErrorKind::Timeout,
        ErrorKind::Other,
    ];

    pub fn as_label(self) -> &'static str {
        match self {
            ErrorKind::Authentication => "authentication",
            ErrorKind::Tls => "tls",
            ErrorKind::Transport => "transport",
            ErrorKind::Resolve => "resolve",
            ErrorKind::AllBrokersDown => "all_brokers_down",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Other => "other",
        }
    }

    /// Classifies a client error. librdkafka reports some TLS failures as transport errors
    /// whose reason says so.
    pub fn of(error: &KafkaError, reason: &str) -> ErrorKind {
        use RDKafkaErrorCode as C;
        match error.rdkafka_error_code() {
            Some(C::Authentication | C::SaslAuthenticationFailed) => ErrorKind::Authentication,
            Some(C::SSL) => ErrorKind::Tls,
            Some(C::BrokerTransportFailure) if reason.contains("SSL") => ErrorKind::Tls,
            Some(C::BrokerTransportFailure) if reason.contains("SASL") => ErrorKind::Authentication,
            Some(C::BrokerTransportFailure) => ErrorKind::Transport,
            Some(C::Resolve) => ErrorKind::Resolve,
            Some(C::AllBrokersDown) => ErrorKind::AllBrokersDown,
            Some(C::OperationTimedOut | C::RequestTimedOut | C::MessageTimedOut) => {
                ErrorKind::Timeout
            }
            _ => ErrorKind::Other,
        }
    }

    /// Bad credentials and TLS failures need an operator; the rest is an outage, which the
    /// agent measures.
    fn needs_operator(self) -> bool {
        matches!(self, ErrorKind::Authentication | ErrorKind::Tls)
    }
}

/// The last error of any client, for `/readyz`.
#[derive(Debug, Clone)]
pub struct LastError {
    pub client: &'static str,
    pub kind: ErrorKind,
    /// librdkafka's reason, secrets scrubbed.
    pub reason: String,
}

/// Counts, logs and remembers client errors. Cheap to clone; every client shares one.
#[derive(Clone)]
pub struct KafkaErrors {
    counter: IntCounterVec,
    last: Arc<Mutex<Option<LastError>>>,
    logged: Arc<Mutex<HashMap<(&'static str, ErrorKind), Instant>>>,
}

impl KafkaErrors {
    pub fn register(registry: &Registry) -> prometheus::Result<KafkaErrors> {
        let counter = IntCounterVec::new(
            Opts::new(
                "losswatch_kafka_errors_total",
                "Errors the Kafka clients reported, by kind: authentication, tls, transport, \
                 resolve, all_brokers_down, timeout, other.",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(counter.clone()))?;
        for k in ErrorKind::ALL {
            counter.with_label_values(&[k.as_label()]);
        }
        Ok(KafkaErrors {
            counter,
            last: Arc::default(),
            logged: Arc::default(),
        })
    }

    /// Called from librdkafka's threads: counts, logs (rate-limited) and remembers the error.
    /// `reason` must already be scrubbed of secrets.
    pub fn record(&self, client: &'static str, error: &KafkaError, reason: &str) {
        let kind = ErrorKind::of(error, reason);
        self.counter.with_label_values(&[kind.as_label()]).inc();
        if let Ok(mut last) = self.last.lock() {
            // "All brokers down" follows every failed connection: keep the cause before it.
            if kind == ErrorKind::AllBrokersDown && last.is_some() {
                return self.log(client, kind, error, reason);
            }
            *last = Some(LastError {
                client,
                kind,
                reason: reason.to_owned(),
            });
        }
        self.log(client, kind, error, reason);
    }

    fn log(&self, client: &'static str, kind: ErrorKind, error: &KafkaError, reason: &str) {
        let due = match self.logged.lock() {
            Ok(mut logged) => {
                let now = Instant::now();
                match logged.get(&(client, kind)) {
                    Some(at) if now.duration_since(*at) < LOG_EVERY => false,
                    _ => {
                        logged.insert((client, kind), now);
                        true
                    }
                }
            }
            Err(_) => true,
        };
        if !due {
            return;
        }
        let operator = kind.needs_operator();
        let kind = kind.as_label();
        if operator {
            tracing::error!(client, kind, %error, reason, "kafka client cannot connect; check the credentials and TLS settings in kafka.properties");
        } else {
            tracing::warn!(client, kind, %error, reason, "kafka client error");
        }
    }

    /// The last error any client reported, if any.
    pub fn last(&self) -> Option<LastError> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    /// The count of one kind (tests).
    pub fn count(&self, kind: ErrorKind) -> u64 {
        self.counter.with_label_values(&[kind.as_label()]).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_code_and_reason() {
        let e = |c| KafkaError::Global(c);
        assert_eq!(
            ErrorKind::of(&e(RDKafkaErrorCode::Authentication), ""),
            ErrorKind::Authentication
        );
        assert_eq!(ErrorKind::of(&e(RDKafkaErrorCode::SSL), ""), ErrorKind::Tls);
        assert_eq!(
            ErrorKind::of(
                &e(RDKafkaErrorCode::BrokerTransportFailure),
                "SSL handshake failed"
            ),
            ErrorKind::Tls
        );
        assert_eq!(
            ErrorKind::of(
                &e(RDKafkaErrorCode::BrokerTransportFailure),
                "Connection refused"
            ),
            ErrorKind::Transport
        );
        assert_eq!(
            ErrorKind::of(&e(RDKafkaErrorCode::AllBrokersDown), ""),
            ErrorKind::AllBrokersDown
        );
    }

    /// The reasons librdkafka 2.12.1 (OpenSSL 3.0) gave in `tests/tansu_tls.rs`. A refused
    /// client certificate arrives as a transport failure (the TLS 1.3 alert comes with the
    /// first read, after the handshake), known as TLS only by its reason; the broker name
    /// (`ssl://…`, `sasl_ssl://…`) is lowercase and must not make a refused connection TLS.
    #[test]
    fn reasons_seen_against_a_tls_terminator() {
        let e = |c| KafkaError::Global(c);
        for (code, reason, want) in [
            (
                RDKafkaErrorCode::SSL,
                "ssl://127.0.0.1:35463/bootstrap: SSL handshake failed: \
                 ../ssl/statem/statem_clnt.c:1889:tls_post_process_server_certificate \
                 error:0A000086:SSL routines::certificate verify failed",
                ErrorKind::Tls,
            ),
            (
                RDKafkaErrorCode::BrokerTransportFailure,
                "ssl://127.0.0.1:42777/bootstrap: Receive failed: \
                 ../ssl/record/rec_layer_s3.c:1601:ssl3_read_bytes error:0A00045C:SSL \
                 routines::tlsv13 alert certificate required: SSL alert number 116",
                ErrorKind::Tls,
            ),
            (
                RDKafkaErrorCode::BrokerTransportFailure,
                "ssl://127.0.0.1:37939/bootstrap: Connect to ipv4#127.0.0.1:37939 failed: \
                 Connection refused (after 0ms in state CONNECT)",
                ErrorKind::Transport,
            ),
            (
                RDKafkaErrorCode::BrokerTransportFailure,
                "sasl_ssl://127.0.0.1:37939/bootstrap: Connect to ipv4#127.0.0.1:37939 \
                 failed: Connection refused (after 0ms in state CONNECT)",
                ErrorKind::Transport,
            ),
        ] {
            assert_eq!(ErrorKind::of(&e(code), reason), want, "{reason}");
        }
    }

    #[test]
    fn every_kind_is_exported_and_counted() {
        let r = Registry::new();
        let errors = KafkaErrors::register(&r).unwrap();
        errors.record(
            "producer",
            &KafkaError::Global(RDKafkaErrorCode::Authentication),
            "SASL authentication error",
        );
        assert_eq!(errors.count(ErrorKind::Authentication), 1);
        let last = errors.last().unwrap();
        assert_eq!(
            (last.client, last.kind),
            ("producer", ErrorKind::Authentication)
        );
        let n = r
            .gather()
            .iter()
            .find(|f| f.name() == "losswatch_kafka_errors_total")
            .map(|f| f.get_metric().len());
        assert_eq!(n, Some(ErrorKind::ALL.len()));
    }
}
