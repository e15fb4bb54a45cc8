//! ListConsumerGroups, DescribeConsumerGroups, ListConsumerGroupOffsets.

use std::ffi::c_char;

use rdkafka::client::ClientContext;
use rdkafka::TopicPartitionList;
use rdkafka_sys as rd;

use crate::native::{self, array, opt_error, string};
use crate::types::{CommittedOffset, GroupDescription, GroupListing, ListedGroups, Member};
use crate::{Admin, Error, Options, Reply};

use rd::rd_kafka_admin_op_t as Op;

impl<C: ClientContext + 'static> Admin<C> {
    /// Every consumer group of the cluster (one ListGroups per broker). Brokers that failed
    /// to answer are in [`ListedGroups::errors`]; the call fails as a whole only when
    /// librdkafka could not ask at all.
    pub fn list_consumer_groups(&self, opts: &Options) -> Reply<ListedGroups> {
        self.shared.request(
            Op::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS,
            opts,
            rd::RD_KAFKA_EVENT_LISTCONSUMERGROUPS_RESULT,
            read_list,
            // SAFETY: the dispatcher passes the live client, options and queue.
            |rk, o, q| unsafe { rd::rd_kafka_ListConsumerGroups(rk, o, q) },
        )
    }

    /// Describes `groups` (members and their assignments, state, coordinator): one
    /// DescribeGroups per coordinator. A group that cannot be described has its
    /// [`GroupDescription::error`] set; an unknown group is reported `Dead` with no members.
    /// Duplicate names fail the call (librdkafka's rule).
    pub fn describe_consumer_groups(
        &self,
        groups: &[&str],
        opts: &Options,
    ) -> Reply<Vec<GroupDescription>> {
        if groups.is_empty() {
            return Reply::ready(Ok(Vec::new()));
        }
        let names = match groups
            .iter()
            .map(|g| native::c_string(g))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(n) => n,
            Err(e) => return Reply::failed(e),
        };
        let mut ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        self.shared.request(
            Op::RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS,
            opts,
            rd::RD_KAFKA_EVENT_DESCRIBECONSUMERGROUPS_RESULT,
            read_describe,
            |rk, o, q| {
                // SAFETY: `ptrs` holds `ptrs.len()` pointers into `names`, both alive until
                // after this call; librdkafka copies the names (rd_strdup) before returning.
                unsafe {
                    rd::rd_kafka_DescribeConsumerGroups(rk, ptrs.as_mut_ptr(), ptrs.len(), o, q)
                }
            },
        )
    }

    /// The committed offsets of `group`: on `partitions`, or on every partition the group
    /// has a commit on when `None` (an OffsetFetch for all topics). One call asks one group
    /// (librdkafka's limit); calls in flight run concurrently over the same connections.
    /// A group-level error (e.g. `GroupAuthorizationFailed`, coordinator not available
    /// within the timeout) fails the call.
    pub fn list_consumer_group_offsets(
        &self,
        group: &str,
        partitions: Option<&TopicPartitionList>,
        opts: &Options,
    ) -> Reply<Vec<CommittedOffset>> {
        if partitions.is_some_and(|p| p.count() == 0) {
            return Reply::ready(Ok(Vec::new()));
        }
        let name = match native::c_string(group) {
            Ok(n) => n,
            Err(e) => return Reply::failed(e),
        };
        let tpl = partitions.map_or(std::ptr::null(), |p| p.ptr().cast_const());
        self.shared.request(
            Op::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS,
            opts,
            rd::RD_KAFKA_EVENT_LISTCONSUMERGROUPOFFSETS_RESULT,
            read_offsets,
            |rk, o, q| {
                // SAFETY: `name` and `tpl` (NULL or the caller's live list) outlive this
                // block; `_new` copies both into a request object we own, the call copies
                // that object into the request, and we destroy ours right after.
                unsafe {
                    let mut req = rd::rd_kafka_ListConsumerGroupOffsets_new(name.as_ptr(), tpl);
                    rd::rd_kafka_ListConsumerGroupOffsets(rk, &mut req, 1, o, q);
                    rd::rd_kafka_ListConsumerGroupOffsets_destroy(req);
                }
            },
        )
    }
}

/// # Safety
/// `ev` is a live ListConsumerGroups result event.
unsafe fn read_list(ev: *mut rd::rd_kafka_event_t) -> Result<ListedGroups, Error> {
    // SAFETY: the result and everything reached from it live as long as `ev`.
    unsafe {
        let res = rd::rd_kafka_event_ListConsumerGroups_result(ev);
        if res.is_null() {
            return Err(Error::UnexpectedEvent(
                "not a ListConsumerGroups result".into(),
            ));
        }
        let mut n = 0;
        let valid = rd::rd_kafka_ListConsumerGroups_result_valid(res, &mut n);
        let groups = array(valid.cast_const(), n)
            .iter()
            .map(|&g| GroupListing {
                group_id: string(rd::rd_kafka_ConsumerGroupListing_group_id(g)),
                is_simple: rd::rd_kafka_ConsumerGroupListing_is_simple_consumer_group(g) != 0,
                state: native::group_state(rd::rd_kafka_ConsumerGroupListing_state(g)),
                group_type: native::group_type(rd::rd_kafka_ConsumerGroupListing_type(g)),
            })
            .collect();
        let mut n = 0;
        let errs = rd::rd_kafka_ListConsumerGroups_result_errors(res, &mut n);
        let errors = array(errs.cast_const(), n)
            .iter()
            .map(|&e| native::code_error(e))
            .collect();
        Ok(ListedGroups { groups, errors })
    }
}

/// # Safety
/// `ev` is a live DescribeConsumerGroups result event.
unsafe fn read_describe(ev: *mut rd::rd_kafka_event_t) -> Result<Vec<GroupDescription>, Error> {
    // SAFETY: the result and everything reached from it live as long as `ev`.
    unsafe {
        let res = rd::rd_kafka_event_DescribeConsumerGroups_result(ev);
        if res.is_null() {
            return Err(Error::UnexpectedEvent(
                "not a DescribeConsumerGroups result".into(),
            ));
        }
        let mut n = 0;
        let arr = rd::rd_kafka_DescribeConsumerGroups_result_groups(res, &mut n);
        Ok(array(arr.cast_const(), n)
            .iter()
            .map(|&g| describe_one(g))
            .collect())
    }
}

/// # Safety
/// `g` is a live group description.
unsafe fn describe_one(g: *const rd::rd_kafka_ConsumerGroupDescription_t) -> GroupDescription {
    // SAFETY: the caller's contract; members and assignments live as long as `g`.
    unsafe {
        let count = rd::rd_kafka_ConsumerGroupDescription_member_count(g);
        let members = (0..count)
            .map(|i| rd::rd_kafka_ConsumerGroupDescription_member(g, i))
            .filter(|m| !m.is_null())
            .map(|m| {
                let a = rd::rd_kafka_MemberDescription_assignment(m);
                let tpl = if a.is_null() {
                    std::ptr::null()
                } else {
                    rd::rd_kafka_MemberAssignment_partitions(a)
                };
                Member {
                    consumer_id: string(rd::rd_kafka_MemberDescription_consumer_id(m)),
                    client_id: string(rd::rd_kafka_MemberDescription_client_id(m)),
                    host: string(rd::rd_kafka_MemberDescription_host(m)),
                    group_instance_id: native::opt_string(
                        rd::rd_kafka_MemberDescription_group_instance_id(m),
                    ),
                    assignment: native::partitions(tpl)
                        .iter()
                        .map(|e| {
                            let (t, p, _) = native::element(e);
                            (t, p)
                        })
                        .collect(),
                }
            })
            .collect();
        GroupDescription {
            group_id: string(rd::rd_kafka_ConsumerGroupDescription_group_id(g)),
            error: opt_error(rd::rd_kafka_ConsumerGroupDescription_error(g)),
            is_simple: rd::rd_kafka_ConsumerGroupDescription_is_simple_consumer_group(g) != 0,
            partition_assignor: string(rd::rd_kafka_ConsumerGroupDescription_partition_assignor(g)),
            state: native::group_state(rd::rd_kafka_ConsumerGroupDescription_state(g)),
            group_type: native::group_type(rd::rd_kafka_ConsumerGroupDescription_type(g)),
            coordinator: native::node(rd::rd_kafka_ConsumerGroupDescription_coordinator(g)),
            members,
        }
    }
}

/// # Safety
/// `ev` is a live ListConsumerGroupOffsets result event.
unsafe fn read_offsets(ev: *mut rd::rd_kafka_event_t) -> Result<Vec<CommittedOffset>, Error> {
    // SAFETY: the result and everything reached from it live as long as `ev`.
    unsafe {
        let res = rd::rd_kafka_event_ListConsumerGroupOffsets_result(ev);
        if res.is_null() {
            return Err(Error::UnexpectedEvent(
                "not a ListConsumerGroupOffsets result".into(),
            ));
        }
        let mut n = 0;
        let arr = rd::rd_kafka_ListConsumerGroupOffsets_result_groups(res, &mut n);
        let Some(&group) = array(arr.cast_const(), n).first() else {
            return Err(Error::UnexpectedEvent("no group in the answer".into()));
        };
        if let Some(e) = opt_error(rd::rd_kafka_group_result_error(group)) {
            return Err(Error::Kafka(e));
        }
        let parts = native::partitions(rd::rd_kafka_group_result_partitions(group));
        Ok(parts
            .iter()
            .map(|e| {
                let (topic, partition, leader_epoch) = native::element(e);
                let metadata = if e.metadata.is_null() || e.metadata_size == 0 {
                    Vec::new()
                } else {
                    std::slice::from_raw_parts(e.metadata.cast::<u8>(), e.metadata_size).to_vec()
                };
                CommittedOffset {
                    topic,
                    partition,
                    offset: (e.offset >= 0).then_some(e.offset),
                    metadata,
                    leader_epoch,
                    error: native::resp_error(e.err),
                }
            })
            .collect())
    }
}
