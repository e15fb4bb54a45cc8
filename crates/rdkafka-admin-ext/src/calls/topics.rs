//! DescribeTopics and DescribeCluster.

use std::ffi::c_char;

use rdkafka::client::ClientContext;
use rdkafka_sys as rd;

use crate::native::{self, array, opt_error, string};
use crate::types::{ClusterDescription, PartitionInfo, TopicDescription, TopicId};
use crate::{Admin, Error, Options, Reply};

impl<C: ClientContext + 'static> Admin<C> {
    /// Describes `topics` (id, partitions, leaders, replicas, ISR) in one Metadata request.
    /// An unknown topic has its [`TopicDescription::error`] set. Duplicate names fail the
    /// call (librdkafka's rule).
    pub fn describe_topics(&self, topics: &[&str], opts: &Options) -> Reply<Vec<TopicDescription>> {
        if topics.is_empty() {
            return Reply::ready(Ok(Vec::new()));
        }
        let names = match topics
            .iter()
            .map(|t| native::c_string(t))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(n) => n,
            Err(e) => return Reply::failed(e),
        };
        let mut ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        self.shared.request(
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
            opts,
            rd::RD_KAFKA_EVENT_DESCRIBETOPICS_RESULT,
            read_topics,
            |rk, o, q| {
                // SAFETY: `ptrs` points into `names`, both alive until after this block. The
                // collection copies the names (rd_strdup); the call copies them again into
                // the request; we destroy the collection right after.
                unsafe {
                    let coll =
                        rd::rd_kafka_TopicCollection_of_topic_names(ptrs.as_mut_ptr(), ptrs.len());
                    rd::rd_kafka_DescribeTopics(rk, coll, o, q);
                    rd::rd_kafka_TopicCollection_destroy(coll);
                }
            },
        )
    }

    /// The cluster id, the controller and every broker (with its rack).
    pub fn describe_cluster(&self, opts: &Options) -> Reply<ClusterDescription> {
        self.shared.request(
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECLUSTER,
            opts,
            rd::RD_KAFKA_EVENT_DESCRIBECLUSTER_RESULT,
            read_cluster,
            // SAFETY: the dispatcher passes the live client, options and queue.
            |rk, o, q| unsafe { rd::rd_kafka_DescribeCluster(rk, o, q) },
        )
    }
}

/// # Safety
/// `ev` is a live DescribeTopics result event.
unsafe fn read_topics(ev: *mut rd::rd_kafka_event_t) -> Result<Vec<TopicDescription>, Error> {
    // SAFETY: the result and everything reached from it live as long as `ev`.
    unsafe {
        let res = rd::rd_kafka_event_DescribeTopics_result(ev);
        if res.is_null() {
            return Err(Error::UnexpectedEvent("not a DescribeTopics result".into()));
        }
        let mut n = 0;
        let arr = rd::rd_kafka_DescribeTopics_result_topics(res, &mut n);
        Ok(array(arr.cast_const(), n)
            .iter()
            .map(|&t| {
                let id = rd::rd_kafka_TopicDescription_topic_id(t);
                let topic_id = if id.is_null() {
                    TopicId(0)
                } else {
                    let hi = rd::rd_kafka_Uuid_most_significant_bits(id) as u64;
                    let lo = rd::rd_kafka_Uuid_least_significant_bits(id) as u64;
                    TopicId((u128::from(hi) << 64) | u128::from(lo))
                };
                let mut n = 0;
                let parts = rd::rd_kafka_TopicDescription_partitions(t, &mut n);
                let partitions = array(parts.cast_const(), n)
                    .iter()
                    .map(|&p| {
                        let (mut ni, mut nr) = (0, 0);
                        let isr = rd::rd_kafka_TopicPartitionInfo_isr(p, &mut ni);
                        let replicas = rd::rd_kafka_TopicPartitionInfo_replicas(p, &mut nr);
                        PartitionInfo {
                            partition: rd::rd_kafka_TopicPartitionInfo_partition(p),
                            leader: native::node(rd::rd_kafka_TopicPartitionInfo_leader(p)),
                            replicas: native::nodes(replicas.cast_const(), nr),
                            isr: native::nodes(isr.cast_const(), ni),
                        }
                    })
                    .collect();
                TopicDescription {
                    name: string(rd::rd_kafka_TopicDescription_name(t)),
                    error: opt_error(rd::rd_kafka_TopicDescription_error(t)),
                    topic_id,
                    is_internal: rd::rd_kafka_TopicDescription_is_internal(t) != 0,
                    partitions,
                }
            })
            .collect())
    }
}

/// # Safety
/// `ev` is a live DescribeCluster result event.
unsafe fn read_cluster(ev: *mut rd::rd_kafka_event_t) -> Result<ClusterDescription, Error> {
    // SAFETY: the result and everything reached from it live as long as `ev`.
    unsafe {
        let res = rd::rd_kafka_event_DescribeCluster_result(ev);
        if res.is_null() {
            return Err(Error::UnexpectedEvent(
                "not a DescribeCluster result".into(),
            ));
        }
        let mut n = 0;
        let nodes = rd::rd_kafka_DescribeCluster_result_nodes(res, &mut n);
        Ok(ClusterDescription {
            cluster_id: native::opt_string(rd::rd_kafka_DescribeCluster_result_cluster_id(res)),
            controller: native::node(rd::rd_kafka_DescribeCluster_result_controller(res)),
            nodes: native::nodes(nodes.cast_const(), n),
        })
    }
}
