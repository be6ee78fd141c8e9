//! `/1/appliances/{id}/signals` and `/1/signals/{id}`: learned IR signals —
//! list, create, update, delete, reorder, and send (a durable command).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde_json::{json, Value};
use uuid::Uuid;

use kumo_contract::payload::{IrMessage, PayloadError};

use crate::api::appliances::id_list;
use crate::api::dispatch::{dispatch, Dispatch};
use crate::appliance;
use crate::appliance::store::{self, SignalRow};
use crate::auth::{Caller, BASIC_READ, BASIC_WRITE, SENDIR};
use crate::commands::CommandKind;
use crate::error::{ApiError, ApiResult};
use crate::form::Form;
use crate::state::AppState;
use crate::views::signal_json;

/// Validates Nature's IR `message` (`{"format":"us","freq":38,"data":[...]}`)
/// with the device protocol's rules (`IrMessage::check`) and returns it
/// normalised (`format` defaults to `us`).
pub(crate) fn ir_message(raw: &str, field: &str) -> ApiResult<Value> {
    let bad =
        |why: &str| ApiError::bad_request(format!("{field} is not a valid IR message: {why}"));
    let v: Value = serde_json::from_str(raw).map_err(|_| bad("not JSON"))?;
    let whole = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    let message = IrMessage {
        format: v
            .get("format")
            .and_then(Value::as_str)
            .unwrap_or("us")
            .to_string(),
        freq: v
            .get("freq")
            .and_then(whole)
            .ok_or_else(|| bad("freq must be a carrier frequency in kHz between 30 and 80"))?,
        data: v
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("data must be a non-empty array of durations"))?
            .iter()
            .map(|d| whole(d).filter(|n| *n > 0))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| {
                bad("every duration in data must be a positive whole number of microseconds")
            })?,
    };
    match message.check() {
        Ok(()) => Ok(json!(message)),
        Err(PayloadError::Range(why)) => Err(bad(&why)),
        Err(e) => Err(bad(&e.to_string())),
    }
}

async fn owned_appliance(state: &AppState, caller: &Caller, id: &str) -> ApiResult<()> {
    if store::appliance_owned(&state.pool, &caller.user_id, id).await? {
        Ok(())
    } else {
        Err(ApiError::not_found())
    }
}

fn signal_view(s: SignalRow) -> Value {
    signal_json(s.id, s.name, s.image)
}

/// `GET /1/appliances/{id}/signals`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(appliance): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_READ)?;
    owned_appliance(&state, &caller, &appliance).await?;
    let rows = store::signals(&state.pool, &appliance).await?;
    Ok(Json(Value::Array(
        rows.into_iter().map(signal_view).collect(),
    )))
}

/// `POST /1/appliances/{id}/signals`: `name`, `image`, `message`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(appliance): Path<String>,
    form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    let signal = SignalRow {
        id: Uuid::new_v4().to_string(),
        name: form.required_nonempty("name")?.to_string(),
        image: form.get("image").unwrap_or_default().to_string(),
    };
    let message = ir_message(form.required("message")?, "message")?;
    owned_appliance(&state, &caller, &appliance).await?;
    store::create_signal(&state.pool, &appliance, &signal, &message).await?;
    Ok(Json(signal_view(signal)))
}

/// `POST /1/signals/{id}`: `name`, `image`.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    let (name, image) = form.label_and_image("name")?;
    store::relabel_signal(&state.pool, &caller.user_id, &id, name, image)
        .await?
        .map(|s| Json(signal_view(s)))
        .ok_or_else(ApiError::not_found)
}

/// `POST /1/signals/{id}/delete`.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    _form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    if !store::delete_signal(&state.pool, &caller.user_id, &id).await? {
        return Err(ApiError::not_found());
    }
    Ok(Json(json!({})))
}

/// `POST /1/appliances/{id}/signal_orders`: `signals` lists every signal id, in order.
pub async fn reorder(
    State(state): State<AppState>,
    caller: Caller,
    Path(appliance): Path<String>,
    form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    let ids = id_list(form.required_nonempty("signals")?, "signals")?;
    owned_appliance(&state, &caller, &appliance).await?;
    if !store::reorder_signals(&state.pool, &appliance, &ids).await? {
        return Err(ApiError::bad_request(
            "signals must list every signal of this appliance exactly once",
        ));
    }
    Ok(Json(json!({})))
}

/// `POST /1/signals/{id}/send`: queues the IR message for the appliance's device.
pub async fn send(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    _form: Form,
) -> ApiResult<Response> {
    caller.require(SENDIR)?;
    let c = appliance::signal_command(&state.pool, &caller.user_id, &id).await?;
    dispatch(
        &state,
        &caller,
        &headers,
        Dispatch {
            device: &c.device,
            appliance: Some(&c.appliance),
            kind: CommandKind::Ir,
            payload: c.payload,
            expected: None,
            body: json!({}),
            held: None,
        },
    )
    .await
}
