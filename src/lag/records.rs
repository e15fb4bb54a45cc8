//! Reads the timestamp of the first unconsumed record of group-partitions: the poller's
//! client is assigned each partition at the lowest offset wanted there and reads forward,
//! so groups close together on one partition cost one fetch; a wanted offset far ahead of
//! the read position is sought to instead. At most [`MAX_ASSIGNED`] partitions are read at
//! once, within one deadline for the whole set. What is not read by then is estimated
//! instead (see `timelag`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::book::Tp;
use super::kafka::LagReader;

/// Partitions assigned at once.
pub const MAX_ASSIGNED: usize = 1000;
/// Read forward rather than seek when the next wanted offset is this close.
const SCAN: i64 = 500;

/// Timestamps (ms) of the first record at or after each wanted offset, and how many could
/// not be read.
pub fn read(
    client: &LagReader,
    wanted: &[(Tp, i64)],
    timeout: Duration,
) -> (HashMap<(Tp, i64), i64>, usize) {
    let deadline = Instant::now() + timeout;
    let mut by_tp: BTreeMap<Tp, VecDeque<i64>> = BTreeMap::new();
    for (tp, o) in wanted {
        by_tp.entry(tp.clone()).or_default().push_back(*o);
    }
    for offs in by_tp.values_mut() {
        offs.make_contiguous().sort_unstable();
    }
    let mut out = HashMap::new();
    let all: Vec<(Tp, VecDeque<i64>)> = by_tp.into_iter().collect();
    for chunk in all.chunks(MAX_ASSIGNED) {
        if Instant::now() >= deadline {
            break;
        }
        if let Err(error) = read_chunk(client, chunk.to_vec(), deadline, &mut out) {
            tracing::debug!(%error, "reading record timestamps failed");
        }
    }
    let _ = client.unassign();
    let failed = wanted.len().saturating_sub(out.len());
    (out, failed)
}

fn read_chunk(
    client: &LagReader,
    chunk: Vec<(Tp, VecDeque<i64>)>,
    deadline: Instant,
    out: &mut HashMap<(Tp, i64), i64>,
) -> Result<(), KafkaError> {
    let mut tpl = TopicPartitionList::with_capacity(chunk.len());
    for ((t, p), offs) in &chunk {
        if let Some(&first) = offs.front() {
            tpl.add_partition_offset(t, *p, Offset::Offset(first))?;
        }
    }
    client.assign(&tpl)?;
    // librdkafka keeps a partition paused across assignments: undo the pause of a former read.
    client.resume(&tpl)?;
    let mut open: HashMap<Tp, VecDeque<i64>> = chunk.into_iter().collect();
    let mut errors = 0usize;
    while !open.is_empty() && errors < open.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let m = match client.poll(left.min(Duration::from_millis(100))) {
            None => continue,
            // Out of range (retention moved the log start) or a fetch error: the partition
            // stops; it is estimated instead.
            Some(Err(_)) => {
                errors += 1;
                continue;
            }
            Some(Ok(m)) => m,
        };
        let tp = (m.topic().to_owned(), m.partition());
        let Some(offs) = open.get_mut(&tp) else {
            continue;
        };
        let (offset, ts) = (m.offset(), m.timestamp().to_millis());
        while offs.front().is_some_and(|&o| o <= offset) {
            if let (Some(o), Some(ts)) = (offs.pop_front(), ts) {
                out.insert((tp.clone(), o), ts);
            }
        }
        match offs.front() {
            None => {
                // Done with it: stop fetching it.
                let mut t = TopicPartitionList::new();
                t.add_partition(&tp.0, tp.1);
                let _ = client.pause(&t);
                open.remove(&tp);
            }
            Some(&next) if next - offset > SCAN => {
                let left = deadline.saturating_duration_since(Instant::now());
                if client
                    .seek(&tp.0, tp.1, Offset::Offset(next), left)
                    .is_err()
                {
                    open.remove(&tp);
                }
            }
            Some(_) => {}
        }
    }
    Ok(())
}
