//! The appliances behind a simulated IR hub — one air conditioner, TV,
//! light, floor heater and light projector, and a SESAME bot it reaches over
//! BLE — driven by the catalogue's behaviour in `kumo_contract::appliance`,
//! the same functions the bridge predicts state with. This module only holds
//! the states and says what they do to the room.

use kumo_contract::appliance::catalog::{self, model_of_kind};
use kumo_contract::appliance::{
    AirconPatch, AirconState, ApplianceKind, LightProjectorState, LightState, Refusal,
    SesameBotState, TvState,
};
use kumo_contract::payload::ApplianceStates;

use super::sensors::RoomInfluence;

/// The hub's appliances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appliances {
    pub aircon: AirconState,
    pub tv: TvState,
    pub light: LightState,
    pub floor_heater: AirconState,
    pub light_projector: LightProjectorState,
    pub sesame_bot: SesameBotState,
}

impl Default for Appliances {
    /// Everything off, as the generic models start.
    fn default() -> Self {
        Self {
            aircon: catalog::generic_aircon().initial(),
            tv: TvState::default(),
            light: LightState::default(),
            floor_heater: catalog::generic(ApplianceKind::FloorHeater)
                .floor_heater()
                .map(|caps| caps.initial())
                .unwrap_or_else(|| catalog::generic_aircon().initial()),
            light_projector: LightProjectorState::default(),
            sesame_bot: SesameBotState::default(),
        }
    }
}

impl Appliances {
    /// All of them, as reported on the state topic.
    pub fn report(&self) -> ApplianceStates {
        ApplianceStates {
            aircon: Some(self.aircon.clone()),
            tv: Some(self.tv.clone()),
            light: Some(self.light.clone()),
            floor_heater: Some(self.floor_heater.clone()),
            light_projector: Some(self.light_projector.clone()),
            sesame_bot: Some(self.sesame_bot.clone()),
        }
    }

    /// Applies an aircon settings change for `model`; returns the new state.
    pub fn aircon(
        &mut self,
        model: Option<&str>,
        patch: &AirconPatch,
    ) -> Result<ApplianceStates, Refusal> {
        let m = model_of_kind(model, ApplianceKind::Aircon)?;
        let caps = m.aircon().ok_or_else(|| not_an(m.id))?;
        self.aircon = caps.apply(&self.aircon, patch)?;
        Ok(ApplianceStates {
            aircon: Some(self.aircon.clone()),
            ..ApplianceStates::default()
        })
    }

    /// Presses a TV button on `model`; returns the new state.
    pub fn tv(&mut self, model: Option<&str>, button: &str) -> Result<ApplianceStates, Refusal> {
        let m = model_of_kind(model, ApplianceKind::Tv)?;
        self.tv = m.press_tv(&self.tv, button)?;
        Ok(ApplianceStates {
            tv: Some(self.tv.clone()),
            ..ApplianceStates::default()
        })
    }

    /// Presses a light button on `model`; returns the new state.
    pub fn light(&mut self, model: Option<&str>, button: &str) -> Result<ApplianceStates, Refusal> {
        let m = model_of_kind(model, ApplianceKind::Light)?;
        self.light = m.press_light(&self.light, button)?;
        Ok(ApplianceStates {
            light: Some(self.light.clone()),
            ..ApplianceStates::default()
        })
    }

    /// Applies a floor heater settings change for `model`; returns the new state.
    pub fn floor_heater(
        &mut self,
        model: Option<&str>,
        patch: &AirconPatch,
    ) -> Result<ApplianceStates, Refusal> {
        let m = model_of_kind(model, ApplianceKind::FloorHeater)?;
        let caps = m.floor_heater().ok_or_else(|| not_an(m.id))?;
        self.floor_heater = caps.apply(&self.floor_heater, patch)?;
        Ok(ApplianceStates {
            floor_heater: Some(self.floor_heater.clone()),
            ..ApplianceStates::default()
        })
    }

    /// Presses a light projector button on `model`; returns the new state.
    pub fn light_projector(
        &mut self,
        model: Option<&str>,
        button: &str,
    ) -> Result<ApplianceStates, Refusal> {
        let m = model_of_kind(model, ApplianceKind::LightProjector)?;
        self.light_projector = m.press_projector(&self.light_projector, button)?;
        Ok(ApplianceStates {
            light_projector: Some(self.light_projector.clone()),
            ..ApplianceStates::default()
        })
    }

    /// Runs `operation` (a click or a private macro) on the SESAME bot of
    /// `model`; returns the new state.
    pub fn sesame_bot(
        &mut self,
        model: Option<&str>,
        operation: &str,
    ) -> Result<ApplianceStates, Refusal> {
        let m = model_of_kind(model, ApplianceKind::SesameBot)?;
        self.sesame_bot = m.operate_sesame(&self.sesame_bot, operation)?;
        Ok(ApplianceStates {
            sesame_bot: Some(self.sesame_bot.clone()),
            ..ApplianceStates::default()
        })
    }

    /// What the appliances do to the room's sensors.
    pub fn influence(&self) -> RoomInfluence {
        let ac = &self.aircon;
        let ac_setpoint = match (ac.button.as_str(), ac.mode.as_str()) {
            ("power-off", _) => None,
            (_, "cool" | "warm") => ac.temp.parse().ok(),
            _ => None,
        };
        RoomInfluence {
            ac_setpoint,
            light_on: self.light.power == "on",
        }
    }
}

fn not_an(model: &str) -> Refusal {
    Refusal {
        field: "model",
        value: model.to_string(),
        scope: "this device".into(),
        allowed: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kumo_contract::appliance::AirconPatch;

    #[test]
    fn a_cooling_aircon_influences_the_room_and_an_idle_one_does_not() {
        let mut a = Appliances::default();
        assert_eq!(a.influence().ac_setpoint, None);
        let patch = AirconPatch {
            button: Some(String::new()),
            temp: Some("24".into()),
            ..AirconPatch::default()
        };
        a.aircon(None, &patch).expect("valid");
        assert_eq!(a.influence().ac_setpoint, Some(24.0));
    }

    #[test]
    fn the_newer_kinds_change_state_and_report_it() {
        let mut a = Appliances::default();
        let warm = AirconPatch {
            button: Some(String::new()),
            temp: Some("30".into()),
            ..AirconPatch::default()
        };
        let s = a.floor_heater(None, &warm).expect("valid");
        assert_eq!(s.floor_heater.map(|h| h.temp), Some("30".into()));
        a.light_projector(None, "projector-on").expect("valid");
        a.sesame_bot(None, "click").expect("valid");
        let report = a.report();
        assert_eq!(
            report.light_projector.map(|p| p.projector),
            Some("on".into())
        );
        assert_eq!(report.sesame_bot.map(|b| b.arm), Some("down".into()));
        a.report().check().expect("a report the cloud accepts");
    }

    #[test]
    fn a_refused_command_changes_nothing() {
        let mut a = Appliances::default();
        let before = a.clone();
        assert!(a.tv(None, "self-destruct").is_err());
        assert!(a.light(Some("kumo-tv-generic"), "on").is_err());
        let hot = AirconPatch {
            temp: Some("99".into()),
            ..AirconPatch::default()
        };
        assert!(a.aircon(None, &hot).is_err());
        assert!(a.floor_heater(None, &hot).is_err());
        assert!(a.light_projector(None, "popcorn").is_err());
        assert!(a.sesame_bot(None, "unlock").is_err());
        assert_eq!(a, before);
    }
}
