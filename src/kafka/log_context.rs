//! librdkafka's log lines, routed into `tracing` with the client they came from.

use rdkafka::config::RDKafkaLogLevel;

pub fn log_librdkafka(client: &'static str, level: RDKafkaLogLevel, fac: &str, msg: &str) {
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
            tracing::warn!(client, fac, "{msg}")
        }
        // Broker connection failures land here; they are counted as metrics already, and an
        // outage must not flood the log.
        RDKafkaLogLevel::Error | RDKafkaLogLevel::Warning => tracing::info!(client, fac, "{msg}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::debug!(client, fac, "{msg}"),
        RDKafkaLogLevel::Debug => tracing::trace!(client, fac, "{msg}"),
    }
}
