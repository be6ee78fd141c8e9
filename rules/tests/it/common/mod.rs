//! Builders shared by the evaluator tests.
#![allow(dead_code)]

use kumo_contract::DeviceId;
use kumo_rules::{parse_rule_value, Engine, Event, Firing, RuleId, Sensor};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

/// A fixed instant all relative test times count from: 2026-03-02T00:00:00Z.
pub fn t0() -> OffsetDateTime {
    time::macros::datetime!(2026-03-02 00:00 UTC)
}

pub fn secs(n: i64) -> OffsetDateTime {
    t0() + Duration::seconds(n)
}

pub fn mins(n: i64) -> OffsetDateTime {
    t0() + Duration::minutes(n)
}

pub fn utc(rfc3339: &str) -> OffsetDateTime {
    OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .expect("valid RFC 3339")
}

pub fn dev(id: &str) -> DeviceId {
    DeviceId::parse(id).expect("valid device id")
}

/// A rule with `trigger`, the given conditions and one event action.
pub fn rule(trigger: Value, conditions: Value) -> Value {
    json!({
        "name": "test rule",
        "trigger": trigger,
        "conditions": conditions,
        "actions": [{"event": {"name": "fired"}}],
    })
}

/// An engine holding `doc` as rule `r1`.
pub fn engine_with(doc: Value) -> Engine {
    let mut engine = Engine::new();
    let rule = parse_rule_value(doc).expect("valid rule");
    engine.insert(RuleId("r1".into()), rule).expect("loads");
    engine
}

pub fn reading(device: &str, sensor: Sensor, val: f64, at: OffsetDateTime) -> Event {
    Event::Reading {
        device: dev(device),
        sensor,
        val,
        at,
    }
}

pub fn tick(at: OffsetDateTime) -> Event {
    Event::Tick { at }
}

/// Feeds events in order and returns every firing.
pub fn feed(engine: &mut Engine, events: impl IntoIterator<Item = Event>) -> Vec<Firing> {
    events.into_iter().flat_map(|e| engine.handle(&e)).collect()
}

/// Feeds one event and returns how many rules fired.
pub fn fires(engine: &mut Engine, event: Event) -> usize {
    engine.handle(&event).len()
}
