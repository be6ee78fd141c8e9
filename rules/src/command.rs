//! Appliance commands a rule can send: the same kinds and parameters as the
//! REST API's appliance endpoints, typed, with their JSON payload on demand.
//!
//! JSON: `{"appliance": "<id>", "kind": "aircon_settings|tv|light|signal",
//! "params": {…}}`. Deserialization is hand-written so that errors inside
//! `params` keep their field path and unknown keys are rejected, which serde's
//! `flatten` cannot do.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A command the REST API could send for an appliance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandAction {
    /// The appliance id (`/1/appliances/{id}`).
    pub appliance: String,
    #[serde(flatten)]
    pub command: ApplianceCommand,
}

/// The command, tagged by `kind` with its `params`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "params", rename_all = "snake_case")]
pub enum ApplianceCommand {
    /// `POST /1/appliances/{id}/aircon_settings`.
    AirconSettings(AirconParams),
    /// `POST /1/appliances/{id}/tv`.
    Tv(ButtonParams),
    /// `POST /1/appliances/{id}/light`.
    Light(ButtonParams),
    /// `POST /1/signals/{signal}/send`.
    Signal(SignalParams),
}

impl ApplianceCommand {
    /// The wire name of the kind (`aircon_settings`, `tv`, `light`, `signal`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AirconSettings(_) => "aircon_settings",
            Self::Tv(_) => "tv",
            Self::Light(_) => "light",
            Self::Signal(_) => "signal",
        }
    }

    /// The parameters as the JSON object the REST handler takes.
    pub fn params(&self) -> Value {
        let v = match self {
            Self::AirconSettings(p) => serde_json::to_value(p),
            Self::Tv(p) | Self::Light(p) => serde_json::to_value(p),
            Self::Signal(p) => serde_json::to_value(p),
        };
        // Plain structs of strings always serialize.
        v.unwrap_or(Value::Null)
    }
}

/// Air-conditioner settings, as strings like the Nature API's form fields.
/// Unset fields keep the appliance's current value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AirconParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub air_volume: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub air_direction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub air_direction_h: Option<String>,
    /// `""` turns on, `"power-off"` turns off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub button: Option<String>,
}

/// A TV or light button name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ButtonParams {
    pub button: String,
}

/// A learned IR signal's id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalParams {
    pub signal: String,
}

/// The `kind` names, in [`ApplianceCommand`] order.
const KINDS: &[&str] = &["aircon_settings", "tv", "light", "signal"];
const FIELDS: &[&str] = &["appliance", "kind", "params"];

#[derive(Clone, Copy)]
enum Kind {
    AirconSettings,
    Tv,
    Light,
    Signal,
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "aircon_settings" => Ok(Self::AirconSettings),
            "tv" => Ok(Self::Tv),
            "light" => Ok(Self::Light),
            "signal" => Ok(Self::Signal),
            other => Err(de::Error::unknown_variant(other, KINDS)),
        }
    }
}

enum Field {
    Appliance,
    Kind,
    Params,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Failing while reading the key lets the error path name the unknown key.
        let s = String::deserialize(d)?;
        match s.as_str() {
            "appliance" => Ok(Self::Appliance),
            "kind" => Ok(Self::Kind),
            "params" => Ok(Self::Params),
            other => Err(de::Error::unknown_field(other, FIELDS)),
        }
    }
}

/// `params` read before `kind` was known (JSON key order is the client's).
enum Params {
    Typed(ApplianceCommand),
    Raw(Value),
}

/// Reads `params` of a known kind straight from the map so errors keep their path.
struct ParamsOf(Kind);

impl<'de> de::DeserializeSeed<'de> for ParamsOf {
    type Value = ApplianceCommand;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ApplianceCommand, D::Error> {
        Ok(match self.0 {
            Kind::AirconSettings => ApplianceCommand::AirconSettings(AirconParams::deserialize(d)?),
            Kind::Tv => ApplianceCommand::Tv(ButtonParams::deserialize(d)?),
            Kind::Light => ApplianceCommand::Light(ButtonParams::deserialize(d)?),
            Kind::Signal => ApplianceCommand::Signal(SignalParams::deserialize(d)?),
        })
    }
}

struct CommandVisitor;

impl<'de> Visitor<'de> for CommandVisitor {
    type Value = CommandAction;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with appliance, kind and params")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CommandAction, A::Error> {
        let (mut appliance, mut kind, mut params) = (None, None, None);
        while let Some(key) = map.next_key::<Field>()? {
            match key {
                Field::Appliance => appliance = Some(map.next_value::<String>()?),
                Field::Kind => kind = Some(map.next_value::<Kind>()?),
                Field::Params => {
                    params = Some(match kind {
                        Some(k) => Params::Typed(map.next_value_seed(ParamsOf(k))?),
                        None => Params::Raw(map.next_value::<Value>()?),
                    })
                }
            }
        }
        let appliance = appliance.ok_or_else(|| de::Error::missing_field("appliance"))?;
        let kind = kind.ok_or_else(|| de::Error::missing_field("kind"))?;
        let command = match params.ok_or_else(|| de::Error::missing_field("params"))? {
            Params::Typed(c) => c,
            Params::Raw(v) => de::DeserializeSeed::deserialize(ParamsOf(kind), v)
                .map_err(|e| de::Error::custom(format_args!("params: {e}")))?,
        };
        Ok(CommandAction { appliance, command })
    }
}

impl<'de> Deserialize<'de> for CommandAction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(CommandVisitor)
    }
}
