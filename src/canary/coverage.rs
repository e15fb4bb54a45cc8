//! Does the canary exercise every broker? (sans-IO)
//!
//! A broker is probed when it leads a canary partition: probes are written to and read from
//! the leader. [`coverage`] counts the partitions each broker leads; [`plan`] says which
//! partitions to add so that the topic keeps `partitions_per_broker` × brokers partitions and
//! every broker that is a replica of none (a new broker, or one a reassignment emptied) gets
//! one whose preferred leader it is.
//!
//! A broker that is a replica of some canary partition but leads none is a leadership
//! imbalance (after a restart, before the preferred leader is elected again), not a reason to
//! add partitions: it is reported, and Kafka's `auto.leader.rebalance.enable` or a preferred
//! leader election restores it. Partitions are never removed: Kafka cannot.

use std::collections::BTreeMap;

use super::topic::TopicView;

/// Partitions led per broker in metadata (0 for a broker that leads none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    pub led: BTreeMap<i32, usize>,
}

impl Coverage {
    pub fn without_leader(&self) -> Vec<i32> {
        self.led
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(b, _)| *b)
            .collect()
    }
}

pub fn coverage(view: &TopicView) -> Coverage {
    let mut led: BTreeMap<i32, usize> = view.brokers.iter().map(|b| (*b, 0)).collect();
    for p in view.partitions.values() {
        if p.leader >= 0 {
            *led.entry(p.leader).or_default() += 1;
        }
    }
    Coverage { led }
}

/// Partitions to add: the new total and the replica list of each new partition (the first
/// replica is its preferred leader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub total: usize,
    pub assignments: Vec<Vec<i32>>,
}

/// What to add, if anything.
pub fn plan(view: &TopicView, partitions_per_broker: usize) -> Option<Plan> {
    let mut brokers = view.brokers.clone();
    brokers.sort_unstable();
    brokers.dedup();
    if brokers.is_empty() || view.partitions.is_empty() {
        return None;
    }
    let current = view.partitions.len();
    let target = partitions_per_broker.saturating_mul(brokers.len());
    // Preferred leaders (first replica) per broker, and brokers that hold no replica at all.
    let mut preferred: BTreeMap<i32, usize> = brokers.iter().map(|b| (*b, 0)).collect();
    let mut replica_of_some: BTreeMap<i32, bool> = brokers.iter().map(|b| (*b, false)).collect();
    for p in view.partitions.values() {
        if let Some(first) = p.replicas.first() {
            if let Some(n) = preferred.get_mut(first) {
                *n += 1;
            }
        }
        for r in &p.replicas {
            if let Some(seen) = replica_of_some.get_mut(r) {
                *seen = true;
            }
        }
    }
    let uncovered: Vec<i32> = replica_of_some
        .iter()
        .filter(|(_, seen)| !**seen)
        .map(|(b, _)| *b)
        .collect();
    let add = target.saturating_sub(current).max(uncovered.len());
    if add == 0 {
        return None;
    }
    let rf = view
        .partitions
        .values()
        .map(|p| p.replicas.len())
        .max()
        .unwrap_or(1)
        .clamp(1, brokers.len());
    let mut leaders: Vec<i32> = uncovered.clone();
    for b in &uncovered {
        if let Some(n) = preferred.get_mut(b) {
            *n += 1;
        }
    }
    while leaders.len() < add {
        // The broker that is preferred leader of the fewest partitions; ties by id.
        let Some((&b, _)) = preferred.iter().min_by_key(|(b, n)| (**n, **b)) else {
            break;
        };
        leaders.push(b);
        if let Some(n) = preferred.get_mut(&b) {
            *n += 1;
        }
    }
    let assignments = leaders
        .iter()
        .map(|leader| {
            let start = brokers.iter().position(|b| b == leader).unwrap_or(0);
            (0..rf)
                .map(|i| brokers[(start + i) % brokers.len()])
                .collect()
        })
        .collect();
    Some(Plan {
        total: current + add,
        assignments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::topic::PartitionInfo;

    fn view(brokers: &[i32], parts: &[(i32, &[i32])]) -> TopicView {
        TopicView {
            brokers: brokers.to_vec(),
            partitions: parts
                .iter()
                .enumerate()
                .map(|(i, (leader, replicas))| {
                    (
                        i as i32,
                        PartitionInfo {
                            leader: *leader,
                            replicas: replicas.to_vec(),
                            isr: replicas.to_vec(),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn coverage_counts_leaders_and_zero_for_idle_brokers() {
        let v = view(&[1, 2, 3], &[(1, &[1, 2]), (1, &[2, 1]), (-1, &[3, 1])]);
        let c = coverage(&v);
        assert_eq!(c.led, [(1, 2), (2, 0), (3, 0)].into());
        assert_eq!(c.without_leader(), vec![2, 3]);
    }

    #[test]
    fn plan_table() {
        // (brokers, partitions (leader, replicas), per broker, expected plan)
        type Case<'a> = (
            &'a [i32],
            &'a [(i32, &'a [i32])],
            usize,
            Option<(usize, Vec<Vec<i32>>)>,
        );
        let cases: &[Case<'_>] = &[
            // Every broker leads one: nothing to do.
            (
                &[1, 2, 3],
                &[(1, &[1, 2, 3]), (2, &[2, 3, 1]), (3, &[3, 1, 2])],
                1,
                None,
            ),
            // A leadership imbalance (2 is a replica, leads none): not fixed by adding.
            (&[1, 2], &[(1, &[1, 2]), (1, &[2, 1])], 1, None),
            // A new broker 4 holds no replica: one partition led by it, RF kept at 3.
            (
                &[1, 2, 3, 4],
                &[
                    (1, &[1, 2, 3]),
                    (2, &[2, 3, 1]),
                    (3, &[3, 1, 2]),
                    (1, &[1, 3, 2]),
                ],
                1,
                Some((5, vec![vec![4, 1, 2]])),
            ),
            // Two per broker: grow from 2 to 4 over the least-preferred brokers.
            (
                &[1, 2],
                &[(1, &[1, 2]), (2, &[2, 1])],
                2,
                Some((4, vec![vec![1, 2], vec![2, 1]])),
            ),
            // Below the target and a broker uncovered: the uncovered one first.
            (
                &[1, 2, 3],
                &[(1, &[1])],
                1,
                Some((3, vec![vec![2], vec![3]])),
            ),
        ];
        for (i, (brokers, parts, ppb, want)) in cases.iter().enumerate() {
            let got = plan(&view(brokers, parts), *ppb).map(|p| (p.total, p.assignments));
            assert_eq!(&got, want, "case {i}");
        }
    }

    #[test]
    fn no_plan_without_brokers_or_partitions() {
        assert_eq!(plan(&view(&[], &[(1, &[1])]), 1), None);
        assert_eq!(plan(&view(&[1], &[]), 1), None);
    }
}
