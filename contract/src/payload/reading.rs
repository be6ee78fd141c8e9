//! Device → cloud measurements: sensor readings and smart-meter reports.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{check_ts, Checked, PayloadError};
use crate::appliance::echonet::Eoj;
use crate::topic::Sensor;

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

/// `devices/{id}/sensors` (QoS 0 or 1): several sensors read at the same
/// time, in one message (one publish instead of three or four: a fleet's
/// brokers and the bridge then handle a third of the messages for the same
/// readings). Each value is stored as the reading of its sensor, exactly as
/// if it had come on `sensors/{te|hu|il|mo}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SensorReport {
    /// Temperature, °C.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub te: Option<f64>,
    /// Relative humidity, %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hu: Option<f64>,
    /// Illuminance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub il: Option<f64>,
    /// `1`: motion was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mo: Option<f64>,
    /// When they were measured; absent means when the cloud received them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<u64>,
}

impl SensorReport {
    /// The readings it carries, as `(sensor, value)`.
    pub fn readings(&self) -> impl Iterator<Item = (Sensor, f64)> {
        [
            (Sensor::Temperature, self.te),
            (Sensor::Humidity, self.hu),
            (Sensor::Illuminance, self.il),
            (Sensor::Motion, self.mo),
        ]
        .into_iter()
        .filter_map(|(sensor, val)| Some((sensor, val?)))
    }
}

impl Checked for SensorReport {
    fn check(&self) -> Result<(), PayloadError> {
        if self.readings().next().is_none() {
            return Err(PayloadError::Range("no sensor value".into()));
        }
        if let Some((sensor, _)) = self.readings().find(|(_, v)| !v.is_finite()) {
            return Err(PayloadError::Range(format!(
                "{} is not a finite number",
                sensor.code()
            )));
        }
        self.ts.map_or(Ok(()), check_ts)
    }
}

/// `devices/{id}/meter` (QoS 0 or 1): ECHONET Lite properties of one object
/// the gateway reaches: its smart meter, or another appliance (`eoj`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MeterReport {
    /// The object (six hex digits, e.g. `013001`, a home air conditioner);
    /// absent means the smart meter (`028801`). Its class must be one Kumo
    /// knows (`kumo_contract::appliance::echonet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eoj: Option<String>,
    /// At least one property.
    pub echonetlite_properties: Vec<EchonetProperty>,
    /// When they were read; absent means when the cloud received them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<u64>,
}

/// One ECHONET Lite property, shaped like the Nature API's. A smart meter's
/// values are decimal strings (as Nature's `smart_meter` shows them); any
/// other object's are its EDT in hex (as Nature's `/1/echonetlite` shows them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EchonetProperty {
    /// The property's name, informative (the cloud names properties by `epc`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// ECHONET property code, e.g. 231 (0xE7, instantaneous power in W).
    pub epc: u8,
    /// The value: decimal for the smart meter, hex EDT for other objects.
    pub val: String,
}

impl Checked for MeterReport {
    fn check(&self) -> Result<(), PayloadError> {
        if self.echonetlite_properties.is_empty() {
            return Err(PayloadError::Range("no echonetlite_properties".into()));
        }
        if let Some(eoj) = &self.eoj {
            let known = Eoj::parse(eoj).and_then(Eoj::class_properties);
            if known.is_none() {
                return Err(PayloadError::Range(format!(
                    "eoj {eoj:?} is not an ECHONET Lite object Kumo knows"
                )));
            }
        }
        self.ts.map_or(Ok(()), check_ts)
    }
}
