//! Truncation of application topics, sans-IO: the log end of a partition going backwards is
//! acknowledged data removed (an unclean leader election, a leader that lost its page cache,
//! `acks=1` with a dead leader). A topic whose id changed was deleted and created again: its
//! messages are gone too, but deliberately, and that is reported as its own kind, never as a
//! truncation.
//!
//! Per partition the tracker keeps the highest log end seen and the topic id it was seen
//! with. A log end below it is a suspicion, confirmed only by the next read also below it
//! with the topic id unchanged: one racy answer (a lagging replica answering ListOffsets
//! during a leader change) never counts. While the topic id is unknown (a broker that does
//! not give ids), nothing is counted: a recreation cannot be told from a truncation.

use std::collections::{BTreeMap, HashMap};

use super::book::Tp;

/// One read of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    pub start: i64,
    pub end: i64,
    /// The topic id; `None` when unknown.
    pub topic_id: Option<u128>,
    /// The partition's leader broker; `None` when unknown.
    pub leader: Option<i32>,
}

/// What a poll's reads revealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Confirmed: the log end went from `old_end` down to `new_end` under the same topic id.
    Truncated {
        tp: Tp,
        old_end: i64,
        new_end: i64,
        leader_before: Option<i32>,
        leader_after: Option<i32>,
    },
    /// The topic's id changed: it was deleted and created again. `messages` is what the
    /// old topic held (log end − log start, summed over its partitions last seen).
    Recreated {
        topic: String,
        old_id: u128,
        new_id: u128,
        messages: u64,
    },
}

#[derive(Debug, Clone)]
struct State {
    high: i64,
    start: i64,
    id: Option<u128>,
    leader: Option<i32>,
    /// A lower log end seen once, waiting for confirmation.
    suspect: bool,
    seen_ms: i64,
}

/// The highest log end of every partition read, across polls.
#[derive(Debug, Default)]
pub struct Tracker {
    parts: HashMap<Tp, State>,
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Folds in one poll's reads (taken at `now_ms`); partitions not read keep their state
    /// until `forget_before_ms`, so that a topic deleted and created again between polls is
    /// still recognised.
    pub fn apply(
        &mut self,
        reads: &BTreeMap<Tp, Read>,
        now_ms: i64,
        forget_before_ms: i64,
    ) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut recreated: BTreeMap<String, (u128, u128, u64)> = BTreeMap::new();
        for (tp, r) in reads {
            let Some(st) = self.parts.get_mut(tp) else {
                self.parts.insert(tp.clone(), fresh(r, now_ms));
                continue;
            };
            st.seen_ms = now_ms;
            match (st.id, r.topic_id) {
                (Some(old), Some(new)) if old != new => {
                    let held = u64::try_from(st.high - st.start).unwrap_or(0);
                    let e = recreated.entry(tp.0.clone()).or_insert((old, new, 0));
                    e.2 += held;
                    *st = fresh(r, now_ms);
                    continue;
                }
                (None, Some(_)) => st.id = r.topic_id,
                _ => {}
            }
            if r.end >= st.high {
                st.high = r.end;
                st.start = r.start;
                st.leader = r.leader.or(st.leader);
                st.suspect = false;
                continue;
            }
            if st.id.is_none() || r.topic_id.is_none() {
                // Not comparable: never a truncation without the same id on both sides.
                continue;
            }
            if !st.suspect {
                st.suspect = true;
                continue;
            }
            out.push(Finding::Truncated {
                tp: tp.clone(),
                old_end: st.high,
                new_end: r.end,
                leader_before: st.leader,
                leader_after: r.leader,
            });
            st.high = r.end;
            st.start = r.start;
            st.leader = r.leader.or(st.leader);
            st.suspect = false;
        }
        for (topic, (old_id, new_id, messages)) in recreated {
            // Partitions of the old topic not read this time are gone with it.
            for (tp, st) in self.parts.iter_mut() {
                if tp.0 == topic && st.id == Some(old_id) && !reads.contains_key(tp) {
                    st.id = None;
                }
            }
            out.push(Finding::Recreated {
                topic,
                old_id,
                new_id,
                messages,
            });
        }
        self.parts.retain(|_, st| st.seen_ms >= forget_before_ms);
        out
    }

    /// Partitions tracked.
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

fn fresh(r: &Read, now_ms: i64) -> State {
    State {
        high: r.end,
        start: r.start,
        id: r.topic_id,
        leader: r.leader,
        suspect: false,
        seen_ms: now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(start: i64, end: i64, id: Option<u128>, leader: i32) -> Read {
        Read {
            start,
            end,
            topic_id: id,
            leader: Some(leader),
        }
    }

    fn tp(t: &str, p: i32) -> Tp {
        (t.to_owned(), p)
    }

    /// Each case: reads of partition ("t", 0) poll after poll, and what each poll finds.
    #[test]
    fn table() {
        type Case = (&'static str, Vec<Read>, Vec<Vec<Finding>>);
        let trunc = |old_end, new_end, before, after| Finding::Truncated {
            tp: tp("t", 0),
            old_end,
            new_end,
            leader_before: Some(before),
            leader_after: Some(after),
        };
        let cases: Vec<Case> = vec![
            (
                "a growing log is never a truncation",
                vec![
                    read(0, 5, Some(1), 1),
                    read(0, 9, Some(1), 1),
                    read(2, 9, Some(1), 1),
                ],
                vec![vec![], vec![], vec![]],
            ),
            (
                "one lower answer, then back up: not confirmed, nothing counted",
                vec![
                    read(0, 10, Some(1), 1),
                    read(0, 7, Some(1), 2),
                    read(0, 10, Some(1), 1),
                ],
                vec![vec![], vec![], vec![]],
            ),
            (
                "a lower log end read twice with the same id: one truncation",
                vec![
                    read(0, 10, Some(1), 1),
                    read(0, 7, Some(1), 2),
                    read(0, 7, Some(1), 2),
                    read(0, 7, Some(1), 2),
                ],
                vec![vec![], vec![], vec![trunc(10, 7, 1, 2)], vec![]],
            ),
            (
                "the second lower read is what counts (the log end moved on)",
                vec![
                    read(0, 10, Some(1), 1),
                    read(0, 4, Some(1), 2),
                    read(0, 6, Some(1), 2),
                ],
                vec![vec![], vec![], vec![trunc(10, 6, 1, 2)]],
            ),
            (
                "a lower log end under a new id: recreated, never truncated",
                vec![
                    read(0, 10, Some(1), 1),
                    read(0, 0, Some(2), 1),
                    read(0, 0, Some(2), 1),
                ],
                vec![
                    vec![],
                    vec![Finding::Recreated {
                        topic: "t".into(),
                        old_id: 1,
                        new_id: 2,
                        messages: 10,
                    }],
                    vec![],
                ],
            ),
            (
                "ids unknown: nothing is counted",
                vec![
                    read(0, 10, None, 1),
                    read(0, 3, None, 1),
                    read(0, 3, None, 1),
                ],
                vec![vec![], vec![], vec![]],
            ),
            (
                "an id learned later makes the partition comparable",
                vec![
                    read(0, 10, None, 1),
                    read(0, 10, Some(1), 1),
                    read(0, 2, Some(1), 1),
                    read(0, 2, Some(1), 1),
                ],
                vec![vec![], vec![], vec![], vec![trunc(10, 2, 1, 1)]],
            ),
        ];
        for (case, reads, want) in cases {
            let mut t = Tracker::new();
            for (i, (r, w)) in reads.iter().zip(&want).enumerate() {
                let got = t.apply(&BTreeMap::from([(tp("t", 0), *r)]), i as i64, 0);
                assert_eq!(&got, w, "{case}: poll {i}");
            }
        }
    }

    #[test]
    fn recreated_topics_are_reported_once_with_what_all_partitions_held() {
        let mut t = Tracker::new();
        let poll = |id, ends: [i64; 2]| {
            BTreeMap::from([
                (tp("t", 0), read(1, ends[0], Some(id), 1)),
                (tp("t", 1), read(0, ends[1], Some(id), 1)),
            ])
        };
        assert!(t.apply(&poll(7, [5, 3]), 0, 0).is_empty());
        let found = t.apply(&poll(8, [0, 0]), 1, 0);
        assert_eq!(
            found,
            [Finding::Recreated {
                topic: "t".into(),
                old_id: 7,
                new_id: 8,
                messages: 4 + 3,
            }]
        );
        assert!(t.apply(&poll(8, [0, 0]), 2, 0).is_empty());
    }

    #[test]
    fn partitions_not_read_are_forgotten_after_the_horizon() {
        let mut t = Tracker::new();
        t.apply(
            &BTreeMap::from([(tp("t", 0), read(0, 5, Some(1), 1))]),
            60,
            0,
        );
        t.apply(&BTreeMap::new(), 100, 50);
        assert_eq!(t.len(), 1, "kept while seen after the horizon");
        t.apply(&BTreeMap::new(), 200, 150);
        assert!(t.is_empty());
    }
}
