#![allow(clippy::unwrap_used)]

use super::*;
use crate::demand::consent::{decide, Consent, Target};

/// A unit reporting these properties (hex EDT).
fn unit(status: &str, mode: &str, setpoint: &str) -> ElSettings {
    ElSettings {
        operation_status: status.into(),
        operation_mode: mode.into(),
        set_temperature: setpoint.into(),
    }
}

fn consent(max: f64, allow_off: bool) -> Consent {
    Consent {
        max_setpoint_change: max,
        allow_off,
        excluded_hours: vec![],
        utc_offset_minutes: 0,
    }
}

fn decision(u: &ElSettings, target: Target, c: &Consent) -> Decision {
    decide(target, c, &u.unit_settings())
}

#[test]
fn a_cooling_unit_goes_up_and_a_heating_one_down_by_at_most_the_users_limit() {
    let cooling = unit("30", "42", "1a");
    let d = decision(&cooling, Target::Setpoint(3.0), &consent(2.0, false));
    assert_eq!(d, Decision::Setpoint(28.0));
    let (set, after) = cooling.event_set(&d).unwrap();
    assert_eq!(set, Set { epc: 0xB3, val: 28 });
    assert_eq!(after, unit("30", "42", "1c"));

    let heating = unit("30", "43", "14");
    let d = decision(&heating, Target::Setpoint(1.0), &consent(5.0, false));
    assert_eq!(d, Decision::Setpoint(19.0));
    assert_eq!(heating.event_set(&d).unwrap().1, unit("30", "43", "13"));
}

#[test]
fn a_unit_that_is_off_is_left_alone() {
    let off = unit("31", "42", "1a");
    for target in [Target::Setpoint(2.0), Target::Off] {
        assert!(matches!(
            decision(&off, target, &consent(2.0, true)),
            Decision::Skip(r) if r.contains("off already")
        ));
    }
}

#[test]
fn dry_fan_and_auto_have_no_setpoint_to_move_but_may_be_turned_off() {
    for (mode, name) in [("44", "dry"), ("45", "fan"), ("41", "auto")] {
        let u = unit("30", mode, "18");
        assert!(matches!(
            decision(&u, Target::Setpoint(2.0), &consent(2.0, true)),
            Decision::Skip(r) if r.contains(name) && r.contains("no setpoint")
        ));
        let d = decision(&u, Target::Off, &consent(2.0, true));
        assert_eq!(d, Decision::PowerOff);
        let (set, after) = u.event_set(&d).unwrap();
        assert_eq!(
            set,
            Set {
                epc: 0x80,
                val: 0x31
            }
        );
        assert_eq!(after, unit("31", mode, "18"));
    }
}

#[test]
fn the_setpoint_never_leaves_the_classs_range_of_0_to_50() {
    let c = consent(2.0, false);
    // Already at the end: nothing within the change.
    assert!(matches!(
        decision(&unit("30", "42", "32"), Target::Setpoint(2.0), &c),
        Decision::Skip(_)
    ));
    assert!(matches!(
        decision(&unit("30", "43", "00"), Target::Setpoint(2.0), &c),
        Decision::Skip(_)
    ));
    // Near it: as far as the range goes, not beyond.
    assert_eq!(
        decision(&unit("30", "42", "31"), Target::Setpoint(2.0), &c),
        Decision::Setpoint(50.0)
    );
    assert_eq!(
        decision(&unit("30", "43", "01"), Target::Setpoint(2.0), &c),
        Decision::Setpoint(0.0)
    );
    // 0xFD: the unit has no set temperature now.
    assert!(matches!(
        decision(&unit("30", "42", "fd"), Target::Setpoint(2.0), &c),
        Decision::Skip(r) if r.contains("no setpoint")
    ));
}

#[test]
fn turning_off_without_consent_becomes_the_largest_change_allowed() {
    let u = unit("30", "42", "1a");
    assert_eq!(
        decision(&u, Target::Off, &consent(1.5, false)),
        Decision::Setpoint(27.0),
        "whole degrees only, within 1.5"
    );
    assert!(matches!(
        decision(&u, Target::Off, &consent(0.0, false)),
        Decision::Skip(_)
    ));
    assert_eq!(
        decision(&u, Target::Off, &consent(0.0, true)),
        Decision::PowerOff
    );
}

#[test]
fn a_restore_puts_back_the_one_property_the_event_changed() {
    let before = unit("30", "42", "1a");
    let commanded = unit("30", "42", "1c");
    assert_eq!(
        commanded.restore(&before, &commanded),
        Ok(Set { epc: 0xB3, val: 26 })
    );
    let off = unit("31", "42", "1a");
    assert_eq!(
        off.restore(&before, &off),
        Ok(Set {
            epc: 0x80,
            val: 0x30
        })
    );
}

#[test]
fn a_unit_changed_during_the_event_is_not_restored() {
    let before = unit("30", "42", "1a");
    let commanded = unit("30", "42", "1c");
    for now in [
        unit("30", "42", "1b"),
        unit("31", "42", "1c"),
        unit("30", "44", "1c"),
    ] {
        assert_eq!(
            now.restore(&before, &commanded),
            Err("the settings were changed during the event"),
            "{now:?}"
        );
    }
}

#[test]
fn a_set_is_an_echonet_set_of_the_home_air_conditioner() {
    let (kind, payload, expected) = Set { epc: 0xB3, val: 28 }.command().unwrap();
    assert_eq!(kind, CommandKind::Echonet);
    assert_eq!(
        payload,
        json!({"type": "echonet_set", "eoj": "013001", "epc": 179, "edt": "1c"})
    );
    assert_eq!(
        expected,
        json!([{"epc": 179, "name": "set_temperature", "val": "1c"}])
    );
    assert!(Set { epc: 0xB3, val: 51 }.command().is_err());
    assert!(Set { epc: 0xBB, val: 20 }.command().is_err(), "read only");
}

#[test]
fn settings_read_back_from_a_dispatch_row_are_the_ones_written() {
    let u = unit("30", "43", "15");
    assert_eq!(ElSettings::from_json(Some(u.to_json())), Some(u));
    assert_eq!(ElSettings::from_json(Some(json!({"temp": "26"}))), None);
}
