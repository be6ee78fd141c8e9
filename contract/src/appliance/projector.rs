//! Light projectors — a ceiling light with a projector and speaker in it
//! (Nature's `LIGHT_PROJECTOR`, `POST /1/appliances/{id}/light_projector`):
//! the state one is in and what each remote button does to it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::catalog::{buttons, Model};
use super::{one_of, step, within, Button, Refusal};

/// The buttons of `kumo-light-projector-generic`.
pub(crate) const BUTTONS: &[Button] = buttons![
    ("light-on", "Light on"),
    ("light-off", "Light off"),
    ("projector-on", "Projector on"),
    ("projector-off", "Projector off"),
    ("vol-up", "Volume up"),
    ("vol-down", "Volume down"),
    ("mute", "Mute"),
];

/// Light projector state (Kumo's addition to Nature's `light_projector`,
/// which shows only the remote's layout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LightProjectorState {
    /// The light: `on` or `off`.
    pub light: String,
    /// The projector: `on` or `off`.
    pub projector: String,
    /// The speaker's volume, `0`–`20`.
    pub volume: String,
    /// The last button pressed (`""` before any).
    pub last_button: String,
}

impl Default for LightProjectorState {
    /// A new unit: light and projector off, volume 10.
    fn default() -> Self {
        Self {
            light: "off".into(),
            projector: "off".into(),
            volume: "10".into(),
            last_button: String::new(),
        }
    }
}

impl LightProjectorState {
    /// Whether a light projector can be in this state.
    pub fn check(&self) -> Result<(), Refusal> {
        one_of("light", &self.light, &["on", "off"])?;
        one_of("projector", &self.projector, &["on", "off"])?;
        within("volume", &self.volume, 0, 20)
    }
}

impl Model {
    /// The state after `pressed`, or why this model has no such button. The
    /// volume buttons act only while the projector is on.
    pub fn press_projector(
        &self,
        state: &LightProjectorState,
        pressed: &str,
    ) -> Result<LightProjectorState, Refusal> {
        self.check_button(pressed)?;
        let mut next = state.clone();
        let playing = state.projector == "on";
        match pressed {
            "light-on" => next.light = "on".into(),
            "light-off" => next.light = "off".into(),
            "projector-on" => next.projector = "on".into(),
            "projector-off" => next.projector = "off".into(),
            "vol-up" if playing => next.volume = step(&state.volume, 1, 0, 20),
            "vol-down" if playing => next.volume = step(&state.volume, -1, 0, 20),
            "mute" if playing => next.volume = "0".into(),
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

    fn press(s: &LightProjectorState, b: &str) -> Result<LightProjectorState, Refusal> {
        generic(ApplianceKind::LightProjector).press_projector(s, b)
    }

    #[test]
    fn the_volume_moves_only_while_the_projector_plays() {
        let off = LightProjectorState::default();
        let still = press(&off, "vol-up").unwrap();
        assert_eq!(
            (still.volume.as_str(), still.last_button.as_str()),
            ("10", "vol-up")
        );
        let on = press(&off, "projector-on").unwrap();
        assert_eq!(press(&on, "vol-up").unwrap().volume, "11");
        assert_eq!(press(&on, "mute").unwrap().volume, "0");
        let loud = LightProjectorState {
            volume: "20".into(),
            ..on
        };
        assert_eq!(press(&loud, "vol-up").unwrap().volume, "20");
        assert_eq!(press(&off, "light-on").unwrap().light, "on");
        press(&loud, "light-on").unwrap().check().unwrap();
    }

    #[test]
    fn buttons_the_model_lacks_are_refused() {
        let r = press(&LightProjectorState::default(), "popcorn").unwrap_err();
        assert_eq!(r.field, "button");
        assert!(r.allowed.contains(&"projector-on"));
    }
}
