//! The unit an event commands, of either kind it can be: an IR air
//! conditioner (`AC`, its settings as the aircon planner keeps them) or an
//! ECHONET Lite one on a smart-meter gateway (`EL_AIRCON`, its properties;
//! [`super::el_aircon`]). Each kind reads its confirmed state, translates
//! it into the common [`UnitSettings`] that [`super::consent::decide`]
//! decides on — one set of consent rules for both — and turns the decision,
//! or the restore, into its own command. Nothing here queues or writes.

use deadpool_postgres::Pool;
use kumo_contract::appliance::{AirconCaps, AirconState};
use serde_json::Value;

use super::consent::{Decision, Heading, UnitSettings};
use super::el_aircon::ElSettings;
use crate::appliance::{self, AirconRequest, ControlRequest, Target};
use crate::catalog::ApplianceType;
use crate::commands::CommandKind;
use crate::db::{db_error_from, DbError};

/// Why a unit cannot be read or commanded.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    /// Nothing is done to the unit, for this reason (recorded on its row).
    #[error("{0}")]
    Skip(String),
    /// The database, not the unit: try again later.
    #[error(transparent)]
    Db(#[from] DbError),
}

db_error_from!(UnitError);

/// A unit's confirmed state.
#[derive(Debug, Clone)]
pub enum Unit {
    Ac {
        state: AirconState,
        caps: &'static AirconCaps,
    },
    El(ElSettings),
}

/// A command for a unit: what to queue, and the unit's settings once the
/// device carried it out (as the dispatch row records them).
#[derive(Debug, Clone)]
pub struct UnitCommand {
    pub kind: CommandKind,
    /// The device action as JSON.
    pub payload: Value,
    /// What the device will report (the command's `expected`).
    pub expected: Value,
    /// The unit's settings after it, in the kind's recorded form.
    pub after: Value,
}

impl Unit {
    /// The confirmed state of `t`: an AC's settings (a unit never
    /// confirmed is off), an EL_AIRCON's stored properties.
    pub async fn confirmed(pool: &Pool, t: &Target) -> Result<Self, UnitError> {
        match t.kind {
            ApplianceType::Ac => t
                .aircon_state()
                .map(|(state, caps)| Self::Ac { state, caps })
                .ok_or_else(|| skip("not an air conditioner with known capabilities")),
            ApplianceType::ElAircon => {
                let client = pool.get().await?;
                ElSettings::confirmed(&client, &t.id)
                    .await?
                    .map(Self::El)
                    .ok_or_else(|| skip("the unit has not reported its settings yet"))
            }
            _ => Err(skip("not an air conditioner")),
        }
    }

    /// The state in the form consent is decided on.
    pub fn settings(&self) -> Result<UnitSettings, UnitError> {
        match self {
            Self::Ac { state, caps } => {
                let mode = caps
                    .mode(&state.mode)
                    .ok_or_else(|| skip(format!("unknown mode {:?}", state.mode)))?;
                Ok(UnitSettings {
                    on: state.button != "power-off",
                    mode: match mode.name {
                        "cool" => Heading::Cool,
                        "warm" => Heading::Heat,
                        other => Heading::Other(other.to_string()),
                    },
                    setpoint: state.temp.parse().ok(),
                    setpoints: mode.temp.iter().filter_map(|t| t.parse().ok()).collect(),
                })
            }
            Self::El(s) => Ok(s.unit_settings()),
        }
    }

    /// The state as a dispatch row records it (`previous`).
    pub fn recorded(&self) -> Value {
        match self {
            // Plain structs of strings always serialize.
            Self::Ac { state, .. } => serde_json::to_value(state).unwrap_or(Value::Null),
            Self::El(s) => s.to_json(),
        }
    }

    /// The command that carries out `decision` on unit `t`.
    pub fn event_command(&self, t: &Target, decision: &Decision) -> Result<UnitCommand, UnitError> {
        if let Decision::Skip(reason) = decision {
            return Err(skip(reason.clone()));
        }
        match self {
            Self::Ac { state, caps } => {
                let temperature = match decision {
                    Decision::Setpoint(v) => caps
                        .mode(&state.mode)
                        .and_then(|m| m.temp.iter().find(|t| same(t, *v)).copied()),
                    _ => None,
                };
                let request = AirconRequest {
                    temperature,
                    button: matches!(decision, Decision::PowerOff).then_some("power-off"),
                    ..AirconRequest::default()
                };
                planned(t, &request)
            }
            Self::El(s) => {
                let (set, after) = s
                    .event_set(decision)
                    .ok_or_else(|| skip("nothing to set"))?;
                let (kind, payload, expected) = set.command().map_err(refused)?;
                Ok(UnitCommand {
                    kind,
                    payload,
                    expected,
                    after: after.to_json(),
                })
            }
        }
    }

    /// The command that puts the unit back as `previous` recorded it —
    /// unless its confirmed state is no longer exactly what the event
    /// commanded (`commanded`): then the user (or one of their rules)
    /// changed it during the event, and theirs stands.
    pub fn restore_command(
        &self,
        t: &Target,
        previous: Option<Value>,
        commanded: Option<Value>,
    ) -> Result<UnitCommand, UnitError> {
        let unknown = || skip("the settings before the event are unknown");
        match self {
            Self::Ac { state, .. } => {
                let read =
                    |v: Option<Value>| -> Option<AirconState> { serde_json::from_value(v?).ok() };
                let (Some(previous), Some(commanded)) = (read(previous), read(commanded)) else {
                    return Err(unknown());
                };
                if *state != commanded {
                    return Err(skip("the settings were changed during the event"));
                }
                let request = AirconRequest {
                    operation_mode: Some(&previous.mode),
                    temperature: Some(&previous.temp),
                    air_volume: Some(&previous.vol),
                    air_direction: Some(&previous.dir),
                    air_direction_h: Some(&previous.dirh),
                    button: Some(&previous.button),
                    ..AirconRequest::default()
                };
                planned(t, &request)
            }
            Self::El(now) => {
                let (Some(previous), Some(commanded)) = (
                    ElSettings::from_json(previous),
                    ElSettings::from_json(commanded),
                ) else {
                    return Err(unknown());
                };
                let set = now.restore(&previous, &commanded).map_err(skip)?;
                let (kind, payload, expected) = set.command().map_err(refused)?;
                Ok(UnitCommand {
                    kind,
                    payload,
                    expected,
                    after: previous.to_json(),
                })
            }
        }
    }
}

/// An AC request planned by the aircon planner, as the REST call is.
fn planned(t: &Target, request: &AirconRequest<'_>) -> Result<UnitCommand, UnitError> {
    let p = appliance::plan(t, &ControlRequest::Aircon(*request)).map_err(|e| match e {
        appliance::ControlError::Db(e) => UnitError::Db(e),
        e => refused(e),
    })?;
    Ok(UnitCommand {
        kind: p.kind,
        payload: p.payload,
        after: p.expected.clone(),
        expected: p.expected,
    })
}

/// Whether the model's temperature `t` is `v` °C.
fn same(t: &str, v: f64) -> bool {
    t.parse::<f64>().is_ok_and(|x| (x - v).abs() < 1e-9)
}

fn skip(reason: impl Into<String>) -> UnitError {
    UnitError::Skip(reason.into())
}

fn refused(e: impl std::fmt::Display) -> UnitError {
    UnitError::Skip(format!("the planner refused: {e}"))
}
