//! The answers, as plain owned values.

use crate::KafkaCodeError;

/// A broker.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Node {
    pub id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
}

/// A consumer group's state, as the coordinator reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    Unknown,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
    Empty,
}

/// Classic (KIP-848 `consumer` groups are `Consumer`), or unknown to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupType {
    Unknown,
    Consumer,
    Classic,
}

/// One group of a [`crate::Admin::list_consumer_groups`] answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    /// A group without a protocol (offsets committed with no membership).
    pub is_simple: bool,
    pub state: GroupState,
    pub group_type: GroupType,
}

/// The groups every broker listed, and the brokers that could not list theirs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListedGroups {
    pub groups: Vec<GroupListing>,
    /// One entry per broker whose ListGroups failed: the list is then incomplete.
    pub errors: Vec<KafkaCodeError>,
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub consumer_id: String,
    pub client_id: String,
    pub host: String,
    pub group_instance_id: Option<String>,
    /// The partitions assigned to it (empty for a group not using the consumer protocol).
    pub assignment: Vec<(String, i32)>,
}

/// One group of a [`crate::Admin::describe_consumer_groups`] answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    /// Why this group could not be described; the other fields are then empty.
    pub error: Option<KafkaCodeError>,
    pub is_simple: bool,
    pub partition_assignor: String,
    pub state: GroupState,
    pub group_type: GroupType,
    pub coordinator: Option<Node>,
    pub members: Vec<Member>,
}

/// One partition of a [`crate::Admin::list_consumer_group_offsets`] answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    /// `None`: the group has no commit on this partition.
    pub offset: Option<i64>,
    pub metadata: Vec<u8>,
    pub leader_epoch: Option<i32>,
    pub error: Option<KafkaCodeError>,
}

/// Which offset [`crate::Admin::list_offsets`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (high watermark, or last stable offset with `read_committed`).
    Latest,
    /// The offset of the record with the largest timestamp.
    MaxTimestamp,
    /// The first offset whose record timestamp is at or after this (ms since the epoch).
    Timestamp(i64),
}

impl OffsetSpec {
    pub(crate) fn raw(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::MaxTimestamp => -3,
            OffsetSpec::Timestamp(ms) => ms.max(0),
        }
    }
}

/// One partition of a [`crate::Admin::list_offsets`] answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedOffset {
    pub topic: String,
    pub partition: i32,
    /// The offset, or why this partition was not answered.
    pub offset: Result<i64, KafkaCodeError>,
    /// The timestamp of the record at that offset, when the broker gives one (else -1).
    pub timestamp: i64,
    pub leader_epoch: Option<i32>,
}

/// A topic id (UUID); the zero id means the broker gave none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TopicId(pub u128);

impl TopicId {
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl std::fmt::Display for TopicId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = format!("{:032x}", self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

/// A partition of a described topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: i32,
    pub leader: Option<Node>,
    pub replicas: Vec<Node>,
    pub isr: Vec<Node>,
}

/// One topic of a [`crate::Admin::describe_topics`] answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    /// Why this topic could not be described (e.g. `UnknownTopicOrPartition`); the other
    /// fields are then empty.
    pub error: Option<KafkaCodeError>,
    pub topic_id: TopicId,
    pub is_internal: bool,
    pub partitions: Vec<PartitionInfo>,
}

/// A [`crate::Admin::describe_cluster`] answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    pub cluster_id: Option<String>,
    pub controller: Option<Node>,
    pub nodes: Vec<Node>,
}
