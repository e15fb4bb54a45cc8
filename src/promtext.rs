//! Series written straight into a scrape in the Prometheus text format, and the same series
//! as metric values for readers that gather a registry (`/api/lag`, the demo, the tests).
//!
//! Used where a prometheus value per series costs too much: the lag poller's per-group series
//! (`lag::metrics`) and the agent's per-partition series (`metrics::partitions`). Each of those
//! has a test that the text written here equals what prometheus's own encoder makes of the
//! gathered values.

use std::fmt::Write;

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

/// `# HELP` and `# TYPE` of a counter or gauge family.
pub fn header(name: &str, help: &str, kind: MetricType, out: &mut String) {
    let kind = if kind == MetricType::COUNTER {
        "counter"
    } else {
        "gauge"
    };
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

/// A label value escaped for the text format.
pub fn escaped(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// One series line: `name{k="v",...} value`.
pub fn line(name: &str, labels: &[(&str, &str)], value: f64, out: &mut String) {
    out.push_str(name);
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escaped(v, out);
        out.push('"');
    }
    let _ = writeln!(out, "}} {value}");
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name((*k).to_owned());
            l.set_value((*v).to_owned());
            l
        })
        .collect()
}

/// A gauge value with its labels, for a collector.
pub fn gauge(pairs: &[(&str, &str)], v: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(v);
    let mut m = Metric::from_gauge(g);
    m.set_label(labels(pairs));
    m
}

/// A counter value with its labels, for a collector.
pub fn counter(pairs: &[(&str, &str)], v: f64) -> Metric {
    let mut c = Counter::default();
    c.set_value(v);
    let mut m = Metric::from_label(labels(pairs));
    m.set_counter(c);
    m
}

/// A family of a collector's series.
pub fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_owned());
    f.set_help(help.to_owned());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}
