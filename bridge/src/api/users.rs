//! `/1/users/me`: the caller's profile.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::auth::{Caller, BASIC_READ, BASIC_WRITE};
use crate::error::{ApiError, ApiResult};
use crate::form::Form;
use crate::state::AppState;

const SELECT: &str =
    "SELECT id, nickname, temp_unit, distance_unit, country FROM users WHERE id = $1";

fn user_json(r: &tokio_postgres::Row) -> Value {
    json!({
        "id": r.get::<_, String>(0),
        "nickname": r.get::<_, String>(1),
        "temp_unit": r.get::<_, String>(2),
        "distance_unit": r.get::<_, String>(3),
        "country": r.get::<_, String>(4),
    })
}

/// `GET /1/users/me`.
pub async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(BASIC_READ)?;
    let client = state.pool.get().await?;
    let row = client
        .query_opt(SELECT, &[&caller.user_id])
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    Ok(Json(user_json(&row)))
}

/// `POST /1/users/me`: `nickname`, `temp_unit` (c|f), `distance_unit`
/// (metric|imperial), `country`; omitted fields keep their value.
pub async fn update_me(
    State(state): State<AppState>,
    caller: Caller,
    form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    let nickname = form.get("nickname");
    if nickname.is_some_and(|n| n.trim().is_empty()) {
        return Err(ApiError::bad_request("nickname must not be empty"));
    }
    let temp_unit = form.get("temp_unit");
    if temp_unit.is_some_and(|u| !matches!(u, "c" | "f")) {
        return Err(ApiError::bad_request("temp_unit must be c or f"));
    }
    let distance_unit = form.get("distance_unit");
    if distance_unit.is_some_and(|u| !matches!(u, "metric" | "imperial")) {
        return Err(ApiError::bad_request(
            "distance_unit must be metric or imperial",
        ));
    }
    let country = form.get("country");
    if country.is_some_and(|c| c.len() != 2 || !c.chars().all(|ch| ch.is_ascii_alphabetic())) {
        return Err(ApiError::bad_request(
            "country must be a two-letter country code",
        ));
    }
    let country = country.map(str::to_ascii_uppercase);
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            "UPDATE users SET nickname = coalesce($2, nickname),
                 temp_unit = coalesce($3, temp_unit),
                 distance_unit = coalesce($4, distance_unit),
                 country = coalesce($5, country), updated_at = now()
             WHERE id = $1
             RETURNING id, nickname, temp_unit, distance_unit, country",
            &[
                &caller.user_id,
                &nickname,
                &temp_unit,
                &distance_unit,
                &country,
            ],
        )
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    Ok(Json(user_json(&row)))
}
