//! Kumo's `/v1/commands/{id}`: a command's status and result, optionally
//! waiting for the device (`Prefer: wait=N`).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::Value;
use uuid::Uuid;

use crate::auth::{Caller, BASIC_READ};
use crate::commands::{self, Waited};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// `GET /v1/commands/{id}`: a command's status and result; with
/// `Prefer: wait=N`, waits up to N seconds for it to become final.
pub async fn command(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_READ)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found())?;
    let view = match commands::prefer_wait(&headers) {
        Some(limit) => match state
            .commands
            .wait_final(&caller.user_id, id, limit)
            .await?
        {
            Waited::Final(v) | Waited::Pending(v) => v,
        },
        None => state
            .commands
            .find(&caller.user_id, id)
            .await?
            .ok_or_else(ApiError::not_found)?,
    };
    serde_json::to_value(view)
        .map(Json)
        .map_err(ApiError::internal)
}
