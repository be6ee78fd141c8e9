//! The appliance catalogue as the REST API shows it: Nature's appliance types
//! and the JSON of a model, its AC ranges and its buttons.
//!
//! The models and what they do live once, in `kumo_contract::appliance`,
//! shared with the devices; this module only names and renders them.

use kumo_contract::appliance::{AirconCaps, ApplianceKind};
use serde_json::{json, Value};

pub use kumo_contract::appliance::catalog::{model, MODELS};
pub use kumo_contract::appliance::{Button, Capabilities, Model};

/// The appliance types Kumo stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplianceType {
    Ac,
    Tv,
    Light,
    Ir,
    SmartMeter,
    /// An ECHONET Lite home air conditioner behind a gateway.
    ElAircon,
    FloorHeater,
    LightProjector,
    /// A SESAME bot the hub reaches over BLE.
    SesameBot,
}

impl ApplianceType {
    /// Nature's name for the type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ac => "AC",
            Self::Tv => "TV",
            Self::Light => "LIGHT",
            Self::Ir => "IR",
            Self::SmartMeter => "EL_SMART_METER",
            Self::ElAircon => "EL_AIRCON",
            Self::FloorHeater => "FLOOR_HEATER",
            Self::LightProjector => "LIGHT_PROJECTOR",
            Self::SesameBot => "SESAME_BOT",
        }
    }

    /// Parses a stored or client-given type; clients write e.g. `Light` or `AC`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "AC" => Some(Self::Ac),
            "TV" => Some(Self::Tv),
            "LIGHT" => Some(Self::Light),
            "IR" => Some(Self::Ir),
            "EL_SMART_METER" => Some(Self::SmartMeter),
            "EL_AIRCON" => Some(Self::ElAircon),
            "FLOOR_HEATER" => Some(Self::FloorHeater),
            "LIGHT_PROJECTOR" => Some(Self::LightProjector),
            "SESAME_BOT" => Some(Self::SesameBot),
            _ => None,
        }
    }
}

impl ApplianceType {
    /// The type of appliance a catalogue model makes.
    pub fn of(model: &Model) -> Self {
        match model.kind() {
            ApplianceKind::Aircon => Self::Ac,
            ApplianceKind::Tv => Self::Tv,
            ApplianceKind::Light => Self::Light,
            ApplianceKind::FloorHeater => Self::FloorHeater,
            ApplianceKind::LightProjector => Self::LightProjector,
            ApplianceKind::SesameBot => Self::SesameBot,
        }
    }
}

/// Nature's `ApplianceModel` object.
pub fn model_json(m: &Model) -> Value {
    json!({
        "id": m.id,
        "country": "JP",
        "manufacturer": m.manufacturer,
        "remote_name": m.remote_name,
        "series": m.series,
        "name": m.name,
        "image": m.image,
    })
}

/// Nature's `aircon` object: `{"tempUnit", "range": {"modes", "fixedButtons"}}`.
pub fn aircon_json(caps: &AirconCaps) -> Value {
    let modes: serde_json::Map<String, Value> = caps
        .modes
        .iter()
        .map(|m| {
            (
                m.name.to_string(),
                json!({"temp": m.temp, "vol": m.vol, "dir": m.dir, "dirh": m.dirh}),
            )
        })
        .collect();
    json!({"tempUnit": caps.temp_unit, "range": {"modes": modes, "fixedButtons": caps.fixed_buttons}})
}

/// Nature's `ButtonDBButton` list.
pub fn buttons_json(buttons: &[Button]) -> Value {
    Value::Array(
        buttons
            .iter()
            .map(|b| json!({"name": b.name, "image": b.image, "label": b.label}))
            .collect(),
    )
}

/// A stable UUID-shaped id for a catalogue name (a layout, a button): the
/// first 16 bytes of its SHA-256, so every bridge shows the same one.
pub fn name_uuid(name: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// Nature's `LightProjectordbLayout`: the remote's layout, its buttons as
/// templates three to a row.
pub fn projector_layout_json(m: &Model) -> Value {
    let buttons = m.buttons();
    let templates: Vec<Value> = buttons
        .iter()
        .map(|b| {
            json!({"type": "button", "name": b.name,
                   "uuid": name_uuid(&format!("{}/{}", m.id, b.name)),
                   "image": b.image, "label": b.label, "text": b.label,
                   "x_size": 1, "y_size": 1, "templates": []})
        })
        .collect();
    json!({"type": "light_projector", "name": m.remote_name, "uuid": name_uuid(m.id),
           "image": m.image, "label": m.name, "text": "", "x_size": 3,
           "y_size": buttons.len().div_ceil(3), "templates": templates})
}
