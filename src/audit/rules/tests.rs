use std::collections::BTreeMap;

use super::*;
use crate::audit::input::Source::*;
use crate::audit::input::{Configs, Input, PartitionMeta, Source, TopicInput};

type Rows = Vec<(&'static str, &'static str, Source)>;

fn part(id: i32, leader: Option<i32>, replicas: &[i32], isr: &[i32]) -> PartitionMeta {
    PartitionMeta {
        id,
        leader,
        replicas: replicas.to_vec(),
        isr: isr.to_vec(),
    }
}

fn healthy(id: i32) -> PartitionMeta {
    part(id, Some(1), &[1, 2, 3], &[1, 2, 3])
}

/// A broker whose settings are all safe.
fn safe_broker() -> Vec<(&'static str, &'static str, Source)> {
    vec![
        ("default.replication.factor", "3", StaticBroker),
        ("auto.create.topics.enable", "true", Default),
        ("offsets.topic.replication.factor", "3", Default),
        ("transaction.state.log.replication.factor", "3", Default),
        ("transaction.state.log.min.isr", "2", Default),
        ("unclean.leader.election.enable", "false", Default),
        ("min.insync.replicas", "2", StaticBroker),
        (
            "log.flush.interval.messages",
            "9223372036854775807",
            Default,
        ),
    ]
}

fn safe_topic() -> Vec<(&'static str, &'static str, Source)> {
    vec![
        ("min.insync.replicas", "2", StaticBroker),
        ("unclean.leader.election.enable", "false", Default),
        ("flush.messages", "9223372036854775807", Default),
    ]
}

fn input(topic_rows: &[(&str, &str, Source)], parts: Vec<PartitionMeta>) -> Input {
    Input {
        brokers: [(1, Configs::from_rows(&safe_broker()))].into(),
        topics: vec![TopicInput {
            name: "orders".into(),
            partitions: parts,
            configs: Configs::from_rows(topic_rows),
        }],
    }
}

fn labels(a: &Audit) -> Vec<(String, &'static str)> {
    a.findings
        .iter()
        .map(|f| (f.resource.label(), f.risk.as_label()))
        .collect()
}

fn with(
    rows: &[(&'static str, &'static str, Source)],
) -> Vec<(&'static str, &'static str, Source)> {
    let mut base = safe_topic();
    for r in rows {
        base.retain(|b| b.0 != r.0);
        base.push(*r);
    }
    base
}

#[test]
fn a_safe_cluster_is_clean() {
    let a = audit(&input(&safe_topic(), vec![healthy(0), healthy(1)]));
    assert!(a.is_clean(), "{:?}", a.findings);
    assert_eq!(a.partitions.len(), 2);
    assert_eq!(a.partitions[0].at_min_isr, Some(false));
}

#[test]
fn topic_rules_table() {
    let t = "topic:orders";
    // (topic config overrides, partitions, expected findings)
    type Case<'a> = (Rows, Vec<PartitionMeta>, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case<'_>> = vec![
        // RF 2 with min ISR 2: below 3, and min ISR not below RF.
        (
            safe_topic(),
            vec![part(0, Some(1), &[1, 2], &[1, 2])],
            vec![
                (t, "replication_factor_below_3"),
                (t, "min_insync_not_below_rf"),
                ("partition:orders/0", "at_min_isr"),
            ],
        ),
        // min ISR 1 by topic override.
        (
            with(&[("min.insync.replicas", "1", TopicOverride)]),
            vec![healthy(0)],
            vec![(t, "min_insync_below_2")],
        ),
        // min ISR 3 = RF 3.
        (
            with(&[("min.insync.replicas", "3", TopicOverride)]),
            vec![healthy(0)],
            vec![
                (t, "min_insync_not_below_rf"),
                ("partition:orders/0", "at_min_isr"),
            ],
        ),
        // Unclean election on the topic.
        (
            with(&[("unclean.leader.election.enable", "true", TopicOverride)]),
            vec![healthy(0)],
            vec![(t, "unclean_election_enabled")],
        ),
        // Flush override: informational; a default flush.messages is not one.
        (
            with(&[("flush.ms", "1000", TopicOverride)]),
            vec![healthy(0)],
            vec![(t, "flush_override")],
        ),
        // Offline, under-replicated, under min ISR, at min ISR.
        (
            safe_topic(),
            vec![
                part(0, None, &[1, 2, 3], &[]),
                part(1, Some(1), &[1, 2, 3], &[1, 2]),
                part(2, Some(1), &[1, 2, 3], &[1]),
            ],
            vec![
                ("partition:orders/0", "partition_offline"),
                ("partition:orders/0", "under_replicated"),
                ("partition:orders/0", "under_min_isr"),
                ("partition:orders/1", "under_replicated"),
                ("partition:orders/1", "at_min_isr"),
                ("partition:orders/2", "under_replicated"),
                ("partition:orders/2", "under_min_isr"),
            ],
        ),
    ];
    for (i, (rows, parts, want)) in cases.into_iter().enumerate() {
        let a = audit(&input(&rows, parts));
        let want: Vec<(String, &str)> = want.iter().map(|(r, k)| (r.to_string(), *k)).collect();
        assert_eq!(labels(&a), want, "case {i}");
    }
}

#[test]
fn unreadable_configs_are_never_clean() {
    // Tansu and the mock cluster answer DescribeConfigs with no entries.
    for configs in [
        Configs::Known(BTreeMap::new()),
        Configs::Unavailable("DescribeConfigs timed out".into()),
    ] {
        let mut i = input(&[], vec![healthy(0)]);
        i.topics[0].configs = configs.clone();
        i.brokers = [(1, configs)].into();
        let a = audit(&i);
        assert_eq!(
            labels(&a),
            vec![
                ("topic:orders".to_string(), "configs_unavailable"),
                ("broker:1".to_string(), "configs_unavailable"),
            ]
        );
        assert!(!a.is_clean());
        // Without min ISR, the partition's min-ISR state is unknown, not "fine".
        assert_eq!(a.partitions[0].under_min_isr, None);
        assert_eq!(a.partitions[0].at_min_isr, None);
    }
}

#[test]
fn metadata_findings_stand_without_configs() {
    // RF and leaders come from metadata: known even when configs are not.
    let mut i = input(&[], vec![part(0, None, &[1], &[1])]);
    i.topics[0].configs = Configs::Unavailable("no ACL".into());
    let a = audit(&i);
    let got = labels(&a);
    assert!(got.contains(&("topic:orders".into(), "replication_factor_below_3")));
    assert!(got.contains(&("topic:orders".into(), "configs_unavailable")));
    assert!(got.contains(&("partition:orders/0".into(), "partition_offline")));
    let f = a
        .findings
        .iter()
        .find(|f| f.risk == Risk::ConfigsUnavailable)
        .unwrap();
    assert!(f.source.contains("no ACL"), "{f:?}");
}

#[test]
fn effective_value_comes_from_the_broker_when_the_topic_has_no_override() {
    // The topic's own answer says default 1; a dynamic broker config raised it to 2.
    let mut i = input(
        &with(&[("min.insync.replicas", "1", Default)]),
        vec![healthy(0)],
    );
    let mut b = safe_broker();
    b.retain(|r| r.0 != "min.insync.replicas");
    b.push(("min.insync.replicas", "2", DynamicBroker));
    i.brokers = [(1, Configs::from_rows(&b))].into();
    assert!(audit(&i).is_clean(), "{:?}", audit(&i).findings);
    // And the other way round: a broker lowered it dynamically.
    let mut b = safe_broker();
    b.retain(|r| r.0 != "min.insync.replicas");
    b.push(("min.insync.replicas", "1", DynamicBroker));
    i.brokers = [(1, Configs::from_rows(&b))].into();
    i.topics[0].configs = Configs::from_rows(&with(&[("min.insync.replicas", "2", StaticBroker)]));
    let a = audit(&i);
    let f: Vec<_> = a
        .findings
        .iter()
        .filter(|f| f.risk == Risk::MinInsyncBelow2)
        .collect();
    // The topic inherits the broker's dynamic 1, and the broker itself is reported.
    assert_eq!(f.len(), 2, "{:?}", a.findings);
    assert!(f
        .iter()
        .any(|f| f.resource == Resource::Topic("orders".into())
            && f.source == "dynamic broker config (broker 1)"));
}

#[test]
fn a_missing_topic_key_is_unknown_not_default() {
    let rows: Vec<_> = safe_topic()
        .into_iter()
        .filter(|r| r.0 != "unclean.leader.election.enable")
        .collect();
    let mut i = input(&rows, vec![healthy(0)]);
    let mut b = safe_broker();
    b.retain(|r| r.0 != "unclean.leader.election.enable");
    i.brokers = [(1, Configs::from_rows(&b))].into();
    let got = labels(&audit(&i));
    assert!(
        got.contains(&("topic:orders".into(), "configs_unavailable")),
        "{got:?}"
    );
    assert!(
        got.contains(&("broker:1".into(), "configs_unavailable")),
        "{got:?}"
    );
}

#[test]
fn broker_rules_table() {
    let b = "broker:1";
    let cases: Vec<(Rows, Vec<&str>)> = vec![
        (
            vec![("default.replication.factor", "1", Default)],
            vec!["default_replication_factor_below_3"],
        ),
        // Without auto-creation a low default replication factor creates nothing by itself.
        (
            vec![
                ("default.replication.factor", "1", Default),
                ("auto.create.topics.enable", "false", StaticBroker),
            ],
            vec![],
        ),
        (
            vec![("offsets.topic.replication.factor", "1", StaticBroker)],
            vec!["offsets_topic_replication_below_3"],
        ),
        (
            vec![(
                "transaction.state.log.replication.factor",
                "2",
                StaticBroker,
            )],
            vec!["transaction_log_replication_below_3"],
        ),
        (
            vec![("transaction.state.log.min.isr", "1", StaticBroker)],
            vec!["transaction_log_min_isr_below_2"],
        ),
        (
            vec![(
                "unclean.leader.election.enable",
                "true",
                DynamicDefaultBroker,
            )],
            vec!["unclean_election_enabled"],
        ),
        (
            vec![("min.insync.replicas", "1", Default)],
            vec!["min_insync_below_2"],
        ),
        (
            vec![("log.flush.interval.ms", "1000", StaticBroker)],
            vec!["flush_override"],
        ),
    ];
    for (i, (rows, want)) in cases.into_iter().enumerate() {
        let mut base = safe_broker();
        for r in &rows {
            base.retain(|x| x.0 != r.0);
            base.push(*r);
        }
        let mut inp = input(&safe_topic(), vec![healthy(0)]);
        inp.brokers = [(1, Configs::from_rows(&base))].into();
        let a = audit(&inp);
        let got: Vec<&str> = a
            .findings
            .iter()
            .filter(|f| f.resource.label() == b)
            .map(|f| f.risk.as_label())
            .collect();
        // The topic inherits a broker-wide min ISR 1 and unclean=true: reported on it too.
        assert_eq!(got, want, "case {i}: {:?}", a.findings);
    }
}

#[test]
fn findings_carry_value_source_why_and_fix() {
    let a = audit(&input(
        &with(&[("unclean.leader.election.enable", "true", TopicOverride)]),
        vec![healthy(0)],
    ));
    let f = &a.findings[0];
    assert_eq!(f.value, "unclean.leader.election.enable=true");
    assert_eq!(f.source, "topic override");
    let json = serde_json::to_value(f).unwrap();
    for key in [
        "resource", "risk", "stage", "why", "fix", "value", "source", "severity",
    ] {
        assert!(json.get(key).is_some(), "{key} missing in {json}");
    }
    assert_eq!(json["stage"], "broker");
    assert_eq!(json["resource"], "topic:orders");
}

#[test]
fn every_risk_has_a_distinct_label_and_text() {
    let mut seen = std::collections::BTreeSet::new();
    for r in Risk::ALL {
        assert!(seen.insert(r.as_label()), "{r:?}");
        assert!(!r.why().is_empty() && !r.fix().is_empty());
    }
}
