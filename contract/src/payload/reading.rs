//! Device → cloud measurements: sensor readings and smart-meter reports.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{check_ts, Checked, PayloadError};

/// `devices/{id}/sensors/{te|hu|il|mo}` (QoS 0 or 1): one reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SensorReading {
    /// °C (`te`), %RH (`hu`), illuminance (`il`), or `1` for a motion event (`mo`).
    pub val: f64,
    /// When it was measured; absent means when the cloud received it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<u64>,
}

impl Checked for SensorReading {
    fn check(&self) -> Result<(), PayloadError> {
        if !self.val.is_finite() {
            return Err(PayloadError::Range("val is not a finite number".into()));
        }
        self.ts.map_or(Ok(()), check_ts)
    }
}

/// `devices/{id}/meter` (QoS 0 or 1): a smart meter's ECHONET Lite properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MeterReport {
    /// At least one property.
    pub echonetlite_properties: Vec<EchonetProperty>,
    /// When they were read; absent means when the cloud received them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<u64>,
}

/// One ECHONET Lite property of a low-voltage smart meter (class 0x0288),
/// shaped like the Nature API's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EchonetProperty {
    /// The property's name, informative (the cloud names properties by `epc`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// ECHONET property code, e.g. 231 (0xE7, instantaneous power in W).
    pub epc: u8,
    /// The value as a decimal string, as the Nature API reports it.
    pub val: String,
}

impl Checked for MeterReport {
    fn check(&self) -> Result<(), PayloadError> {
        if self.echonetlite_properties.is_empty() {
            return Err(PayloadError::Range("no echonetlite_properties".into()));
        }
        self.ts.map_or(Ok(()), check_ts)
    }
}
