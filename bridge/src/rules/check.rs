//! What the rules crate cannot check alone: that a rule only reads the
//! caller's devices and only commands the caller's appliances, with commands
//! their capabilities allow; and turning a rule's command into the same
//! durable command the REST endpoint would queue.
//!
//! Validation and payloads come from the appliance domain (`crate::appliance`),
//! the same calls the REST endpoints make, never a copy of them. Rejections name the rule field, and say the same thing for
//! an id that does not exist and one that belongs to another account.

use deadpool_postgres::Pool;
use kumo_contract::DeviceId;
use kumo_rules::{ApplianceCommand, Condition, Rule, Trigger};
use serde_json::Value;

use crate::appliance::{self, AirconRequest, ControlError, ControlRequest};
use crate::commands::CommandKind;
use crate::error::{ApiError, ApiResult};

/// A rule command, validated and built like its REST endpoint builds it.
#[derive(Debug, Clone)]
pub struct PlannedCommand {
    pub device: DeviceId,
    pub appliance: String,
    pub kind: CommandKind,
    pub payload: Value,
    pub expected: Option<Value>,
}

/// Validates `action` for `user_id` against the appliance's current
/// capabilities and state. A missing (or foreign) appliance is
/// [`ControlError::NoAppliance`]; an impossible setting or a signal of another
/// appliance is refused.
pub async fn plan_command(
    pool: &Pool,
    user_id: &str,
    action: &kumo_rules::CommandAction,
) -> Result<PlannedCommand, ControlError> {
    let t = appliance::target_of(pool, user_id, &action.appliance).await?;
    let request = match &action.command {
        ApplianceCommand::AirconSettings(p) => ControlRequest::Aircon(AirconRequest {
            operation_mode: p.operation_mode.as_deref(),
            temperature: p.temperature.as_deref(),
            temperature_unit: None,
            air_volume: p.air_volume.as_deref(),
            air_direction: p.air_direction.as_deref(),
            air_direction_h: p.air_direction_h.as_deref(),
            button: p.button.as_deref(),
        }),
        ApplianceCommand::Tv(b) => ControlRequest::Tv { button: &b.button },
        ApplianceCommand::Light(b) => ControlRequest::Light { button: &b.button },
        ApplianceCommand::Signal(s) => {
            let not_here = || {
                ControlError::Invalid(format!(
                    "signal {:?} is not a signal of this appliance",
                    s.signal
                ))
            };
            let c = match appliance::signal_command(pool, user_id, &s.signal).await {
                Err(ControlError::NoSignal(_)) => return Err(not_here()),
                other => other?,
            };
            if c.appliance != t.id {
                return Err(not_here());
            }
            return Ok(PlannedCommand {
                device: c.device,
                appliance: c.appliance,
                kind: CommandKind::Ir,
                payload: c.payload,
                expected: None,
            });
        }
    };
    let p = appliance::plan(&t, &request)?;
    Ok(PlannedCommand {
        device: t.device,
        appliance: t.id,
        kind: p.kind,
        payload: p.payload,
        expected: Some(p.expected),
    })
}

/// The devices a rule reads, each with the field that names it.
fn device_fields(rule: &Rule) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    let kind = match &rule.trigger {
        Trigger::Threshold(_) => "threshold",
        Trigger::MotionSeen(_) => "motion_seen",
        Trigger::MotionNotSeen(_) => "motion_not_seen",
        Trigger::Presence(_) => "presence",
        Trigger::MeterPower(_) => "meter_power",
        Trigger::Schedule(_) => "schedule",
        Trigger::Home(_) => "home",
    };
    if let Some(d) = rule.trigger.device() {
        out.push((format!("trigger.{kind}.device"), d.as_str()));
    }
    for (i, c) in rule.conditions.iter().enumerate() {
        if let Condition::Sensor(s) = c {
            out.push((format!("conditions[{i}].sensor.device"), s.device.as_str()));
        }
    }
    out
}

/// Checks everything about `rule` that depends on the account: its devices
/// are ones `user_id` sees, its appliances too, the home it watches is one of
/// its homes, and each command is one the appliance can carry out. Errors are
/// 400s naming the field (or a 5xx for the database).
pub async fn check_rule(pool: &Pool, user_id: &str, rule: &Rule) -> ApiResult<()> {
    if let Some(home) = rule.trigger.home() {
        let client = pool.get().await?;
        let member = client
            .query_opt(
                "SELECT 1 FROM home_members WHERE user_id = $1 AND home_id = $2",
                &[&user_id, &home],
            )
            .await?;
        if member.is_none() {
            return Err(ApiError::bad_request(format!(
                "trigger.home.home {home:?} is not one of your homes"
            )));
        }
    }
    let fields = device_fields(rule);
    if !fields.is_empty() {
        let ids: Vec<&str> = fields.iter().map(|(_, d)| *d).collect();
        let client = pool.get().await?;
        let owned: Vec<String> = client
            .query(
                "SELECT device_id FROM device_access WHERE user_id = $1 AND device_id = ANY($2)",
                &[&user_id, &ids],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some((field, id)) = fields.iter().find(|(_, d)| !owned.iter().any(|o| o == d)) {
            return Err(ApiError::bad_request(format!(
                "{field} {id:?} is not one of your devices"
            )));
        }
    }
    for (i, action) in rule.actions.iter().enumerate() {
        let kumo_rules::Action::Command(c) = action else {
            continue;
        };
        match plan_command(pool, user_id, c).await {
            Ok(_) => {}
            Err(ControlError::NoAppliance(_)) => {
                return Err(ApiError::bad_request(format!(
                    "actions[{i}].command.appliance {:?} is not one of your appliances",
                    c.appliance
                )))
            }
            Err(
                e @ (ControlError::WrongKind(_)
                | ControlError::Refused(_)
                | ControlError::Invalid(_)
                | ControlError::NoSignal(_)),
            ) => return Err(ApiError::bad_request(format!("actions[{i}].command: {e}"))),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
