//! Level triggers: sensor thresholds, smart-meter power, holds, hysteresis and
//! condition gating.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use kumo_rules::{Action, Cause, Engine, Event, RuleId, Sensor};
use serde_json::json;

fn hot(hysteresis: f64, for_secs: u32) -> serde_json::Value {
    json!({"threshold": {"device": "remo-1", "sensor": "te", "op": "above", "value": 28.0,
                         "hysteresis": hysteresis, "for_secs": for_secs}})
}

fn te(val: f64, at: i64) -> Event {
    reading("remo-1", Sensor::Te, val, secs(at))
}

#[test]
fn threshold_fires_once_when_crossed_and_not_again_while_held() {
    let mut e = engine_with(rule(hot(0.0, 0), json!([])));
    assert_eq!(fires(&mut e, te(27.0, 0)), 0);
    let firings = e.handle(&te(29.0, 60));
    assert_eq!(firings.len(), 1);
    let f = &firings[0];
    assert_eq!(f.rule, RuleId("r1".into()));
    assert_eq!(f.at, secs(60));
    assert_eq!(
        f.cause,
        Cause::Threshold {
            device: dev("remo-1"),
            sensor: Sensor::Te,
            val: 29.0
        }
    );
    assert!(matches!(&f.actions[..], [Action::Event(ev)] if ev.name == "fired"));
    for (i, v) in [30.0, 29.5, 31.0, 28.1].into_iter().enumerate() {
        assert_eq!(fires(&mut e, te(v, 120 + i as i64 * 60)), 0, "held at {v}");
    }
    assert_eq!(fires(&mut e, tick(secs(1000))), 0);
}

#[test]
fn threshold_fires_again_after_it_clears_and_recrosses() {
    let mut e = engine_with(rule(hot(0.0, 0), json!([])));
    let fired: Vec<usize> = [29.0, 27.0, 29.0, 28.0, 28.5]
        .into_iter()
        .enumerate()
        .map(|(i, v)| fires(&mut e, te(v, i as i64 * 60)))
        .collect();
    // 28.0 is not above 28: it clears (no hysteresis), so 28.5 re-fires.
    assert_eq!(fired, [1, 0, 1, 0, 1]);
}

#[test]
fn hysteresis_prevents_flapping_around_the_threshold() {
    let mut e = engine_with(rule(hot(1.0, 0), json!([])));
    let noisy = [28.3, 27.8, 28.2, 27.5, 28.4, 27.1, 28.9];
    let fired: usize = noisy
        .into_iter()
        .enumerate()
        .map(|(i, v)| fires(&mut e, te(v, i as i64 * 60)))
        .sum();
    assert_eq!(fired, 1, "jitter inside the 27–28 band must not re-arm");
    assert_eq!(
        fires(&mut e, te(27.0, 600)),
        0,
        "27.0 clears the band and re-arms"
    );
    assert_eq!(fires(&mut e, te(28.2, 660)), 1);
}

#[test]
fn below_thresholds_clear_above_the_value_plus_hysteresis() {
    let cold = json!({"threshold": {"device": "remo-1", "sensor": "te", "op": "below",
                                    "value": 18.0, "hysteresis": 1.0}});
    let mut e = engine_with(rule(cold, json!([])));
    let fired: Vec<usize> = [17.0, 18.5, 17.0, 19.0, 17.5]
        .into_iter()
        .enumerate()
        .map(|(i, v)| fires(&mut e, te(v, i as i64 * 60)))
        .collect();
    assert_eq!(fired, [1, 0, 0, 0, 1]);
}

#[test]
fn duration_rule_fires_only_after_the_condition_held_for_the_whole_duration() {
    let mut e = engine_with(rule(hot(0.5, 300), json!([])));
    assert_eq!(fires(&mut e, te(29.0, 0)), 0);
    assert_eq!(fires(&mut e, tick(secs(299))), 0);
    assert_eq!(fires(&mut e, tick(secs(300))), 1);
    assert_eq!(fires(&mut e, tick(secs(400))), 0);
    assert_eq!(fires(&mut e, te(30.0, 500)), 0);
}

#[test]
fn duration_restarts_when_the_condition_lapses() {
    let mut e = engine_with(rule(hot(1.0, 300), json!([])));
    assert_eq!(fires(&mut e, te(29.0, 0)), 0);
    // Inside the hysteresis band: no longer above, so the hold starts over.
    assert_eq!(fires(&mut e, te(27.5, 100)), 0);
    assert_eq!(fires(&mut e, te(29.0, 200)), 0);
    assert_eq!(fires(&mut e, tick(secs(400))), 0, "held only 200 s");
    assert_eq!(fires(&mut e, te(29.2, 499)), 0);
    assert_eq!(
        fires(&mut e, te(29.2, 500)),
        1,
        "a reading can complete the hold"
    );
}

#[test]
fn readings_of_other_sensors_and_devices_are_ignored() {
    let mut e = engine_with(rule(hot(0.0, 0), json!([])));
    assert_eq!(
        fires(&mut e, reading("remo-1", Sensor::Hu, 99.0, secs(0))),
        0
    );
    assert_eq!(
        fires(&mut e, reading("remo-2", Sensor::Te, 35.0, secs(1))),
        0
    );
    assert_eq!(fires(&mut e, te(29.0, 2)), 1);
}

#[test]
fn meter_power_fires_once_per_crossing_with_hysteresis() {
    let trigger = json!({"meter_power": {"device": "meter-1", "op": "above", "watts": 3000,
                                         "hysteresis": 200}});
    let mut e = engine_with(rule(trigger, json!([])));
    let power = |w: f64, at: i64| Event::MeterPower {
        device: dev("meter-1"),
        watts: w,
        at: secs(at),
    };
    let firings = e.handle(&power(3500.0, 0));
    assert_eq!(
        firings[0].cause,
        Cause::MeterPower {
            device: dev("meter-1"),
            watts: 3500.0
        }
    );
    let fired: Vec<usize> = [2900.0, 3500.0, 2700.0, 3100.0]
        .into_iter()
        .enumerate()
        .map(|(i, w)| fires(&mut e, power(w, 60 + i as i64 * 60)))
        .collect();
    assert_eq!(fired, [0, 0, 0, 1]);
}

#[test]
fn a_sensor_condition_gates_the_firing_until_it_holds() {
    let humid =
        json!([{"sensor": {"device": "remo-2", "sensor": "hu", "op": "above", "value": 60}}]);
    let mut e = engine_with(rule(hot(0.0, 0), humid));
    assert_eq!(fires(&mut e, te(29.0, 0)), 0, "no humidity known yet");
    assert_eq!(
        fires(&mut e, reading("remo-2", Sensor::Hu, 55.0, secs(10))),
        0
    );
    assert_eq!(fires(&mut e, tick(secs(20))), 0, "humidity too low");
    assert_eq!(
        fires(&mut e, reading("remo-2", Sensor::Hu, 65.0, secs(30))),
        0
    );
    assert_eq!(e.latest(&dev("remo-2"), Sensor::Hu), Some(65.0));
    // Still hot and now humid: the pending trigger fires on the next tick, once.
    assert_eq!(fires(&mut e, tick(secs(31))), 1);
    assert_eq!(fires(&mut e, tick(secs(32))), 0);
}

#[test]
fn a_time_window_condition_gates_the_firing() {
    // 22:00–06:00 in Tokyo is 13:00–21:00 UTC.
    let night =
        json!([{"time_window": {"from": "22:00", "to": "06:00", "time_zone": "Asia/Tokyo"}}]);
    let mut e = engine_with(rule(hot(0.0, 0), night));
    let noon_jst = utc("2026-03-02T03:00:00Z");
    assert_eq!(
        fires(&mut e, reading("remo-1", Sensor::Te, 29.0, noon_jst)),
        0
    );
    assert_eq!(fires(&mut e, tick(utc("2026-03-02T12:59:59Z"))), 0);
    assert_eq!(fires(&mut e, tick(utc("2026-03-02T13:00:00Z"))), 1);
}

#[test]
fn disabled_rules_never_fire() {
    let mut doc = rule(hot(0.0, 0), json!([]));
    doc["enabled"] = json!(false);
    let mut e = engine_with(doc);
    assert_eq!(fires(&mut e, te(29.0, 0)), 0);
}

#[test]
fn replacing_a_rule_resets_its_state_and_removing_it_stops_it() {
    let mut e = engine_with(rule(hot(0.0, 0), json!([])));
    assert_eq!(fires(&mut e, te(29.0, 0)), 1);
    let doc = rule(hot(0.0, 0), json!([]));
    let replacement = kumo_rules::parse_rule_value(doc).unwrap();
    e.insert(RuleId("r1".into()), replacement).unwrap();
    assert_eq!(e.len(), 1);
    assert_eq!(fires(&mut e, te(29.5, 60)), 1, "fresh state is armed");
    assert!(e.remove(&RuleId("r1".into())).is_some());
    assert_eq!(fires(&mut e, te(27.0, 120)), 0);
    assert_eq!(fires(&mut e, te(29.0, 180)), 0);
    assert!(e.is_empty());
}

#[test]
fn several_rules_on_one_device_fire_in_rule_id_order() {
    let mut e = Engine::new();
    for id in ["b", "a"] {
        let r = kumo_rules::parse_rule_value(rule(hot(0.0, 0), json!([]))).unwrap();
        e.insert(RuleId(id.into()), r).unwrap();
    }
    let ids: Vec<String> = e
        .handle(&te(29.0, 0))
        .into_iter()
        .map(|f| f.rule.0)
        .collect();
    assert_eq!(ids, ["a", "b"]);
}

#[test]
fn an_invalid_rule_is_not_loaded() {
    let mut e = Engine::new();
    let mut r = kumo_rules::parse_rule_value(rule(hot(0.0, 0), json!([]))).unwrap();
    r.actions.clear();
    assert!(e.insert(RuleId("r".into()), r).is_err());
    assert!(e.is_empty());
}

#[test]
fn a_firing_serializes_as_an_execution_record() {
    let mut e = engine_with(rule(hot(0.0, 0), json!([])));
    let firing = e.handle(&te(29.5, 0)).pop().unwrap();
    assert_eq!(
        serde_json::to_value(&firing).unwrap(),
        json!({
            "rule": "r1",
            "at": "2026-03-02T00:00:00Z",
            "cause": {"type": "threshold", "device": "remo-1", "sensor": "te", "val": 29.5},
            "actions": [{"event": {"name": "fired"}}],
        })
    );
}

#[test]
fn the_engine_can_live_behind_a_shared_lock() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Engine>();
}
