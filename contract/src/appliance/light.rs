//! Ceiling lights: the state a light is in and what each remote button does.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::catalog::Model;
use super::{step, Refusal};

/// Light state, as the Nature API's `LightState`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LightState {
    /// `10`–`100` (percent).
    pub brightness: String,
    /// `on` or `off`.
    pub power: String,
    /// The last button pressed (`""` before any).
    pub last_button: String,
}

impl Default for LightState {
    /// A new light: off, at full brightness when turned on.
    fn default() -> Self {
        Self {
            brightness: "100".into(),
            power: "off".into(),
            last_button: String::new(),
        }
    }
}

impl LightState {
    /// Whether a light can be in this state (power, brightness 10–100).
    pub fn check(&self) -> Result<(), Refusal> {
        super::one_of("power", &self.power, &["on", "off"])?;
        super::within("brightness", &self.brightness, 10, 100)
    }
}

impl Model {
    /// The light state after `pressed`, or why this model has no such button.
    /// Dimming a light that is off changes only the last button.
    pub fn press_light(&self, state: &LightState, pressed: &str) -> Result<LightState, Refusal> {
        self.check_button(pressed)?;
        let mut next = state.clone();
        let on = state.power == "on";
        match pressed {
            "on" => next.power = "on".into(),
            "off" => next.power = "off".into(),
            "onoff" => next.power = if on { "off" } else { "on" }.into(),
            "on-100" => (next.power, next.brightness) = ("on".into(), "100".into()),
            "night" => (next.power, next.brightness) = ("on".into(), "10".into()),
            "bright-up" if on => next.brightness = step(&state.brightness, 10, 10, 100),
            "bright-down" if on => next.brightness = step(&state.brightness, -10, 10, 100),
            _ => {}
        }
        next.last_button = pressed.to_string();
        Ok(next)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::appliance::catalog::generic;
    use crate::appliance::ApplianceKind;

    fn press(s: &LightState, b: &str) -> Result<LightState, Refusal> {
        generic(ApplianceKind::Light).press_light(s, b)
    }

    #[test]
    fn the_light_dims_within_bounds_and_remembers_the_last_button() {
        let off = LightState::default();
        let still_off = press(&off, "bright-down").unwrap();
        assert_eq!(
            (still_off.power.as_str(), still_off.brightness.as_str()),
            ("off", "100")
        );
        assert_eq!(still_off.last_button, "bright-down");
        let night = press(&off, "night").unwrap();
        assert_eq!(night.brightness, "10");
        let dim = press(&night, "bright-down").unwrap();
        assert_eq!(dim.brightness, "10", "dimming stops at the bottom");
        assert_eq!(press(&dim, "on-100").unwrap().brightness, "100");
        assert_eq!(press(&dim, "onoff").unwrap().power, "off");
    }

    #[test]
    fn buttons_the_model_lacks_are_refused() {
        assert_eq!(
            press(&LightState::default(), "disco").unwrap_err().field,
            "button"
        );
    }
}
