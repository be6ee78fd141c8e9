//! The built-in appliance catalog: the models an AC, TV or LIGHT appliance can
//! be created with, and what each can do (modes, temperatures, buttons).
//!
//! Nature backs this with its IR database; Kumo ships generic models whose
//! commands the device firmware encodes. Capabilities here are what settings
//! are validated against, so an impossible setting is refused, never ignored.

use serde_json::{json, Value};

/// The appliance types Kumo stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplianceType {
    Ac,
    Tv,
    Light,
    Ir,
    SmartMeter,
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
            _ => None,
        }
    }
}

/// One operation mode of an air conditioner and the values it accepts.
#[derive(Debug, Clone, Copy)]
pub struct AcMode {
    pub name: &'static str,
    pub temp: &'static [&'static str],
    pub vol: &'static [&'static str],
    pub dir: &'static [&'static str],
    pub dirh: &'static [&'static str],
}

/// One remote-control button.
#[derive(Debug, Clone, Copy)]
pub struct Button {
    pub name: &'static str,
    pub image: &'static str,
    pub label: &'static str,
}

/// What a model can do.
#[derive(Debug, Clone, Copy)]
pub enum Capabilities {
    Aircon {
        temp_unit: &'static str,
        modes: &'static [AcMode],
        fixed_buttons: &'static [&'static str],
    },
    Tv {
        buttons: &'static [Button],
    },
    Light {
        buttons: &'static [Button],
    },
}

/// A catalog model.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    pub id: &'static str,
    pub kind: ApplianceType,
    pub manufacturer: &'static str,
    pub remote_name: &'static str,
    pub series: &'static str,
    pub name: &'static str,
    pub image: &'static str,
    pub capabilities: Capabilities,
}

const VOL: &[&str] = &["auto", "1", "2", "3", "4", "5"];
const DIR: &[&str] = &["auto", "swing", "1", "2", "3", "4", "5"];
const DIRH: &[&str] = &["auto", "swing", "left", "center", "right"];
const COOL_TEMPS: &[&str] = &[
    "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31", "32",
];
const WARM_TEMPS: &[&str] = &[
    "14", "15", "16", "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29",
    "30",
];
const RELATIVE_TEMPS: &[&str] = &["-2", "-1", "0", "1", "2"];

const AC_MODES: &[AcMode] = &[
    AcMode {
        name: "cool",
        temp: COOL_TEMPS,
        vol: VOL,
        dir: DIR,
        dirh: DIRH,
    },
    AcMode {
        name: "warm",
        temp: WARM_TEMPS,
        vol: VOL,
        dir: DIR,
        dirh: DIRH,
    },
    AcMode {
        name: "dry",
        temp: RELATIVE_TEMPS,
        vol: &["auto"],
        dir: DIR,
        dirh: DIRH,
    },
    AcMode {
        name: "blow",
        temp: &[""],
        vol: VOL,
        dir: DIR,
        dirh: DIRH,
    },
    AcMode {
        name: "auto",
        temp: RELATIVE_TEMPS,
        vol: VOL,
        dir: DIR,
        dirh: DIRH,
    },
];

macro_rules! buttons {
    ($(($name:literal, $label:literal)),* $(,)?) => {
        &[$(Button { name: $name, image: concat!("ico_", $name), label: $label }),*]
    };
}

const TV_BUTTONS: &[Button] = buttons![
    ("power", "Power"),
    ("input-terrestrial", "Terrestrial"),
    ("input-bs", "BS"),
    ("input-cs", "CS"),
    ("ch-up", "Channel up"),
    ("ch-down", "Channel down"),
    ("vol-up", "Volume up"),
    ("vol-down", "Volume down"),
    ("mute", "Mute"),
    ("ok", "OK"),
    ("back", "Back"),
];

const LIGHT_BUTTONS: &[Button] = buttons![
    ("on", "On"),
    ("off", "Off"),
    ("onoff", "On/Off"),
    ("on-100", "Full"),
    ("night", "Night"),
    ("bright-up", "Brighter"),
    ("bright-down", "Dimmer"),
];

/// Every model Kumo knows.
pub const MODELS: &[Model] = &[
    Model {
        id: "kumo-ac-generic",
        kind: ApplianceType::Ac,
        manufacturer: "Kumo",
        remote_name: "generic-ac",
        series: "Generic",
        name: "Generic air conditioner",
        image: "ico_ac_1",
        capabilities: Capabilities::Aircon {
            temp_unit: "c",
            modes: AC_MODES,
            fixed_buttons: &["airdir-swing", "airdir-tilt"],
        },
    },
    Model {
        id: "kumo-tv-generic",
        kind: ApplianceType::Tv,
        manufacturer: "Kumo",
        remote_name: "generic-tv",
        series: "Generic",
        name: "Generic TV",
        image: "ico_tv",
        capabilities: Capabilities::Tv {
            buttons: TV_BUTTONS,
        },
    },
    Model {
        id: "kumo-light-generic",
        kind: ApplianceType::Light,
        manufacturer: "Kumo",
        remote_name: "generic-light",
        series: "Generic",
        name: "Generic ceiling light",
        image: "ico_light",
        capabilities: Capabilities::Light {
            buttons: LIGHT_BUTTONS,
        },
    },
];

/// The model with `id`.
pub fn model(id: &str) -> Option<&'static Model> {
    MODELS.iter().find(|m| m.id == id)
}

impl Model {
    /// Nature's `ApplianceModel` object.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "country": "JP",
            "manufacturer": self.manufacturer,
            "remote_name": self.remote_name,
            "series": self.series,
            "name": self.name,
            "image": self.image,
        })
    }

    /// The air-conditioner capabilities, if this is an AC model.
    pub fn aircon(&self) -> Option<(&'static str, &'static [AcMode], &'static [&'static str])> {
        match self.capabilities {
            Capabilities::Aircon {
                temp_unit,
                modes,
                fixed_buttons,
            } => Some((temp_unit, modes, fixed_buttons)),
            _ => None,
        }
    }

    /// The buttons of a TV or light model.
    pub fn buttons(&self) -> &'static [Button] {
        match self.capabilities {
            Capabilities::Tv { buttons } | Capabilities::Light { buttons } => buttons,
            Capabilities::Aircon { .. } => &[],
        }
    }
}

/// Nature's `aircon` object: `{"tempUnit", "range": {"modes", "fixedButtons"}}`.
pub fn aircon_json(temp_unit: &str, modes: &[AcMode], fixed_buttons: &[&str]) -> Value {
    let modes: serde_json::Map<String, Value> = modes
        .iter()
        .map(|m| {
            (
                m.name.to_string(),
                json!({"temp": m.temp, "vol": m.vol, "dir": m.dir, "dirh": m.dirh}),
            )
        })
        .collect();
    json!({"tempUnit": temp_unit, "range": {"modes": modes, "fixedButtons": fixed_buttons}})
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
