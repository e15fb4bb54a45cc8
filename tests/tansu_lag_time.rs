//! Lag in time against a real broker (Tansu): from the first unconsumed record's timestamp,
//! and interpolated from the log-end history, each compared with the truth.

mod common;
mod lag_tansu;

use std::time::Duration;

use common::{commit, scrape};
use lag_tansu::agent::{gtp, has, Agent};
use lag_tansu::{create_topic, now_ms, produce, Tansu};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_lag_from_record_timestamps_is_within_one_poll_interval() {
    let t = Tansu::memory();
    let b = t.bootstrap();
    create_topic(&b, "clicks", 1, &[]).await;
    let t0 = now_ms();
    let stamps: Vec<i64> = (0..5).map(|i| t0 - 300_000 + i * 60_000).collect();
    produce(&b, "clicks", 0, &stamps);
    commit(&b, "reader", &[("clicks", 0, 2)]);
    let interval = Duration::from_secs(1);
    let agent = Agent::start(&t, interval, |_| {}).await;
    let addr = agent.addr;
    let f = gtp("reader", "clicks", "0");
    let s = common::eventually(WAIT, "time lag of reader", || {
        let s = scrape(addr);
        has(&s, "losswatch_consumergroup_lag_seconds", &f).then_some(s)
    })
    .await;
    // The value describes the last poll's time: compare with the truth then.
    let polled_at = s.sum("losswatch_lag_last_poll_timestamp_seconds", &[]);
    let truth = polled_at - stamps[2] as f64 / 1000.0;
    let got = s.sum("losswatch_consumergroup_lag_seconds", &f);
    eprintln!(
        "time lag {got:.3} s, truth {truth:.3} s, error {:.3} s",
        got - truth
    );
    assert!(
        (got - truth).abs() <= interval.as_secs_f64(),
        "{got} vs {truth}"
    );
    let method = [("group", "reader"), ("method", "timestamp")];
    assert_eq!(
        s.sum("losswatch_consumergroup_lag_seconds_method", &method),
        1.0
    );
    assert_eq!(s.sum("losswatch_consumergroup_lag", &f), 3.0);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interpolated_time_lag_is_within_one_poll_interval() {
    let t = Tansu::memory();
    let b = t.bootstrap();
    create_topic(&b, "ticks", 1, &[]).await;
    produce(&b, "ticks", 0, &[now_ms()]);
    commit(&b, "lagger", &[("ticks", 0, 1)]);
    let interval = Duration::from_secs(1);
    let agent = Agent::start(&t, interval, |c| c.lag.read_timestamps = false).await;
    let addr = agent.addr;
    let f = gtp("lagger", "ticks", "0");
    common::eventually(WAIT, "lagger polled", || {
        has(&scrape(addr), "losswatch_consumergroup_lag", &f).then_some(())
    })
    .await;

    // Offsets 1..=32, one every 250 ms, their append time noted after each ack.
    let mut appended = vec![0i64];
    for _ in 0..32 {
        produce(&b, "ticks", 0, &[now_ms()]);
        appended.push(now_ms());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut worst = 0.0f64;
    for committed in [5usize, 17, 30] {
        commit(&b, "lagger", &[("ticks", 0, committed as i64)]);
        let s = common::eventually(WAIT, "the new commit polled", || {
            let s = scrape(addr);
            (s.sum("losswatch_consumergroup_committed_offset", &f) == committed as f64).then_some(s)
        })
        .await;
        let polled_at = s.sum("losswatch_lag_last_poll_timestamp_seconds", &[]);
        let truth = polled_at - appended[committed] as f64 / 1000.0;
        let got = s.sum("losswatch_consumergroup_lag_seconds", &f);
        let method = [("group", "lagger"), ("method", "interpolated")];
        assert_eq!(
            s.sum("losswatch_consumergroup_lag_seconds_method", &method),
            1.0
        );
        eprintln!(
            "offset {committed}: interpolated {got:.3} s, truth {truth:.3} s, error {:+.3} s",
            got - truth
        );
        worst = worst.max((got - truth).abs());
    }
    assert!(
        worst <= interval.as_secs_f64(),
        "worst interpolation error {worst} s"
    );
    agent.stop().await;
}
