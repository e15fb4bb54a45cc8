//! The demo's judgement: per stage, what it injected (from its own view of the cluster) next
//! to what the agent counted in the stage's window, and anything counted outside every
//! stage, which can only be a false alarm.

use std::collections::BTreeMap;

use super::summary::{pairs, Counters};

/// Where in the path from producer to consumer messages were lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Producer,
    Consumer,
    Broker,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Producer, Stage::Consumer, Stage::Broker];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Producer => "producer stage",
            Stage::Consumer => "consumer stage",
            Stage::Broker => "broker stage",
        }
    }
}

/// Counts of every kind of loss the agent reports, as injected or as counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Sent probes that never reached the log (send failures, less those that arrived).
    pub not_appended: f64,
    pub lost: f64,
    pub lost_by_broker: BTreeMap<String, f64>,
    pub truncations: f64,
    pub expired_unread: f64,
    /// Messages of the demo's application group removed by retention before it read them.
    pub group_expired: f64,
    pub duplicated: f64,
}

impl Tally {
    pub fn counted(c: &Counters) -> Tally {
        Tally {
            not_appended: c.not_appended(),
            lost: c.lost,
            lost_by_broker: c.lost_by_broker.clone(),
            truncations: c.truncations,
            expired_unread: c.expired_unread,
            group_expired: c.group_expired_total(),
            duplicated: c.duplicated,
        }
    }

    pub fn add(&mut self, o: &Tally) {
        self.not_appended += o.not_appended;
        self.lost += o.lost;
        for (k, v) in &o.lost_by_broker {
            *self.lost_by_broker.entry(k.clone()).or_insert(0.0) += v;
        }
        self.truncations += o.truncations;
        self.expired_unread += o.expired_unread;
        self.group_expired += o.group_expired;
        self.duplicated += o.duplicated;
    }

    /// The kinds whose counts differ, named.
    pub fn differences(&self, counted: &Tally) -> Vec<String> {
        let mut out = vec![];
        let mut cmp = |what: &str, i: f64, c: f64| {
            if i != c {
                out.push(format!("{what}: injected {i}, counted {c}"));
            }
        };
        cmp("send failures", self.not_appended, counted.not_appended);
        cmp("lost", self.lost, counted.lost);
        cmp("truncations", self.truncations, counted.truncations);
        cmp(
            "expired_unread",
            self.expired_unread,
            counted.expired_unread,
        );
        cmp(
            "group expired_unread",
            self.group_expired,
            counted.group_expired,
        );
        cmp("dup", self.duplicated, counted.duplicated);
        if self.lost_by_broker != counted.lost_by_broker {
            out.push(format!(
                "lost by broker: injected {}, counted {}",
                pairs(&self.lost_by_broker),
                pairs(&counted.lost_by_broker)
            ));
        }
        out
    }
}

/// One stage of one cycle.
#[derive(Debug, Clone)]
pub struct StageResult {
    pub stage: Stage,
    pub cycle: u64,
    /// False when the run ended before the stage's check.
    pub completed: bool,
    pub injected: Tally,
    /// Everything the agent counted in the stage's window.
    pub delta: Counters,
}

impl StageResult {
    pub fn counted(&self) -> Tally {
        Tally::counted(&self.delta)
    }

    pub fn exact(&self) -> bool {
        !self.completed || self.injected.differences(&self.counted()).is_empty()
    }
}

/// What a stage's injected and counted tallies say, in the stage's own words.
pub fn describe(stage: Stage, injected: &Tally, counted: &Tally, delta: &Counters) -> String {
    match stage {
        Stage::Producer => format!(
            "injected {} send failures (probes sent that never reached the log), counted {} ({})",
            injected.not_appended,
            counted.not_appended,
            if delta.failed.is_empty() {
                "none".to_string()
            } else {
                pairs(&delta.failed)
            }
        ),
        Stage::Consumer => format!(
            "injected {} acked probes removed by retention before the verifier read them, counted expired_unread={}; \
             group {}: injected {} messages removed before it read them, counted {}",
            injected.expired_unread,
            counted.expired_unread,
            super::APP_GROUP,
            injected.group_expired,
            counted.group_expired
        ),
        Stage::Broker => format!(
            "injected {} acked probes destroyed by a whole-cluster power loss ({}), counted lost={} ({}); truncated partitions injected {}, counted {}",
            injected.lost,
            broker_pairs(&injected.lost_by_broker),
            counted.lost,
            broker_pairs(&counted.lost_by_broker),
            injected.truncations,
            counted.truncations
        ),
    }
}

fn broker_pairs(m: &BTreeMap<String, f64>) -> String {
    let v: Vec<String> = m.iter().map(|(k, v)| format!("broker {k}: {v}")).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The closing verdict over the whole run.
pub struct Verdict {
    pub line: String,
    pub exact: bool,
}

/// `total` is everything the agent counted in the run.
pub fn judge(results: &[StageResult], total: &Counters, chaos: bool) -> Verdict {
    let mut parts = vec![];
    let mut exact = true;
    let mut accounted = Counters::default();
    for r in results {
        accounted = accounted.plus(&r.delta);
    }
    for stage in Stage::ALL {
        let done: Vec<&StageResult> = results
            .iter()
            .filter(|r| r.stage == stage && r.completed)
            .collect();
        let open = results.iter().any(|r| r.stage == stage && !r.completed);
        if done.is_empty() {
            if chaos {
                parts.push(format!(
                    "{}: {}",
                    stage.name(),
                    if open {
                        "not completed (the run ended during it)"
                    } else {
                        "not reached"
                    }
                ));
            }
            continue;
        }
        let (mut injected, mut counted, mut delta) =
            (Tally::default(), Tally::default(), Counters::default());
        for r in &done {
            injected.add(&r.injected);
            counted.add(&r.counted());
            delta = delta.plus(&r.delta);
        }
        let diff = injected.differences(&counted);
        exact &= diff.is_empty();
        let mut s = format!(
            "{}{}: {}",
            stage.name(),
            if done.len() > 1 {
                format!(" ({} cycles)", done.len())
            } else {
                String::new()
            },
            describe(stage, &injected, &counted, &delta)
        );
        if !diff.is_empty() {
            s.push_str(&format!(" [MISMATCH: {}]", diff.join("; ")));
        }
        parts.push(s);
    }
    let outside = Tally::counted(&total.minus(&accounted));
    let diff = Tally::default().differences(&outside);
    exact &= diff.is_empty();
    parts.push(if diff.is_empty() {
        if chaos {
            "outside the stages: nothing lost, nothing counted".to_string()
        } else {
            "no chaos: nothing injected, nothing counted (lost=0 expired_unread=0 dup=0 send failures=0)".to_string()
        }
    } else {
        format!("outside the stages: FALSE ALARM: {}", diff.join("; "))
    });
    parts.push(
        if exact {
            "every count is exact"
        } else {
            "COUNTS DIFFER FROM WHAT WAS INJECTED"
        }
        .to_string(),
    );
    Verdict {
        line: format!("verdict: {}", parts.join(" | ")),
        exact,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost(n: f64, broker: &str) -> Counters {
        Counters {
            lost: n,
            lost_by_broker: [(broker.to_string(), n)].into(),
            truncations: 1.0,
            ..Counters::default()
        }
    }

    fn broker_stage(injected: f64, delta: Counters) -> StageResult {
        StageResult {
            stage: Stage::Broker,
            cycle: 0,
            completed: true,
            injected: Tally {
                lost: injected,
                lost_by_broker: [("1".to_string(), injected)].into(),
                truncations: 1.0,
                ..Tally::default()
            },
            delta,
        }
    }

    #[test]
    fn exact_when_every_stage_matches_and_nothing_is_counted_outside() {
        let r = vec![broker_stage(5.0, lost(5.0, "1"))];
        let v = judge(&r, &lost(5.0, "1"), true);
        assert!(v.exact, "{}", v.line);
        assert!(v.line.contains("counted lost=5"), "{}", v.line);
    }

    #[test]
    fn a_missed_loss_a_wrong_broker_and_a_false_alarm_all_fail() {
        let missed = vec![broker_stage(5.0, lost(4.0, "1"))];
        assert!(!judge(&missed, &lost(4.0, "1"), true).exact);
        let wrong_broker = vec![broker_stage(5.0, lost(5.0, "2"))];
        assert!(!judge(&wrong_broker, &lost(5.0, "2"), true).exact);
        // Counted in the run but in no stage's window: a false alarm.
        let r = vec![broker_stage(5.0, lost(5.0, "1"))];
        let v = judge(&r, &lost(5.0, "1").plus(&lost(1.0, "3")), true);
        assert!(!v.exact);
        assert!(v.line.contains("FALSE ALARM"), "{}", v.line);
    }

    #[test]
    fn a_stage_cut_short_by_the_end_of_the_run_is_not_judged() {
        let mut r = broker_stage(0.0, lost(3.0, "1"));
        r.completed = false;
        let v = judge(&[r], &lost(3.0, "1"), true);
        assert!(v.exact, "{}", v.line);
        assert!(v.line.contains("not completed"), "{}", v.line);
    }

    #[test]
    fn no_chaos_means_nothing_may_be_counted() {
        assert!(judge(&[], &Counters::default(), false).exact);
        let failed = Counters {
            failed: [("timeout".to_string(), 1.0)].into(),
            ..Counters::default()
        };
        assert!(!judge(&[], &failed, false).exact);
    }
}
