//! A user's side of demand response: the programs on offer, enrolling an
//! air conditioner they see with comfort limits, opting out (at once: a
//! pending command is cancelled, a dispatched one restored by the worker),
//! and the events that touched their own units — nothing of other users'.

use deadpool_postgres::Pool;
use serde_json::{json, Value};

use super::consent::Consent;
use super::DemandError;
use crate::auth::{Caller, ECHONETLITE_WRITE};
use crate::json::rfc3339;

/// Every program, with the caller's enrolments in it.
pub async fn programs_for(pool: &Pool, user: &str) -> Result<Value, DemandError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT p.id, p.name, a.name, p.created_at FROM dr_programs p
             JOIN aggregators a ON a.id = p.aggregator_id ORDER BY p.created_at, p.id",
            &[],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: String = r.get(0);
        out.push(json!({
            "id": id,
            "name": r.get::<_, String>(1),
            "aggregator": r.get::<_, String>(2),
            "created_at": rfc3339(r.get(3)),
            "enrolments": enrolments(&client, &id, user).await?,
        }));
    }
    Ok(Value::Array(out))
}

async fn enrolments(
    client: &deadpool_postgres::Object,
    program: &str,
    user: &str,
) -> Result<Vec<Value>, DemandError> {
    let rows = client
        .query(
            "SELECT appliance_id, max_setpoint_change, allow_off, excluded_hours,
                    utc_offset_minutes, enrolled_at, opted_out_at
             FROM dr_enrolments WHERE program_id = $1 AND user_id = $2 ORDER BY appliance_id",
            &[&program, &user],
        )
        .await?;
    Ok(rows.iter().map(enrolment_json).collect())
}

fn enrolment_json(r: &tokio_postgres::Row) -> Value {
    let minutes: i32 = r.get(4);
    json!({
        "appliance": r.get::<_, String>(0),
        "max_setpoint_change": super::store::hundredths(r.get(1)),
        "allow_off": r.get::<_, bool>(2),
        "excluded_hours": r.get::<_, Vec<i16>>(3),
        "tz": offset_name(minutes),
        "enrolled_at": rfc3339(r.get(5)),
        "opted_out_at": r.get::<_, Option<time::OffsetDateTime>>(6).map(rfc3339),
    })
}

/// `Z` or `±HH:MM`, as the request's `tz` is written.
pub fn offset_name(minutes: i32) -> String {
    if minutes == 0 {
        return "Z".into();
    }
    let sign = if minutes < 0 { '-' } else { '+' };
    let m = minutes.unsigned_abs();
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

const ENROLMENT_COLUMNS: &str = "appliance_id, max_setpoint_change, allow_off, excluded_hours,
    utc_offset_minutes, enrolled_at, opted_out_at";

/// Enrols the caller's air conditioner `appliance` (`AC` or `EL_AIRCON`) in `program` with
/// `consent` (enrolling again replaces the limits and ends an opt-out).
pub async fn enrol(
    pool: &Pool,
    caller: &Caller,
    program: &str,
    appliance: &str,
    consent: &Consent,
) -> Result<Value, DemandError> {
    let user = &caller.user_id;
    let client = pool.get().await?;
    let known = client
        .query_opt("SELECT 1 FROM dr_programs WHERE id = $1", &[&program])
        .await?;
    if known.is_none() {
        return Err(DemandError::NotFound(format!("program {program}")));
    }
    let kind = client
        .query_opt(
            "SELECT a.type FROM appliances a JOIN device_access x ON x.device_id = a.device_id
             WHERE a.id = $1 AND x.user_id = $2",
            &[&appliance, &user],
        )
        .await?
        .ok_or_else(|| DemandError::NotFound(format!("appliance {appliance}")))?;
    // An IR air conditioner or a gateway's ECHONET Lite one: the worker
    // commands either within the same consent. Enrolling hands the unit's
    // control to the program, so the token must be one that could command it
    // itself: an ECHONET Lite unit takes `echonetlite.*.write` (as its REST
    // control does), an IR one `basic.write` (checked by the caller).
    match kind.get::<_, String>(0).as_str() {
        "AC" => {}
        "EL_AIRCON" if caller.has(ECHONETLITE_WRITE) => {}
        "EL_AIRCON" => return Err(DemandError::Scope(ECHONETLITE_WRITE)),
        _ => {
            return Err(DemandError::Invalid(format!(
                "appliance {appliance} is not an air conditioner"
            )))
        }
    }
    let row = client
        .query_one(
            &format!(
                "INSERT INTO dr_enrolments (program_id, appliance_id, user_id, max_setpoint_change,
                                            allow_off, excluded_hours, utc_offset_minutes)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (program_id, appliance_id) DO UPDATE SET
                    user_id = EXCLUDED.user_id,
                    max_setpoint_change = EXCLUDED.max_setpoint_change,
                    allow_off = EXCLUDED.allow_off, excluded_hours = EXCLUDED.excluded_hours,
                    utc_offset_minutes = EXCLUDED.utc_offset_minutes,
                    enrolled_at = now(), opted_out_at = NULL
                 RETURNING {ENROLMENT_COLUMNS}"
            ),
            &[
                &program,
                &appliance,
                &user,
                &(consent.max_setpoint_change as f32),
                &consent.allow_off,
                &consent.excluded_hours,
                &consent.utc_offset_minutes,
            ],
        )
        .await?;
    Ok(enrolment_json(&row))
}

/// Opts the caller's `appliance` out of `program`, effective at once: a
/// dispatch not yet recorded is skipped (and the worker, should it have
/// queued the command meanwhile, records it with its restore due at the
/// opt-out), and a recorded one has its restore made due now.
pub async fn opt_out(
    pool: &Pool,
    user: &str,
    program: &str,
    appliance: &str,
) -> Result<Value, DemandError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            &format!(
                "UPDATE dr_enrolments SET opted_out_at = coalesce(opted_out_at, now())
                 WHERE program_id = $1 AND appliance_id = $2 AND user_id = $3
                 RETURNING {ENROLMENT_COLUMNS}"
            ),
            &[&program, &appliance, &user],
        )
        .await?
        .ok_or_else(|| DemandError::NotFound(format!("enrolment of {appliance} in {program}")))?;
    tx.execute(
        "UPDATE dr_dispatches SET state = 'skipped', reason = 'opted out', updated_at = now()
         WHERE program_id = $1 AND appliance_id = $2 AND state = 'pending'",
        &[&program, &appliance],
    )
    .await?;
    tx.execute(
        "UPDATE dr_dispatches SET restore_at = now(), updated_at = now()
         WHERE program_id = $1 AND appliance_id = $2 AND state = 'dispatched'
           AND restore_at > now()",
        &[&program, &appliance],
    )
    .await?;
    tx.commit().await?;
    Ok(enrolment_json(&row))
}

/// The events of `program` that touched the caller's units, with only
/// their own units' outcomes.
pub async fn events_for(pool: &Pool, user: &str, program: &str) -> Result<Value, DemandError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT ev.id, lower(ev.during), upper(ev.during), ev.target, ev.setpoint_change,
                    ev.reduction_kw
             FROM dr_events ev WHERE ev.program_id = $1
               AND EXISTS (SELECT 1 FROM dr_dispatches d WHERE d.event_id = ev.id
                           AND d.user_id = $2)
             ORDER BY lower(ev.during) DESC",
            &[&program, &user],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: String = r.get(0);
        out.push(json!({
            "id": id,
            "program": program,
            "start": rfc3339(r.get(1)),
            "end": rfc3339(r.get(2)),
            "target": r.get::<_, String>(3),
            "setpoint_change": r.get::<_, Option<f32>>(4).map(super::store::hundredths),
            "reduction_kw": r.get::<_, Option<f32>>(5).map(super::store::hundredths),
            "appliances": super::store::outcomes(&client, &id, Some(user)).await?,
        }));
    }
    Ok(Value::Array(out))
}
