//! ListOffsets.

use rdkafka::client::ClientContext;
use rdkafka::TopicPartitionList;
use rdkafka_sys as rd;

use crate::native::{self, array};
use crate::types::{ListedOffset, OffsetSpec};
use crate::{Admin, Error, Options, Reply};

impl<C: ClientContext + 'static> Admin<C> {
    /// The offsets `partitions` ask for, in one call: librdkafka sends one ListOffsets per
    /// partition leader. A partition that could not be answered (unknown, leader not
    /// available) has its error in [`ListedOffset::offset`]. A partition may appear once
    /// per call (librdkafka's rule: ask earliest and latest in two calls).
    pub fn list_offsets(
        &self,
        partitions: &[(&str, i32, OffsetSpec)],
        opts: &Options,
    ) -> Reply<Vec<ListedOffset>> {
        if partitions.is_empty() {
            return Reply::ready(Ok(Vec::new()));
        }
        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        for (t, p, _) in partitions {
            if t.contains('\0') {
                return Reply::failed(Error::InvalidArgument(format!("{t:?} holds a NUL byte")));
            }
            tpl.add_partition(t, *p);
        }
        // The spec travels in the offset field, as librdkafka's ListOffsets expects; the
        // negative specs are no `Offset` rust-rdkafka can set, so they are written in place.
        // SAFETY: `tpl` is a live list we own with exactly `partitions.len()` elements, in
        // the order added; nothing else references it.
        unsafe {
            let l = &mut *tpl.ptr();
            let elems = std::slice::from_raw_parts_mut(l.elems, partitions.len());
            for (e, (_, _, spec)) in elems.iter_mut().zip(partitions) {
                e.offset = spec.raw();
            }
        }
        self.shared.request(
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTOFFSETS,
            opts,
            rd::RD_KAFKA_EVENT_LISTOFFSETS_RESULT,
            read,
            // SAFETY: `tpl` is alive until after this call, which copies it into the request
            // (rd_kafka_topic_partition_list_copy); rust-rdkafka frees it when dropped.
            |rk, o, q| unsafe { rd::rd_kafka_ListOffsets(rk, tpl.ptr(), o, q) },
        )
    }
}

/// # Safety
/// `ev` is a live ListOffsets result event.
unsafe fn read(ev: *mut rd::rd_kafka_event_t) -> Result<Vec<ListedOffset>, Error> {
    // SAFETY: the result and everything reached from it live as long as `ev`.
    unsafe {
        let res = rd::rd_kafka_event_ListOffsets_result(ev);
        if res.is_null() {
            return Err(Error::UnexpectedEvent("not a ListOffsets result".into()));
        }
        let mut n = 0;
        let infos = rd::rd_kafka_ListOffsets_result_infos(res, &mut n);
        Ok(array(infos.cast_const(), n)
            .iter()
            .filter_map(|&info| {
                let tp = rd::rd_kafka_ListOffsetsResultInfo_topic_partition(info);
                let e = tp.as_ref()?;
                let (topic, partition, leader_epoch) = native::element(e);
                Some(ListedOffset {
                    topic,
                    partition,
                    offset: match native::resp_error(e.err) {
                        None => Ok(e.offset),
                        Some(err) => Err(err),
                    },
                    timestamp: rd::rd_kafka_ListOffsetsResultInfo_timestamp(info),
                    leader_epoch,
                })
            })
            .collect())
    }
}
