//! SESAME bots — a BLE switch pusher the hub drives over Bluetooth
//! (`POST /1/appliances/{id}/sesame_bot/click` and the BLE private macros,
//! `/1/ble/…`): the state a bot is in and what each operation does.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::catalog::{buttons, Model};
use super::{one_of, Button, Refusal};

/// The operation `sesame_bot/click` runs.
pub const CLICK: &str = "click";

/// The private macros of `kumo-sesame-bot-generic`.
pub(crate) const MACROS: &[Button] = buttons![
    ("press", "Press"),
    ("hold", "Hold down"),
    ("release", "Release"),
];

/// A bot's state: where its arm is and what it did last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SesameBotState {
    /// The arm: `up` (resting) or `down` (holding its switch).
    pub arm: String,
    /// The last operation: `click` or a macro's name (`""` before any).
    pub last_action: String,
}

impl Default for SesameBotState {
    /// A new bot: arm up, nothing done yet.
    fn default() -> Self {
        Self {
            arm: "up".into(),
            last_action: String::new(),
        }
    }
}

impl SesameBotState {
    /// Whether a bot can be in this state.
    pub fn check(&self) -> Result<(), Refusal> {
        one_of("arm", &self.arm, &["up", "down"])?;
        let mut known = vec!["", CLICK];
        known.extend(MACROS.iter().map(|m| m.name));
        one_of("last_action", &self.last_action, &known)
    }
}

impl Model {
    /// Every operation of this bot model: `click`, then its macros.
    pub fn operations(&self) -> Vec<&'static str> {
        let mut all = vec![CLICK];
        all.extend(self.macros().iter().map(|m| m.name));
        all
    }

    /// The state after `operation`: `click` toggles the arm (the bot's
    /// toggle mode), `press` pushes and returns, `hold` pushes and stays,
    /// `release` returns. Anything else is refused.
    pub fn operate_sesame(
        &self,
        state: &SesameBotState,
        operation: &str,
    ) -> Result<SesameBotState, Refusal> {
        let ops = self.operations();
        if self.macros().is_empty() || !ops.contains(&operation) {
            return Err(Refusal::new("operation", operation, "this bot", &ops));
        }
        let arm = match operation {
            CLICK if state.arm == "up" => "down",
            "hold" => "down",
            CLICK | "press" | "release" => "up",
            _ => state.arm.as_str(),
        };
        Ok(SesameBotState {
            arm: arm.to_string(),
            last_action: operation.to_string(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::appliance::catalog::generic;
    use crate::appliance::ApplianceKind;

    fn run(s: &SesameBotState, op: &str) -> Result<SesameBotState, Refusal> {
        generic(ApplianceKind::SesameBot).operate_sesame(s, op)
    }

    #[test]
    fn a_click_toggles_the_arm_and_macros_set_it() {
        let up = SesameBotState::default();
        let down = run(&up, CLICK).unwrap();
        assert_eq!(
            (down.arm.as_str(), down.last_action.as_str()),
            ("down", "click")
        );
        assert_eq!(run(&down, CLICK).unwrap().arm, "up");
        assert_eq!(run(&up, "hold").unwrap().arm, "down");
        assert_eq!(run(&down, "press").unwrap().arm, "up");
        assert_eq!(run(&down, "release").unwrap().arm, "up");
        run(&down, "press").unwrap().check().unwrap();
    }

    #[test]
    fn unknown_operations_and_other_models_are_refused() {
        let r = run(&SesameBotState::default(), "unlock").unwrap_err();
        assert_eq!(r.field, "operation");
        assert!(generic(ApplianceKind::Tv)
            .operate_sesame(&SesameBotState::default(), CLICK)
            .is_err());
    }
}
