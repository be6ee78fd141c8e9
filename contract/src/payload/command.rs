//! Cloud → device commands.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::PayloadError;
use crate::appliance::AirconPatch;

/// `devices/{id}/commands` (QoS 1): one command. The device answers every
/// command it can read on `devices/{id}/acks` with the same `id`.
///
/// `{"id": "…", "ts": 1700000000000, "type": "aircon", "model": "kumo-ac-generic",
/// "settings": {"temp": "26"}}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Command {
    /// Chosen by the cloud (a UUID); echoed as-is in the ack.
    pub id: String,
    /// When the cloud sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<u64>,
    #[serde(flatten)]
    pub action: Action,
}

/// What a command asks for, by its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Change air conditioner settings (the cloud sends every setting).
    Aircon {
        /// Catalogue model; absent means `kumo-ac-generic`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        settings: AirconPatch,
    },
    /// Press a TV remote button.
    Tv {
        /// Catalogue model; absent means `kumo-tv-generic`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        button: String,
    },
    /// Press a light remote button.
    Light {
        /// Catalogue model; absent means `kumo-light-generic`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        button: String,
    },
    /// Change floor heater settings (the cloud sends every setting).
    FloorHeater {
        /// Catalogue model; absent means `kumo-floor-heater-generic`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        settings: AirconPatch,
    },
    /// Press a light projector remote button.
    LightProjector {
        /// Catalogue model; absent means `kumo-light-projector-generic`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        button: String,
    },
    /// Run an operation on a BLE SESAME bot: `click` or one of its private
    /// macros by name.
    SesameBot {
        /// Catalogue model; absent means `kumo-sesame-bot-generic`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        operation: String,
    },
    /// Emit a raw IR signal.
    Signal {
        /// The id of the learned signal being sent, if it is one (informative).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<String>,
        message: IrMessage,
    },
    /// Learn an IR signal from a remote pointed at the hub; the ack carries it.
    Learn,
    /// Set one ECHONET Lite property of an object on the gateway's network
    /// (an ECHONET Lite `SetC`); the ack carries the object's properties.
    EchonetSet {
        /// The object: class group, class, instance as six hex digits (`013001`).
        eoj: String,
        /// The property code, e.g. 179 (0xB3, set temperature).
        epc: u8,
        /// The new value (EDT), two hex digits per byte, e.g. `"1a"`.
        edt: String,
    },
    /// Read ECHONET Lite properties of an object again (an ECHONET Lite
    /// `Get`); the ack carries their current values.
    EchonetRefresh {
        /// The object, as in `echonet_set`.
        eoj: String,
        /// The property codes to read, at least one.
        epcs: Vec<u8>,
    },
}

/// An IR signal in the Nature API's `message` format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IrMessage {
    /// Only `us` (microseconds) is defined.
    pub format: String,
    /// Carrier frequency, kHz (30–80).
    pub freq: u32,
    /// Alternating mark/space durations in µs (1–4096 of them, each 1–1,000,000).
    pub data: Vec<u32>,
}

impl IrMessage {
    /// Most durations in one message.
    pub const MAX_DATA: usize = 4096;

    /// `Ok` if a hub can emit it.
    pub fn check(&self) -> Result<(), PayloadError> {
        let bad = |why: &str| Err(PayloadError::Range(why.into()));
        if self.format != "us" {
            return bad("format must be \"us\"");
        }
        if !(30..=80).contains(&self.freq) {
            return bad("freq must be a carrier frequency in kHz between 30 and 80");
        }
        if self.data.is_empty() || self.data.len() > Self::MAX_DATA {
            return bad("data must hold 1 to 4096 durations");
        }
        if self.data.iter().any(|&d| d == 0 || d > 1_000_000) {
            return bad("every duration in data must be a positive whole number of microseconds");
        }
        Ok(())
    }
}
