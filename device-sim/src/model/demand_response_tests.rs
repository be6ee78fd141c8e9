//! A household's meter follows what its air conditioner is commanded into:
//! the measurable effect a demand-response event relies on.
#![allow(clippy::unwrap_used)]

use kumo_contract::payload::{AckResult, DeviceKind};

use super::device::{CommandOutcome, CommandPolicy, DeviceModel, Telemetry};
use super::rng::SimRng;

/// A gateway whose household cools with its unit on warm days (a room at
/// 28 °C or more before it ran): the first seed that does.
fn cooling_household() -> (u64, DeviceModel) {
    (0..100)
        .map(|seed| {
            let mut d = DeviceModel::new(
                DeviceKind::Meter,
                SimRng::new(seed),
                CommandPolicy::default(),
            );
            d.household_habits(1.0);
            (seed, d)
        })
        .find(|(_, d)| {
            let mut probe = d.clone();
            let vals = echonet_vals(&mut probe, r#""epcs":[128,176,187]"#, "echonet_refresh");
            vals[..2] == ["30", "42"] && u8::from_str_radix(&vals[2], 16).unwrap() >= 28
        })
        .expect("some household cools")
}

/// Sends an ECHONET Lite command to the unit and returns the values acked.
fn echonet_vals(d: &mut DeviceModel, args: &str, kind: &str) -> Vec<String> {
    let cmd = format!(r#"{{"id":"x","type":"{kind}","eoj":"013001",{args}}}"#);
    match d.handle_command(cmd.as_bytes(), 1) {
        CommandOutcome::Ack { ack, .. } => {
            assert_eq!(ack.result, AckResult::Ok, "{ack:?}");
            ack.echonetlite_properties
                .unwrap()
                .into_iter()
                .map(|p| p.val)
                .collect()
        }
        other => panic!("{other:?}"),
    }
}

/// Steps `d` a minute at a time from `from` to `to` o'clock; the mean power
/// (W) and the net counter (bought less sold) at the end.
fn run(d: &mut DeviceModel, from: f64, to: f64) -> (f64, i64) {
    let minutes = ((to - from) * 60.0) as usize;
    let (mut sum, mut count) = (0.0, 0);
    for m in 0..minutes {
        let Telemetry::Meter(r) = d.step(from + m as f64 / 60.0, 60.0) else {
            panic!("meter telemetry")
        };
        sum += r.instantaneous_w as f64;
        count = r.bought_count as i64 - r.sold_count as i64;
    }
    (sum / minutes as f64, count)
}

#[test]
fn turning_the_aircon_off_lowers_the_households_load_and_raising_its_setpoint_less_so() {
    let (seed, mut usual) = cooling_household();
    run(&mut usual, 10.0, 14.0);
    let (mut off, mut raised) = (usual.clone(), usual.clone());
    echonet_vals(&mut off, r#""epc":128,"edt":"31""#, "echonet_set");
    let set = echonet_vals(&mut raised, r#""epcs":[179]"#, "echonet_refresh");
    let higher = u8::from_str_radix(&set[0], 16).unwrap() + 2;
    echonet_vals(
        &mut raised,
        &format!(r#""epc":179,"edt":"{higher:02x}""#),
        "echonet_set",
    );

    let (usual_w, usual_count) = run(&mut usual, 14.0, 16.0);
    let (off_w, off_count) = run(&mut off, 14.0, 16.0);
    let (raised_w, _) = run(&mut raised, 14.0, 16.0);
    assert!(
        usual_w - off_w > 150.0,
        "seed {seed}: {usual_w} W usually, {off_w} W with the unit off"
    );
    assert!(
        raised_w < usual_w - 50.0,
        "seed {seed}: +2 °C: {raised_w} W vs {usual_w} W"
    );
    assert!(raised_w > off_w, "a raised setpoint still cools");
    // The counters show it too: at least 0.3 kWh less bought (or more sold,
    // with solar) in two hours.
    assert!(
        usual_count >= off_count + 3,
        "{usual_count} vs {off_count} counts"
    );
}

#[test]
fn without_habits_a_gateways_unit_waits_for_a_command() {
    let mut d = DeviceModel::new(DeviceKind::Meter, SimRng::new(1), CommandPolicy::default());
    d.household_habits(0.0);
    assert_eq!(
        echonet_vals(&mut d, r#""epcs":[128]"#, "echonet_refresh"),
        ["31"]
    );
}
