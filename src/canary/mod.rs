//! The canary side: the producer that injects probes and the topic (discovery, creation).

pub mod producer;
pub mod topic;
