//! The book against sequences of polls: every false alarm users of other lag tools report,
//! and the accounting of expired and negative lag.

use super::*;

fn tp(t: &str, p: i32) -> Tp {
    (t.to_owned(), p)
}

/// A group in a poll: (id, members, committed offsets as (topic, partition, offset)), or
/// `None` for the commits when their fetch failed.
type G<'a> = (&'a str, Option<usize>, Option<&'a [(&'a str, i32, i64)]>);

/// One poll at `now_s` seconds: partitions as (topic, partition, log start, log end), with
/// log end -1 for a partition whose offsets could not be read.
fn poll(now_s: i64, logs: &[(&str, i32, i64, i64)], groups: &[G<'_>]) -> PollInput {
    PollInput {
        now_ms: now_s * 1000,
        logs: logs
            .iter()
            .map(|&(t, p, start, end)| (tp(t, p), (end >= 0).then_some(LogOffsets { start, end })))
            .collect(),
        groups: groups
            .iter()
            .map(|&(g, members, committed)| {
                (
                    g.to_owned(),
                    GroupInput {
                        members,
                        committed: committed
                            .map(|c| c.iter().map(|&(t, p, o)| (tp(t, p), o)).collect()),
                    },
                )
            })
            .collect(),
    }
}

fn run(window: usize, polls: Vec<PollInput>) -> Vec<Snapshot> {
    let mut b = Book::new(window);
    polls
        .into_iter()
        .map(|p| b.apply(p, HashMap::new()))
        .collect()
}

fn status(s: &Snapshot, g: &str) -> Option<Status> {
    s.groups.get(g).map(|r| r.status)
}

fn lag(s: &Snapshot, g: &str, t: &str, p: i32) -> Option<i64> {
    s.parts.get(&(g.to_owned(), tp(t, p))).map(|r| r.lag)
}

/// (group, topic, partition)
type GroupPartition = (&'static str, &'static str, i32);

struct Case {
    name: &'static str,
    window: usize,
    polls: Vec<PollInput>,
    /// Expected group status after the last poll; `None` = no series.
    groups: &'static [(&'static str, Option<Status>)],
    /// Expected lag series after the last poll; `None` = no series.
    lags: &'static [(GroupPartition, Option<i64>)],
}

fn cases() -> Vec<Case> {
    let a: &[(&str, i32, i64)] = &[("t", 0, 100)];
    vec![
        Case {
            name: "idle topic with lag 0 stays OK however long nothing is committed",
            window: 3,
            polls: (0..10)
                .map(|i| poll(i * 30, &[("t", 0, 0, 100)], &[("g", Some(0), Some(a))]))
                .collect(),
            groups: &[("g", Some(Status::Ok))],
            lags: &[(("g", "t", 0), Some(0))],
        },
        Case {
            name: "deleted group: its series disappear",
            window: 3,
            polls: vec![
                poll(
                    0,
                    &[("t", 0, 0, 150)],
                    &[("g", Some(1), Some(a)), ("h", Some(1), Some(a))],
                ),
                poll(30, &[("t", 0, 0, 150)], &[("h", Some(1), Some(a))]),
            ],
            groups: &[("g", None), ("h", Some(Status::Ok))],
            lags: &[(("g", "t", 0), None), (("h", "t", 0), Some(50))],
        },
        Case {
            name: "group still listed but without commits or members (offsets expired): no ghost",
            window: 3,
            polls: vec![
                poll(0, &[("t", 0, 0, 150)], &[("g", Some(1), Some(a))]),
                poll(30, &[("t", 0, 0, 150)], &[("g", Some(0), Some(&[]))]),
            ],
            groups: &[("g", None)],
            lags: &[(("g", "t", 0), None)],
        },
        Case {
            name: "live group that has not committed yet is shown, without partitions",
            window: 3,
            polls: vec![poll(0, &[], &[("g", Some(2), Some(&[]))])],
            groups: &[("g", Some(Status::Ok))],
            lags: &[],
        },
        Case {
            name: "deleted topic: its partitions disappear, the group stays",
            window: 3,
            polls: vec![
                poll(
                    0,
                    &[("t", 0, 0, 100), ("u", 0, 0, 9)],
                    &[("g", Some(1), Some(&[("t", 0, 100), ("u", 0, 5)]))],
                ),
                poll(
                    30,
                    &[("t", 0, 0, 100)],
                    &[("g", Some(1), Some(&[("t", 0, 100), ("u", 0, 5)]))],
                ),
            ],
            groups: &[("g", Some(Status::Ok))],
            lags: &[(("g", "t", 0), Some(0)), (("g", "u", 0), None)],
        },
        Case {
            name: "added partition without a commit: no series and no STOP",
            window: 2,
            polls: (0..5)
                .map(|i| {
                    poll(
                        i * 30,
                        &[("t", 0, 0, 100), ("t", 1, 0, 40 + i)],
                        &[("g", Some(1), Some(a))],
                    )
                })
                .collect(),
            groups: &[("g", Some(Status::Ok))],
            lags: &[(("g", "t", 0), Some(0)), (("g", "t", 1), None)],
        },
        Case {
            name: "added partition: once committed it starts a fresh window",
            window: 3,
            polls: vec![
                poll(
                    0,
                    &[("t", 0, 0, 100), ("t", 1, 0, 9)],
                    &[("g", Some(1), Some(a))],
                ),
                poll(
                    30,
                    &[("t", 0, 0, 100), ("t", 1, 0, 9)],
                    &[("g", Some(1), Some(&[("t", 0, 100), ("t", 1, 2)]))],
                ),
                poll(
                    60,
                    &[("t", 0, 0, 100), ("t", 1, 0, 9)],
                    &[("g", Some(1), Some(&[("t", 0, 100), ("t", 1, 2)]))],
                ),
            ],
            groups: &[("g", Some(Status::Ok))],
            lags: &[(("g", "t", 1), Some(7))],
        },
        Case {
            name: "stopped consumer with unread messages: STOP after a full window",
            window: 3,
            polls: (0..3)
                .map(|i| {
                    poll(
                        i * 30,
                        &[("t", 0, 0, 100 + i)],
                        &[("g", Some(0), Some(&[("t", 0, 90)]))],
                    )
                })
                .collect(),
            groups: &[("g", Some(Status::Stop))],
            lags: &[(("g", "t", 0), Some(12))],
        },
        Case {
            name: "worst partition wins",
            window: 2,
            polls: (0..2)
                .map(|i| {
                    poll(
                        i * 30,
                        &[("t", 0, 0, 100 + i), ("t", 1, 0, 100)],
                        &[("g", Some(3), Some(&[("t", 0, 90), ("t", 1, 100)]))],
                    )
                })
                .collect(),
            groups: &[("g", Some(Status::Stall))],
            lags: &[(("g", "t", 0), Some(11)), (("g", "t", 1), Some(0))],
        },
        Case {
            name: "commit fetch failed: group ERR, last values kept",
            window: 3,
            polls: vec![
                poll(0, &[("t", 0, 0, 150)], &[("g", Some(1), Some(a))]),
                poll(30, &[("t", 0, 0, 160)], &[("g", Some(1), None)]),
            ],
            groups: &[("g", Some(Status::Err))],
            lags: &[(("g", "t", 0), Some(50))],
        },
        Case {
            name: "log offsets unreadable: ERR",
            window: 3,
            polls: vec![
                poll(0, &[("t", 0, 0, 150)], &[("g", Some(1), Some(a))]),
                poll(30, &[("t", 0, 0, -1)], &[("g", Some(1), Some(a))]),
            ],
            groups: &[("g", Some(Status::Err))],
            lags: &[(("g", "t", 0), Some(50))],
        },
        Case {
            name: "committed offset above the log end (commit raced the read): lag 0",
            window: 3,
            polls: vec![poll(0, &[("t", 0, 0, 95)], &[("g", Some(1), Some(a))])],
            groups: &[("g", Some(Status::Ok))],
            lags: &[(("g", "t", 0), Some(0))],
        },
        Case {
            name: "committed below the log start: lag counts what is still readable",
            window: 3,
            polls: vec![poll(0, &[("t", 0, 130, 150)], &[("g", Some(1), Some(a))])],
            groups: &[("g", Some(Status::Ok))],
            lags: &[(("g", "t", 0), Some(20))],
        },
    ]
}

#[test]
fn table() {
    for c in cases() {
        let snaps = run(c.window, c.polls);
        let last = snaps.last().unwrap();
        for (g, want) in c.groups {
            assert_eq!(status(last, g), *want, "{}: status of {g}", c.name);
        }
        for ((g, t, p), want) in c.lags {
            assert_eq!(lag(last, g, t, *p), *want, "{}: lag of {g} {t}/{p}", c.name);
        }
        // Nothing but the expected groups is exported.
        let expected: Vec<&str> = c
            .groups
            .iter()
            .filter(|(_, s)| s.is_some())
            .map(|(g, _)| *g)
            .collect();
        let got: Vec<&str> = last.groups.keys().map(String::as_str).collect();
        assert_eq!(got, expected, "{}: groups exported", c.name);
    }
}

#[test]
fn expired_unread_is_counted_once_per_gap() {
    let c: &[(&str, i32, i64)] = &[("t", 0, 10)];
    let snaps = run(
        3,
        vec![
            poll(0, &[("t", 0, 0, 50)], &[("g", Some(0), Some(c))]),
            poll(30, &[("t", 0, 25, 50)], &[("g", Some(0), Some(c))]),
            poll(60, &[("t", 0, 25, 50)], &[("g", Some(0), Some(c))]),
            poll(90, &[("t", 0, 40, 50)], &[("g", Some(0), Some(c))]),
            // The group resets to the log start, then falls behind again.
            poll(
                120,
                &[("t", 0, 40, 60)],
                &[("g", Some(1), Some(&[("t", 0, 40)]))],
            ),
            poll(
                150,
                &[("t", 0, 45, 60)],
                &[("g", Some(1), Some(&[("t", 0, 40)]))],
            ),
        ],
    );
    let counted: Vec<u64> = snaps
        .iter()
        .map(|s| s.parts[&("g".to_owned(), tp("t", 0))].expired_total)
        .collect();
    assert_eq!(counted, [0, 15, 15, 30, 30, 35]);
    let new: Vec<u64> = snaps
        .iter()
        .map(|s| s.expired.iter().map(|e| e.1).sum())
        .collect();
    assert_eq!(new, [0, 15, 0, 15, 0, 5]);
    assert_eq!(lag(&snaps[1], "g", "t", 0), Some(25));
}

#[test]
fn negative_raw_lag_is_counted_and_clamped() {
    let snaps = run(
        3,
        vec![poll(
            0,
            &[("t", 0, 0, 95)],
            &[("g", Some(1), Some(&[("t", 0, 100)]))],
        )],
    );
    assert_eq!(snaps[0].negative, 1);
    assert_eq!(lag(&snaps[0], "g", "t", 0), Some(0));
}

#[test]
fn time_lag_uses_the_record_timestamp_when_read() {
    let mut b = Book::new(3);
    let p = poll(
        100,
        &[("t", 0, 0, 20)],
        &[("g", Some(1), Some(&[("t", 0, 5)]))],
    );
    assert_eq!(b.wanted_timestamps(&p), vec![(tp("t", 0), 5)]);
    let read = HashMap::from([((tp("t", 0), 5), 40_000)]);
    let s = b.apply(p, read);
    let row = &s.parts[&("g".to_owned(), tp("t", 0))];
    assert_eq!((row.lag_seconds, row.method), (60.0, Method::Timestamp));
    // Cached: the next poll at the same offset needs no read.
    let p = poll(
        130,
        &[("t", 0, 0, 30)],
        &[("g", Some(1), Some(&[("t", 0, 5)]))],
    );
    assert!(b.wanted_timestamps(&p).is_empty());
    let s = b.apply(p, HashMap::new());
    let row = &s.parts[&("g".to_owned(), tp("t", 0))];
    assert_eq!((row.lag_seconds, row.method), (90.0, Method::Timestamp));
}

#[test]
fn time_lag_is_interpolated_without_a_timestamp() {
    let mut b = Book::new(3);
    let g: &[(&str, i32, i64)] = &[("t", 0, 100)];
    let s1 = b.apply(
        poll(0, &[("t", 0, 0, 100)], &[("g", Some(1), Some(g))]),
        HashMap::new(),
    );
    assert_eq!(
        s1.parts[&("g".to_owned(), tp("t", 0))].method,
        Method::CaughtUp
    );
    b.apply(
        poll(10, &[("t", 0, 0, 200)], &[("g", Some(1), Some(g))]),
        HashMap::new(),
    );
    let s3 = b.apply(
        poll(20, &[("t", 0, 0, 300)], &[("g", Some(1), Some(g))]),
        HashMap::new(),
    );
    let row = &s3.parts[&("g".to_owned(), tp("t", 0))];
    // Offset 100 was appended just after the poll at 0 s (100 records over 10 s): ~20 s old.
    assert_eq!(row.method, Method::Interpolated);
    assert!((row.lag_seconds - 19.9).abs() < 1e-9, "{}", row.lag_seconds);
    assert_eq!(row.lag, 200);
}

#[test]
fn lower_bound_when_older_than_the_history() {
    let mut b = Book::new(3);
    let s = b.apply(
        poll(
            50,
            &[("t", 0, 0, 100)],
            &[("g", Some(1), Some(&[("t", 0, 10)]))],
        ),
        HashMap::new(),
    );
    let row = &s.parts[&("g".to_owned(), tp("t", 0))];
    assert_eq!((row.lag_seconds, row.method), (0.0, Method::LowerBound));
    let s = b.apply(
        poll(
            80,
            &[("t", 0, 0, 100)],
            &[("g", Some(1), Some(&[("t", 0, 10)]))],
        ),
        HashMap::new(),
    );
    let row = &s.parts[&("g".to_owned(), tp("t", 0))];
    assert_eq!((row.lag_seconds, row.method), (30.0, Method::LowerBound));
}
