//! The canary side: the producer that injects probes and the topic (discovery, creation).

pub mod log_context;
pub mod producer;
pub mod topic;
