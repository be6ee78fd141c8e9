//! An ECHONET Lite home air conditioner (`EL_AIRCON`, class 0x0130 on a
//! smart-meter gateway) as demand response sees it: its settable properties
//! as the bridge stores them (operation status 0x80, operation mode 0xB0,
//! set temperature 0xB3, hex EDT in `echonet_properties`), translated into
//! the common [`UnitSettings`], and the one `echonet_set` that carries out a
//! decision or puts a property back.
//!
//! Codes and the setpoint range are the class's as the ECHONET Lite
//! Appendix ("Release" definitions) gives them, read from
//! `kumo_contract::appliance::echonet` — the table the gateway checks sets
//! against too. Nothing here queues a command.

use deadpool_postgres::GenericClient;
use kumo_contract::appliance::echonet::{
    self, hex, hex_bytes, Eoj, Settable, EPC_OPERATION_MODE, EPC_OPERATION_STATUS,
    EPC_SET_TEMPERATURE, OFF, ON,
};
use kumo_contract::payload::Action;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::consent::{Decision, Heading, UnitSettings};
use crate::commands::CommandKind;
use crate::db::DbError;

/// Operation mode codes (EPC 0xB0).
const MODE_AUTO: u8 = 0x41;
const MODE_COOL: u8 = 0x42;
const MODE_HEAT: u8 = 0x43;
const MODE_DRY: u8 = 0x44;
const MODE_FAN: u8 = 0x45;

/// The unit's settable properties, hex EDT as stored and as an event's
/// outcome shows them (`previous`, `commanded`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElSettings {
    /// 0x80: `30` on, `31` off.
    pub operation_status: String,
    /// 0xB0: `41` auto, `42` cool, `43` heat, `44` dry, `45` fan, `40` other.
    pub operation_mode: String,
    /// 0xB3: whole °C, `00`–`32`.
    pub set_temperature: String,
}

/// The properties of each field, in the order a restore looks at them.
const FIELDS: [u8; 3] = [
    EPC_OPERATION_STATUS,
    EPC_OPERATION_MODE,
    EPC_SET_TEMPERATURE,
];

impl ElSettings {
    /// The stored properties of appliance `id`; `None` until the gateway
    /// has reported all three.
    pub async fn confirmed(client: &impl GenericClient, id: &str) -> Result<Option<Self>, DbError> {
        let epcs: Vec<i32> = FIELDS.iter().map(|&e| i32::from(e)).collect();
        let rows = client
            .query(
                "SELECT epc, val FROM echonet_properties
                 WHERE appliance_id = $1 AND epc = ANY($2)",
                &[&id, &epcs],
            )
            .await?;
        let val = |epc: u8| {
            rows.iter()
                .find(|r| r.get::<_, i32>(0) == i32::from(epc))
                .map(|r| r.get::<_, String>(1).to_ascii_lowercase())
        };
        let (Some(operation_status), Some(operation_mode), Some(set_temperature)) = (
            val(EPC_OPERATION_STATUS),
            val(EPC_OPERATION_MODE),
            val(EPC_SET_TEMPERATURE),
        ) else {
            return Ok(None);
        };
        Ok(Some(Self {
            operation_status,
            operation_mode,
            set_temperature,
        }))
    }

    /// The settings as JSON, for a dispatch row.
    pub fn to_json(&self) -> Value {
        // A plain struct of strings always serializes.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Settings read back from a dispatch row; `None` if they are not.
    pub fn from_json(v: Option<Value>) -> Option<Self> {
        serde_json::from_value(v?).ok()
    }

    fn get(&self, epc: u8) -> &str {
        match epc {
            EPC_OPERATION_STATUS => &self.operation_status,
            EPC_OPERATION_MODE => &self.operation_mode,
            _ => &self.set_temperature,
        }
    }

    fn with(&self, epc: u8, val: String) -> Self {
        let mut next = self.clone();
        match epc {
            EPC_OPERATION_STATUS => next.operation_status = val,
            EPC_OPERATION_MODE => next.operation_mode = val,
            _ => next.set_temperature = val,
        }
        next
    }

    /// The settings in the form consent is decided on. A set temperature
    /// outside the class's range (0xFD: none in this mode) is no setpoint.
    pub fn unit_settings(&self) -> UnitSettings {
        let byte = |s: &str| match hex_bytes(s).as_deref() {
            Some(&[b]) => Some(b),
            _ => None,
        };
        let (lo, hi) = setpoint_range();
        let mode = byte(&self.operation_mode);
        UnitSettings {
            on: byte(&self.operation_status) == Some(ON),
            mode: match mode {
                Some(MODE_COOL) => Heading::Cool,
                Some(MODE_HEAT) => Heading::Heat,
                other => Heading::Other(mode_name(other).to_string()),
            },
            setpoint: byte(&self.set_temperature)
                .filter(|t| (lo..=hi).contains(t))
                .map(f64::from),
            setpoints: (lo..=hi).map(f64::from).collect(),
        }
    }

    /// The one property `decision` sets, with the settings it leads to;
    /// `None` for a skip.
    pub fn event_set(&self, decision: &Decision) -> Option<(Set, Self)> {
        let (epc, val) = match decision {
            Decision::Skip(_) => return None,
            Decision::PowerOff => (EPC_OPERATION_STATUS, OFF),
            // `decide` picks one of `setpoints`: whole degrees in range.
            Decision::Setpoint(t) => (EPC_SET_TEMPERATURE, t.round().clamp(0.0, 255.0) as u8),
        };
        let set = Set { epc, val };
        Some((set, self.with(epc, hex(&[val]))))
    }

    /// The set that puts `previous` back on a unit now in these settings,
    /// after an event commanded `commanded`: the property the event changed.
    /// Refused (with the reason) when the unit is no longer exactly as the
    /// event left it — the user, or one of their rules, changed it and
    /// theirs stands — or the event changed nothing.
    pub fn restore(&self, previous: &Self, commanded: &Self) -> Result<Set, &'static str> {
        if self != commanded {
            return Err("the settings were changed during the event");
        }
        FIELDS
            .into_iter()
            .find(|&epc| previous.get(epc) != commanded.get(epc))
            .and_then(|epc| match hex_bytes(previous.get(epc)).as_deref() {
                Some(&[val]) => Some(Set { epc, val }),
                _ => None,
            })
            .ok_or("the event changed nothing to put back")
    }
}

/// One ECHONET Lite property set on the home air conditioner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Set {
    pub epc: u8,
    pub val: u8,
}

impl Set {
    /// The command: kind, the `echonet_set` action, and the property the
    /// device will report (the form its ack carries), checked against the
    /// class as the REST `set` checks it.
    pub fn command(self) -> Result<(CommandKind, Value, Value), String> {
        let object = Eoj::HOME_AIR_CONDITIONER;
        let edt = hex(&[self.val]);
        let def = echonet::check_set(object, self.epc, &edt)
            .and_then(|_| echonet::property(object, self.epc))
            .map_err(|e| e.to_string())?;
        let action = Action::EchonetSet {
            eoj: object.to_string(),
            epc: self.epc,
            edt: edt.clone(),
        };
        // A plain enum of strings and numbers always serializes.
        let payload = serde_json::to_value(&action).unwrap_or(Value::Null);
        let expected = json!([{"epc": self.epc, "name": def.name, "val": edt}]);
        Ok((CommandKind::Echonet, payload, expected))
    }
}

/// The set temperatures the class accepts, °C (0–50).
fn setpoint_range() -> (u8, u8) {
    match echonet::property(Eoj::HOME_AIR_CONDITIONER, EPC_SET_TEMPERATURE)
        .ok()
        .and_then(|p| p.settable)
    {
        Some(Settable::Range(lo, hi, _)) => (lo, hi),
        _ => (0, 50),
    }
}

fn mode_name(code: Option<u8>) -> &'static str {
    match code {
        Some(MODE_AUTO) => "auto",
        Some(MODE_DRY) => "dry",
        Some(MODE_FAN) => "fan",
        Some(0x40) => "other",
        _ => "unknown",
    }
}

#[cfg(test)]
#[path = "el_aircon_tests.rs"]
mod tests;
