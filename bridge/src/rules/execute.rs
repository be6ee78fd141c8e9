//! Carrying out a firing: each action in order, then one `rule_executions`
//! row and one `rule_execution` live event with what every action did.
//!
//! Commands go through the command log as the rule's owner, built by the same
//! code as the REST endpoints ([`super::check::plan_command`]); webhooks are
//! enqueued durably by [`crate::webhooks::Webhooks::rule_action`]; events go to
//! [`crate::events::EventHub::publish`]. One failed action does not stop the
//! others. Executions run concurrently up to a limit, off the evaluator loop.

use std::sync::Arc;

use kumo_rules::{Action, Firing};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};
use uuid::Uuid;

use super::check::plan_command;
use super::store::{self, NewExecution};
use super::Effects;
use crate::appliance::ControlError;
use crate::commands::NewCommand;
use crate::json::rfc3339;

/// A firing and what executing it needs to know about its rule.
#[derive(Debug)]
pub(crate) struct Job {
    pub account: String,
    pub rule_name: String,
    /// The devices the rule reads; they must still be the account's.
    pub devices: Vec<String>,
    /// The homes the rule watches; the account must still be a member.
    pub homes: Vec<String>,
    pub firing: Firing,
}

/// What one action did, as logged in `rule_executions.actions`.
#[derive(Debug, Clone, Default, Serialize)]
struct ActionOutcome {
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    command_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivery_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Executes queued firings, at most `limit` at a time, until the queue closes.
pub(super) async fn run(mut queue: mpsc::Receiver<Job>, effects: Effects, limit: usize) {
    let permits = Arc::new(Semaphore::new(limit.max(1)));
    while let Some(job) = queue.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let effects = effects.clone();
        tokio::spawn(async move {
            execute(&effects, job).await;
            drop(permit);
        });
    }
}

async fn execute(state: &Effects, job: Job) {
    let cause = serde_json::to_value(&job.firing.cause).unwrap_or(Value::Null);
    let outcomes = match foreign_device(state, &job).await {
        Some(Foreign::Left) => {
            // The cause is another account's data now: record nothing for
            // this one, not even that the rule fired.
            tracing::warn!(rule_id = %job.firing.rule, account = %job.account,
                "a device or home this rule reads left its account; the firing is dropped");
            return;
        }
        Some(Foreign::Unchecked(why)) => job
            .firing
            .actions
            .iter()
            .map(|a| ActionOutcome {
                kind: kind_of(a),
                error: Some(why.clone()),
                ..Default::default()
            })
            .collect(),
        None => {
            let mut out = Vec::with_capacity(job.firing.actions.len());
            for action in &job.firing.actions {
                out.push(run_action(state, &job, &cause, action).await);
            }
            out
        }
    };
    log_execution(state, &job, cause, &outcomes).await;
}

/// `ok` when every action succeeded, `failed` when none did, else `partial`.
fn outcome_of(outcomes: &[ActionOutcome]) -> &'static str {
    match outcomes.iter().filter(|o| o.error.is_some()).count() {
        0 => "ok",
        n if n == outcomes.len() => "failed",
        _ => "partial",
    }
}

/// Writes the `rule_executions` row, then publishes `rule_execution`.
async fn log_execution(state: &Effects, job: &Job, cause: Value, outcomes: &[ActionOutcome]) {
    let rule_id = job.firing.rule.0.as_str();
    let outcome = outcome_of(outcomes);
    let actions = serde_json::to_value(outcomes).unwrap_or(Value::Null);
    let record = NewExecution {
        rule_id,
        user_id: &job.account,
        fired_at: job.firing.at,
        cause: &cause,
        outcome,
        actions: &actions,
    };
    let execution_id = match store::record_execution(&state.pool, &record).await {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(rule_id, error = %e, "logging a rule execution failed");
            None
        }
    };
    tracing::info!(rule_id, outcome, "rule executed");
    state.events.publish(
        &job.account,
        "rule_execution",
        json!({
            "rule_id": rule_id,
            "rule_name": job.rule_name,
            "execution_id": execution_id,
            "fired_at": rfc3339(job.firing.at),
            "cause": cause,
            "outcome": outcome,
            "actions": actions,
        }),
    );
}

/// Why a firing may not run.
enum Foreign {
    /// A device the rule reads left the account, or it left the home.
    Left,
    /// Ownership could not be checked (the reason).
    Unchecked(String),
}

/// Whether the rule may no longer run: a device it reads left the account.
async fn foreign_device(state: &Effects, job: &Job) -> Option<Foreign> {
    if job.devices.is_empty() && job.homes.is_empty() {
        return None;
    }
    let check = async {
        let client = state.pool.get().await.map_err(|e| e.to_string())?;
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM device_access
                          WHERE user_id = $1 AND device_id = ANY($2))
                      + (SELECT count(*) FROM home_members
                          WHERE user_id = $1 AND home_id = ANY($3))",
                &[&job.account, &job.devices, &job.homes],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok::<i64, String>(row.get(0))
    };
    let expected = job.devices.len() + job.homes.len();
    match check.await {
        Ok(n) if usize::try_from(n).is_ok_and(|n| n == expected) => None,
        Ok(_) => Some(Foreign::Left),
        Err(e) => {
            tracing::warn!(rule_id = %job.firing.rule, error = %e, "checking rule devices failed");
            Some(Foreign::Unchecked("the database was unavailable".into()))
        }
    }
}

fn kind_of(action: &Action) -> &'static str {
    match action {
        Action::Command(_) => "command",
        Action::Webhook(_) => "webhook",
        Action::Event(_) => "event",
    }
}

async fn run_action(state: &Effects, job: &Job, cause: &Value, action: &Action) -> ActionOutcome {
    let rule_id = job.firing.rule.0.as_str();
    let mut out = ActionOutcome {
        kind: kind_of(action),
        ..Default::default()
    };
    match action {
        Action::Command(c) => match command(state, &job.account, c).await {
            Ok(id) => out.command_id = Some(id),
            Err(e) => out.error = Some(e),
        },
        Action::Webhook(w) => {
            let body = json!({
                "rule_id": rule_id,
                "rule_name": job.rule_name,
                "fired_at": rfc3339(job.firing.at),
                "cause": cause,
            });
            match state
                .webhooks
                .rule_action(&job.account, rule_id, w, body)
                .await
            {
                Ok(id) => out.delivery_id = Some(id),
                Err(e) => out.error = Some(e.to_string()),
            }
        }
        Action::Event(e) => {
            let data = json!({
                "rule_id": rule_id,
                "name": e.name,
                "data": e.data,
                "fired_at": rfc3339(job.firing.at),
            });
            out.event_id = Some(state.events.publish(&job.account, "rule_event", data));
        }
    }
    if let Some(error) = &out.error {
        tracing::warn!(rule_id, action = out.kind, error = %error, "rule action failed");
    }
    out
}

/// Queues a rule's command as its owner; the error text is for the log.
async fn command(
    state: &Effects,
    account: &str,
    action: &kumo_rules::CommandAction,
) -> Result<Uuid, String> {
    let p = plan_command(&state.pool, account, action)
        .await
        .map_err(|e| match e {
            ControlError::NoAppliance(_) => format!(
                "appliance {:?} is no longer in this account",
                action.appliance
            ),
            other => other.to_string(),
        })?;
    state
        .commands
        .enqueue(
            NewCommand {
                user_id: account,
                device_id: &p.device,
                appliance_id: Some(&p.appliance),
                kind: p.kind,
                payload: p.payload,
                expected: p.expected,
                idempotency_key: None,
            },
            None,
        )
        .await
        .map_err(|e| e.message().to_string())
}
