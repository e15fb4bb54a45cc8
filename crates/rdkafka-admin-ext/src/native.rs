//! Copying librdkafka's result objects into owned values. Every function here reads
//! pointers that live as long as the result event they come from, and returns values that
//! borrow nothing from it.

use std::ffi::{c_char, CStr, CString};

use rdkafka_sys as rd;

use crate::types::{GroupState, GroupType, Node};
use crate::{Error, KafkaCodeError};

/// A C string copied out; NULL gives "".
///
/// # Safety
/// `p` is NULL or a live NUL-terminated string.
pub(crate) unsafe fn string(p: *const c_char) -> String {
    // SAFETY: the caller's contract.
    unsafe { opt_string(p) }.unwrap_or_default()
}

/// # Safety
/// `p` is NULL or a live NUL-terminated string.
pub(crate) unsafe fn opt_string(p: *const c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: not NULL, and NUL-terminated by the caller's contract; copied at once.
    Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// A Rust string as a C string, refusing interior NUL bytes.
pub(crate) fn c_string(s: &str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| Error::InvalidArgument(format!("{s:?} holds a NUL byte")))
}

/// The code and message of a librdkafka error object (not freed: the caller owns it).
///
/// # Safety
/// `e` is a live `rd_kafka_error_t`.
pub(crate) unsafe fn code_error(e: *const rd::rd_kafka_error_t) -> KafkaCodeError {
    // SAFETY: the caller's contract; the message is copied.
    unsafe {
        KafkaCodeError {
            code: rd::rd_kafka_error_code(e).into(),
            message: string(rd::rd_kafka_error_string(e)),
        }
    }
}

/// `None` for NULL (no error).
///
/// # Safety
/// `e` is NULL or a live `rd_kafka_error_t`.
pub(crate) unsafe fn opt_error(e: *const rd::rd_kafka_error_t) -> Option<KafkaCodeError> {
    // SAFETY: the caller's contract.
    (!e.is_null()).then(|| unsafe { code_error(e) })
}

/// An error code as an error, with librdkafka's text for it; `None` for no error.
pub(crate) fn resp_error(err: rd::rd_kafka_resp_err_t) -> Option<KafkaCodeError> {
    if err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return None;
    }
    // SAFETY: `rd_kafka_err2str` returns a static string for any code.
    let message = unsafe { string(rd::rd_kafka_err2str(err)) };
    Some(KafkaCodeError {
        code: err.into(),
        message,
    })
}

/// # Safety
/// `n` is NULL or a live `rd_kafka_Node_t`.
pub(crate) unsafe fn node(n: *const rd::rd_kafka_Node_t) -> Option<Node> {
    if n.is_null() {
        return None;
    }
    // SAFETY: not NULL, live by the caller's contract; strings copied.
    unsafe {
        Some(Node {
            id: rd::rd_kafka_Node_id(n),
            host: string(rd::rd_kafka_Node_host(n)),
            port: rd::rd_kafka_Node_port(n),
            rack: opt_string(rd::rd_kafka_Node_rack(n)),
        })
    }
}

/// The `cnt` elements of a C array of pointers; NULL gives none.
///
/// # Safety
/// `arr` is NULL or points to `cnt` live pointers.
pub(crate) unsafe fn array<'a, T>(arr: *const *const T, cnt: usize) -> &'a [*const T] {
    if arr.is_null() || cnt == 0 {
        return &[];
    }
    // SAFETY: the caller's contract; the slice lives no longer than the result event, as
    // every caller uses it before returning.
    unsafe { std::slice::from_raw_parts(arr, cnt) }
}

/// # Safety
/// `arr` is NULL or points to `cnt` live node pointers.
pub(crate) unsafe fn nodes(arr: *const *const rd::rd_kafka_Node_t, cnt: usize) -> Vec<Node> {
    // SAFETY: the caller's contract.
    unsafe { array(arr, cnt).iter().filter_map(|&n| node(n)).collect() }
}

/// The elements of a topic-partition list.
///
/// # Safety
/// `tpl` is NULL or a live list.
pub(crate) unsafe fn partitions<'a>(
    tpl: *const rd::rd_kafka_topic_partition_list_t,
) -> &'a [rd::rd_kafka_topic_partition_t] {
    if tpl.is_null() {
        return &[];
    }
    // SAFETY: a live list holds `cnt` elements at `elems`.
    unsafe {
        let l = &*tpl;
        let cnt = usize::try_from(l.cnt).unwrap_or(0);
        if l.elems.is_null() || cnt == 0 {
            return &[];
        }
        std::slice::from_raw_parts(l.elems, cnt)
    }
}

/// Topic name, partition and leader epoch of a list element.
///
/// # Safety
/// `e` is an element of a live list.
pub(crate) unsafe fn element(e: &rd::rd_kafka_topic_partition_t) -> (String, i32, Option<i32>) {
    // SAFETY: the caller's contract.
    let epoch = unsafe { rd::rd_kafka_topic_partition_get_leader_epoch(e) };
    // SAFETY: `topic` is a live NUL-terminated string of the element.
    let topic = unsafe { string(e.topic) };
    (topic, e.partition, (epoch >= 0).then_some(epoch))
}

pub(crate) fn group_state(s: rd::rd_kafka_consumer_group_state_t) -> GroupState {
    use rd::rd_kafka_consumer_group_state_t as S;
    match s {
        S::RD_KAFKA_CONSUMER_GROUP_STATE_PREPARING_REBALANCE => GroupState::PreparingRebalance,
        S::RD_KAFKA_CONSUMER_GROUP_STATE_COMPLETING_REBALANCE => GroupState::CompletingRebalance,
        S::RD_KAFKA_CONSUMER_GROUP_STATE_STABLE => GroupState::Stable,
        S::RD_KAFKA_CONSUMER_GROUP_STATE_DEAD => GroupState::Dead,
        S::RD_KAFKA_CONSUMER_GROUP_STATE_EMPTY => GroupState::Empty,
        _ => GroupState::Unknown,
    }
}

pub(crate) fn group_type(t: rd::rd_kafka_consumer_group_type_t) -> GroupType {
    use rd::rd_kafka_consumer_group_type_t as T;
    match t {
        T::RD_KAFKA_CONSUMER_GROUP_TYPE_CONSUMER => GroupType::Consumer,
        T::RD_KAFKA_CONSUMER_GROUP_TYPE_CLASSIC => GroupType::Classic,
        _ => GroupType::Unknown,
    }
}
