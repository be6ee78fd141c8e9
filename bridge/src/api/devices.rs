//! `/1/devices`: list, rename, remove, sensor offsets; and Kumo's
//! `/v1/devices`, which adds what Nature's shape has no field for.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use crate::accounts::{self, DeviceSetting};
use crate::auth::{Caller, BASIC_READ, BASIC_WRITE};
use crate::error::{ApiError, ApiResult};
use crate::form::Form;
use crate::state::AppState;
use crate::views;

/// Offsets beyond this many degrees / percentage points are surely mistakes.
const MAX_OFFSET: f64 = 50.0;

/// `GET /1/devices`: with `online` and `newest_events`.
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(BASIC_READ)?;
    let client = state.pool.get().await?;
    Ok(Json(Value::Array(
        views::devices(&**client, &caller.user_id, None).await?,
    )))
}

/// `GET /v1/devices`: the caller's devices with their kind, the node that
/// holds them and when their presence last changed (`last_seen_at`).
pub async fn presence(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(BASIC_READ)?;
    let devices = accounts::list_devices(&state.pool, Some(&caller.user_id)).await?;
    Ok(Json(Value::Array(
        devices
            .into_iter()
            .map(|d| {
                json!({
                    "id": d.id,
                    "name": d.name,
                    "kind": d.kind,
                    "online": d.online,
                    "node": d.node_id,
                    "last_seen_at": d.last_seen_at.map(crate::json::rfc3339),
                })
            })
            .collect(),
    )))
}

async fn one(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Json<Value>> {
    let client = state.pool.get().await?;
    views::devices(&**client, &caller.user_id, Some(id))
        .await?
        .pop()
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

/// Applies `setting` to the caller's device and returns the device.
async fn update(
    state: &AppState,
    caller: &Caller,
    id: &str,
    setting: DeviceSetting,
) -> ApiResult<Json<Value>> {
    if !accounts::set_device(&state.pool, &caller.user_id, id, &setting).await? {
        return Err(ApiError::not_found());
    }
    one(state, caller, id).await
}

/// `POST /1/devices/{id}` with `name`.
pub async fn rename(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    let name = form.required_nonempty("name")?.to_string();
    update(&state, &caller, &id, DeviceSetting::Name(name)).await
}

fn offset(form: &Form) -> ApiResult<f64> {
    let v = form.required_number("offset")?;
    if v.abs() > MAX_OFFSET {
        return Err(ApiError::bad_request(format!(
            "offset must be between -{MAX_OFFSET} and {MAX_OFFSET}"
        )));
    }
    Ok(v)
}

/// `POST /1/devices/{id}/temperature_offset` with `offset`.
pub async fn temperature_offset(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    let setting = DeviceSetting::TemperatureOffset(offset(&form)?);
    update(&state, &caller, &id, setting).await
}

/// `POST /1/devices/{id}/humidity_offset` with `offset`.
pub async fn humidity_offset(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    let setting = DeviceSetting::HumidityOffset(offset(&form)?);
    update(&state, &caller, &id, setting).await
}

/// `POST /1/devices/{id}/delete`: the device leaves the account with its
/// appliances. Only its account — the home's owner — may; a member gets 403.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    _form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    if !accounts::release_device(&state.pool, &id, Some(&caller.user_id)).await? {
        if crate::appliance::store::device_owned(&state.pool, &caller.user_id, &id).await? {
            return Err(ApiError::forbidden_because(
                "only the owner of the device's home may remove it",
            ));
        }
        return Err(ApiError::not_found());
    }
    Ok(Json(json!({})))
}
