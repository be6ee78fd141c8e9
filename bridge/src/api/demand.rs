//! Demand response over `/v1`: the aggregator's programs and events under
//! `/v1/aggregator/…` (aggregator tokens only), and each user's programs,
//! enrolments and opt-outs under `/v1/programs/…` (their own units only).
//!
//! Handlers turn forms into typed requests; `crate::demand` does the rest.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::auth::{Caller, BASIC_READ, BASIC_WRITE};
use crate::demand::consent::Consent;
use crate::demand::principal::Aggregator;
use crate::demand::store::{self, Asked, NewEvent};
use crate::demand::{enrolment, DemandError};
use crate::error::{ApiError, ApiResult};
use crate::form::Form;
use crate::state::AppState;

impl From<DemandError> for ApiError {
    fn from(e: DemandError) -> Self {
        match e {
            DemandError::NotFound(_) => ApiError::not_found(),
            DemandError::Invalid(m) => ApiError::bad_request(m),
            DemandError::Conflict(m) => ApiError::conflict(m),
            DemandError::Scope(scope) => ApiError::forbidden(scope),
            DemandError::Db(e) => e.into(),
        }
    }
}

/// `POST /v1/aggregator/programs`: `name`.
pub async fn create_program(
    State(state): State<AppState>,
    agg: Aggregator,
    form: Form,
) -> ApiResult<(StatusCode, Json<Value>)> {
    form.only(&["name"])?;
    let name = form.required_nonempty("name")?.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::bad_request("name must be 1 to 200 characters"));
    }
    let p = store::create_program(&state.pool, &agg.id, name).await?;
    Ok((StatusCode::CREATED, Json(p)))
}

/// `GET /v1/aggregator/programs`.
pub async fn list_programs(
    State(state): State<AppState>,
    agg: Aggregator,
) -> ApiResult<Json<Value>> {
    Ok(Json(store::programs_of(&state.pool, &agg.id).await?))
}

fn time_field(form: &Form, name: &str) -> ApiResult<OffsetDateTime> {
    let raw = form.required_nonempty(name)?;
    OffsetDateTime::parse(raw, &Rfc3339)
        .map_err(|_| ApiError::bad_request(format!("{name} must be an RFC 3339 time")))
}

/// `POST /v1/aggregator/programs/{id}/events`: `start`, `end` (RFC 3339),
/// `target` (`setpoint` with `setpoint_change` °C, `off`, or `kw` with
/// `reduction_kw`, the total asked of the program's units).
pub async fn create_event(
    State(state): State<AppState>,
    agg: Aggregator,
    Path(program): Path<String>,
    form: Form,
) -> ApiResult<(StatusCode, Json<Value>)> {
    form.only(&["start", "end", "target", "setpoint_change", "reduction_kw"])?;
    let (start, end) = (time_field(&form, "start")?, time_field(&form, "end")?);
    let target = form.required_nonempty("target")?;
    let given = |f: &str| form.get(f).is_some();
    let asked =
        match target {
            "setpoint" if !given("reduction_kw") => {
                let c = form.required_number("setpoint_change")?;
                if !(c > 0.0 && c <= 10.0) {
                    return Err(ApiError::bad_request(
                        "setpoint_change must be more than 0 and at most 10 (°C)",
                    ));
                }
                Asked::Setpoint(c)
            }
            "kw" if !given("setpoint_change") => {
                let kw = form.required_number("reduction_kw")?;
                if !(kw > 0.0 && kw <= 1e6) {
                    return Err(ApiError::bad_request(
                        "reduction_kw must be more than 0 and at most 1000000",
                    ));
                }
                Asked::Kw(kw)
            }
            "off" if !given("setpoint_change") && !given("reduction_kw") => Asked::Off,
            "setpoint" | "kw" | "off" => return Err(ApiError::bad_request(
                "setpoint_change goes only with target=setpoint, reduction_kw only with target=kw",
            )),
            _ => return Err(ApiError::bad_request("target must be setpoint, off or kw")),
        };
    let e = NewEvent { start, end, asked };
    let dr = &state.demand_response;
    let event = store::create_event(
        &state.pool,
        &agg.id,
        &program,
        &e,
        dr.stagger_secs,
        dr.kw_per_kelvin,
    )
    .await?;
    state.demand.wake();
    Ok((StatusCode::CREATED, Json(event)))
}

/// `GET /v1/aggregator/programs/{id}/events`.
pub async fn list_events(
    State(state): State<AppState>,
    agg: Aggregator,
    Path(program): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        store::events_of(&state.pool, &agg.id, &program).await?,
    ))
}

/// `GET /v1/aggregator/events/{id}`: the event with every home's outcome.
pub async fn show_event(
    State(state): State<AppState>,
    agg: Aggregator,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(store::event_of(&state.pool, &agg.id, &id).await?))
}

/// `GET /v1/aggregator/events/{id}/results`: baseline, metered load and
/// reduction per home and in aggregate, homes that responded, failed commands.
pub async fn event_results(
    State(state): State<AppState>,
    agg: Aggregator,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let viewer = crate::demand::results::Viewer::Aggregator(&agg.id);
    Ok(Json(
        crate::demand::results::of_event(&state.pool, viewer, &id, state.energy.max_gap()).await?,
    ))
}

/// `GET /v1/programs/{id}/events/{event}/results`: the results of an event
/// for the caller's own homes in it (baseline, metered load, reduction, their
/// units' outcomes); nothing of other homes, no aggregate.
pub async fn my_event_results(
    State(state): State<AppState>,
    caller: Caller,
    Path((program, event)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_READ)?;
    let viewer = crate::demand::results::Viewer::User {
        user: &caller.user_id,
        program: &program,
    };
    Ok(Json(
        crate::demand::results::of_event(&state.pool, viewer, &event, state.energy.max_gap())
            .await?,
    ))
}

/// `GET /v1/programs`: every program, with the caller's enrolments.
pub async fn programs(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(BASIC_READ)?;
    Ok(Json(
        enrolment::programs_for(&state.pool, &caller.user_id).await?,
    ))
}

/// The consent a form gives: `max_setpoint_change` (°C, 0 to 10),
/// `allow_off` (`true`/`false`), `excluded_hours` (comma-separated local
/// hours), `tz` (`Z` or `±HH:MM`, the clock of those hours).
fn consent(form: &Form) -> ApiResult<Consent> {
    let max = form.required_number("max_setpoint_change")?;
    if !(0.0..=10.0).contains(&max) {
        return Err(ApiError::bad_request(
            "max_setpoint_change must be from 0 to 10 (°C)",
        ));
    }
    let allow_off = match form.get("allow_off").unwrap_or("false") {
        "true" => true,
        "false" => false,
        _ => return Err(ApiError::bad_request("allow_off must be true or false")),
    };
    let mut excluded_hours = Vec::new();
    for h in form
        .get("excluded_hours")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
    {
        let hour = h.parse::<i16>().ok().filter(|h| (0..24).contains(h));
        match hour {
            Some(h) if !excluded_hours.contains(&h) => excluded_hours.push(h),
            Some(_) => {}
            None => {
                return Err(ApiError::bad_request(
                    "excluded_hours must be comma-separated hours from 0 to 23",
                ))
            }
        }
    }
    let offset = match form.get("tz") {
        None | Some("") => time::UtcOffset::UTC,
        Some(raw) => super::energy::parse_offset(raw).ok_or_else(|| {
            ApiError::bad_request("tz must be Z or a UTC offset like +09:00 (write + as %2B)")
        })?,
    };
    Ok(Consent {
        max_setpoint_change: max,
        allow_off,
        excluded_hours,
        utc_offset_minutes: offset.whole_seconds() / 60,
    })
}

/// `POST /v1/programs/{id}/enrolments`: `appliance` and the consent.
pub async fn enrol(
    State(state): State<AppState>,
    caller: Caller,
    Path(program): Path<String>,
    form: Form,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(BASIC_WRITE)?;
    form.only(&[
        "appliance",
        "max_setpoint_change",
        "allow_off",
        "excluded_hours",
        "tz",
    ])?;
    let appliance = form.required_nonempty("appliance")?;
    let c = consent(&form)?;
    let e = enrolment::enrol(&state.pool, &caller, &program, appliance, &c).await?;
    Ok((StatusCode::CREATED, Json(e)))
}

/// `POST /v1/programs/{id}/enrolments/{appliance}/opt_out`: at once; a
/// unit commanded by a running event is restored now.
pub async fn opt_out(
    State(state): State<AppState>,
    caller: Caller,
    Path((program, appliance)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    let e = enrolment::opt_out(&state.pool, &caller.user_id, &program, &appliance).await?;
    state.demand.wake();
    Ok(Json(e))
}

/// `GET /v1/programs/{id}/events`: events that touched the caller's units,
/// with their outcomes only.
pub async fn my_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(program): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_READ)?;
    Ok(Json(
        enrolment::events_for(&state.pool, &caller.user_id, &program).await?,
    ))
}
