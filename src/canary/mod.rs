//! The canary side: the producer that injects probes, the topic (discovery, creation,
//! growth) and whether it covers every broker.

pub mod coverage;
pub mod fleet;
pub mod producer;
pub mod topic;
