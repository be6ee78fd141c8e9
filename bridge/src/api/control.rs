//! Appliance control: `aircon_settings` (`/1` and `/2`), `tv`, `light`,
//! `floor_heater_settings`, `light_projector`, and the SESAME bot operations
//! `api/ble.rs` takes.
//!
//! Handlers only turn the form into a typed request; the appliance domain
//! (`crate::appliance`) validates it against the model — a mode, temperature
//! or button the model does not have is a 400 naming what is allowed, never a
//! silent no-op — and builds the durable command. The stored (confirmed) state
//! changes only when the device acks; the response shows the state the
//! command will produce, as Nature's does.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use deadpool_postgres::Object;
use serde_json::{json, Value};

use crate::api::dispatch::{dispatch, Dispatch};
use crate::appliance::{self, AirconRequest, ControlError, ControlRequest, Planned, Target};
use crate::auth::{Caller, SENDIR};
use crate::error::{ApiError, ApiResult};
use crate::form::Form;
use crate::json::rfc3339;
use crate::state::AppState;

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::NoAppliance(_) | ControlError::NoSignal(_) => ApiError::not_found(),
            ControlError::WrongKind(_) | ControlError::Refused(_) | ControlError::Invalid(_) => {
                ApiError::bad_request(e.to_string())
            }
            ControlError::Db(e) => e.into(),
        }
    }
}

/// The aircon request a form carries; `extra.*` settings are refused.
fn aircon_request(form: &Form) -> ApiResult<AirconRequest<'_>> {
    if let Some((id, _)) = form.prefixed("extra").first() {
        return Err(ApiError::bad_request(format!(
            "extra.{id} is not supported by this appliance"
        )));
    }
    Ok(AirconRequest {
        operation_mode: form.get("operation_mode"),
        temperature: form.get("temperature"),
        temperature_unit: form.get("temperature_unit"),
        air_volume: form.get("air_volume"),
        air_direction: form.get("air_direction"),
        air_direction_h: form.get("air_direction_h"),
        button: form.get("button"),
    })
}

/// AC settings as Nature shows them: with when they were set.
pub(crate) fn stamped(mut settings: Value) -> Value {
    settings["updated_at"] = Value::String(rfc3339(time::OffsetDateTime::now_utc()));
    settings
}

/// A planned command and the connection its appliance was read on: the
/// command is written on it too, so a request waits for a pooled connection
/// once after authentication, not twice.
struct Plan {
    target: Target,
    planned: Planned,
    held: Option<Object>,
}

impl Plan {
    /// Gives the connection back (before anything else asks the pool for one:
    /// holding one while waiting for another could exhaust the pool).
    fn release(mut self) -> Self {
        self.held = None;
        self
    }
}

/// Plans `request` for the caller's appliance `id`.
async fn plan(
    state: &AppState,
    caller: &Caller,
    id: &str,
    request: ControlRequest<'_>,
) -> ApiResult<Plan> {
    caller.require(SENDIR)?;
    let held = state.pool.get().await?;
    let target = appliance::target_on(&held, &caller.user_id, id).await?;
    let planned = appliance::plan(&target, &request)?;
    Ok(Plan {
        target,
        planned,
        held: Some(held),
    })
}

/// Queues a planned command; answers with `body`.
async fn queue(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    plan: Plan,
    body: Value,
) -> ApiResult<Response> {
    let Plan {
        target: t,
        planned: p,
        held,
    } = plan;
    dispatch(
        state,
        caller,
        headers,
        Dispatch {
            device: &t.device,
            appliance: Some(&t.id),
            kind: p.kind,
            payload: p.payload,
            expected: Some(p.expected),
            body,
            held,
        },
    )
    .await
}

/// `POST /1/appliances/{id}/aircon_settings`: responds with the settings.
pub async fn aircon_v1(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Form,
) -> ApiResult<Response> {
    let request = ControlRequest::Aircon(aircon_request(&form)?);
    let plan = plan(&state, &caller, &id, request).await?;
    let body = stamped(plan.planned.expected.clone());
    queue(&state, &caller, &headers, plan, body).await
}

/// `POST /2/appliances/{id}/aircon_settings`: responds with the whole appliance.
pub async fn aircon_v2(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Form,
) -> ApiResult<Response> {
    let request = ControlRequest::Aircon(aircon_request(&form)?);
    let plan = plan(&state, &caller, &id, request).await?.release();
    let mut appliance = super::appliances::one(&state, &caller, &id).await?;
    appliance["settings"] = stamped(plan.planned.expected.clone());
    queue(&state, &caller, &headers, plan, appliance).await
}

/// `POST /1/appliances/{id}/tv`: `button`; responds with the TV state.
pub async fn tv(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Form,
) -> ApiResult<Response> {
    let button = form.required_nonempty("button")?;
    let plan = plan(&state, &caller, &id, ControlRequest::Tv { button }).await?;
    let body = plan.planned.expected.clone();
    queue(&state, &caller, &headers, plan, body).await
}

/// `POST /1/appliances/{id}/light`: `button`; responds with the light state.
pub async fn light(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Form,
) -> ApiResult<Response> {
    let button = form.required_nonempty("button")?;
    let plan = plan(&state, &caller, &id, ControlRequest::Light { button }).await?;
    let body = plan.planned.expected.clone();
    queue(&state, &caller, &headers, plan, body).await
}

/// `POST /1/appliances/{id}/floor_heater_settings`: the aircon form
/// (`AirConParams_`); responds with the whole appliance, its `settings` the
/// ones the command leads to.
pub async fn floor_heater(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Form,
) -> ApiResult<Response> {
    let request = ControlRequest::FloorHeater(aircon_request(&form)?);
    let plan = plan(&state, &caller, &id, request).await?.release();
    let mut appliance = super::appliances::one(&state, &caller, &id).await?;
    appliance["settings"] = stamped(plan.planned.expected.clone());
    queue(&state, &caller, &headers, plan, appliance).await
}

/// `POST /1/appliances/{id}/light_projector`: `button`; responds `{}`, as
/// the official document has it (the state follows in the appliance).
pub async fn light_projector(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Form,
) -> ApiResult<Response> {
    let button = form.required_nonempty("button")?;
    let request = ControlRequest::LightProjector { button };
    let plan = plan(&state, &caller, &id, request).await?;
    queue(&state, &caller, &headers, plan, json!({})).await
}

/// Plans and queues a SESAME bot operation on the caller's appliance `id`.
pub(crate) async fn sesame(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    id: &str,
    operation: &str,
) -> ApiResult<Response> {
    let plan = plan(state, caller, id, ControlRequest::SesameBot { operation }).await?;
    queue(state, caller, headers, plan, json!({})).await
}
