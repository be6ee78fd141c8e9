//! The appliance domain: which appliance a command is for, what a request
//! asks of it, and the device command and appliance state it leads to.
//!
//! Validation and prediction are the catalogue's behaviour in
//! `kumo_contract::appliance` — the functions the device runs — so what the
//! bridge predicts is what the device reports. The REST handlers and the rules
//! worker both come here with typed requests; nothing here knows HTTP.

use deadpool_postgres::{Object, Pool};
use kumo_contract::appliance::{
    AirconCaps, AirconPatch, AirconState, LightProjectorState, LightState, Model, Refusal,
    SesameBotState, TvState,
};
use kumo_contract::payload::{Action, IrMessage};
use kumo_contract::DeviceId;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub mod store;

use crate::catalog::{self, ApplianceType};
use crate::commands::CommandKind;
use crate::db::{db_error_from, DbError};

/// Why an appliance command cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No such appliance, or another account's.
    #[error("appliance {0} not found")]
    NoAppliance(String),
    /// No such signal, or another account's.
    #[error("signal {0} not found")]
    NoSignal(String),
    /// The appliance has no model of the kind the request needs.
    #[error("this appliance is not {0}")]
    WrongKind(&'static str),
    /// The model cannot do what was asked.
    #[error("{}", rest_message(.0))]
    Refused(Refusal),
    /// The request itself is malformed.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

db_error_from!(ControlError);

/// A refusal in the REST API's field names (`temperature`, not `temp`).
fn rest_message(r: &Refusal) -> String {
    r.message_for(match r.field {
        "mode" => "operation_mode",
        "temp" => "temperature",
        "vol" => "air_volume",
        "dir" => "air_direction",
        "dirh" => "air_direction_h",
        other => other,
    })
}

/// An appliance being controlled, with its stored (confirmed) state.
#[derive(Debug, Clone)]
pub struct Target {
    pub id: String,
    pub device: DeviceId,
    pub kind: ApplianceType,
    pub model: Option<&'static Model>,
    settings: Option<Value>,
    state: Option<Value>,
}

impl Target {
    /// An air conditioner's confirmed settings (a unit never confirmed is in
    /// its model's initial state: off) with the capabilities of its model;
    /// `None` for anything else.
    pub fn aircon_state(&self) -> Option<(AirconState, &'static AirconCaps)> {
        let caps = match (self.kind, self.model) {
            (ApplianceType::Ac, Some(m)) => m.aircon()?,
            _ => return None,
        };
        let state = stored::<AirconState>(self.settings.as_ref())
            .filter(|s| caps.check(s).is_ok())
            .unwrap_or_else(|| caps.initial());
        Some((state, caps))
    }
}

/// Appliance `id` of `user_id` (another account's is not found).
pub async fn target_of(pool: &Pool, user_id: &str, id: &str) -> Result<Target, ControlError> {
    target_on(&pool.get().await?, user_id, id).await
}

/// [`target_of`] on a connection the caller holds (to write the command on next).
pub async fn target_on(client: &Object, user_id: &str, id: &str) -> Result<Target, ControlError> {
    let select = client
        .prepare_cached(
            "SELECT device_id, type, model_id, settings, state FROM appliances
             WHERE id = $1 AND device_id IN (SELECT device_id FROM device_access WHERE user_id = $2)",
        )
        .await?;
    let r = client
        .query_opt(&select, &[&id, &user_id])
        .await?
        .ok_or_else(|| ControlError::NoAppliance(id.to_string()))?;
    Ok(Target {
        id: id.to_string(),
        device: stored_device(r.get(0))?,
        kind: ApplianceType::parse(&r.get::<_, String>(1)).unwrap_or(ApplianceType::Ir),
        model: r
            .get::<_, Option<String>>(2)
            .and_then(|m| catalog::model(&m)),
        settings: r.get(3),
        state: r.get(4),
    })
}

/// An air conditioner request in the Nature API's terms. An absent or empty
/// mode or temperature keeps the current one (clients send every field);
/// an empty volume or direction means automatic; `power-on` is `""` (on).
#[derive(Debug, Clone, Copy, Default)]
pub struct AirconRequest<'a> {
    pub operation_mode: Option<&'a str>,
    pub temperature: Option<&'a str>,
    pub temperature_unit: Option<&'a str>,
    pub air_volume: Option<&'a str>,
    pub air_direction: Option<&'a str>,
    pub air_direction_h: Option<&'a str>,
    pub button: Option<&'a str>,
}

impl AirconRequest<'_> {
    fn patch(&self) -> AirconPatch {
        let given = |v: Option<&str>| v.filter(|v| !v.is_empty()).map(str::to_string);
        let own = |v: Option<&str>| v.map(str::to_string);
        AirconPatch {
            temp: given(self.temperature),
            mode: given(self.operation_mode),
            vol: own(self.air_volume),
            dir: own(self.air_direction),
            dirh: own(self.air_direction_h),
            button: self
                .button
                .map(|b| if b == "power-on" { "" } else { b }.to_string()),
        }
    }
}

/// What a control request asks of an appliance.
#[derive(Debug, Clone, Copy)]
pub enum ControlRequest<'a> {
    Aircon(AirconRequest<'a>),
    /// Floor heater settings, in the aircon form (Nature's `AirConParams_`).
    FloorHeater(AirconRequest<'a>),
    Tv {
        button: &'a str,
    },
    Light {
        button: &'a str,
    },
    LightProjector {
        button: &'a str,
    },
    /// `click`, or a BLE private macro by its name in the model.
    SesameBot {
        operation: &'a str,
    },
}

/// A validated request: the command to queue and the state it leads to.
#[derive(Debug, Clone)]
pub struct Planned {
    pub kind: CommandKind,
    /// The device action (`kumo_contract::payload::Action`) as JSON.
    pub payload: Value,
    /// The appliance state the device will report if it carries it out:
    /// AC or floor heater settings (without `updated_at`) or the state.
    pub expected: Value,
}

/// Validates `request` against the appliance's model and its confirmed
/// state, and builds the command. Nothing is written.
pub fn plan(t: &Target, request: &ControlRequest<'_>) -> Result<Planned, ControlError> {
    match *request {
        ControlRequest::Aircon(r) => {
            let (m, caps) = match (t.kind, t.model) {
                (ApplianceType::Ac, Some(m)) => m.aircon().map(|c| (m, c)),
                _ => None,
            }
            .ok_or(ControlError::WrongKind(
                "an air conditioner with known capabilities",
            ))?;
            let next = settings(t, caps, &r)?;
            let action = Action::Aircon {
                model: Some(m.id.to_string()),
                settings: AirconPatch::from(&next),
            };
            Ok(planned(CommandKind::Aircon, &action, &next))
        }
        ControlRequest::FloorHeater(r) => {
            let (m, caps) = match (t.kind, t.model) {
                (ApplianceType::FloorHeater, Some(m)) => m.floor_heater().map(|c| (m, c)),
                _ => None,
            }
            .ok_or(ControlError::WrongKind(
                "a FLOOR_HEATER with known capabilities",
            ))?;
            let next = settings(t, caps, &r)?;
            let action = Action::FloorHeater {
                model: Some(m.id.to_string()),
                settings: AirconPatch::from(&next),
            };
            Ok(planned(CommandKind::FloorHeater, &action, &next))
        }
        ControlRequest::Tv { button } => {
            let m = model_for(t, ApplianceType::Tv)?;
            let current = stored::<TvState>(t.state.as_ref()).unwrap_or_default();
            let next = m
                .press_tv(&current, button)
                .map_err(ControlError::Refused)?;
            let action = Action::Tv {
                model: Some(m.id.to_string()),
                button: button.to_string(),
            };
            Ok(planned(CommandKind::Tv, &action, &next))
        }
        ControlRequest::Light { button } => {
            let m = model_for(t, ApplianceType::Light)?;
            let current = stored::<LightState>(t.state.as_ref()).unwrap_or_default();
            let next = m
                .press_light(&current, button)
                .map_err(ControlError::Refused)?;
            let action = Action::Light {
                model: Some(m.id.to_string()),
                button: button.to_string(),
            };
            Ok(planned(CommandKind::Light, &action, &next))
        }
        ControlRequest::LightProjector { button } => {
            let m = model_for(t, ApplianceType::LightProjector)?;
            let current = stored::<LightProjectorState>(t.state.as_ref()).unwrap_or_default();
            let next = m
                .press_projector(&current, button)
                .map_err(ControlError::Refused)?;
            let action = Action::LightProjector {
                model: Some(m.id.to_string()),
                button: button.to_string(),
            };
            Ok(planned(CommandKind::LightProjector, &action, &next))
        }
        ControlRequest::SesameBot { operation } => {
            let m = model_for(t, ApplianceType::SesameBot)?;
            let current = stored::<SesameBotState>(t.state.as_ref()).unwrap_or_default();
            let next = m
                .operate_sesame(&current, operation)
                .map_err(ControlError::Refused)?;
            let action = Action::SesameBot {
                model: Some(m.id.to_string()),
                operation: operation.to_string(),
            };
            Ok(planned(CommandKind::SesameBot, &action, &next))
        }
    }
}

/// The settings `r` leads to from the confirmed ones, under `caps`.
fn settings(
    t: &Target,
    caps: &AirconCaps,
    r: &AirconRequest<'_>,
) -> Result<AirconState, ControlError> {
    if let Some(u) = r.temperature_unit.filter(|u| !u.is_empty()) {
        if u != caps.temp_unit {
            return Err(ControlError::Invalid(format!(
                "temperature_unit {u:?} is not supported; this {} uses {:?}",
                caps.noun, caps.temp_unit
            )));
        }
    }
    let current = stored::<AirconState>(t.settings.as_ref())
        .filter(|s| caps.check(s).is_ok())
        .unwrap_or_else(|| caps.initial());
    caps.apply(&current, &r.patch())
        .map_err(ControlError::Refused)
}

fn model_for(t: &Target, kind: ApplianceType) -> Result<&'static Model, ControlError> {
    match (t.kind == kind, t.model) {
        (true, Some(m)) => Ok(m),
        _ => Err(ControlError::WrongKind(match kind {
            ApplianceType::Tv => "a TV with known buttons",
            ApplianceType::LightProjector => "a LIGHT_PROJECTOR with known buttons",
            ApplianceType::SesameBot => "a SESAME_BOT",
            _ => "a LIGHT with known buttons",
        })),
    }
}

fn planned(kind: CommandKind, action: &Action, expected: &impl serde::Serialize) -> Planned {
    // Plain structs of strings always serialize.
    Planned {
        kind,
        payload: serde_json::to_value(action).unwrap_or(Value::Null),
        expected: serde_json::to_value(expected).unwrap_or(Value::Null),
    }
}

/// A stored state as its type; `updated_at` (when the cloud stored AC
/// settings) is not part of it. Anything unreadable counts as unknown.
fn stored<T: DeserializeOwned>(v: Option<&Value>) -> Option<T> {
    let mut v = v?.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("updated_at");
    }
    serde_json::from_value(v).ok()
}

/// A device id read back from the database (valid when it was written).
fn stored_device(id: String) -> Result<DeviceId, ControlError> {
    DeviceId::parse(id).map_err(|e| ControlError::Invalid(format!("stored device id: {e}")))
}

/// The IR command that sends a learned signal.
#[derive(Debug, Clone)]
pub struct SignalCommand {
    pub device: DeviceId,
    pub appliance: String,
    pub payload: Value,
}

/// The command sending signal `id` of `user_id` (another account's is not found).
pub async fn signal_command(
    pool: &Pool,
    user_id: &str,
    id: &str,
) -> Result<SignalCommand, ControlError> {
    let (device, appliance, message) = store::signal_for_sending(pool, user_id, id)
        .await?
        .ok_or_else(|| ControlError::NoSignal(id.to_string()))?;
    let message: IrMessage = serde_json::from_value(message)
        .map_err(|e| ControlError::Invalid(format!("stored signal {id} is unreadable: {e}")))?;
    let action = Action::Signal {
        signal: Some(id.to_string()),
        message,
    };
    Ok(SignalCommand {
        device: stored_device(device)?,
        appliance,
        payload: serde_json::to_value(&action).unwrap_or(Value::Null),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_rest_field() {
        let r = Refusal {
            field: "temp",
            value: "99".into(),
            scope: "mode \"cool\" of this air conditioner".into(),
            allowed: vec!["18", "19"],
        };
        assert_eq!(
            ControlError::Refused(r).to_string(),
            "temperature \"99\" is not supported by mode \"cool\" of this air conditioner; allowed: \"18\", \"19\""
        );
    }
}
