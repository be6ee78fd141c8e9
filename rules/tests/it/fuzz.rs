//! Fuzzing of `/v1/rules` documents: rules of every trigger, condition and
//! action kind, edited as JSON trees (values of other types and at the
//! edges, fields removed or added, deep nesting) and damaged as bytes.
//! Properties: no panic; a refusal is a [`RuleError`] naming a field or the
//! syntax; an accepted rule passes validation again and round-trips.

use kumo_rules::{parse_rule, parse_rule_value, validate, RuleError};
use kumo_testkit::fuzz::{apply, config, damage, damaged, edit, same_json};
use proptest::prelude::*;
use serde_json::{json, Value};

/// One rule per trigger kind, with every condition and action kind spread
/// over them.
fn seeds() -> Vec<Value> {
    let actions = json!([
        {"command": {"appliance": "ac-1", "kind": "aircon_settings",
                     "params": {"operation_mode": "cool", "temperature": "26"}}},
        {"command": {"appliance": "tv-1", "kind": "tv", "params": {"button": "power"}}},
        {"command": {"appliance": "l-1", "kind": "light", "params": {"button": "on"}}},
        {"command": {"appliance": "ir-1", "kind": "signal", "params": {"signal": "sig-9"}}},
        {"webhook": {"url": "https://example.com/hook"}},
        {"event": {"name": "bedroom.hot", "data": {"note": "x"}}}
    ]);
    let conditions = json!([
        {"time_window": {"from": "22:00", "to": "06:00", "time_zone": "Asia/Tokyo"}},
        {"sensor": {"device": "remo-2", "sensor": "hu", "op": "above", "value": 60}}
    ]);
    [
        json!({"threshold": {"device": "remo-1", "sensor": "te", "op": "above",
                             "value": 28.0, "hysteresis": 0.5, "for_secs": 300}}),
        json!({"motion_seen": {"device": "d1", "quiet_minutes": 10}}),
        json!({"motion_not_seen": {"device": "d1", "minutes": 30}}),
        json!({"presence": {"device": "d1", "online": false, "for_secs": 60}}),
        json!({"schedule": {"days": ["mon", "fri"], "at": "07:30", "time_zone": "America/New_York"}}),
        json!({"meter_power": {"device": "m1", "op": "below", "watts": 100, "hysteresis": 20}}),
    ]
    .into_iter()
    .map(|trigger| {
        json!({"name": "a rule", "enabled": true, "trigger": trigger,
               "conditions": conditions, "actions": actions})
    })
    .collect()
}

#[test]
fn every_seed_rule_parses() {
    for doc in seeds() {
        let body = serde_json::to_vec(&doc).expect("bytes");
        parse_rule(&body).unwrap_or_else(|e| panic!("{doc}: {e}"));
    }
}

/// The property for one body: refused with a typed error, or accepted, valid
/// and round-tripping.
fn check(body: &[u8]) -> Result<(), TestCaseError> {
    match parse_rule(body) {
        Ok(rule) => {
            prop_assert!(validate(&rule).is_ok());
            let again = serde_json::to_value(&rule).expect("a rule serializes");
            let back = parse_rule_value(again.clone())
                .map_err(|e| TestCaseError::fail(format!("{again} does not parse back: {e}")))?;
            let back = serde_json::to_value(&back).expect("a rule serializes");
            prop_assert!(same_json(&back, &again), "{back} != {again}");
        }
        Err(RuleError::Invalid { field, problem }) => {
            prop_assert!(!problem.is_empty(), "{field}: empty problem");
        }
        Err(RuleError::Syntax(_)) => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1_500))]

    /// Seed rules edited as JSON trees, then damaged as bytes.
    #[test]
    fn mutated_rules_are_refused_by_field_or_round_trip(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..6),
        damage in damage(),
    ) {
        let seeds = seeds();
        let mut doc = seeds[seed.index(seeds.len())].clone();
        for e in &edits {
            apply(&mut doc, e);
        }
        check(&damaged(serde_json::to_vec(&doc).expect("bytes"), &damage))?;
    }

    /// Bytes with no structure at all.
    #[test]
    fn arbitrary_bodies_are_refused_without_panicking(body in prop::collection::vec(any::<u8>(), 0..200)) {
        check(&body)?;
    }
}
