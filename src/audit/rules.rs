//! The audit rules (sans-IO): [`audit`] turns an [`Input`] into findings and per-partition
//! states. Unknown is never clean: a resource whose configs cannot be read gets a
//! `configs_unavailable` finding, and a rule that needs a value it cannot resolve reports the
//! resource unavailable instead of assuming Kafka's default.

use std::collections::BTreeMap;

use serde::Serialize;

use super::input::{Configs, Input, PartitionMeta, Source, TopicInput};
use super::resolve::{self, Effective, Key};
use super::risk::{Risk, Severity, Stage};

/// What a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    Topic(String),
    Partition(String, i32),
    Broker(i32),
}

impl Resource {
    /// `topic:NAME`, `partition:NAME/P` or `broker:ID`: the `resource` label and JSON field.
    pub fn label(&self) -> String {
        match self {
            Resource::Topic(t) => format!("topic:{t}"),
            Resource::Partition(t, p) => format!("partition:{t}/{p}"),
            Resource::Broker(b) => format!("broker:{b}"),
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub resource: Resource,
    pub risk: Risk,
    /// The current value(s) that make it a finding.
    pub value: String,
    /// Where the value comes from: `metadata`, a config source, or why it is unknown.
    pub source: String,
}

impl Finding {
    pub fn stage(&self) -> Stage {
        self.risk.stage()
    }
}

impl Serialize for Finding {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Finding", 11)?;
        st.serialize_field("resource", &self.resource.label())?;
        let (topic, partition, broker) = match &self.resource {
            Resource::Topic(t) => (Some(t.as_str()), None, None),
            Resource::Partition(t, p) => (Some(t.as_str()), Some(*p), None),
            Resource::Broker(b) => (None, None, Some(*b)),
        };
        st.serialize_field("topic", &topic)?;
        st.serialize_field("partition", &partition)?;
        st.serialize_field("broker", &broker)?;
        st.serialize_field("risk", &self.risk)?;
        st.serialize_field("stage", &self.risk.stage())?;
        st.serialize_field("severity", &self.risk.severity())?;
        st.serialize_field("why", self.risk.why())?;
        st.serialize_field("fix", self.risk.fix())?;
        st.serialize_field("value", &self.value)?;
        st.serialize_field("source", &self.source)?;
        st.end()
    }
}

/// A partition's replication state; `None` where min.insync.replicas is unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionState {
    pub topic: String,
    pub partition: i32,
    pub offline: bool,
    pub under_replicated: bool,
    pub under_min_isr: Option<bool>,
    pub at_min_isr: Option<bool>,
}

/// The result of one audit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Audit {
    pub findings: Vec<Finding>,
    pub partitions: Vec<PartitionState>,
    pub topics: usize,
    pub brokers: usize,
}

impl Audit {
    /// No finding of any kind (an unreadable config is a finding).
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    pub fn risks(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.risk.severity() == Severity::Risk)
            .count()
    }
}

/// Runs every rule.
pub fn audit(input: &Input) -> Audit {
    let mut out = Audit {
        topics: input.topics.len(),
        brokers: input.brokers.len(),
        ..Audit::default()
    };
    for t in &input.topics {
        topic_rules(t, &input.brokers, &mut out);
    }
    for (id, configs) in &input.brokers {
        broker_rules(*id, configs, &mut out.findings);
    }
    out.findings
        .sort_by(|a, b| (&a.resource, a.risk).cmp(&(&b.resource, b.risk)));
    out
}

/// A config answer with no entries is no answer: Tansu and librdkafka's mock cluster return
/// none, and an empty answer must not read as "nothing risky set".
fn normalized(c: &Configs) -> Configs {
    match c {
        Configs::Known(m) if m.is_empty() => {
            Configs::Unavailable("the broker returned no config entries".into())
        }
        other => other.clone(),
    }
}

fn lower_int(a: &str, b: &str) -> bool {
    match (a.trim().parse::<i64>(), b.trim().parse::<i64>()) {
        (Ok(a), Ok(b)) => a < b,
        // An unparseable value is the riskier one: it gets reported.
        (Err(_), Ok(_)) => true,
        _ => false,
    }
}

fn is_true(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case("true") && !b.eq_ignore_ascii_case("true")
}

fn topic_rules(t: &TopicInput, brokers: &BTreeMap<i32, Configs>, out: &mut Audit) {
    let res = Resource::Topic(t.name.clone());
    let push = |out: &mut Audit, risk, value: String, source: String| {
        out.findings.push(Finding {
            resource: res.clone(),
            risk,
            value,
            source,
        })
    };
    if let Some(min) = t.partitions.iter().min_by_key(|p| p.replicas.len()) {
        let rf = min.replicas.len();
        if rf < 3 {
            push(
                out,
                Risk::ReplicationFactorBelow3,
                format!("replication factor {rf} (partition {})", min.id),
                "metadata".into(),
            );
        }
    }
    let rf = t
        .partitions
        .iter()
        .map(|p| p.replicas.len())
        .min()
        .unwrap_or(0);
    let configs = normalized(&t.configs);
    let mut unknown: Vec<String> = Vec::new();
    if let Configs::Unavailable(why) = &configs {
        unknown.push(why.clone());
    }

    let min_isr = match int_setting(&configs, brokers, resolve::MIN_INSYNC) {
        Ok(v) => Some(v),
        Err(why) => {
            if !matches!(configs, Configs::Unavailable(_)) {
                unknown.push(why);
            }
            None
        }
    };
    if let Some((n, eff)) = &min_isr {
        if *n < 2 {
            push(
                out,
                Risk::MinInsyncBelow2,
                format!("min.insync.replicas={n}"),
                eff.describe(),
            );
        }
        if rf > 0 && *n >= rf as i64 {
            push(
                out,
                Risk::MinInsyncNotBelowRf,
                format!("min.insync.replicas={n}, replication factor {rf}"),
                eff.describe(),
            );
        }
    }
    match resolve::effective(&configs, brokers, resolve::UNCLEAN, is_true) {
        Ok(e) if e.value.eq_ignore_ascii_case("true") => push(
            out,
            Risk::UncleanElectionEnabled,
            "unclean.leader.election.enable=true".into(),
            e.describe(),
        ),
        Ok(_) => {}
        Err(why) => {
            if !matches!(configs, Configs::Unavailable(_)) {
                unknown.push(why);
            }
        }
    }
    if let Configs::Known(entries) = &configs {
        let overrides: Vec<String> = [resolve::FLUSH_MESSAGES, resolve::FLUSH_MS]
            .iter()
            .filter_map(|k| {
                entries
                    .get(k.topic)
                    .filter(|e| e.source == Source::TopicOverride)
                    .map(|e| format!("{}={}", k.topic, e.value.as_deref().unwrap_or("?")))
            })
            .collect();
        if !overrides.is_empty() {
            push(
                out,
                Risk::FlushOverride,
                overrides.join(", "),
                Source::TopicOverride.as_str().into(),
            );
        }
    }
    if !unknown.is_empty() {
        push(
            out,
            Risk::ConfigsUnavailable,
            "topic configs unknown".into(),
            unknown.join("; "),
        );
    }
    let min_isr = min_isr.map(|(n, _)| n);
    for p in &t.partitions {
        partition_rules(&t.name, p, min_isr, out);
    }
}

fn int_setting(
    configs: &Configs,
    brokers: &BTreeMap<i32, Configs>,
    key: Key,
) -> Result<(i64, Effective), String> {
    let e = resolve::effective(configs, brokers, key, lower_int)?;
    let n = e.value.trim().parse::<i64>().map_err(|_| {
        format!(
            "{} has a value that is not a number: {:?}",
            key.topic, e.value
        )
    })?;
    Ok((n, e))
}

fn partition_rules(topic: &str, p: &PartitionMeta, min_isr: Option<i64>, out: &mut Audit) {
    let res = Resource::Partition(topic.to_owned(), p.id);
    let isr = p.isr.len() as i64;
    let state = PartitionState {
        topic: topic.to_owned(),
        partition: p.id,
        offline: p.leader.is_none(),
        under_replicated: p.isr.len() < p.replicas.len(),
        under_min_isr: min_isr.map(|m| isr < m),
        at_min_isr: min_isr.map(|m| isr == m),
    };
    let mut push = |risk, value: String, source: &str| {
        out.findings.push(Finding {
            resource: res.clone(),
            risk,
            value,
            source: source.into(),
        })
    };
    if state.offline {
        push(
            Risk::PartitionOffline,
            format!("no leader; replicas {:?}, ISR {:?}", p.replicas, p.isr),
            "metadata",
        );
    }
    if state.under_replicated {
        push(
            Risk::UnderReplicated,
            format!(
                "ISR {:?}: {} of {} replicas {:?}",
                p.isr,
                p.isr.len(),
                p.replicas.len(),
                p.replicas
            ),
            "metadata",
        );
    }
    if let Some(m) = min_isr {
        if state.under_min_isr == Some(true) {
            push(
                Risk::UnderMinIsr,
                format!("ISR {:?}: {isr} in sync, min.insync.replicas={m}", p.isr),
                "metadata",
            );
        } else if state.at_min_isr == Some(true) {
            push(
                Risk::AtMinIsr,
                format!("ISR {:?}: {isr} in sync, min.insync.replicas={m}", p.isr),
                "metadata",
            );
        }
    }
    out.partitions.push(state);
}

fn broker_rules(id: i32, configs: &Configs, findings: &mut Vec<Finding>) {
    let res = Resource::Broker(id);
    let mut push = |risk, value: String, source: String| {
        findings.push(Finding {
            resource: res.clone(),
            risk,
            value,
            source,
        })
    };
    let entries = match normalized(configs) {
        Configs::Known(e) => e,
        Configs::Unavailable(why) => {
            push(
                Risk::ConfigsUnavailable,
                "broker configs unknown".into(),
                why,
            );
            return;
        }
    };
    let mut missing: Vec<&str> = Vec::new();
    let mut get = |key: &'static str| -> Option<(String, Source)> {
        match entries
            .get(key)
            .and_then(|e| e.value.clone().map(|v| (v, e.source)))
        {
            Some(v) => Some(v),
            None => {
                missing.push(key);
                None
            }
        }
    };
    let int = |v: &(String, Source)| v.0.trim().parse::<i64>().ok();
    let drf = get("default.replication.factor");
    let auto = get("auto.create.topics.enable");
    let offsets = get("offsets.topic.replication.factor");
    let txn_rf = get("transaction.state.log.replication.factor");
    let txn_isr = get("transaction.state.log.min.isr");
    let unclean = get("unclean.leader.election.enable");
    let min_isr = get("min.insync.replicas");
    if let (Some(d), Some(a)) = (&drf, &auto) {
        if int(d).map_or(true, |n| n < 3) && a.0.eq_ignore_ascii_case("true") {
            push(
                Risk::DefaultReplicationFactorBelow3,
                format!(
                    "default.replication.factor={}, auto.create.topics.enable=true",
                    d.0
                ),
                d.1.as_str().into(),
            );
        }
    }
    let below = |v: &Option<(String, Source)>, n: i64| -> Option<(String, Source)> {
        v.as_ref()
            .filter(|x| int(x).map_or(true, |m| m < n))
            .cloned()
    };
    for (v, key, limit, risk) in [
        (
            &offsets,
            "offsets.topic.replication.factor",
            3,
            Risk::OffsetsTopicReplicationBelow3,
        ),
        (
            &txn_rf,
            "transaction.state.log.replication.factor",
            3,
            Risk::TransactionLogReplicationBelow3,
        ),
        (
            &txn_isr,
            "transaction.state.log.min.isr",
            2,
            Risk::TransactionLogMinIsrBelow2,
        ),
        (&min_isr, "min.insync.replicas", 2, Risk::MinInsyncBelow2),
    ] {
        if let Some((value, source)) = below(v, limit) {
            push(risk, format!("{key}={value}"), source.as_str().into());
        }
    }
    if let Some((v, s)) = &unclean {
        if v.eq_ignore_ascii_case("true") {
            push(
                Risk::UncleanElectionEnabled,
                "unclean.leader.election.enable=true".into(),
                s.as_str().into(),
            );
        }
    }
    let flush: Vec<String> = ["log.flush.interval.messages", "log.flush.interval.ms"]
        .iter()
        .filter_map(|k| {
            entries
                .get(*k)
                .filter(|e| e.source != Source::Default && e.value.is_some())
                .map(|e| {
                    format!(
                        "{k}={} ({})",
                        e.value.as_deref().unwrap_or(""),
                        e.source.as_str()
                    )
                })
        })
        .collect();
    if !flush.is_empty() {
        push(
            Risk::FlushOverride,
            flush.join(", "),
            "broker config".into(),
        );
    }
    if !missing.is_empty() {
        push(
            Risk::ConfigsUnavailable,
            format!("missing {}", missing.join(", ")),
            "the broker's config answer lacks these entries".into(),
        );
    }
}

#[cfg(test)]
mod tests;
