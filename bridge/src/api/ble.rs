//! BLE appliances: `POST /1/appliances/{id}/sesame_bot/click` and the BLE
//! private macros (`GET /1/ble/appliances/{id}/private_macros`,
//! `POST /1/ble/private_macros/{id}/exec`).
//!
//! A macro has an id of its own (the exec path names no appliance); it is
//! found only among the appliances the caller sees, so another account's
//! macro is a 404 like an unknown one. Running one is a SESAME bot command
//! through the durable path, planned like a click (`api/control.rs`).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use kumo_contract::appliance::sesame::CLICK;
use serde_json::Value;

use crate::appliance::store;
use crate::auth::{Caller, BASIC_READ, SENDIR};
use crate::error::{ApiError, ApiResult};
use crate::form::Form;
use crate::state::AppState;
use crate::views::private_macro_json;

/// `POST /1/appliances/{id}/sesame_bot/click`: responds `{}`.
pub async fn click(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    _form: Form,
) -> ApiResult<Response> {
    super::control::sesame(&state, &caller, &headers, &id, CLICK).await
}

/// `GET /1/ble/appliances/{id}/private_macros`: the appliance's macros
/// (none for an appliance that is not a BLE one).
pub async fn private_macros(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_READ)?;
    let macros = store::private_macros(&state.pool, &caller.user_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(Value::Array(
        macros
            .iter()
            .map(|(id, _)| private_macro_json(id))
            .collect(),
    )))
}

/// `POST /1/ble/private_macros/{id}/exec`: runs the macro on its bot;
/// responds `{}`.
pub async fn exec(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    _form: Form,
) -> ApiResult<Response> {
    caller.require(SENDIR)?;
    let (appliance, name) = store::private_macro(&state.pool, &caller.user_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    super::control::sesame(&state, &caller, &headers, &appliance, &name).await
}
