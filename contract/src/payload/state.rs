//! Device → cloud state: what a device reports about itself and its appliances.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{check_ts, Checked, PayloadError};
use crate::appliance::{
    AirconState, LightProjectorState, LightState, SesameBotState, TvState, MODELS,
};

/// `devices/{id}/state` (retained, QoS 1): the device's facts and appliance
/// states. Published on connect and after every change; the last will carries
/// the same document with `online: false`, not retained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateReport {
    /// `false` only in the last will.
    pub online: bool,
    pub kind: DeviceKind,
    pub firmware_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// Appliance states (IR hubs); absent on meter gateways.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appliances: Option<ApplianceStates>,
    pub ts: u64,
}

/// What sort of device this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// An IR remote with sensors.
    Hub,
    /// A smart-meter gateway.
    Meter,
}

/// The appliances behind an IR hub (and the BLE ones it reaches), each as its
/// model's state; absent ones are not reported. Each key is also the name of
/// the command kind that controls it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplianceStates {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aircon: Option<AirconState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tv: Option<TvState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub light: Option<LightState>,
    /// A floor heater's settings (the shape of an aircon's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor_heater: Option<AirconState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub light_projector: Option<LightProjectorState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sesame_bot: Option<SesameBotState>,
}

impl ApplianceStates {
    /// Whether nothing is reported.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl ApplianceStates {
    /// Every reported state is one a catalogue model of its kind can be in.
    pub fn check(&self) -> Result<(), PayloadError> {
        let refused = |r: crate::appliance::Refusal| PayloadError::Range(r.to_string());
        if let Some(ac) = &self.aircon {
            let mut models = MODELS.iter().filter_map(|m| m.aircon());
            if !models.any(|caps| caps.check(ac).is_ok()) {
                let generic = crate::appliance::catalog::generic_aircon();
                return Err(generic.check(ac).err().map_or_else(
                    || PayloadError::Range("no model accepts the aircon state".into()),
                    refused,
                ));
            }
        }
        if let Some(tv) = &self.tv {
            tv.check().map_err(refused)?;
        }
        if let Some(light) = &self.light {
            light.check().map_err(refused)?;
        }
        if let Some(heater) = &self.floor_heater {
            let mut models = MODELS.iter().filter_map(|m| m.floor_heater());
            if !models.any(|caps| caps.check(heater).is_ok()) {
                return Err(PayloadError::Range(
                    "no floor heater model accepts the floor_heater state".into(),
                ));
            }
        }
        if let Some(projector) = &self.light_projector {
            projector.check().map_err(refused)?;
        }
        if let Some(bot) = &self.sesame_bot {
            bot.check().map_err(refused)?;
        }
        Ok(())
    }
}

impl Checked for StateReport {
    fn check(&self) -> Result<(), PayloadError> {
        if self.kind == DeviceKind::Meter && self.appliances.is_some() {
            return Err(PayloadError::Range(
                "a meter gateway has no appliances".into(),
            ));
        }
        if let Some(apps) = &self.appliances {
            apps.check()?;
        }
        check_ts(self.ts)
    }
}
