//! The built-in catalogue: the models an appliance can be created with
//! (AC, TV, LIGHT, FLOOR_HEATER, LIGHT_PROJECTOR, SESAME_BOT), and what each
//! can do (modes, temperatures, buttons, macros).
//!
//! Nature backs this with its IR database; Kumo ships generic models whose
//! commands the device firmware encodes. Every command is validated against
//! the model it names, in the cloud and on the device alike.

use super::{ApplianceKind, Refusal};

/// One operation mode of an air conditioner and the values it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcMode {
    pub name: &'static str,
    /// Accepted set temperatures (`[""]`: the mode takes none).
    pub temp: &'static [&'static str],
    /// The temperature the mode starts at when entered from a mode whose
    /// temperature it does not accept.
    pub default_temp: &'static str,
    pub vol: &'static [&'static str],
    pub dir: &'static [&'static str],
    pub dirh: &'static [&'static str],
}

/// An air conditioner model's capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AirconCaps {
    /// What the unit is, for messages: `air conditioner`, `floor heater`.
    pub noun: &'static str,
    /// `c` or `f`.
    pub temp_unit: &'static str,
    pub modes: &'static [AcMode],
    /// Buttons beside `""` (on) and `power-off`.
    pub fixed_buttons: &'static [&'static str],
}

impl AirconCaps {
    /// The mode called `name`.
    pub fn mode(&self, name: &str) -> Option<&'static AcMode> {
        self.modes.iter().find(|m| m.name == name)
    }

    /// Every mode's name.
    pub fn mode_names(&self) -> Vec<&'static str> {
        self.modes.iter().map(|m| m.name).collect()
    }

    /// Every button: on (`""`), `power-off` and the fixed ones.
    pub fn buttons(&self) -> Vec<&'static str> {
        let mut all = vec!["", "power-off"];
        all.extend_from_slice(self.fixed_buttons);
        all
    }
}

/// One remote-control button.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Button {
    pub name: &'static str,
    pub image: &'static str,
    pub label: &'static str,
}

/// What a model can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capabilities {
    Aircon(AirconCaps),
    Tv {
        buttons: &'static [Button],
    },
    Light {
        buttons: &'static [Button],
    },
    /// A floor heater: set like an air conditioner (Nature's
    /// `floor_heater_settings` takes the aircon form), with its own ranges.
    FloorHeater(AirconCaps),
    LightProjector {
        buttons: &'static [Button],
    },
    /// A BLE SESAME bot: `click`, and the private macros listed here.
    SesameBot {
        macros: &'static [Button],
    },
}

/// A catalogue model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Model {
    pub id: &'static str,
    pub manufacturer: &'static str,
    pub remote_name: &'static str,
    pub series: &'static str,
    pub name: &'static str,
    pub image: &'static str,
    pub capabilities: Capabilities,
}

impl Model {
    /// What kind of appliance this model is.
    pub fn kind(&self) -> ApplianceKind {
        match self.capabilities {
            Capabilities::Aircon(_) => ApplianceKind::Aircon,
            Capabilities::Tv { .. } => ApplianceKind::Tv,
            Capabilities::Light { .. } => ApplianceKind::Light,
            Capabilities::FloorHeater(_) => ApplianceKind::FloorHeater,
            Capabilities::LightProjector { .. } => ApplianceKind::LightProjector,
            Capabilities::SesameBot { .. } => ApplianceKind::SesameBot,
        }
    }

    /// The air-conditioner capabilities, if this is an AC model.
    pub fn aircon(&self) -> Option<&AirconCaps> {
        match &self.capabilities {
            Capabilities::Aircon(caps) => Some(caps),
            _ => None,
        }
    }

    /// The floor-heater capabilities, if this is a floor heater model.
    pub fn floor_heater(&self) -> Option<&AirconCaps> {
        match &self.capabilities {
            Capabilities::FloorHeater(caps) => Some(caps),
            _ => None,
        }
    }

    /// The buttons of a TV, light or light projector model (none for others).
    pub fn buttons(&self) -> &'static [Button] {
        match self.capabilities {
            Capabilities::Tv { buttons }
            | Capabilities::Light { buttons }
            | Capabilities::LightProjector { buttons } => buttons,
            _ => &[],
        }
    }

    /// The private macros of a BLE model (none for others).
    pub fn macros(&self) -> &'static [Button] {
        match self.capabilities {
            Capabilities::SesameBot { macros } => macros,
            _ => &[],
        }
    }

    /// `pressed` if this TV or light model has that button, else why not.
    pub fn check_button(&self, pressed: &str) -> Result<(), Refusal> {
        let names: Vec<&'static str> = self.buttons().iter().map(|b| b.name).collect();
        if names.contains(&pressed) {
            Ok(())
        } else {
            Err(Refusal::new("button", pressed, "this appliance", &names))
        }
    }
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
        default_temp: "26",
        vol: VOL,
        dir: DIR,
        dirh: DIRH,
    },
    AcMode {
        name: "warm",
        temp: WARM_TEMPS,
        default_temp: "22",
        vol: VOL,
        dir: DIR,
        dirh: DIRH,
    },
    AcMode {
        name: "dry",
        temp: RELATIVE_TEMPS,
        default_temp: "0",
        vol: &["auto"],
        dir: DIR,
        dirh: DIRH,
    },
    AcMode {
        name: "blow",
        temp: &[""],
        default_temp: "",
        vol: VOL,
        dir: DIR,
        dirh: DIRH,
    },
    AcMode {
        name: "auto",
        temp: RELATIVE_TEMPS,
        default_temp: "0",
        vol: VOL,
        dir: DIR,
        dirh: DIRH,
    },
];

/// `Button`s named `name`, imaged `ico_{name}`, labelled `label`.
macro_rules! buttons {
    ($(($name:literal, $label:literal)),* $(,)?) => {
        &[$($crate::appliance::Button { name: $name, image: concat!("ico_", $name), label: $label }),*]
    };
}
pub(crate) use buttons;

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

const GENERIC_AC: AirconCaps = AirconCaps {
    noun: "air conditioner",
    temp_unit: "c",
    modes: AC_MODES,
    fixed_buttons: &["airdir-swing", "airdir-tilt"],
};

const FLOOR_TEMPS: &[&str] = &[
    "15", "16", "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30",
    "31", "32", "33", "34", "35",
];

/// A floor heater heats the floor to a set temperature; it moves no air.
const GENERIC_FLOOR_HEATER: AirconCaps = AirconCaps {
    noun: "floor heater",
    temp_unit: "c",
    modes: &[AcMode {
        name: "warm",
        temp: FLOOR_TEMPS,
        default_temp: "28",
        vol: &["auto"],
        dir: &["auto"],
        dirh: &["auto"],
    }],
    fixed_buttons: &[],
};

/// The capabilities of `kumo-ac-generic`.
pub fn generic_aircon() -> &'static AirconCaps {
    &GENERIC_AC
}

/// Every model Kumo knows.
pub const MODELS: &[Model] = &[
    Model {
        id: "kumo-ac-generic",
        manufacturer: "Kumo",
        remote_name: "generic-ac",
        series: "Generic",
        name: "Generic air conditioner",
        image: "ico_ac_1",
        capabilities: Capabilities::Aircon(GENERIC_AC),
    },
    Model {
        id: "kumo-tv-generic",
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
        manufacturer: "Kumo",
        remote_name: "generic-light",
        series: "Generic",
        name: "Generic ceiling light",
        image: "ico_light",
        capabilities: Capabilities::Light {
            buttons: LIGHT_BUTTONS,
        },
    },
    Model {
        id: "kumo-floor-heater-generic",
        manufacturer: "Kumo",
        remote_name: "generic-floor-heater",
        series: "Generic",
        name: "Generic floor heater",
        image: "ico_floor_heater",
        capabilities: Capabilities::FloorHeater(GENERIC_FLOOR_HEATER),
    },
    Model {
        id: "kumo-light-projector-generic",
        manufacturer: "Kumo",
        remote_name: "generic-light-projector",
        series: "Generic",
        name: "Generic light projector",
        image: "ico_light_projector",
        capabilities: Capabilities::LightProjector {
            buttons: super::projector::BUTTONS,
        },
    },
    Model {
        id: "kumo-sesame-bot-generic",
        manufacturer: "Kumo",
        remote_name: "generic-sesame-bot",
        series: "Generic",
        name: "Generic SESAME bot",
        image: "ico_sesame_bot",
        capabilities: Capabilities::SesameBot {
            macros: super::sesame::MACROS,
        },
    },
];

/// The model with `id`.
pub fn model(id: &str) -> Option<&'static Model> {
    MODELS.iter().find(|m| m.id == id)
}

/// The model a command of `kind` means when it names none (older clouds).
pub fn generic(kind: ApplianceKind) -> &'static Model {
    let id = match kind {
        ApplianceKind::Aircon => "kumo-ac-generic",
        ApplianceKind::Tv => "kumo-tv-generic",
        ApplianceKind::Light => "kumo-light-generic",
        ApplianceKind::FloorHeater => "kumo-floor-heater-generic",
        ApplianceKind::LightProjector => "kumo-light-projector-generic",
        ApplianceKind::SesameBot => "kumo-sesame-bot-generic",
    };
    // The generic models are in MODELS above; a test checks each.
    MODELS.iter().find(|m| m.id == id).unwrap_or(&MODELS[0])
}

/// The model `id` if it exists and is of `kind`, else why not.
pub fn model_of_kind(id: Option<&str>, kind: ApplianceKind) -> Result<&'static Model, Refusal> {
    let Some(id) = id else {
        return Ok(generic(kind));
    };
    match model(id) {
        Some(m) if m.kind() == kind => Ok(m),
        _ => {
            let ids: Vec<&'static str> = MODELS
                .iter()
                .filter(|m| m.kind() == kind)
                .map(|m| m.id)
                .collect();
            Err(Refusal::new("model", id, "this device", &ids))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_generic_model() {
        for kind in ApplianceKind::ALL {
            assert_eq!(generic(kind).kind(), kind);
            assert!(generic(kind).id.ends_with("-generic"));
        }
    }

    #[test]
    fn every_mode_starts_at_a_temperature_it_accepts() {
        for m in MODELS {
            let caps = m.aircon().or(m.floor_heater());
            for mode in caps.map(|c| c.modes).unwrap_or_default() {
                assert!(mode.temp.contains(&mode.default_temp), "{}", mode.name);
            }
        }
    }

    #[test]
    fn a_model_of_another_kind_is_refused() {
        assert!(model_of_kind(Some("kumo-tv-generic"), ApplianceKind::Light).is_err());
        assert!(model_of_kind(Some("nope"), ApplianceKind::Tv).is_err());
        assert_eq!(
            model_of_kind(None, ApplianceKind::Tv).map(|m| m.id),
            Ok("kumo-tv-generic")
        );
    }
}
