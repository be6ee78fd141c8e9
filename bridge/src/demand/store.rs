//! Programs, enrolments and events in the database: creating them with
//! their checks, opting out, and the views the aggregator and each user get.

use deadpool_postgres::Pool;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::consent::{excluded_hour_in, kw_plan, spread_for, stagger, Capacity, Consent};
use super::DemandError;
use crate::json::rfc3339;

/// Longest event window: a day.
const MAX_WINDOW: time::Duration = time::Duration::hours(24);

/// Creates a program of `aggregator`.
pub async fn create_program(
    pool: &Pool,
    aggregator: &str,
    name: &str,
) -> Result<Value, DemandError> {
    let id = format!("prg-{}", Uuid::new_v4().simple());
    let client = pool.get().await?;
    let row = client
        .query_one(
            "INSERT INTO dr_programs (id, aggregator_id, name) VALUES ($1, $2, $3)
             RETURNING created_at",
            &[&id, &aggregator, &name],
        )
        .await?;
    Ok(json!({"id": id, "name": name, "created_at": rfc3339(row.get(0)), "enrolled": 0}))
}

/// The programs of `aggregator` with how many appliances are enrolled.
pub async fn programs_of(pool: &Pool, aggregator: &str) -> Result<Value, DemandError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT p.id, p.name, p.created_at,
                    (SELECT count(*) FROM dr_enrolments e
                     WHERE e.program_id = p.id AND e.opted_out_at IS NULL)
             FROM dr_programs p WHERE p.aggregator_id = $1 ORDER BY p.created_at, p.id",
            &[&aggregator],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            json!({"id": r.get::<_, String>(0), "name": r.get::<_, String>(1),
                   "created_at": rfc3339(r.get(2)), "enrolled": r.get::<_, i64>(3)})
        })
        .collect())
}

/// Whether program `id` belongs to `aggregator` (another's is not found).
async fn own_program(
    client: &impl deadpool_postgres::GenericClient,
    aggregator: &str,
    id: &str,
) -> Result<i64, DemandError> {
    client
        .query_opt(
            "SELECT no FROM dr_programs WHERE id = $1 AND aggregator_id = $2",
            &[&id, &aggregator],
        )
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| DemandError::NotFound(format!("program {id}")))
}

/// What an event asks for, as the aggregator states it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Asked {
    /// Each unit's setpoint this many °C towards less energy.
    Setpoint(f64),
    /// Units off.
    Off,
    /// This many kW less in total: one setpoint change for every unit,
    /// each clamped to its user's limit ([`kw_plan`]).
    Kw(f64),
}

/// A new event.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
    pub asked: Asked,
}

/// Creates an event of program `program` and a dispatch row for every unit
/// enrolled now, each at its staggered instant after the start (and after
/// the end, for its restore). Refuses windows in the past, windows longer
/// than a day, programs nobody is enrolled in and overlapping events.
pub async fn create_event(
    pool: &Pool,
    aggregator: &str,
    program: &str,
    e: &NewEvent,
    stagger_secs: u64,
    kw_per_kelvin: f64,
) -> Result<Value, DemandError> {
    if e.start >= e.end {
        return Err(DemandError::Invalid("start must be before end".into()));
    }
    if e.start < OffsetDateTime::now_utc() {
        return Err(DemandError::Invalid("the window starts in the past".into()));
    }
    if e.end - e.start > MAX_WINDOW {
        return Err(DemandError::Invalid("a window is at most 24 hours".into()));
    }
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let no = own_program(&tx, aggregator, program).await?;
    // The units enrolled now whose owner still sees them; the enrolment rows
    // are share-locked so an opt-out waits for the event to exist.
    let units = tx
        .query(
            "SELECT e.appliance_id, e.user_id, a.device_id, d.home_id,
                    e.max_setpoint_change, e.allow_off, e.excluded_hours, e.utc_offset_minutes
             FROM dr_enrolments e JOIN appliances a ON a.id = e.appliance_id
             JOIN devices d ON d.id = a.device_id
             WHERE e.program_id = $1 AND e.opted_out_at IS NULL
               AND EXISTS (SELECT 1 FROM device_access x
                           WHERE x.device_id = a.device_id AND x.user_id = e.user_id)
             ORDER BY e.appliance_id FOR SHARE OF e",
            &[&program],
        )
        .await?;
    if units.is_empty() {
        return Err(DemandError::Conflict(format!(
            "nobody is enrolled in program {program}"
        )));
    }
    let id = format!("evt-{}", Uuid::new_v4().simple());
    let (kind, change, kw, expected) = match e.asked {
        Asked::Setpoint(c) => ("setpoint", Some(c as f32), None, None),
        Asked::Off => ("off", None, None, None),
        Asked::Kw(kw) => {
            // What each unit's consent lets it give in this window, as the
            // dispatch will decide it (its limit; nothing in an excluded hour).
            let able: Vec<Capacity> = units
                .iter()
                .map(|u| {
                    let c = consent_at(u, 4);
                    let excluded = excluded_hour_in(&c, e.start, e.end).is_some();
                    Capacity {
                        max_change: if excluded { 0.0 } else { c.max_setpoint_change },
                        kw_per_kelvin,
                    }
                })
                .collect();
            let plan = kw_plan(kw, &able).ok_or_else(|| {
                DemandError::Conflict(format!(
                    "no unit enrolled in program {program} may change its setpoint in this window"
                ))
            })?;
            // A hundredth of a kelvin at the least: what is stored and shown.
            let change = plan.setpoint_change.max(0.01) as f32;
            (
                "kw",
                Some(change),
                Some(kw as f32),
                Some(plan.expected_kw as f32),
            )
        }
    };
    let inserted = tx
        .execute(
            "INSERT INTO dr_events (id, program_id, program_no, during, target, setpoint_change,
                                    reduction_kw, expected_reduction_kw)
             VALUES ($1, $2, $3, tstzrange($4, $5, '[)'), $6, $7, $8, $9)",
            &[
                &id, &program, &no, &e.start, &e.end, &kind, &change, &kw, &expected,
            ],
        )
        .await;
    if let Err(err) = inserted {
        if err.code() == Some(&SqlState::EXCLUSION_VIOLATION) {
            return Err(DemandError::Conflict(format!(
                "the window overlaps another event of program {program}"
            )));
        }
        return Err(err.into());
    }
    let spread = spread_for(e.end - e.start, stagger_secs);
    let insert = tx
        .prepare(
            "INSERT INTO dr_dispatches (event_id, program_id, appliance_id, user_id, device_id,
                                        home_id, dispatch_at, restore_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await?;
    for u in &units {
        let appliance: String = u.get(0);
        let offset = stagger(&id, &appliance, spread);
        let (at, restore) = (e.start + offset, e.end + offset);
        let (user, device, home): (String, String, Option<String>) = (u.get(1), u.get(2), u.get(3));
        tx.execute(
            &insert,
            &[
                &id, &program, &appliance, &user, &device, &home, &at, &restore,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    event_of(pool, aggregator, &id).await
}

/// A stored `real` of °C as written (to a hundredth): 0.1, not 0.10000000149.
/// A user's consent from four columns of `r`, from `first` on: the largest
/// setpoint change (`real`), whether the unit may be switched off, the
/// excluded hours and the UTC offset they are in.
pub(super) fn consent_at(r: &tokio_postgres::Row, first: usize) -> Consent {
    Consent {
        max_setpoint_change: f64::from(r.get::<_, f32>(first)),
        allow_off: r.get(first + 1),
        excluded_hours: r.get(first + 2),
        utc_offset_minutes: r.get(first + 3),
    }
}

pub(crate) fn hundredths(v: f32) -> f64 {
    (f64::from(v) * 100.0).round() / 100.0
}

/// The event's fields.
fn event_json(r: &tokio_postgres::Row) -> Value {
    json!({
        "id": r.get::<_, String>("id"),
        "program": r.get::<_, String>("program_id"),
        "start": rfc3339(r.get("start")),
        "end": rfc3339(r.get("end")),
        "target": r.get::<_, String>("target"),
        "setpoint_change": r.get::<_, Option<f32>>("setpoint_change").map(hundredths),
        "reduction_kw": r.get::<_, Option<f32>>("reduction_kw").map(hundredths),
        "expected_reduction_kw": r.get::<_, Option<f32>>("expected_reduction_kw").map(hundredths),
        "created_at": rfc3339(r.get("created_at")),
    })
}

const EVENT_COLUMNS: &str = "ev.id, ev.program_id, lower(ev.during) AS start,
    upper(ev.during) AS \"end\", ev.target, ev.setpoint_change, ev.reduction_kw,
    ev.expected_reduction_kw, ev.created_at";

/// The events of program `program` of `aggregator`, newest first.
pub async fn events_of(pool: &Pool, aggregator: &str, program: &str) -> Result<Value, DemandError> {
    let client = pool.get().await?;
    own_program(&client, aggregator, program).await?;
    let rows = client
        .query(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM dr_events ev WHERE ev.program_id = $1
                 ORDER BY lower(ev.during) DESC"
            ),
            &[&program],
        )
        .await?;
    Ok(rows.iter().map(event_json).collect())
}

/// Event `id` of `aggregator` with every home's outcome and their counts.
pub async fn event_of(pool: &Pool, aggregator: &str, id: &str) -> Result<Value, DemandError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM dr_events ev JOIN dr_programs p ON p.id = ev.program_id
                 WHERE ev.id = $1 AND p.aggregator_id = $2"
            ),
            &[&id, &aggregator],
        )
        .await?
        .ok_or_else(|| DemandError::NotFound(format!("event {id}")))?;
    let mut event = event_json(&row);
    let homes = outcomes(&client, id, None).await?;
    let mut counts = serde_json::Map::new();
    for h in &homes {
        for key in [&h["state"], &h["command"]["status"]] {
            if let Some(k) = key.as_str() {
                let n = counts.get(k).and_then(Value::as_i64).unwrap_or(0);
                counts.insert(k.to_string(), json!(n + 1));
            }
        }
    }
    event["summary"] = Value::Object(counts);
    event["homes"] = Value::Array(homes);
    Ok(event)
}

/// Each unit's outcome in event `event` (only `user`'s when given).
pub(crate) async fn outcomes(
    client: &deadpool_postgres::Object,
    event: &str,
    user: Option<&str>,
) -> Result<Vec<Value>, DemandError> {
    let rows = client
        .query(
            "SELECT d.home_id, d.device_id, d.appliance_id, d.state, d.reason, d.dispatch_at,
                    d.restore_at, d.command_id, c.status, d.restore_command_id, r.status,
                    d.previous, d.expected
             FROM dr_dispatches d
             LEFT JOIN commands c ON c.id = d.command_id
             LEFT JOIN commands r ON r.id = d.restore_command_id
             WHERE d.event_id = $1 AND ($2::text IS NULL OR d.user_id = $2)
             ORDER BY d.dispatch_at, d.appliance_id",
            &[&event, &user],
        )
        .await?;
    let command =
        |id: Option<Uuid>, status: Option<String>| id.map(|id| json!({"id": id, "status": status}));
    Ok(rows
        .iter()
        .map(|r| {
            json!({
                "home": r.get::<_, Option<String>>(0),
                "device": r.get::<_, String>(1),
                "appliance": r.get::<_, String>(2),
                "state": r.get::<_, String>(3),
                "reason": r.get::<_, Option<String>>(4),
                "dispatch_at": rfc3339(r.get(5)),
                "restore_at": rfc3339(r.get(6)),
                "command": command(r.get(7), r.get(8)),
                "restore_command": command(r.get(9), r.get(10)),
                "previous": r.get::<_, Option<Value>>(11),
                "commanded": r.get::<_, Option<Value>>(12),
            })
        })
        .collect())
}
