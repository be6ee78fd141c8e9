//! The JSON the simulated devices put on the wire and the commands they accept.
//!
//! These shapes are the device side of Kumo's topic contract; they may move to
//! `kumo-contract` once the bridge consumes them. Timestamps (`ts`) are Unix epoch
//! milliseconds. Appliance settings are strings, as in the Nature API.

use serde::{Deserialize, Serialize};

/// `devices/{id}/sensors/{te|hu|il|mo}`: one reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SensorValue {
    /// The reading: °C, %RH, illuminance, or `1` for a motion event.
    pub val: f64,
    /// When it was taken.
    pub ts: u64,
}

/// `devices/{id}/meter`: the smart meter's ECHONET Lite properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeterReport {
    pub echonetlite_properties: Vec<EchonetProperty>,
    pub ts: u64,
}

/// One ECHONET Lite property, shaped like the Nature API's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EchonetProperty {
    pub name: String,
    pub epc: u8,
    /// Decimal string, as the Nature API reports it.
    pub val: String,
}

/// `devices/{id}/state` (retained): what the device reports about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateReport {
    /// `false` only in the last will, which is published non-retained so the
    /// retained full state survives.
    pub online: bool,
    /// `hub` (IR remote with sensors) or `meter` (smart-meter gateway).
    pub kind: DeviceKind,
    pub firmware_version: String,
    /// Appliance states; absent on meter gateways and in the last will.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appliances: Option<ApplianceStates>,
    pub ts: u64,
}

/// What sort of device is simulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Hub,
    Meter,
}

/// The appliances behind an IR hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplianceStates {
    pub aircon: AirconState,
    pub tv: TvState,
    pub light: LightState,
}

/// Air conditioner settings, as the Nature API's `AirconSettingsResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AirconState {
    /// Set temperature; relative (`"-2"`..`"2"`) in auto mode, empty in blow mode.
    pub temp: String,
    pub temp_unit: String,
    /// `cool`, `warm`, `dry`, `blow` or `auto`.
    pub mode: String,
    /// Air volume: empty/`auto` or `1`–`5`.
    pub vol: String,
    /// Air direction: empty/`auto`, `swing` or `1`–`5`.
    pub dir: String,
    pub dirh: String,
    /// `""` = on, `"power-off"` = off.
    pub button: String,
}

/// TV state: the Nature API's `TVState` plus power.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Light state, as the Nature API's `LightState`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LightState {
    /// `0`–`100`.
    pub brightness: String,
    /// `on` or `off`.
    pub power: String,
    pub last_button: String,
}

/// A command on `devices/{id}/commands` (QoS 1).
///
/// `{"id": "c-1", "ts": 1700000000000, "type": "aircon", "settings": {"temp": "26"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Command id; echoed in the ack.
    pub id: String,
    /// When the cloud issued it, if known; used for delivery latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<u64>,
    #[serde(flatten)]
    pub action: Action,
}

/// What a command asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Change air conditioner settings; missing fields keep their value.
    Aircon { settings: AirconPatch },
    /// Press a TV remote button.
    Tv { button: String },
    /// Press a light remote button.
    Light { button: String },
    /// Emit a raw IR signal.
    Signal { message: IrMessage },
    /// Learn an IR signal from a remote pointed at the hub; the ack carries it.
    Learn,
}

/// Air conditioner settings to change; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AirconPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirh: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub button: Option<String>,
}

/// An IR signal in the Nature API's `message` format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IrMessage {
    /// Only `us` (microseconds) is defined.
    pub format: String,
    /// Carrier frequency, kHz.
    pub freq: u32,
    /// Alternating on/off durations.
    pub data: Vec<u32>,
}

/// `devices/{id}/acks`: the outcome of one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// The command id.
    pub id: String,
    pub result: AckResult,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Extra output, such as a learned IR signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    pub ts: u64,
}

/// Success or failure of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckResult {
    Ok,
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aircon_command_reads_from_its_documented_shape() {
        let c: Command = serde_json::from_str(
            r#"{"id":"c-1","ts":5,"type":"aircon","settings":{"temp":"26","button":""}}"#,
        )
        .expect("valid");
        assert_eq!(c.id, "c-1");
        assert_eq!(c.ts, Some(5));
        let Action::Aircon { settings } = c.action else {
            panic!("not aircon")
        };
        assert_eq!(settings.temp.as_deref(), Some("26"));
        assert_eq!(settings.button.as_deref(), Some(""));
        assert_eq!(settings.mode, None);
    }

    #[test]
    fn commands_round_trip_through_json() {
        for action in [
            Action::Tv {
                button: "power".into(),
            },
            Action::Light {
                button: "on".into(),
            },
            Action::Learn,
            Action::Signal {
                message: IrMessage {
                    format: "us".into(),
                    freq: 38,
                    data: vec![100, 200],
                },
            },
        ] {
            let c = Command {
                id: "x".into(),
                ts: None,
                action,
            };
            let json = serde_json::to_string(&c).expect("serialize");
            assert_eq!(
                serde_json::from_str::<Command>(&json).expect("parse"),
                c,
                "{json}"
            );
        }
    }

    #[test]
    fn acks_omit_absent_fields() {
        let ack = Ack {
            id: "c".into(),
            result: AckResult::Ok,
            reason: None,
            data: None,
            ts: 1,
        };
        assert_eq!(
            serde_json::to_string(&ack).expect("serialize"),
            r#"{"id":"c","result":"ok","ts":1}"#
        );
    }
}
