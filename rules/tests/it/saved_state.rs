//! Trigger state across a restart: what `take_saved_states` reports, given back
//! to `insert_with_state`, lets a new engine continue where the old one stopped.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use kumo_rules::{parse_rule_value, Engine, Event, RuleId, SavedState, Sensor};
use serde_json::json;

fn hot() -> serde_json::Value {
    rule(
        json!({"threshold": {"device": "remo-1", "sensor": "te", "op": "above", "value": 28.0,
                             "hysteresis": 1.0}}),
        json!([]),
    )
}

fn te(val: f64, at: i64) -> Event {
    reading("remo-1", Sensor::Te, val, secs(at))
}

/// A new engine loaded with the rule and the old engine's saved state, as the
/// bridge does after a restart (the state goes through JSON, as stored).
fn restarted(old: &mut Engine, doc: serde_json::Value) -> Engine {
    let id = RuleId("r1".into());
    let saved = old
        .take_saved_states()
        .into_iter()
        .find(|(i, _)| *i == id)
        .map(|(_, s)| s);
    let stored = saved.map(|s| serde_json::to_value(s).unwrap());
    let back: Option<SavedState> = stored.map(|v| serde_json::from_value(v).unwrap());
    let mut e = Engine::new();
    e.insert_with_state(id, parse_rule_value(doc).unwrap(), back.as_ref())
        .unwrap();
    e
}

#[test]
fn a_threshold_that_fired_does_not_fire_again_after_a_restart_while_it_holds() {
    let mut e = engine_with(hot());
    assert_eq!(fires(&mut e, te(29.0, 0)), 1);
    let mut e = restarted(&mut e, hot());
    assert_eq!(fires(&mut e, te(29.5, 60)), 0, "still the same crossing");
    // It clears past the band and crosses again: that is a new occurrence.
    assert_eq!(fires(&mut e, te(26.0, 120)), 0);
    let mut e = restarted(&mut e, hot());
    assert_eq!(fires(&mut e, te(29.0, 180)), 1);
}

#[test]
fn without_a_saved_state_the_rule_starts_armed() {
    let mut e = engine_with(hot());
    assert_eq!(fires(&mut e, te(29.0, 0)), 1);
    let mut fresh = engine_with(hot());
    assert_eq!(fires(&mut fresh, te(29.5, 60)), 1);
}

#[test]
fn only_changes_are_reported_and_each_once() {
    let mut e = engine_with(hot());
    // Loading reports nothing; readings that change nothing durable neither.
    assert!(e.take_saved_states().is_empty());
    fires(&mut e, te(20.0, 0));
    fires(&mut e, te(21.0, 10));
    assert!(
        e.take_saved_states().is_empty(),
        "armed and idle throughout"
    );
    fires(&mut e, te(29.0, 20));
    let saved = e.take_saved_states();
    assert_eq!(
        saved,
        [(
            RuleId("r1".into()),
            SavedState::Level {
                armed: false,
                since: None
            }
        )]
    );
    fires(&mut e, te(30.0, 30));
    assert!(e.take_saved_states().is_empty(), "held: nothing new");
}

#[test]
fn a_hold_in_progress_continues_after_a_restart() {
    let doc = rule(
        json!({"threshold": {"device": "remo-1", "sensor": "te", "op": "above", "value": 28.0,
                             "for_secs": 300}}),
        json!([]),
    );
    let mut e = engine_with(doc.clone());
    assert_eq!(fires(&mut e, te(29.0, 0)), 0);
    let mut e = restarted(&mut e, doc);
    assert_eq!(fires(&mut e, te(29.0, 200)), 0);
    assert_eq!(
        fires(&mut e, tick(secs(300))),
        1,
        "300 s since the first reading"
    );
}

#[test]
fn a_schedule_that_fired_does_not_fire_again_within_its_grace_after_a_restart() {
    let doc = rule(
        json!({"schedule": {"at": "07:30", "time_zone": "UTC"}}),
        json!([]),
    );
    let mut e = engine_with(doc.clone());
    assert_eq!(fires(&mut e, tick(utc("2026-03-02T07:30:05Z"))), 1);
    let mut e = restarted(&mut e, doc);
    assert_eq!(fires(&mut e, tick(utc("2026-03-02T07:30:40Z"))), 0);
    assert_eq!(fires(&mut e, tick(utc("2026-03-03T07:30:01Z"))), 1);
}

#[test]
fn motion_quiet_periods_count_from_the_last_motion_before_the_restart() {
    let doc = rule(
        json!({"motion_seen": {"device": "remo-1", "quiet_minutes": 10}}),
        json!([]),
    );
    let motion = |at| Event::Motion {
        device: dev("remo-1"),
        at,
    };
    let mut e = engine_with(doc.clone());
    assert_eq!(fires(&mut e, motion(mins(0))), 1);
    assert_eq!(fires(&mut e, motion(mins(5))), 0);
    let mut e = restarted(&mut e, doc);
    assert_eq!(
        fires(&mut e, motion(mins(12))),
        0,
        "7 minutes after the last motion"
    );
    assert_eq!(fires(&mut e, motion(mins(30))), 1);
}

#[test]
fn a_state_of_another_trigger_kind_is_ignored() {
    let mut e = Engine::new();
    let wrong = SavedState::Schedule { consumed: Some(0) };
    e.insert_with_state(
        RuleId("r1".into()),
        parse_rule_value(hot()).unwrap(),
        Some(&wrong),
    )
    .unwrap();
    assert_eq!(fires(&mut e, te(29.0, 0)), 1, "fresh: armed");
}
