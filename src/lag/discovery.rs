//! Which partitions to ask a group's committed offsets for, sans-IO.
//!
//! Kafka answers OffsetFetch only for the partitions asked (the client has no "all of the
//! group's offsets" call), and asking every group for every partition of the cluster at
//! every poll costs groups × partitions. So a group is asked for every partition of every
//! topic when it is first seen and then about every `lag.discovery_interval` (spread over
//! the interval so that groups do not all search at the same poll); in between it is asked
//! for the topics it had commits on at the last poll and those its members are assigned.
//! A topic a stopped group starts committing to between two searches (it cannot: it has no
//! members) or one a live member is not assigned (it commits only what it is assigned) is
//! therefore never missed for longer than one discovery interval.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What to ask one group for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Every partition of every topic.
    All,
    /// Every partition of these topics.
    Topics(BTreeSet<String>),
}

struct Known {
    topics: BTreeSet<String>,
    next_search_ms: i64,
}

pub struct Discovery {
    interval_ms: i64,
    groups: HashMap<String, Known>,
}

/// The partitions `q` names among `topics` (topic → partition ids). A search leaves out
/// internal topics (`__consumer_offsets`, `__transaction_state`).
pub fn partitions(q: &Query, topics: &BTreeMap<String, Vec<i32>>) -> Vec<(String, i32)> {
    fn each<'a>((t, ps): (&'a String, &'a Vec<i32>)) -> impl Iterator<Item = (String, i32)> + 'a {
        ps.iter().map(move |p| (t.clone(), *p))
    }
    match q {
        Query::All => topics
            .iter()
            .filter(|(t, _)| !t.starts_with("__"))
            .flat_map(each)
            .collect(),
        Query::Topics(ts) => ts
            .iter()
            .filter_map(|t| topics.get_key_value(t))
            .flat_map(each)
            .collect(),
    }
}

/// FNV-1a: a stable spread of groups over the interval.
fn spread(group: &str, interval_ms: i64) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in group.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let interval = u64::try_from(interval_ms.max(1)).unwrap_or(1);
    i64::try_from(h % interval).unwrap_or(0)
}

impl Discovery {
    pub fn new(interval_ms: i64) -> Discovery {
        Discovery {
            interval_ms: interval_ms.max(1),
            groups: HashMap::new(),
        }
    }

    pub fn plan(&self, group: &str, assigned: &BTreeSet<String>, now_ms: i64) -> Query {
        match self.groups.get(group) {
            Some(k) if now_ms < k.next_search_ms => {
                Query::Topics(k.topics.union(assigned).cloned().collect())
            }
            _ => Query::All,
        }
    }

    /// Records the topics `group` had commits on, in answer to `asked`. A search that found
    /// none is not remembered: the group (new, or not committing yet) is searched again at
    /// the next poll rather than ignored for a discovery interval.
    pub fn learn(&mut self, group: &str, asked: &Query, committed: BTreeSet<String>, now_ms: i64) {
        match (asked, self.groups.get_mut(group)) {
            (Query::Topics(_), Some(k)) => k.topics = committed,
            (Query::All, _) if committed.is_empty() => {
                self.groups.remove(group);
            }
            _ => {
                let next_search_ms =
                    now_ms + self.interval_ms / 2 + spread(group, self.interval_ms);
                self.groups.insert(
                    group.to_owned(),
                    Known {
                        topics: committed,
                        next_search_ms,
                    },
                );
            }
        }
    }

    /// Forgets groups that are no longer polled.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.groups.retain(|g, _| keep(g));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn searches_first_then_asks_known_and_assigned_topics() {
        let mut d = Discovery::new(300_000);
        assert_eq!(d.plan("g", &set(&[]), 0), Query::All);
        d.learn("g", &Query::All, set(&["a"]), 0);
        assert_eq!(
            d.plan("g", &set(&["b"]), 1000),
            Query::Topics(set(&["a", "b"]))
        );
        d.learn("g", &Query::Topics(set(&["a", "b"])), set(&["b"]), 1000);
        assert_eq!(d.plan("g", &set(&[]), 2000), Query::Topics(set(&["b"])));
        // Searched again within 0.5 to 1.5 intervals.
        assert_eq!(d.plan("g", &set(&[]), 450_000), Query::All);
        d.retain(|g| g != "g");
        assert_eq!(d.plan("g", &set(&[]), 2000), Query::All);
    }

    #[test]
    fn a_search_that_finds_nothing_is_repeated() {
        let mut d = Discovery::new(300_000);
        d.learn("g", &Query::All, set(&[]), 0);
        assert_eq!(d.plan("g", &set(&[]), 1000), Query::All);
        d.learn("g", &Query::All, set(&["a"]), 1000);
        assert_eq!(d.plan("g", &set(&[]), 2000), Query::Topics(set(&["a"])));
    }

    #[test]
    fn partitions_of_a_query() {
        let topics = BTreeMap::from([
            ("a".to_owned(), vec![0, 1]),
            ("b".to_owned(), vec![0]),
            ("__consumer_offsets".to_owned(), vec![0]),
        ]);
        let all = partitions(&Query::All, &topics);
        assert_eq!(all, [("a".into(), 0), ("a".into(), 1), ("b".into(), 0)]);
        // A known topic that was deleted is not asked for.
        let some = partitions(&Query::Topics(set(&["b", "gone"])), &topics);
        assert_eq!(some, [("b".into(), 0)]);
    }

    #[test]
    fn searches_are_spread_over_the_interval() {
        let mut d = Discovery::new(100_000);
        for i in 0..1000 {
            d.learn(&format!("group-{i}"), &Query::All, set(&["t"]), 0);
        }
        let due_at = |t: i64| {
            (0..1000)
                .filter(|i| d.plan(&format!("group-{i}"), &set(&[]), t) == Query::All)
                .count()
        };
        assert_eq!(due_at(49_999), 0);
        let half = due_at(100_000);
        assert!((350..650).contains(&half), "{half} due after one interval");
        assert_eq!(due_at(150_000), 1000);
    }
}
