//! The dispatch worker: commands every enrolled unit at its staggered
//! instant after an event's start and restores it after the end (or at once
//! after an opt-out).
//!
//! Due rows are read without locks and what was done is written back in one
//! short transaction per round, only to rows still as they were read (see
//! [`round`] for why no lock is held meanwhile). Consent is checked at the
//! moment a unit is reached; an opt-out that comes while its command is being
//! queued makes the restore due at once. Commands go through [`CommandLog`]
//! with an idempotency key per (event, unit, step), so a row two bridges (or
//! a round retried after a crash) handle queues nothing twice.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::consent::{decide, excluded_hour_in, Target};
use super::unit::{Unit, UnitCommand, UnitError};
use super::DemandError;
use crate::appliance::{self, ControlError};
use crate::commands::{CommandLog, NewCommand};

/// Rows claimed per round.
const BATCH: i64 = 200;

/// Wakes the worker before its next poll (an opt-out makes a restore due).
#[derive(Debug, Clone, Default)]
pub struct DemandHandle {
    wake: Arc<Notify>,
}

impl DemandHandle {
    /// Asks the worker to look for due rows now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Runs the worker until `shutdown`, polling every `poll`.
pub fn start(
    pool: Pool,
    commands: Arc<CommandLog>,
    poll: Duration,
    shutdown: CancellationToken,
) -> (DemandHandle, tokio::task::JoinHandle<()>) {
    let handle = DemandHandle::default();
    let wake = handle.wake.clone();
    let task = tokio::spawn(async move {
        loop {
            for step in [Step::Dispatch, Step::Restore] {
                // A full batch means more may be due: go again at once.
                loop {
                    match round(&pool, &commands, step).await {
                        Ok(n) if n as i64 == BATCH => continue,
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, ?step, "demand response round failed; will retry");
                            break;
                        }
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    });
    (handle, task)
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Dispatch,
    Restore,
}

/// One batch of due rows; returns how many were due.
///
/// The rows are read without locks, and what is done to each is written at
/// the end in one short transaction ([`record`]): a step takes further pool
/// connections (to reach the unit, to queue its command), and waiting for
/// them while holding row locks that REST calls wait on — an opt-out, each
/// with a connection of its own — could leave every connection waiting.
async fn round(pool: &Pool, commands: &CommandLog, step: Step) -> Result<usize, DemandError> {
    let rows = pool
        .get()
        .await?
        .query(
            match step {
                Step::Dispatch => {
                    "SELECT d.event_id, d.appliance_id, d.user_id, e.max_setpoint_change,
                            e.allow_off, e.excluded_hours, e.utc_offset_minutes,
                            e.opted_out_at IS NOT NULL, ev.target, ev.setpoint_change,
                            lower(ev.during), upper(ev.during)
                     FROM dr_dispatches d
                     JOIN dr_enrolments e USING (program_id, appliance_id)
                     JOIN dr_events ev ON ev.id = d.event_id
                     WHERE d.state = 'pending' AND d.dispatch_at <= now()
                     ORDER BY d.dispatch_at LIMIT $1"
                }
                Step::Restore => {
                    "SELECT d.event_id, d.appliance_id, d.user_id, d.previous, d.expected,
                            c.status
                     FROM dr_dispatches d LEFT JOIN commands c ON c.id = d.command_id
                     WHERE d.state = 'dispatched' AND d.restore_at <= now()
                     ORDER BY d.restore_at LIMIT $1"
                }
            },
            &[&BATCH],
        )
        .await?;
    let mut done = Vec::new();
    for r in &rows {
        let (event, appliance, user): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let outcome = match step {
            Step::Dispatch => dispatch(pool, commands, r, &event, &appliance, &user).await,
            Step::Restore => restore(pool, commands, r, &event, &appliance, &user).await,
        };
        if let Some(o) = outcome {
            done.push((event, appliance, o));
        }
    }
    if !done.is_empty() {
        record(pool, step, &done).await?;
    }
    Ok(rows.len())
}

/// Writes what a round did, in a transaction that waits for no other
/// connection. A row changed since it was read is left as it is — another
/// bridge recorded it (with the same command: one idempotency key per
/// step), or an opt-out skipped it — except a dispatch the opt-out overtook
/// while its command was being queued: that is recorded as dispatched with
/// its restore due at the opt-out, so the unit is put back at once.
async fn record(
    pool: &Pool,
    step: Step,
    done: &[(String, String, Outcome)],
) -> Result<(), DemandError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let update = tx
        .prepare(
            "UPDATE dr_dispatches d SET state = $3, reason = $4,
                previous = coalesce($5, previous), expected = coalesce($6, expected),
                command_id = coalesce($7, command_id),
                restore_command_id = coalesce($8, restore_command_id),
                restore_at = CASE WHEN d.state = 'skipped' THEN least(d.restore_at, e.opted_out_at)
                                  ELSE d.restore_at END,
                updated_at = now()
             FROM dr_enrolments e
             WHERE d.event_id = $1 AND d.appliance_id = $2
               AND e.program_id = d.program_id AND e.appliance_id = d.appliance_id
               AND (d.state = $9
                    OR ($3 = 'dispatched' AND d.state = 'skipped'
                        AND d.reason = 'opted out' AND e.opted_out_at IS NOT NULL))",
        )
        .await?;
    let from = match step {
        Step::Dispatch => "pending",
        Step::Restore => "dispatched",
    };
    for (event, appliance, o) in done {
        let (command, restore_command) = match step {
            Step::Dispatch => (o.command, None),
            Step::Restore => (None, o.command),
        };
        let n = tx
            .execute(
                &update,
                &[
                    event,
                    appliance,
                    &o.state,
                    &o.reason,
                    &o.previous,
                    &o.expected,
                    &command,
                    &restore_command,
                    &from,
                ],
            )
            .await?;
        if n == 1 {
            tracing::info!(event_id = %event, appliance_id = %appliance, state = o.state,
                reason = o.reason.as_deref().unwrap_or(""), "demand response step");
        }
    }
    tx.commit().await?;
    Ok(())
}

/// What a step did to one row.
struct Outcome {
    state: &'static str,
    reason: Option<String>,
    previous: Option<Value>,
    expected: Option<Value>,
    command: Option<Uuid>,
}

fn skipped(state: &'static str, reason: impl Into<String>) -> Option<Outcome> {
    Some(Outcome {
        state,
        reason: Some(reason.into()),
        previous: None,
        expected: None,
        command: None,
    })
}

/// Plans and queues the event's command for one unit, within its consent.
async fn dispatch(
    pool: &Pool,
    commands: &CommandLog,
    r: &tokio_postgres::Row,
    event: &str,
    appliance: &str,
    user: &str,
) -> Option<Outcome> {
    // The enrolment's consent columns, from the fourth on.
    let consent = super::store::consent_at(r, 3);
    if r.get::<_, bool>(7) {
        return skipped("skipped", "opted out");
    }
    let target = match (r.get::<_, String>(8).as_str(), r.get::<_, Option<f32>>(9)) {
        ("setpoint" | "kw", Some(c)) => Target::Setpoint(f64::from(c)),
        _ => Target::Off,
    };
    let (start, end): (OffsetDateTime, OffsetDateTime) = (r.get(10), r.get(11));
    if OffsetDateTime::now_utc() >= end {
        return skipped("skipped", "the window ended before the unit was reached");
    }
    if let Some(h) = excluded_hour_in(&consent, start, end) {
        return skipped("skipped", format!("the window touches excluded hour {h}"));
    }
    let t = match reach(pool, user, appliance).await {
        Ok(t) => t,
        Err(e) => return unit_failed("skipped", event, appliance, e),
    };
    let planned = Unit::confirmed(pool, &t).await.and_then(|unit| {
        let decision = decide(target, &consent, &unit.settings()?);
        Ok((unit.recorded(), unit.event_command(&t, &decision)?))
    });
    let (previous, command) = match planned {
        Ok(p) => p,
        Err(e) => return unit_failed("skipped", event, appliance, e),
    };
    let key = format!("dr:{event}:{appliance}");
    match queue(commands, user, &t, &command, &key).await {
        Ok(id) => Some(Outcome {
            state: "dispatched",
            reason: None,
            previous: Some(previous),
            expected: Some(command.after),
            command: Some(id),
        }),
        Err(QueueError::Refused(reason)) => skipped("skipped", reason),
        Err(QueueError::Unavailable(e)) => retry(event, appliance, &e),
    }
}

/// Puts one unit back as it was, unless the event's command was never
/// carried out or the user changed the unit since.
async fn restore(
    pool: &Pool,
    commands: &CommandLog,
    r: &tokio_postgres::Row,
    event: &str,
    appliance: &str,
    user: &str,
) -> Option<Outcome> {
    let (previous, expected): (Option<Value>, Option<Value>) = (r.get(3), r.get(4));
    let status: Option<String> = r.get(5);
    match status.as_deref() {
        // Still on its way: look again next round.
        Some("queued" | "sent") => return None,
        Some("acked") => {}
        other => {
            let s = other.unwrap_or("gone");
            return skipped("restore_skipped", format!("the event's command was {s}"));
        }
    }
    let t = match reach(pool, user, appliance).await {
        Ok(t) => t,
        Err(e) => return unit_failed("restore_skipped", event, appliance, e),
    };
    let command = Unit::confirmed(pool, &t)
        .await
        .and_then(|unit| unit.restore_command(&t, previous, expected));
    let command = match command {
        Ok(c) => c,
        Err(e) => return unit_failed("restore_skipped", event, appliance, e),
    };
    let key = format!("dr:{event}:{appliance}:restore");
    match queue(commands, user, &t, &command, &key).await {
        Ok(id) => Some(Outcome {
            state: "restored",
            reason: None,
            previous: None,
            expected: None,
            command: Some(id),
        }),
        Err(QueueError::Refused(reason)) => skipped("restore_skipped", reason),
        Err(QueueError::Unavailable(e)) => retry(event, appliance, &e),
    }
}

/// The appliance, if its user still sees it.
async fn reach(pool: &Pool, user: &str, appliance: &str) -> Result<appliance::Target, UnitError> {
    appliance::target_of(pool, user, appliance)
        .await
        .map_err(|e| match e {
            ControlError::Db(e) => UnitError::Db(e),
            e => UnitError::Skip(format!("the unit is out of reach: {e}")),
        })
}

/// A unit left alone (`state`, with the reason), or — when the database
/// failed — left due for the next round.
fn unit_failed(state: &'static str, event: &str, appliance: &str, e: UnitError) -> Option<Outcome> {
    match e {
        UnitError::Skip(reason) => skipped(state, reason),
        UnitError::Db(e) => retry(event, appliance, &e),
    }
}

/// Leaves the row as it is (it is claimed again next round) after a
/// failure that is the bridge's, not the unit's.
fn retry(event: &str, appliance: &str, e: &dyn std::fmt::Display) -> Option<Outcome> {
    tracing::warn!(event_id = %event, appliance_id = %appliance, error = %e,
        "demand response step failed; will retry");
    None
}

/// Why a command was not queued.
enum QueueError {
    /// The command log refused it: retrying changes nothing.
    Refused(String),
    /// The command table could not be written: retry.
    Unavailable(String),
}

/// Queues a unit's command as `user`'s.
async fn queue(
    commands: &CommandLog,
    user: &str,
    t: &appliance::Target,
    command: &UnitCommand,
    key: &str,
) -> Result<Uuid, QueueError> {
    commands
        .enqueue(
            NewCommand {
                user_id: user,
                device_id: &t.device,
                appliance_id: Some(&t.id),
                kind: command.kind,
                payload: command.payload.clone(),
                expected: Some(command.expected.clone()),
                idempotency_key: Some(key),
            },
            None,
        )
        .await
        .map_err(|e| {
            if e.status().is_server_error() {
                QueueError::Unavailable(e.message().to_string())
            } else {
                QueueError::Refused(format!("queueing the command failed: {}", e.message()))
            }
        })
}
