//! `/1/users/me`: the caller's profile.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::accounts::{self, Profile, ProfileChange};
use crate::auth::{Caller, BASIC_READ, BASIC_WRITE};
use crate::error::{ApiError, ApiResult};
use crate::form::Form;
use crate::state::AppState;

fn user_json(p: Profile) -> Value {
    json!({
        "id": p.id,
        "nickname": p.nickname,
        "temp_unit": p.temp_unit,
        "distance_unit": p.distance_unit,
        "country": p.country,
    })
}

/// `GET /1/users/me`.
pub async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(BASIC_READ)?;
    let p = accounts::profile(&state.pool, &caller.user_id)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    Ok(Json(user_json(p)))
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
    let change = ProfileChange {
        nickname,
        temp_unit,
        distance_unit,
        country: country.as_deref(),
    };
    let p = accounts::update_profile(&state.pool, &caller.user_id, &change)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    Ok(Json(user_json(p)))
}
