//! Home triggers: a member arriving or leaving, the first to arrive, the last
//! to leave (geofencing).
#![allow(clippy::unwrap_used)]

use crate::common::*;
use kumo_rules::{parse_rule_value, Cause, Event};
use serde_json::json;

fn home_event(user: &str, arrived: bool, at_home: u32, at_sec: i64) -> Event {
    Event::Home {
        home: "h1".into(),
        user: user.into(),
        arrived,
        at_home,
        at: secs(at_sec),
    }
}

#[test]
fn the_last_member_leaving_fires_and_earlier_departures_do_not() {
    let mut e = engine_with(rule(
        json!({"home": {"home": "h1", "on": "leave", "who": "last"}}),
        json!([]),
    ));
    assert_eq!(fires(&mut e, home_event("alice", true, 1, 0)), 0);
    assert_eq!(fires(&mut e, home_event("bob", true, 2, 1)), 0);
    assert_eq!(
        fires(&mut e, home_event("bob", false, 1, 2)),
        0,
        "alice is home"
    );
    let f = e.handle(&home_event("alice", false, 0, 3));
    assert_eq!(
        f[0].cause,
        Cause::Home {
            home: "h1".into(),
            user: "alice".into(),
            arrived: false,
            at_home: 0
        }
    );
}

#[test]
fn arrivals_fire_for_anyone_or_only_for_the_first() {
    let mut anyone = engine_with(rule(
        json!({"home": {"home": "h1", "on": "arrive"}}),
        json!([]),
    ));
    let mut first = engine_with(rule(
        json!({"home": {"home": "h1", "on": "arrive", "who": "first"}}),
        json!([]),
    ));
    for (e, expected) in [(&mut anyone, [1, 1]), (&mut first, [1, 0])] {
        assert_eq!(fires(e, home_event("alice", true, 1, 0)), expected[0]);
        assert_eq!(fires(e, home_event("bob", true, 2, 1)), expected[1]);
    }
    let other_home = Event::Home {
        home: "h2".into(),
        user: "carol".into(),
        arrived: true,
        at_home: 1,
        at: secs(2),
    };
    assert_eq!(fires(&mut anyone, other_home), 0, "another home is ignored");
}

#[test]
fn a_home_trigger_needs_an_id_and_a_who_that_fits_its_edge() {
    for bad in [
        json!({"home": {"home": "", "on": "leave"}}),
        json!({"home": {"home": "h1", "on": "arrive", "who": "last"}}),
        json!({"home": {"home": "h1", "on": "leave", "who": "first"}}),
        json!({"home": {"home": "h1", "on": "stay"}}),
    ] {
        assert!(
            parse_rule_value(rule(bad.clone(), json!([]))).is_err(),
            "{bad}"
        );
    }
}
