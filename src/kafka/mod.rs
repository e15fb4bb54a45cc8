//! Kafka client construction, shared by every client of the agent: the canary producer, the
//! verifier, the lag poller and the lag election.

pub mod log_context;
