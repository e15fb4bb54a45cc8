//! Counters of other agents' probes read on the canary topic
//! (`losswatch_other_instance_probes_total{topic,instance}`).
//!
//! Every agent of a fleet reads every other agent's probes, so one series per other instance
//! would cost each agent N − 1 series and the fleet N × (N − 1). By default every other
//! instance is counted under `instance="other"`: one series per agent. With
//! `metrics.other_instance_series = K` the first K instances seen get their own series and
//! the rest share `"other"`. The instances themselves (for `/api/status`) are remembered up to
//! [`MAX_LISTED`], whatever K is.

use std::collections::BTreeMap;

use prometheus::{IntCounter, IntCounterVec};
use uuid::Uuid;

/// Other instances remembered by id (listed on the status page); beyond it they are counted,
/// not listed.
pub const MAX_LISTED: usize = 256;
/// The `instance` label of the shared series.
pub const SHARED: &str = "other";

pub struct Others {
    metric: IntCounterVec,
    topic: String,
    /// How many instances get a series of their own.
    named_max: usize,
    named: usize,
    /// Each remembered instance with its counter: its own, or a handle on the shared one.
    by_instance: BTreeMap<Uuid, IntCounter>,
    shared: Option<IntCounter>,
}

impl Others {
    pub fn new(metric: IntCounterVec, topic: &str, named_max: usize) -> Others {
        Others {
            metric,
            topic: topic.to_owned(),
            named_max,
            named: 0,
            by_instance: BTreeMap::new(),
            shared: None,
        }
    }

    /// Counts one probe of `instance`. The counter handle is looked up once per instance: on
    /// a topic many agents share, nearly every record read is another instance's.
    pub fn count(&mut self, instance: Uuid) {
        if let Some(c) = self.by_instance.get(&instance) {
            c.inc();
            return;
        }
        let c = if self.named < self.named_max && self.by_instance.len() < MAX_LISTED {
            self.named += 1;
            self.metric
                .with_label_values(&[self.topic.as_str(), instance.to_string().as_str()])
        } else {
            self.shared().clone()
        };
        c.inc();
        if self.by_instance.len() < MAX_LISTED {
            self.by_instance.insert(instance, c);
        }
    }

    fn shared(&mut self) -> &IntCounter {
        self.shared.get_or_insert_with(|| {
            self.metric
                .with_label_values(&[self.topic.as_str(), SHARED])
        })
    }

    /// The instances remembered, in id order.
    pub fn instances(&self) -> impl Iterator<Item = &Uuid> {
        self.by_instance.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Opts;

    fn metric() -> IntCounterVec {
        IntCounterVec::new(Opts::new("m", "m"), &["topic", "instance"]).unwrap()
    }

    fn series(m: &IntCounterVec) -> BTreeMap<String, u64> {
        use prometheus::core::Collector;
        let mut out = BTreeMap::new();
        for mf in m.collect() {
            for s in mf.get_metric() {
                let instance = s
                    .get_label()
                    .iter()
                    .find(|l| l.name() == "instance")
                    .unwrap()
                    .value()
                    .to_owned();
                out.insert(instance, s.get_counter().get_value() as u64);
            }
        }
        out
    }

    fn ids(n: u128) -> Vec<Uuid> {
        (1..=n).map(Uuid::from_u128).collect()
    }

    #[test]
    fn by_default_every_other_instance_shares_one_series() {
        let m = metric();
        let mut o = Others::new(m.clone(), "t", 0);
        for id in ids(300) {
            o.count(id);
            o.count(id);
        }
        assert_eq!(series(&m), BTreeMap::from([(SHARED.to_owned(), 600)]));
        assert_eq!(o.instances().count(), MAX_LISTED);
    }

    #[test]
    fn the_first_k_instances_get_their_own_series_and_the_rest_share_one() {
        let m = metric();
        let mut o = Others::new(m.clone(), "t", 2);
        let id = ids(5);
        for (i, &x) in id.iter().enumerate() {
            for _ in 0..=i {
                o.count(x);
            }
        }
        // A named instance read again keeps its own series.
        o.count(id[0]);
        let s = series(&m);
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(s[&id[0].to_string()], 2);
        assert_eq!(s[&id[1].to_string()], 2);
        assert_eq!(s[SHARED], 3 + 4 + 5);
        assert_eq!(o.instances().count(), 5);
    }

    #[test]
    fn nothing_is_lost_beyond_the_listed_instances() {
        let m = metric();
        let mut o = Others::new(m.clone(), "t", 1_000);
        for id in ids(MAX_LISTED as u128 + 10) {
            o.count(id);
        }
        let s = series(&m);
        assert_eq!(s.len(), MAX_LISTED + 1);
        assert_eq!(s[SHARED], 10);
        assert_eq!(s.values().sum::<u64>(), MAX_LISTED as u64 + 10);
    }
}
