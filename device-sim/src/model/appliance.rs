//! The appliances behind an IR hub — air conditioner, TV, light — as state machines.
//!
//! Applying an action either changes state (and says whether anything changed) or
//! is rejected with a reason, the way a real appliance model refuses settings it
//! does not support. Invalid input never changes state.

use crate::payload::{AirconPatch, AirconState, ApplianceStates, LightState, TvState};

use super::sensors::RoomInfluence;

/// Air conditioner modes the simulated model supports.
pub const AC_MODES: [&str; 5] = ["cool", "warm", "dry", "blow", "auto"];
/// TV inputs.
pub const TV_INPUTS: [&str; 3] = ["t", "bs", "cs"];

/// Why an appliance refused an action.
pub type Refusal = String;

/// Builds the initial state: everything off, sensible settings.
pub fn initial_states() -> ApplianceStates {
    ApplianceStates {
        aircon: AirconState {
            temp: "26".into(),
            temp_unit: "c".into(),
            mode: "cool".into(),
            vol: "auto".into(),
            dir: "auto".into(),
            dirh: String::new(),
            button: "power-off".into(),
        },
        tv: TvState {
            input: "t".into(),
            power: "off".into(),
            channel: "1".into(),
            volume: "10".into(),
        },
        light: LightState {
            brightness: "100".into(),
            power: "off".into(),
            last_button: "off".into(),
        },
    }
}

/// What the appliances do to the room's sensors.
pub fn influence(states: &ApplianceStates) -> RoomInfluence {
    let ac = &states.aircon;
    let ac_setpoint = match (ac.button.as_str(), ac.mode.as_str()) {
        ("", "cool" | "warm" | "dry") => ac.temp.parse().ok(),
        _ => None,
    };
    RoomInfluence {
        ac_setpoint,
        light_on: states.light.power == "on",
    }
}

/// Applies an air conditioner settings change; `Ok(true)` if anything changed.
pub fn apply_aircon(state: &mut AirconState, patch: &AirconPatch) -> Result<bool, Refusal> {
    let mut next = state.clone();
    if let Some(mode) = &patch.mode {
        if !AC_MODES.contains(&mode.as_str()) {
            return Err(format!("unsupported mode {mode:?}"));
        }
        if *mode != next.mode && patch.temp.is_none() {
            next.temp = default_temp(mode).into();
        }
        next.mode = mode.clone();
    }
    if let Some(temp) = &patch.temp {
        next.temp = temp.clone();
    }
    check_temp(&next.mode, &next.temp)?;
    if let Some(vol) = &patch.vol {
        if !matches!(vol.as_str(), "" | "auto" | "1" | "2" | "3" | "4" | "5") {
            return Err(format!("unsupported air volume {vol:?}"));
        }
        next.vol = vol.clone();
    }
    if let Some(dir) = &patch.dir {
        if !matches!(
            dir.as_str(),
            "" | "auto" | "swing" | "1" | "2" | "3" | "4" | "5"
        ) {
            return Err(format!("unsupported air direction {dir:?}"));
        }
        next.dir = dir.clone();
    }
    if let Some(dirh) = &patch.dirh {
        next.dirh = dirh.clone();
    }
    if let Some(button) = &patch.button {
        if !matches!(button.as_str(), "" | "power-off") {
            return Err(format!("unsupported button {button:?}"));
        }
        next.button = button.clone();
    }
    let changed = next != *state;
    *state = next;
    Ok(changed)
}

fn default_temp(mode: &str) -> &'static str {
    match mode {
        "cool" => "26",
        "warm" => "22",
        "dry" => "24",
        "auto" => "0",
        _ => "",
    }
}

fn check_temp(mode: &str, temp: &str) -> Result<(), Refusal> {
    let range = match mode {
        "cool" | "dry" => (18, 32),
        "warm" => (14, 30),
        "auto" => (-2, 2),
        _ if temp.is_empty() => return Ok(()),
        _ => return Err(format!("mode {mode} takes no temperature")),
    };
    match temp.parse::<i32>() {
        Ok(t) if (range.0..=range.1).contains(&t) => Ok(()),
        _ => Err(format!(
            "temperature {temp:?} outside {}..{} for mode {mode}",
            range.0, range.1
        )),
    }
}

/// Presses a TV remote button; `Ok(true)` if anything changed.
pub fn press_tv(state: &mut TvState, button: &str) -> Result<bool, Refusal> {
    let before = state.clone();
    let on = state.power == "on";
    match button {
        "power" => state.power = if on { "off" } else { "on" }.into(),
        _ if !on => return Err("TV is off".into()),
        "vol-up" => state.volume = step(&state.volume, 1, 0, 50),
        "vol-down" => state.volume = step(&state.volume, -1, 0, 50),
        "ch-up" => state.channel = wrap_channel(&state.channel, 1),
        "ch-down" => state.channel = wrap_channel(&state.channel, -1),
        "mute" => state.volume = "0".into(),
        b if b.starts_with("input-") => {
            let input = &b["input-".len()..];
            if !TV_INPUTS.contains(&input) {
                return Err(format!("unsupported input {input:?}"));
            }
            state.input = input.into();
        }
        b => match b.parse::<u8>() {
            Ok(ch @ 1..=12) => state.channel = ch.to_string(),
            _ => return Err(format!("unknown TV button {b:?}")),
        },
    }
    Ok(*state != before)
}

/// Presses a light remote button; `Ok(true)` if anything changed.
pub fn press_light(state: &mut LightState, button: &str) -> Result<bool, Refusal> {
    let before = state.clone();
    match button {
        "on" => state.power = "on".into(),
        "off" => state.power = "off".into(),
        "onoff" => {
            state.power = if state.power == "on" { "off" } else { "on" }.into();
        }
        "full" => {
            state.power = "on".into();
            state.brightness = "100".into();
        }
        "night" => {
            state.power = "on".into();
            state.brightness = "10".into();
        }
        "bright-up" | "bright-down" => {
            if state.power != "on" {
                return Err("light is off".into());
            }
            let delta = if button == "bright-up" { 10 } else { -10 };
            state.brightness = step(&state.brightness, delta, 10, 100);
        }
        other => return Err(format!("unknown light button {other:?}")),
    }
    state.last_button = button.into();
    Ok(*state != before)
}

fn step(value: &str, delta: i32, lo: i32, hi: i32) -> String {
    let v: i32 = value.parse().unwrap_or(lo);
    (v + delta).clamp(lo, hi).to_string()
}

fn wrap_channel(value: &str, delta: i32) -> String {
    let v: i32 = value.parse().unwrap_or(1);
    ((v - 1 + delta).rem_euclid(12) + 1).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(f: impl FnOnce(&mut AirconPatch)) -> AirconPatch {
        let mut p = AirconPatch::default();
        f(&mut p);
        p
    }

    #[test]
    fn the_aircon_turns_on_and_off_with_the_button() {
        let mut s = initial_states().aircon;
        assert_eq!(
            apply_aircon(&mut s, &patch(|p| p.button = Some("".into()))),
            Ok(true)
        );
        assert_eq!(s.button, "");
        assert_eq!(
            apply_aircon(&mut s, &patch(|p| p.button = Some("".into()))),
            Ok(false)
        );
        assert_eq!(
            apply_aircon(&mut s, &patch(|p| p.button = Some("power-off".into()))),
            Ok(true)
        );
        assert_eq!(s.button, "power-off");
    }

    #[test]
    fn changing_aircon_mode_picks_a_temperature_valid_for_it() {
        let mut s = initial_states().aircon;
        apply_aircon(&mut s, &patch(|p| p.mode = Some("warm".into()))).expect("warm");
        assert_eq!((s.mode.as_str(), s.temp.as_str()), ("warm", "22"));
        apply_aircon(&mut s, &patch(|p| p.mode = Some("blow".into()))).expect("blow");
        assert_eq!(s.temp, "");
        apply_aircon(&mut s, &patch(|p| p.mode = Some("auto".into()))).expect("auto");
        assert_eq!(s.temp, "0");
    }

    #[test]
    fn invalid_aircon_settings_are_refused_and_change_nothing() {
        let mut s = initial_states().aircon;
        let before = s.clone();
        for bad in [
            patch(|p| p.temp = Some("40".into())),
            patch(|p| p.temp = Some("hot".into())),
            patch(|p| p.mode = Some("turbo".into())),
            patch(|p| p.vol = Some("9".into())),
            patch(|p| p.dir = Some("up".into())),
            patch(|p| p.button = Some("explode".into())),
            patch(|p| {
                p.mode = Some("blow".into());
                p.temp = Some("25".into())
            }),
        ] {
            assert!(apply_aircon(&mut s, &bad).is_err(), "{bad:?}");
            assert_eq!(s, before);
        }
    }

    #[test]
    fn a_cooling_aircon_influences_the_room_and_an_idle_one_does_not() {
        let mut states = initial_states();
        assert_eq!(influence(&states).ac_setpoint, None);
        apply_aircon(
            &mut states.aircon,
            &patch(|p| {
                p.button = Some("".into());
                p.temp = Some("24".into())
            }),
        )
        .expect("valid");
        assert_eq!(influence(&states).ac_setpoint, Some(24.0));
    }

    #[test]
    fn the_tv_only_obeys_buttons_while_on() {
        let mut tv = initial_states().tv;
        assert!(press_tv(&mut tv, "ch-up").is_err());
        assert_eq!(press_tv(&mut tv, "power"), Ok(true));
        assert_eq!(press_tv(&mut tv, "ch-down"), Ok(true));
        assert_eq!(tv.channel, "12");
        assert_eq!(press_tv(&mut tv, "input-bs"), Ok(true));
        assert_eq!(tv.input, "bs");
        assert_eq!(press_tv(&mut tv, "5"), Ok(true));
        assert_eq!(tv.channel, "5");
        assert!(press_tv(&mut tv, "input-hdmi9").is_err());
        assert!(press_tv(&mut tv, "13").is_err());
        assert_eq!(press_tv(&mut tv, "power"), Ok(true));
        assert_eq!(tv.power, "off");
    }

    #[test]
    fn the_light_dims_within_bounds_and_remembers_the_last_button() {
        let mut light = initial_states().light;
        assert!(press_light(&mut light, "bright-down").is_err());
        assert_eq!(press_light(&mut light, "night"), Ok(true));
        assert_eq!(press_light(&mut light, "bright-down"), Ok(true));
        assert_eq!(light.brightness, "10", "dimming stops at the bottom");
        assert_eq!(light.last_button, "bright-down");
        press_light(&mut light, "onoff").expect("toggle");
        assert_eq!(light.power, "off");
        assert!(press_light(&mut light, "disco").is_err());
    }
}
