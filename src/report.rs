//! `losswatch report --state FILE`: the loss events of a state file as a table.

use std::fmt::Write as _;
use std::path::Path;

use crate::ledger::{read_events, Event, LedgerError};

/// Renders events (newest first) as a fixed-width table.
pub fn render(events: &[Event]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<27} {:<20} {:>9} {:>12} {:>12} {:>6}  {:<15} detail",
        "when (UTC)", "topic", "partition", "seq", "offset", "broker", "kind"
    );
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for e in events {
        let when = chrono::DateTime::from_timestamp_micros(e.at_us)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_else(|| e.at_us.to_string());
        let _ = writeln!(
            out,
            "{:<27} {:<20} {:>9} {:>12} {:>12} {:>6}  {:<15} {}",
            when,
            e.topic,
            e.partition,
            dash(e.seq.map(|v| v.to_string())),
            dash(e.offset.map(|v| v.to_string())),
            dash(e.broker.map(|v| v.to_string())),
            e.kind,
            e.detail
        );
    }
    if events.is_empty() {
        out.push_str("(no loss events)\n");
    }
    out
}

pub fn report(path: &Path, limit: usize) -> Result<String, LedgerError> {
    if !path.exists() {
        return Err(LedgerError::Open {
            path: path.to_owned(),
            source: rusqlite::Error::InvalidPath(path.to_owned()),
        });
    }
    Ok(render(&read_events(path, limit)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_every_column() {
        let t = render(&[Event {
            at_us: 1_700_000_000_000_000,
            topic: "c".into(),
            partition: 3,
            seq: Some(17),
            offset: Some(42),
            broker: Some(2),
            kind: "lost".into(),
            detail: "truncated".into(),
        }]);
        assert!(t.contains("2023-11-14T22:13:20.000Z"), "{t}");
        for s in ["lost", "truncated", " 17 ", " 42 ", " 2 "] {
            assert!(t.contains(s), "{s} missing in {t}");
        }
        assert!(render(&[]).contains("no loss events"));
    }
}
