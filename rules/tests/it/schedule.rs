//! Schedule triggers and time windows across time zones and DST changes.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use kumo_rules::{Cause, Engine, Firing};
use serde_json::json;
use time::{Duration, OffsetDateTime};

fn schedule(days: Option<&[&str]>, at: &str, zone: &str) -> serde_json::Value {
    let mut s = json!({"at": at, "time_zone": zone});
    if let Some(days) = days {
        s["days"] = json!(days);
    }
    json!({"schedule": s})
}

/// Ticks every `step` from `from` (inclusive) to `to` (exclusive).
fn ticks(engine: &mut Engine, from: &str, to: &str, step: Duration) -> Vec<Firing> {
    let (mut at, end) = (utc(from), utc(to));
    let mut out = Vec::new();
    while at < end {
        out.extend(engine.handle(&tick(at)));
        at += step;
    }
    out
}

fn scheduled_for(f: &Firing) -> OffsetDateTime {
    match f.cause {
        Cause::Schedule { scheduled_for } => scheduled_for,
        ref other => panic!("not a schedule firing: {other:?}"),
    }
}

#[test]
fn tokyo_schedule_fires_once_in_its_minute() {
    // 07:30 JST on Tuesday 2026-03-03 is 22:30 UTC on Monday.
    let mut e = engine_with(rule(
        schedule(Some(&["tue"]), "07:30", "Asia/Tokyo"),
        json!([]),
    ));
    assert_eq!(fires(&mut e, tick(utc("2026-03-02T22:29:59Z"))), 0);
    let f = e.handle(&tick(utc("2026-03-02T22:30:00Z")));
    assert_eq!(f.len(), 1);
    assert_eq!(scheduled_for(&f[0]), utc("2026-03-02T22:30:00Z"));
    assert_eq!(fires(&mut e, tick(utc("2026-03-02T22:30:01Z"))), 0);
    assert_eq!(fires(&mut e, tick(utc("2026-03-02T22:30:59Z"))), 0);
}

#[test]
fn a_tick_late_in_the_minute_still_fires_but_a_stale_one_does_not() {
    let doc = rule(schedule(None, "07:30", "Asia/Tokyo"), json!([]));
    let mut e = engine_with(doc.clone());
    assert_eq!(fires(&mut e, tick(utc("2026-03-02T22:30:45Z"))), 1);
    let mut late = engine_with(doc);
    assert_eq!(fires(&mut late, tick(utc("2026-03-02T22:31:00Z"))), 0);
}

#[test]
fn weekday_schedule_fires_once_on_each_listed_day_over_a_week() {
    let days = ["mon", "tue", "wed", "thu", "fri"];
    let mut e = engine_with(rule(
        schedule(Some(&days), "07:30", "Asia/Tokyo"),
        json!([]),
    ));
    // Monday 2026-03-02 00:00 JST through the following Monday 00:00 JST.
    let f = ticks(
        &mut e,
        "2026-03-01T15:00:00Z",
        "2026-03-08T15:00:00Z",
        Duration::seconds(20),
    );
    let when: Vec<OffsetDateTime> = f.iter().map(scheduled_for).collect();
    let expected: Vec<OffsetDateTime> = (0..5)
        .map(|d| utc("2026-03-01T22:30:00Z") + Duration::days(d))
        .collect();
    assert_eq!(when, expected);
}

#[test]
fn new_york_schedule_follows_the_march_dst_change() {
    // DST starts Sunday 2026-03-08: 07:00 is 12:00Z before and 11:00Z after.
    let mut e = engine_with(rule(schedule(None, "07:00", "America/New_York"), json!([])));
    let f = ticks(
        &mut e,
        "2026-03-07T00:00:00Z",
        "2026-03-10T00:00:00Z",
        Duration::seconds(30),
    );
    let when: Vec<OffsetDateTime> = f.iter().map(scheduled_for).collect();
    assert_eq!(
        when,
        [
            utc("2026-03-07T12:00:00Z"),
            utc("2026-03-08T11:00:00Z"),
            utc("2026-03-09T11:00:00Z"),
        ]
    );
}

#[test]
fn a_time_skipped_by_spring_forward_fires_once_just_after_the_jump() {
    // 02:30 does not exist in New York on 2026-03-08; it runs at 03:30 EDT (07:30Z).
    let mut e = engine_with(rule(
        schedule(Some(&["sun"]), "02:30", "America/New_York"),
        json!([]),
    ));
    let f = ticks(
        &mut e,
        "2026-03-08T05:00:00Z",
        "2026-03-08T12:00:00Z",
        Duration::seconds(15),
    );
    let when: Vec<OffsetDateTime> = f.iter().map(scheduled_for).collect();
    assert_eq!(when, [utc("2026-03-08T07:30:00Z")]);
}

#[test]
fn a_time_repeated_by_fall_back_fires_only_once() {
    // 01:30 happens twice in New York on 2026-11-01 (05:30Z EDT, 06:30Z EST).
    let mut e = engine_with(rule(
        schedule(Some(&["sun"]), "01:30", "America/New_York"),
        json!([]),
    ));
    let f = ticks(
        &mut e,
        "2026-11-01T04:00:00Z",
        "2026-11-01T09:00:00Z",
        Duration::seconds(15),
    );
    let when: Vec<OffsetDateTime> = f.iter().map(scheduled_for).collect();
    assert_eq!(when, [utc("2026-11-01T05:30:00Z")]);
}

#[test]
fn schedules_ignore_device_events() {
    let mut e = engine_with(rule(schedule(None, "07:30", "Asia/Tokyo"), json!([])));
    let motion = kumo_rules::Event::Motion {
        device: dev("remo-1"),
        at: utc("2026-03-02T22:30:00Z"),
    };
    assert_eq!(fires(&mut e, motion), 0);
}

#[test]
fn a_time_window_that_wraps_midnight_checks_the_day_it_opened() {
    // Friday-night window 23:00–02:00 Tokyo: Sat 01:00 JST is inside, Fri 01:00 is not.
    let window = json!([{"time_window": {"from": "23:00", "to": "02:00",
                                         "time_zone": "Asia/Tokyo", "days": ["fri"]}}]);
    let daily = json!({"schedule": {"at": "01:00", "time_zone": "Asia/Tokyo"}});
    let mut e = engine_with(rule(daily, window));
    // Fri 2026-03-06 01:00 JST = Thu 16:00Z; Sat 2026-03-07 01:00 JST = Fri 16:00Z.
    assert_eq!(fires(&mut e, tick(utc("2026-03-05T16:00:00Z"))), 0);
    assert_eq!(fires(&mut e, tick(utc("2026-03-06T16:00:00Z"))), 1);
}
