//! TVs: the state a set is in and what each remote button does to it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::catalog::Model;
use super::{one_of, step, within, Refusal};

/// TV state: the Nature API's `TVState` (`input`) plus what the remote changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TvState {
    /// `t` (terrestrial), `bs` or `cs`.
    pub input: String,
    /// `on` or `off`.
    pub power: String,
    /// Current channel, `1`–`12`.
    pub channel: String,
    /// Volume, `0`–`50`.
    pub volume: String,
}

impl Default for TvState {
    /// A new set: off, terrestrial channel 1, volume 10.
    fn default() -> Self {
        Self {
            input: "t".into(),
            power: "off".into(),
            channel: "1".into(),
            volume: "10".into(),
        }
    }
}

impl Model {
    /// The TV state after `pressed`, or why this model has no such button.
    /// A set that is off obeys only `power`; other buttons change nothing.
    pub fn press_tv(&self, state: &TvState, pressed: &str) -> Result<TvState, Refusal> {
        self.check_button(pressed)?;
        let mut next = state.clone();
        let on = state.power == "on";
        match pressed {
            "power" => next.power = if on { "off" } else { "on" }.into(),
            _ if !on => {}
            "input-terrestrial" => next.input = "t".into(),
            "input-bs" => next.input = "bs".into(),
            "input-cs" => next.input = "cs".into(),
            "ch-up" => next.channel = wrap_channel(&state.channel, 1),
            "ch-down" => next.channel = wrap_channel(&state.channel, -1),
            "vol-up" => next.volume = step(&state.volume, 1, 0, 50),
            "vol-down" => next.volume = step(&state.volume, -1, 0, 50),
            "mute" => next.volume = "0".into(),
            // Menu navigation (`ok`, `back`) changes nothing Kumo tracks.
            _ => {}
        }
        Ok(next)
    }
}

impl TvState {
    /// Whether a set can be in this state (power, input, channel 1–12, volume 0–50).
    pub fn check(&self) -> Result<(), Refusal> {
        one_of("power", &self.power, &["on", "off"])?;
        one_of("input", &self.input, &["t", "bs", "cs"])?;
        within("channel", &self.channel, 1, 12)?;
        within("volume", &self.volume, 0, 50)
    }
}

fn wrap_channel(value: &str, delta: i32) -> String {
    let v: i32 = value.parse().unwrap_or(1);
    ((v - 1 + delta).rem_euclid(12) + 1).to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::appliance::catalog::generic;
    use crate::appliance::ApplianceKind;

    fn press(s: &TvState, b: &str) -> Result<TvState, Refusal> {
        generic(ApplianceKind::Tv).press_tv(s, b)
    }

    #[test]
    fn a_tv_that_is_off_obeys_only_power() {
        let off = TvState::default();
        assert_eq!(press(&off, "ch-up").unwrap(), off);
        let on = press(&off, "power").unwrap();
        assert_eq!(on.power, "on");
        let down = press(&on, "ch-down").unwrap();
        assert_eq!(down.channel, "12", "channels wrap around");
        assert_eq!(press(&down, "input-bs").unwrap().input, "bs");
        assert_eq!(press(&on, "power").unwrap().power, "off");
    }

    #[test]
    fn buttons_the_model_lacks_are_refused() {
        let r = press(&TvState::default(), "input-hdmi9").unwrap_err();
        assert_eq!(r.field, "button");
        assert!(r.allowed.contains(&"power"));
    }
}
