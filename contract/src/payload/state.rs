//! Device → cloud state: what a device reports about itself and its appliances.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{check_ts, Checked, PayloadError};
use crate::appliance::{AirconState, LightState, TvState};

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

/// The appliances behind an IR hub, each as its model's state; absent ones
/// are not reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplianceStates {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aircon: Option<AirconState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tv: Option<TvState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub light: Option<LightState>,
}

impl ApplianceStates {
    /// Whether nothing is reported.
    pub fn is_empty(&self) -> bool {
        self.aircon.is_none() && self.tv.is_none() && self.light.is_none()
    }
}

impl Checked for StateReport {
    fn check(&self) -> Result<(), PayloadError> {
        if self.kind == DeviceKind::Meter && self.appliances.is_some() {
            return Err(PayloadError::Range(
                "a meter gateway has no appliances".into(),
            ));
        }
        check_ts(self.ts)
    }
}
