//! librdkafka's log lines, routed into `tracing` with the client they came from.

use rdkafka::config::RDKafkaLogLevel;

pub fn log_librdkafka(client: &'static str, level: RDKafkaLogLevel, fac: &str, msg: &str) {
    use crate::ratelimit::{key, Decision, RateLimiter};
    use std::sync::{Mutex, OnceLock};
    use std::time::{Duration, Instant};
    // One line per distinct message and client per window: a broker that is down makes
    // librdkafka repeat the same connection error for every client every few hundred ms.
    static LIMITER: OnceLock<Mutex<RateLimiter>> = OnceLock::new();
    // What an operator must act on: the client will not work until the configuration or
    // the credentials change. librdkafka logs these at the same levels as a refused
    // connection, so they are told apart by what they say.
    const ACTION: &[&str] = &[
        "authentication",
        "Authentication",
        "SASL",
        "SSL",
        "certificate",
        "Fatal",
        "fatal",
    ];
    // Routine client chatter: never an incident, not rate-limited.
    match level {
        RDKafkaLogLevel::Debug => return tracing::trace!(client, fac, "{msg}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            return tracing::debug!(client, fac, "{msg}")
        }
        _ => {}
    }
    let suppressed = {
        let limiter =
            LIMITER.get_or_init(|| Mutex::new(RateLimiter::new(Duration::from_secs(30), 1024)));
        let mut l = limiter.lock().unwrap_or_else(|e| e.into_inner());
        match l.check(key(&[client, fac, msg]), Instant::now()) {
            Decision::Suppress => return,
            Decision::Log { suppressed } => suppressed,
        }
    };
    let operator_action = ACTION.iter().any(|w| msg.contains(w));
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
            tracing::error!(client, fac, suppressed, "{msg}")
        }
        _ if operator_action => tracing::error!(client, fac, suppressed, "{msg}"),
        // Transport errors (connection refused, disconnects, request timeouts, all brokers
        // down): a broker that is down is an availability event, measured by the metrics;
        // it is not data loss and nothing to act on by itself.
        _ => tracing::warn!(client, fac, suppressed, "{msg}"),
    }
}
