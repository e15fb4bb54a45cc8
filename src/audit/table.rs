//! `losswatch audit`: the report as a table a person reads, like `kafka-topics --describe`,
//! followed by why each risk can lose data and the setting that fixes it.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::{Report, Risk, Severity};

/// The report as text.
pub fn render(report: &Report) -> String {
    let a = &report.audit;
    let mut out = String::new();
    let info = a.findings.len() - a.risks();
    let _ = writeln!(
        out,
        "audited {} broker(s), {} topic(s), {} partition(s): {}",
        a.brokers,
        a.topics,
        a.partitions.len(),
        match (a.risks(), info) {
            (0, 0) => "no findings".to_owned(),
            (r, 0) => format!("{r} finding(s)"),
            (r, i) => format!("{r} finding(s), {i} informational"),
        }
    );
    if a.findings.is_empty() {
        return out;
    }
    let header = ["RESOURCE", "RISK", "STAGE", "VALUE", "SOURCE"];
    let rows: Vec<[String; 5]> = a
        .findings
        .iter()
        .map(|f| {
            [
                f.resource.label(),
                f.risk.as_label().to_owned(),
                f.risk.stage().as_str().to_owned(),
                f.value.clone(),
                f.source.clone(),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut String, cells: [&str; 5]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 4 {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ", w = width[i]);
            }
        }
        let _ = writeln!(out, "{}", l.trim_end());
    };
    out.push('\n');
    line(&mut out, header);
    for r in &rows {
        line(&mut out, [&r[0], &r[1], &r[2], &r[3], &r[4]]);
    }
    let risks: BTreeSet<Risk> = a.findings.iter().map(|f| f.risk).collect();
    out.push_str("\nwhy it can lose data, and the fix:\n");
    for r in risks {
        let tag = if r.severity() == Severity::Info {
            " (informational)"
        } else {
            ""
        };
        let _ = writeln!(out, "  {}{tag}: {}", r.as_label(), r.why());
        let _ = writeln!(out, "    fix: {}", r.fix());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::input::{Configs, Input, PartitionMeta, TopicInput};

    #[test]
    fn table_lists_findings_and_fixes() {
        let input = Input {
            brokers: [(1, Configs::Known(Default::default()))].into(),
            topics: vec![TopicInput {
                name: "orders".into(),
                partitions: vec![PartitionMeta {
                    id: 0,
                    leader: Some(1),
                    replicas: vec![1],
                    isr: vec![1],
                }],
                configs: Configs::Unavailable("DescribeConfigs did not answer within 2s".into()),
            }],
        };
        let report = Report {
            started_ms: 0,
            finished_ms: 0,
            audit: crate::audit::audit(&input),
        };
        let t = render(&report);
        assert!(
            t.starts_with("audited 1 broker(s), 1 topic(s), 1 partition(s): 3 finding(s)"),
            "{t}"
        );
        assert!(t.contains("RESOURCE"), "{t}");
        assert!(
            t.contains("topic:orders") && t.contains("replication_factor_below_3"),
            "{t}"
        );
        assert!(
            t.contains("DescribeConfigs did not answer within 2s"),
            "{t}"
        );
        assert!(t.contains("fix: raise the replication factor to 3"), "{t}");
    }
}
