//! The value of a topic setting that a broker actually applies, and where it was set.
//!
//! Kafka resolves a topic setting as: the topic's own override, else the broker's dynamic
//! per-broker value, else the cluster-wide dynamic default, else the static
//! `server.properties` value, else the built-in default. DescribeConfigs on a topic already
//! answers with the resolved value *of the broker that answered*; brokers may disagree, and
//! the leader's broker is the one that applies it to a write. So the audit takes the topic
//! override when there is one and otherwise the highest-precedence broker-level value over
//! every broker it could read, and, between brokers at the same precedence that disagree, the
//! riskier value: a finding must not depend on which broker happened to answer.

use std::collections::BTreeMap;

use super::input::{Configs, Source};

/// A topic setting and its broker-level counterpart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub topic: &'static str,
    pub broker: &'static str,
}

pub const MIN_INSYNC: Key = Key {
    topic: "min.insync.replicas",
    broker: "min.insync.replicas",
};
pub const UNCLEAN: Key = Key {
    topic: "unclean.leader.election.enable",
    broker: "unclean.leader.election.enable",
};
pub const FLUSH_MESSAGES: Key = Key {
    topic: "flush.messages",
    broker: "log.flush.interval.messages",
};
pub const FLUSH_MS: Key = Key {
    topic: "flush.ms",
    broker: "log.flush.interval.ms",
};

/// A resolved value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub value: String,
    pub source: Source,
    /// The broker whose config holds the value (`None` for a topic override or a value the
    /// topic's own answer carried).
    pub broker: Option<i32>,
}

impl Effective {
    /// `value (source[, broker N])`, as findings show it.
    pub fn describe(&self) -> String {
        match self.broker {
            Some(b) => format!("{} (broker {b})", self.source.as_str()),
            None => self.source.as_str().to_owned(),
        }
    }
}

/// The effective value of `key` for a topic, or why it is unknown.
///
/// `riskier(a, b)` says whether value `a` is riskier than `b`; it breaks ties between brokers
/// that disagree at the same precedence.
pub fn effective(
    topic: &Configs,
    brokers: &BTreeMap<i32, Configs>,
    key: Key,
    riskier: impl Fn(&str, &str) -> bool,
) -> Result<Effective, String> {
    let entries = match topic {
        Configs::Known(e) => e,
        Configs::Unavailable(why) => return Err(why.clone()),
    };
    let own = entries.get(key.topic);
    if let Some(e) = own.filter(|e| e.source == Source::TopicOverride) {
        if let Some(v) = &e.value {
            return Ok(Effective {
                value: v.clone(),
                source: Source::TopicOverride,
                broker: None,
            });
        }
    }
    let mut candidates: Vec<Effective> = own
        .and_then(|e| {
            e.value.as_ref().map(|v| Effective {
                value: v.clone(),
                source: e.source,
                broker: None,
            })
        })
        .into_iter()
        .collect();
    for (id, configs) in brokers {
        let Some(e) = configs.known().and_then(|m| m.get(key.broker)) else {
            continue;
        };
        if let Some(v) = &e.value {
            candidates.push(Effective {
                value: v.clone(),
                source: e.source,
                broker: Some(*id),
            });
        }
    }
    let mut best: Option<Effective> = None;
    for c in candidates {
        best = Some(match best {
            None => c,
            Some(b) if c.source < b.source => c,
            Some(b) if c.source == b.source && riskier(&c.value, &b.value) => c,
            Some(b) => b,
        });
    }
    best.ok_or_else(|| format!("no readable value of {}", key.topic))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::input::Source::*;

    fn lower(a: &str, b: &str) -> bool {
        a.parse::<i64>().unwrap_or(0) < b.parse::<i64>().unwrap_or(0)
    }

    type Rows<'a> = &'a [(&'a str, &'a str, Source)];

    fn brokers(rows: &[(i32, Rows<'_>)]) -> BTreeMap<i32, Configs> {
        rows.iter()
            .map(|(id, r)| (*id, Configs::from_rows(r)))
            .collect()
    }

    const K: &str = "min.insync.replicas";

    #[test]
    fn precedence_table() {
        // (topic rows, broker rows, expected value, expected source, expected broker)
        type Case<'a> = (
            &'a [(&'a str, &'a str, Source)],
            &'a [(i32, &'a [(&'a str, &'a str, Source)])],
            &'a str,
            Source,
            Option<i32>,
        );
        let cases: &[Case<'_>] = &[
            // A topic override wins over everything.
            (
                &[(K, "1", TopicOverride)],
                &[(1, &[(K, "2", DynamicBroker)])],
                "1",
                TopicOverride,
                None,
            ),
            // Without an override, a dynamic broker value beats the topic's resolved default.
            (
                &[(K, "1", Default)],
                &[(1, &[(K, "2", DynamicBroker)])],
                "2",
                DynamicBroker,
                Some(1),
            ),
            // Dynamic per-broker beats the cluster-wide dynamic default and static.
            (
                &[],
                &[
                    (1, &[(K, "3", DynamicDefaultBroker)]),
                    (2, &[(K, "2", DynamicBroker)]),
                    (3, &[(K, "1", StaticBroker)]),
                ],
                "2",
                DynamicBroker,
                Some(2),
            ),
            // Static beats default.
            (
                &[(K, "1", Default)],
                &[(1, &[(K, "2", StaticBroker)])],
                "2",
                StaticBroker,
                Some(1),
            ),
            // Brokers disagreeing at the same precedence: the riskier value.
            (
                &[],
                &[
                    (1, &[(K, "2", StaticBroker)]),
                    (2, &[(K, "1", StaticBroker)]),
                ],
                "1",
                StaticBroker,
                Some(2),
            ),
            // Only the topic's own answer: taken with its source.
            (&[(K, "1", Default)], &[], "1", Default, None),
        ];
        for (i, (topic, b, value, source, broker)) in cases.iter().enumerate() {
            let got = effective(&Configs::from_rows(topic), &brokers(b), MIN_INSYNC, lower)
                .unwrap_or_else(|e| panic!("case {i}: {e}"));
            assert_eq!(
                (got.value.as_str(), got.source, got.broker),
                (*value, *source, *broker),
                "case {i}"
            );
        }
    }

    #[test]
    fn unknown_is_unknown() {
        let unavailable = Configs::Unavailable("no entries".into());
        let b = brokers(&[(1, &[(K, "2", StaticBroker)])]);
        // The topic's configs unreadable: an override may exist, so the value is unknown even
        // though a broker value is known.
        assert!(effective(&unavailable, &b, MIN_INSYNC, lower).is_err());
        // Readable topic, the key nowhere.
        assert!(effective(
            &Configs::from_rows(&[]),
            &BTreeMap::new(),
            MIN_INSYNC,
            lower
        )
        .is_err());
        // A sensitive (valueless) entry is no value.
        let topic = Configs::Known(
            [(
                K.to_owned(),
                crate::audit::input::Entry {
                    value: None,
                    source: TopicOverride,
                },
            )]
            .into(),
        );
        assert!(effective(&topic, &BTreeMap::new(), MIN_INSYNC, lower).is_err());
    }
}
