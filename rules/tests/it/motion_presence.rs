//! Motion seen / not seen and device presence triggers.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use kumo_rules::{Cause, Event};
use serde_json::json;

fn motion(at_min: i64) -> Event {
    Event::Motion {
        device: dev("remo-1"),
        at: mins(at_min),
    }
}

fn presence(online: bool, at_sec: i64) -> Event {
    Event::Presence {
        device: dev("remo-1"),
        online,
        at: secs(at_sec),
    }
}

#[test]
fn motion_not_seen_fires_once_per_absence() {
    let trigger = json!({"motion_not_seen": {"device": "remo-1", "minutes": 30}});
    let mut e = engine_with(rule(trigger, json!([])));
    assert_eq!(fires(&mut e, tick(mins(0))), 0, "starts counting");
    assert_eq!(fires(&mut e, tick(mins(29))), 0);
    let f = e.handle(&tick(mins(30)));
    assert_eq!(
        f[0].cause,
        Cause::MotionNotSeen {
            device: dev("remo-1"),
            last_seen: None
        }
    );
    assert_eq!(fires(&mut e, tick(mins(60))), 0, "same absence");
    assert_eq!(fires(&mut e, motion(61)), 0);
    assert_eq!(fires(&mut e, tick(mins(90))), 0);
    let f = e.handle(&tick(mins(91)));
    assert_eq!(
        f[0].cause,
        Cause::MotionNotSeen {
            device: dev("remo-1"),
            last_seen: Some(mins(61))
        }
    );
}

#[test]
fn motion_keeps_resetting_the_absence_clock() {
    let trigger = json!({"motion_not_seen": {"device": "remo-1", "minutes": 10}});
    let mut e = engine_with(rule(trigger, json!([])));
    let mut fired = 0;
    for m in 0..60 {
        if m % 9 == 0 {
            fired += fires(&mut e, motion(m));
        }
        fired += fires(&mut e, tick(mins(m)));
    }
    assert_eq!(fired, 0);
}

#[test]
fn motion_seen_fires_after_a_quiet_period_only() {
    let trigger = json!({"motion_seen": {"device": "remo-1", "quiet_minutes": 10}});
    let mut e = engine_with(rule(trigger, json!([])));
    let fired: Vec<usize> = [0, 5, 14, 30, 31]
        .into_iter()
        .map(|m| fires(&mut e, motion(m)))
        .collect();
    assert_eq!(fired, [1, 0, 0, 1, 0]);
}

#[test]
fn motion_seen_without_quiet_period_fires_on_every_sighting() {
    let trigger = json!({"motion_seen": {"device": "remo-1"}});
    let mut e = engine_with(rule(trigger, json!([])));
    let fired: usize = (0..3).map(|m| fires(&mut e, motion(m))).sum();
    assert_eq!(fired, 3);
    assert_eq!(fires(&mut e, tick(mins(10))), 0);
}

#[test]
fn presence_fires_once_per_transition() {
    let trigger = json!({"presence": {"device": "remo-1", "online": true}});
    let mut e = engine_with(rule(trigger, json!([])));
    let f = e.handle(&presence(true, 0));
    assert_eq!(
        f[0].cause,
        Cause::Presence {
            device: dev("remo-1"),
            online: true
        }
    );
    let fired: Vec<usize> = [(true, 1), (false, 2), (false, 3), (true, 4)]
        .into_iter()
        .map(|(on, at)| fires(&mut e, presence(on, at)))
        .collect();
    assert_eq!(fired, [0, 0, 0, 1]);
}

#[test]
fn offline_for_a_duration_ignores_short_drops() {
    let trigger = json!({"presence": {"device": "remo-1", "online": false, "for_secs": 60}});
    let mut e = engine_with(rule(trigger, json!([])));
    assert_eq!(fires(&mut e, presence(false, 0)), 0);
    assert_eq!(
        fires(&mut e, presence(true, 30)),
        0,
        "back within the minute"
    );
    assert_eq!(fires(&mut e, tick(secs(100))), 0);
    assert_eq!(fires(&mut e, presence(false, 200)), 0);
    assert_eq!(fires(&mut e, tick(secs(259))), 0);
    assert_eq!(fires(&mut e, tick(secs(260))), 1);
    assert_eq!(
        fires(&mut e, presence(false, 270)),
        0,
        "a repeated offline is not a transition"
    );
    assert_eq!(fires(&mut e, tick(secs(1000))), 0);
}

#[test]
fn presence_of_another_device_is_ignored() {
    let trigger = json!({"presence": {"device": "remo-1", "online": false}});
    let mut e = engine_with(rule(trigger, json!([])));
    let other = Event::Presence {
        device: dev("remo-2"),
        online: false,
        at: secs(0),
    };
    assert_eq!(fires(&mut e, other), 0);
}
