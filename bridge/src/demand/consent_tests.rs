#![allow(clippy::unwrap_used)]

use super::*;
use crate::demand::unit::Unit;
use kumo_contract::appliance::MODELS;
use time::macros::datetime;

fn caps() -> &'static kumo_contract::appliance::AirconCaps {
    MODELS
        .iter()
        .find(|m| m.id == "kumo-ac-generic")
        .unwrap()
        .aircon()
        .unwrap()
}

/// An IR unit of the generic model, in the form consent is decided on.
fn unit(mode: &str, temp: &str, button: &str) -> UnitSettings {
    let mut state = caps().initial();
    state.mode = mode.into();
    state.temp = temp.into();
    state.button = button.into();
    let caps = caps();
    Unit::Ac { state, caps }.settings().unwrap()
}

fn consent(max: f64, allow_off: bool) -> Consent {
    Consent {
        max_setpoint_change: max,
        allow_off,
        excluded_hours: vec![],
        utc_offset_minutes: 0,
    }
}

#[test]
fn a_setpoint_change_is_capped_at_the_users_limit() {
    let s = unit("cool", "25", "");
    let t = Target::Setpoint(3.0);
    assert_eq!(
        decide(t, &consent(2.0, false), &s),
        Decision::Setpoint(27.0)
    );
    assert_eq!(
        decide(t, &consent(5.0, false), &s),
        Decision::Setpoint(28.0)
    );
    assert_eq!(
        decide(Target::Setpoint(1.0), &consent(5.0, false), &s),
        Decision::Setpoint(26.0)
    );
}

#[test]
fn a_heating_unit_is_turned_down_not_up() {
    let s = unit("warm", "22", "");
    assert_eq!(
        decide(Target::Setpoint(2.0), &consent(2.0, false), &s),
        Decision::Setpoint(20.0)
    );
}

#[test]
fn the_setpoint_never_leaves_the_models_range() {
    let top = caps().mode("cool").unwrap().temp.last().unwrap();
    let s = unit("cool", top, "");
    assert!(matches!(
        decide(Target::Setpoint(2.0), &consent(2.0, false), &s),
        Decision::Skip(_)
    ));
}

#[test]
fn turning_off_needs_consent_and_falls_back_to_the_allowed_change() {
    let s = unit("cool", "25", "");
    assert_eq!(
        decide(Target::Off, &consent(1.0, true), &s),
        Decision::PowerOff
    );
    assert_eq!(
        decide(Target::Off, &consent(1.0, false), &s),
        Decision::Setpoint(26.0)
    );
    assert!(matches!(
        decide(Target::Off, &consent(0.0, false), &s),
        Decision::Skip(_)
    ));
}

#[test]
fn units_that_are_off_or_without_a_setpoint_are_left_alone() {
    let s = unit("cool", "25", "power-off");
    assert!(matches!(
        decide(Target::Setpoint(2.0), &consent(2.0, true), &s),
        Decision::Skip(r) if r.contains("off already")
    ));
    let s = unit("dry", "0", "");
    assert!(matches!(
        decide(Target::Setpoint(2.0), &consent(2.0, true), &s),
        Decision::Skip(r) if r.contains("no setpoint")
    ));
    let s = unit("dry", "0", "");
    assert_eq!(
        decide(Target::Off, &consent(2.0, true), &s),
        Decision::PowerOff
    );
}

#[test]
fn excluded_hours_are_read_on_the_users_clock() {
    let mut c = consent(2.0, true);
    c.excluded_hours = vec![18];
    c.utc_offset_minutes = 9 * 60;
    // 09:00–09:30 UTC is 18:00–18:30 in Japan.
    let start = datetime!(2026-07-01 09:00 UTC);
    assert_eq!(
        excluded_hour_in(&c, start, start + time::Duration::minutes(30)),
        Some(18)
    );
    // 08:00–09:00 UTC ends as 18:00 begins: not touched.
    assert_eq!(
        excluded_hour_in(&c, start - time::Duration::hours(1), start),
        None
    );
    // A window from 17:59 touches 18.
    let s = datetime!(2026-07-01 08:59 UTC);
    assert_eq!(
        excluded_hour_in(&c, s, s + time::Duration::minutes(2)),
        Some(18)
    );
}

#[test]
fn the_stagger_is_deterministic_bounded_and_spread() {
    let spread = time::Duration::seconds(60);
    let offsets: Vec<_> = (0..500)
        .map(|i| stagger("evt-1", &format!("ac-{i}"), spread))
        .collect();
    assert_eq!(offsets[7], stagger("evt-1", "ac-7", spread));
    assert_ne!(stagger("evt-2", "ac-7", spread), offsets[7]);
    assert!(offsets
        .iter()
        .all(|o| *o >= time::Duration::ZERO && *o <= spread));
    // Each sixth of the window gets roughly a sixth of the units.
    for k in 0..6 {
        let lo = spread * k / 6;
        let hi = spread * (k + 1) / 6;
        let n = offsets.iter().filter(|o| **o >= lo && **o < hi).count();
        assert!((50..=120).contains(&n), "sixth {k}: {n}");
    }
    assert_eq!(
        stagger("e", "a", time::Duration::ZERO),
        time::Duration::ZERO
    );
}

#[test]
fn the_spread_is_at_most_half_the_window() {
    assert_eq!(
        spread_for(time::Duration::seconds(10), 300),
        time::Duration::seconds(5)
    );
    assert_eq!(
        spread_for(time::Duration::hours(2), 300),
        time::Duration::seconds(300)
    );
}

fn cap(max_change: f64) -> Capacity {
    Capacity {
        max_change,
        kw_per_kelvin: 0.06,
    }
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn a_kw_target_becomes_one_setpoint_change_for_units_alike() {
    // 0.6 kW over 5 units at 0.06 kW/K: 0.12 kW, 2 K each.
    let p = kw_plan(0.6, &[cap(3.0); 5]).unwrap();
    assert!(near(p.setpoint_change, 2.0), "{p:?}");
    assert!(near(p.expected_kw, 0.6), "{p:?}");
    // Exactly at the limits: all of it, at the limit.
    let p = kw_plan(0.9, &[cap(3.0); 5]).unwrap();
    assert!(
        near(p.setpoint_change, 3.0) && near(p.expected_kw, 0.9),
        "{p:?}"
    );
}

#[test]
fn units_that_may_move_further_make_up_for_those_that_may_not() {
    // Two units allow 1 K, two allow 4 K, one is in an excluded hour (0).
    // 0.36 kW: at Δ = 2 the small ones give 0.06 each, the large 0.12 each.
    let units = [cap(1.0), cap(1.0), cap(4.0), cap(4.0), cap(0.0)];
    let p = kw_plan(0.36, &units).unwrap();
    assert!(near(p.setpoint_change, 2.0), "{p:?}");
    assert!(near(p.expected_kw, 0.36), "{p:?}");
    // An even share (0.072 kW, 1.2 K each) would have given
    // 2 × 0.06 + 2 × 0.072 = 0.264 kW: short of the target.
    let even: f64 = units
        .iter()
        .map(|u| 0.06 * u.max_change.min(0.36 / 5.0 / 0.06))
        .sum();
    assert!(even < 0.3, "{even}");
    // Below the smallest limit every unit moves alike.
    let p = kw_plan(0.12, &units).unwrap();
    assert!(near(p.setpoint_change, 0.5), "{p:?}");
}

#[test]
fn a_target_beyond_every_limit_gets_the_largest_change_and_says_what_it_gives() {
    let units = [cap(1.0), cap(2.0)];
    let p = kw_plan(5.0, &units).unwrap();
    assert!(near(p.setpoint_change, 2.0), "{p:?}");
    assert!(near(p.expected_kw, 0.18), "{p:?}");
    // Never beyond 10 °C, whatever a limit says.
    let p = kw_plan(100.0, &[cap(12.0)]).unwrap();
    assert!(
        near(p.setpoint_change, 10.0) && near(p.expected_kw, 0.6),
        "{p:?}"
    );
    // Sensitivities differ: the change is where their sum meets the target.
    let units = [
        Capacity {
            max_change: 3.0,
            kw_per_kelvin: 0.1,
        },
        Capacity {
            max_change: 3.0,
            kw_per_kelvin: 0.2,
        },
    ];
    let p = kw_plan(0.45, &units).unwrap();
    assert!(near(p.setpoint_change, 1.5), "{p:?}");
}

#[test]
fn no_unit_that_may_move_means_no_plan() {
    assert_eq!(kw_plan(1.0, &[]), None);
    assert_eq!(kw_plan(1.0, &[cap(0.0), cap(0.0)]), None);
}
