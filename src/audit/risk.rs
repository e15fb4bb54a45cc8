//! The risks the audit reports: a stable label (public contract: alert rules and dashboards
//! match on it), the stage whose messages it can lose, why, and the setting that fixes it.

use serde::Serialize;

/// Where a message is lost if the risk materialises (the runbook is organised the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Producer,
    Broker,
    Consumer,
    /// Not a stage: the audit could not tell.
    Unknown,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Producer => "producer",
            Stage::Broker => "broker",
            Stage::Consumer => "consumer",
            Stage::Unknown => "unknown",
        }
    }
}

/// How much a finding matters: a `risk` can lose acknowledged data, an `info` finding is worth
/// knowing (forced flushes cost throughput but lose nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Risk,
    Info,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Risk {
    // Topic settings.
    ReplicationFactorBelow3,
    MinInsyncBelow2,
    MinInsyncNotBelowRf,
    UncleanElectionEnabled,
    FlushOverride,
    ConfigsUnavailable,
    // Partition state.
    PartitionOffline,
    UnderReplicated,
    UnderMinIsr,
    AtMinIsr,
    // Broker and cluster settings.
    DefaultReplicationFactorBelow3,
    OffsetsTopicReplicationBelow3,
    TransactionLogReplicationBelow3,
    TransactionLogMinIsrBelow2,
}

impl Risk {
    /// The `risk` label.
    pub fn as_label(self) -> &'static str {
        match self {
            Risk::ReplicationFactorBelow3 => "replication_factor_below_3",
            Risk::MinInsyncBelow2 => "min_insync_below_2",
            Risk::MinInsyncNotBelowRf => "min_insync_not_below_rf",
            Risk::UncleanElectionEnabled => "unclean_election_enabled",
            Risk::FlushOverride => "flush_override",
            Risk::ConfigsUnavailable => "configs_unavailable",
            Risk::PartitionOffline => "partition_offline",
            Risk::UnderReplicated => "under_replicated",
            Risk::UnderMinIsr => "under_min_isr",
            Risk::AtMinIsr => "at_min_isr",
            Risk::DefaultReplicationFactorBelow3 => "default_replication_factor_below_3",
            Risk::OffsetsTopicReplicationBelow3 => "offsets_topic_replication_below_3",
            Risk::TransactionLogReplicationBelow3 => "transaction_log_replication_below_3",
            Risk::TransactionLogMinIsrBelow2 => "transaction_log_min_isr_below_2",
        }
    }

    pub fn stage(self) -> Stage {
        match self {
            Risk::MinInsyncNotBelowRf | Risk::UnderMinIsr | Risk::AtMinIsr => Stage::Producer,
            Risk::OffsetsTopicReplicationBelow3 => Stage::Consumer,
            Risk::ConfigsUnavailable => Stage::Unknown,
            _ => Stage::Broker,
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            Risk::FlushOverride => Severity::Info,
            _ => Severity::Risk,
        }
    }

    /// Why it can lose data.
    pub fn why(self) -> &'static str {
        match self {
            Risk::ReplicationFactorBelow3 => "with fewer than 3 replicas, one broker failure during maintenance of another (or a single failure at replication factor 1) loses acknowledged records",
            Risk::MinInsyncBelow2 => "acks=all is acknowledged once min.insync.replicas replicas have the record; at 1 that is the leader alone, and a leader that dies before its followers copy the record takes it with it",
            Risk::MinInsyncNotBelowRf => "with min.insync.replicas equal to the replication factor, one replica down makes every acks=all write fail with NOT_ENOUGH_REPLICAS: producers that do not retry lose those messages",
            Risk::UncleanElectionEnabled => "an out-of-sync replica may become leader; the records it lacks, acknowledged to producers, are truncated from every replica",
            Risk::FlushOverride => "forced flushes (flush.messages / flush.ms) cost throughput; durability in Kafka comes from replication, not fsync, so this is informational",
            Risk::ConfigsUnavailable => "the configuration could not be read (no DescribeConfigs permission, a broker that returns none, or a timeout): the settings that decide whether data can be lost are unknown, so the resource cannot be called safe",
            Risk::PartitionOffline => "no leader: every produce to the partition fails and nothing can be read until a replica comes back (or an unclean election discards data)",
            Risk::UnderReplicated => "fewer in-sync replicas than assigned: one more failure is closer to losing the partition or its acknowledged records",
            Risk::UnderMinIsr => "fewer in-sync replicas than min.insync.replicas: every acks=all write to the partition is refused (producer-stage loss for producers that give up)",
            Risk::AtMinIsr => "in-sync replicas equal min.insync.replicas: one more replica failure stops every acks=all write",
            Risk::DefaultReplicationFactorBelow3 => "auto.create.topics.enable=true creates topics on first use with default.replication.factor, here below 3: a typo'd or new topic is born fragile",
            Risk::OffsetsTopicReplicationBelow3 => "committed consumer offsets live in __consumer_offsets; replicated fewer than 3 times, a broker failure can lose commits and consumers re-read or skip data",
            Risk::TransactionLogReplicationBelow3 => "transaction state lives in __transaction_state; replicated fewer than 3 times, a broker failure can lose in-flight transactions",
            Risk::TransactionLogMinIsrBelow2 => "transaction.state.log.min.isr below 2 lets one broker alone acknowledge transaction state that its failure then loses",
        }
    }

    /// The setting that fixes it.
    pub fn fix(self) -> &'static str {
        match self {
            Risk::ReplicationFactorBelow3 => "raise the replication factor to 3 (kafka-reassign-partitions.sh with 3 replicas per partition)",
            Risk::MinInsyncBelow2 => "set min.insync.replicas=2 on the topic (kafka-configs.sh --alter --entity-type topics --add-config min.insync.replicas=2) with replication factor 3",
            Risk::MinInsyncNotBelowRf => "set min.insync.replicas to replication factor - 1, or raise the replication factor",
            Risk::UncleanElectionEnabled => "set unclean.leader.election.enable=false (topic override, or the broker default)",
            Risk::FlushOverride => "remove the flush.messages / flush.ms override unless it is deliberate",
            Risk::ConfigsUnavailable => "grant DESCRIBE_CONFIGS on the topic and cluster to the agent's principal, or check the broker answers DescribeConfigs",
            Risk::PartitionOffline => "bring a replica's broker back; avoid an unclean election unless losing data is accepted",
            Risk::UnderReplicated => "find the broker that dropped out of the ISR (down, slow disk, network) and restore it",
            Risk::UnderMinIsr => "restore the missing replicas' brokers; producers with acks=all are failing now",
            Risk::AtMinIsr => "restore the missing replica before another broker fails",
            Risk::DefaultReplicationFactorBelow3 => "set default.replication.factor=3 on the brokers, or auto.create.topics.enable=false",
            Risk::OffsetsTopicReplicationBelow3 => "set offsets.topic.replication.factor=3 and reassign __consumer_offsets to 3 replicas",
            Risk::TransactionLogReplicationBelow3 => "set transaction.state.log.replication.factor=3 and reassign __transaction_state to 3 replicas",
            Risk::TransactionLogMinIsrBelow2 => "set transaction.state.log.min.isr=2",
        }
    }

    /// Every risk, for documentation tests.
    pub const ALL: [Risk; 14] = [
        Risk::ReplicationFactorBelow3,
        Risk::MinInsyncBelow2,
        Risk::MinInsyncNotBelowRf,
        Risk::UncleanElectionEnabled,
        Risk::FlushOverride,
        Risk::ConfigsUnavailable,
        Risk::PartitionOffline,
        Risk::UnderReplicated,
        Risk::UnderMinIsr,
        Risk::AtMinIsr,
        Risk::DefaultReplicationFactorBelow3,
        Risk::OffsetsTopicReplicationBelow3,
        Risk::TransactionLogReplicationBelow3,
        Risk::TransactionLogMinIsrBelow2,
    ];
}

impl Serialize for Risk {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_label())
    }
}

#[cfg(test)]
mod tests {
    use super::Risk;

    #[test]
    fn readme_documents_every_risk() {
        let readme = include_str!("../../README.md");
        for r in Risk::ALL {
            assert!(
                readme.contains(&format!("| `{}` |", r.as_label())),
                "README.md has no row for {}",
                r.as_label()
            );
        }
    }
}
