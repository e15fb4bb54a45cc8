//! The lag poller's metrics. Per-group and per-partition series exist only on the agent that
//! polls, and only for groups and partitions that exist: [`LagMetrics::publish`] removes every
//! series the new snapshot no longer has.

use std::collections::{BTreeMap, BTreeSet};

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};

use super::book::{Snapshot, Tp};
use super::status::Status;
use super::timelag::Method;

const POLL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Why (part of) a poll failed; the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollError {
    /// Listing the cluster's consumer groups (and their members) failed.
    ListGroups,
    /// Reading topic metadata failed.
    Metadata,
    /// Fetching one group's committed offsets failed.
    CommittedOffsets,
    /// Reading log-start or log-end offsets failed.
    LogOffsets,
    /// Reading the first unconsumed record of a partition failed or timed out.
    Timestamps,
    /// Creating a client failed.
    Client,
}

impl PollError {
    pub const ALL: [PollError; 6] = [
        PollError::ListGroups,
        PollError::Metadata,
        PollError::CommittedOffsets,
        PollError::LogOffsets,
        PollError::Timestamps,
        PollError::Client,
    ];

    pub fn as_label(self) -> &'static str {
        match self {
            PollError::ListGroups => "list_groups",
            PollError::Metadata => "metadata",
            PollError::CommittedOffsets => "committed_offsets",
            PollError::LogOffsets => "log_offsets",
            PollError::Timestamps => "timestamps",
            PollError::Client => "client",
        }
    }
}

const GTP: &[&str] = &["group", "topic", "partition"];

#[derive(Clone)]
pub struct LagMetrics {
    pub lag: IntGaugeVec,
    pub lag_seconds: GaugeVec,
    pub lag_seconds_method: IntGaugeVec,
    pub committed: IntGaugeVec,
    pub log_end: IntGaugeVec,
    pub log_start: IntGaugeVec,
    pub status: IntGaugeVec,
    pub members: IntGaugeVec,
    pub expired_unread: IntCounterVec,
    pub negative: IntCounter,
    pub poll_duration: Histogram,
    pub poll_errors: IntCounterVec,
    pub leader: IntGauge,
    pub groups: IntGauge,
    pub group_partitions: IntGauge,
    pub last_poll: Gauge,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    c: T,
) -> prometheus::Result<T> {
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn ig(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
    reg(r, IntGaugeVec::new(Opts::new(name, help), labels)?)
}

impl LagMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<LagMetrics> {
        let m = LagMetrics {
            lag: ig(r, "losswatch_consumergroup_lag", "Messages of the partition the consumer group has not consumed and can still read (log end minus the later of committed offset and log start; never negative).", GTP)?,
            lag_seconds: reg(r, GaugeVec::new(Opts::new("losswatch_consumergroup_lag_seconds", "Age of the first message the consumer group has not consumed (0 when it has consumed everything); losswatch_consumergroup_lag_seconds_method tells how it was measured."), GTP)?)?,
            lag_seconds_method: ig(r, "losswatch_consumergroup_lag_seconds_method", "1 for the method that produced losswatch_consumergroup_lag_seconds: timestamp (the record's own timestamp), interpolated (between two polls of the log end), lower_bound (older than the poller's history), caught_up (nothing to read).", &["group", "topic", "partition", "method"])?,
            committed: ig(r, "losswatch_consumergroup_committed_offset", "Offset the consumer group committed on the partition.", GTP)?,
            log_end: ig(r, "losswatch_partition_log_end_offset", "Log-end offset (high watermark) of a partition some polled consumer group reads.", &["topic", "partition"])?,
            log_start: ig(r, "losswatch_partition_log_start_offset", "Log-start offset (low watermark) of a partition some polled consumer group reads.", &["topic", "partition"])?,
            status: ig(r, "losswatch_consumergroup_status", "1 for the consumer group's current status (its worst partition's), 0 for the others: OK, WARN (lag growing), STALL (members, offset not moving), STOP (no commit while messages wait), REWIND (offset went backwards), ERR (could not be read).", &["group", "status"])?,
            members: ig(r, "losswatch_consumergroup_members", "Members of the consumer group (absent when the group list cannot be read).", &["group"])?,
            expired_unread: reg(r, IntCounterVec::new(Opts::new("losswatch_consumergroup_expired_unread_total", "Messages retention removed before the consumer group read them (its committed offset was below the log start): lost for that group. Each gap is counted once by the agent that saw it."), GTP)?)?,
            negative: reg(r, IntCounter::new("losswatch_lag_negative_total", "Polls where a committed offset was above the log end read in the same poll (a commit raced the read); the lag is shown as 0.")?)?,
            poll_duration: reg(r, Histogram::with_opts(HistogramOpts::new("losswatch_lag_poll_duration_seconds", "Wall time of one consumer-group lag poll.").buckets(POLL_BUCKETS.to_vec()))?)?,
            poll_errors: reg(r, IntCounterVec::new(Opts::new("losswatch_lag_poll_errors_total", "Failed requests of lag polls, by reason."), &["reason"])?)?,
            leader: reg(r, IntGauge::new("losswatch_lag_poller_leader", "1 on the agent that polls consumer-group lag, 0 on the others.")?)?,
            groups: reg(r, IntGauge::new("losswatch_lag_groups", "Consumer groups exported by the last lag poll.")?)?,
            group_partitions: reg(r, IntGauge::new("losswatch_lag_group_partitions", "Group-partitions exported by the last lag poll.")?)?,
            last_poll: reg(r, Gauge::new("losswatch_lag_last_poll_timestamp_seconds", "When the last lag poll finished (Unix time; 0 before the first).")?)?,
        };
        for e in PollError::ALL {
            m.poll_errors.with_label_values(&[e.as_label()]);
        }
        Ok(m)
    }

    pub fn error(&self, e: PollError) {
        self.poll_errors.with_label_values(&[e.as_label()]).inc();
    }
}

/// The series currently exported, to remove those a new snapshot no longer has.
#[derive(Default)]
pub struct Exported {
    groups: BTreeSet<String>,
    parts: BTreeMap<(String, Tp), Method>,
    logs: BTreeSet<Tp>,
}

impl LagMetrics {
    /// Makes `/metrics` show exactly `snap`.
    pub fn publish(&self, snap: &Snapshot, exported: &mut Exported) {
        for g in &exported.groups {
            if !snap.groups.contains_key(g) {
                for s in Status::ALL {
                    let _ = self.status.remove_label_values(&[g, s.as_label()]);
                }
                let _ = self.members.remove_label_values(&[g]);
            }
        }
        for ((g, (t, p)), method) in &exported.parts {
            let key = (g.clone(), (t.clone(), *p));
            let ps = p.to_string();
            let l = [g.as_str(), t.as_str(), ps.as_str()];
            match snap.parts.get(&key) {
                None => {
                    let _ = self.lag.remove_label_values(&l);
                    let _ = self.lag_seconds.remove_label_values(&l);
                    let _ = self.committed.remove_label_values(&l);
                    let _ = self.expired_unread.remove_label_values(&l);
                    let _ = self.lag_seconds_method.remove_label_values(&[
                        g,
                        t,
                        &ps,
                        method.as_label(),
                    ]);
                }
                Some(row) if row.method != *method => {
                    let _ = self.lag_seconds_method.remove_label_values(&[
                        g,
                        t,
                        &ps,
                        method.as_label(),
                    ]);
                }
                Some(_) => {}
            }
        }
        for (t, p) in &exported.logs {
            if !snap.logs.contains_key(&(t.clone(), *p)) {
                let ps = p.to_string();
                let _ = self.log_end.remove_label_values(&[t, &ps]);
                let _ = self.log_start.remove_label_values(&[t, &ps]);
            }
        }

        for (g, row) in &snap.groups {
            for s in Status::ALL {
                self.status
                    .with_label_values(&[g.as_str(), s.as_label()])
                    .set(i64::from(s == row.status));
            }
            match row.members {
                Some(n) => self
                    .members
                    .with_label_values(&[g])
                    .set(i64::try_from(n).unwrap_or(i64::MAX)),
                None => {
                    let _ = self.members.remove_label_values(&[g]);
                }
            }
        }
        for ((g, (t, p)), row) in &snap.parts {
            let ps = p.to_string();
            let l = [g.as_str(), t.as_str(), ps.as_str()];
            self.lag.with_label_values(&l).set(row.lag);
            self.lag_seconds.with_label_values(&l).set(row.lag_seconds);
            self.committed.with_label_values(&l).set(row.committed);
            // Created at 0 so that the first loss is visible to increase().
            self.expired_unread.with_label_values(&l);
            self.lag_seconds_method
                .with_label_values(&[g, t, &ps, row.method.as_label()])
                .set(1);
        }
        for (key, n) in &snap.expired {
            let ps = key.1 .1.to_string();
            self.expired_unread
                .with_label_values(&[key.0.as_str(), key.1 .0.as_str(), ps.as_str()])
                .inc_by(*n);
        }
        for ((t, p), l) in &snap.logs {
            let ps = p.to_string();
            self.log_end.with_label_values(&[t, &ps]).set(l.end);
            self.log_start.with_label_values(&[t, &ps]).set(l.start);
        }
        self.negative.inc_by(snap.negative);
        self.groups
            .set(i64::try_from(snap.groups.len()).unwrap_or(i64::MAX));
        self.group_partitions
            .set(i64::try_from(snap.parts.len()).unwrap_or(i64::MAX));

        exported.groups = snap.groups.keys().cloned().collect();
        exported.parts = snap
            .parts
            .iter()
            .map(|(k, r)| (k.clone(), r.method))
            .collect();
        exported.logs = snap.logs.keys().cloned().collect();
    }

    /// Removes every per-group and per-partition series: this agent stopped polling.
    pub fn clear(&self, exported: &mut Exported) {
        for v in [
            &self.lag,
            &self.lag_seconds_method,
            &self.committed,
            &self.log_end,
            &self.log_start,
            &self.status,
            &self.members,
        ] {
            v.reset();
        }
        self.lag_seconds.reset();
        self.expired_unread.reset();
        self.groups.set(0);
        self.group_partitions.set(0);
        *exported = Exported::default();
    }
}
