//! Kumo's `/v1/claim_codes`: the codes that let devices enrol themselves into
//! the caller's account (`POST /v1/provision` on the provisioning listener,
//! `crate::provision`). The code is in the creation response and nowhere else.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::{Caller, PROVISION};
use crate::error::{ApiError, ApiResult};
use crate::form::Form;
use crate::provision::codes;
use crate::state::AppState;

/// Most devices one code may enrol.
const MAX_USES: i64 = 1_000;
/// Longest a code may live: seven days.
const MAX_EXPIRES_IN: i64 = 7 * 24 * 3600;

fn whole(form: &Form, field: &str, default: i64, lo: i64, hi: i64) -> ApiResult<i64> {
    match form.get(field) {
        None | Some("") => Ok(default),
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("{field} must be a whole number from {lo} to {hi}"))
            }),
    }
}

/// `POST /v1/claim_codes`: `uses` (default 1), `expires_in` seconds (default 3600).
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    form: Form,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(PROVISION)?;
    form.only(&["uses", "expires_in"])?;
    let uses = whole(&form, "uses", 1, 1, MAX_USES)?;
    let ttl = whole(&form, "expires_in", 3600, 60, MAX_EXPIRES_IN)?;
    // Both bounded above, so the conversions are exact.
    let (code, plain) = codes::create(
        &state.pool,
        &caller.user_id,
        i32::try_from(uses).unwrap_or(1),
        time::Duration::seconds(ttl),
    )
    .await?;
    let mut body = serde_json::to_value(code).map_err(ApiError::internal)?;
    body["code"] = json!(plain);
    Ok((StatusCode::CREATED, Json(body)))
}

/// `GET /v1/claim_codes`: the caller's codes, newest first, never the codes.
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(PROVISION)?;
    let all = codes::list(&state.pool, &caller.user_id).await?;
    serde_json::to_value(all)
        .map(Json)
        .map_err(ApiError::internal)
}

/// `POST /v1/claim_codes/{id}/revoke`.
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(PROVISION)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found())?;
    if !codes::revoke(&state.pool, &caller.user_id, id).await? {
        return Err(ApiError::not_found());
    }
    Ok(Json(json!({})))
}
