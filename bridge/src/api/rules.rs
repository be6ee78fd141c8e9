//! `/v1/rules`: automation rules of the caller's account, and their
//! execution log.
//!
//! Bodies are JSON (the rule document of [`kumo_rules::model`]). A rule is
//! checked twice before it is stored: by the rules crate (shape and limits;
//! errors name the field) and by the bridge (its devices and appliances are the
//! caller's, its commands fit the appliances: [`crate::rules::check_rule`]).
//! Every stored change is handed to the running worker before the response.
//! Another account's rule is a 404, like every `/v1` resource.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde_json::{Map, Value};

use crate::auth::{Caller, BASIC_READ, BASIC_WRITE, SENDIR};
use crate::error::{ApiError, ApiResult};
use crate::rules::check_rule;
use crate::rules::store::{self, StoredRule};
use crate::state::AppState;

/// Executions returned when `limit` is not given.
const DEFAULT_EXECUTIONS: i64 = 50;
/// Most executions one request returns.
const MAX_EXECUTIONS: i64 = 500;
/// Largest rule document accepted, in bytes.
const MAX_BODY: usize = 64 * 1024;

impl From<kumo_rules::RuleError> for ApiError {
    fn from(e: kumo_rules::RuleError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

fn json_body(body: Result<Bytes, BytesRejection>) -> ApiResult<Value> {
    let body = body?;
    if body.len() > MAX_BODY {
        return Err(ApiError::bad_request(format!(
            "the rule must be at most {MAX_BODY} bytes"
        )));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the body must be a JSON rule"));
    }
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::from(kumo_rules::RuleError::Syntax(e.to_string())))?;
    crate::text::check_json(&v)?;
    Ok(v)
}

/// Validates `definition` as a rule of the caller; returns the rule and the
/// document to store (normalised: defaults filled in).
async fn accept(
    state: &AppState,
    caller: &Caller,
    mut definition: Value,
) -> ApiResult<(kumo_rules::Rule, Value)> {
    // What GET added, so a fetched rule can be sent back as it is.
    if let Some(o) = definition.as_object_mut() {
        for read_only in ["id", "created_at", "updated_at"] {
            o.remove(read_only);
        }
    }
    let rule = kumo_rules::parse_rule_value(definition)?;
    // A rule that reaches devices needs what sending a command needs, or a
    // basic.write token could operate appliances through a rule.
    if !rule.appliances().is_empty() {
        caller.require(SENDIR)?;
    }
    check_rule(&state.pool, &caller.user_id, &rule).await?;
    let stored = serde_json::to_value(&rule).map_err(ApiError::internal)?;
    Ok((rule, stored))
}

/// Tells the worker about a stored rule and answers with it.
async fn loaded(state: &AppState, rule: kumo_rules::Rule, stored: StoredRule) -> Json<Value> {
    state
        .rules
        .upsert(&stored.id, &stored.user_id, stored.updated_at, rule)
        .await;
    Json(stored.to_json())
}

/// `GET /v1/rules`: the caller's rules, oldest first.
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(BASIC_READ)?;
    let rules = store::list(&state.pool, &caller.user_id).await?;
    Ok(Json(Value::Array(
        rules.iter().map(StoredRule::to_json).collect(),
    )))
}

/// `POST /v1/rules`: a JSON rule; answers with it as stored, with its id.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    let (rule, definition) = accept(&state, &caller, json_body(body)?).await?;
    let stored = store::insert(&state.pool, &caller.user_id, &definition)
        .await?
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "an account may have at most {} rules",
                store::MAX_RULES_PER_ACCOUNT
            ))
        })?;
    tracing::info!(rule_id = %stored.id, "rule created");
    Ok(loaded(&state, rule, stored).await)
}

/// `GET /v1/rules/{id}`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_READ)?;
    let rule = store::get(&state.pool, &caller.user_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(rule.to_json()))
}

/// `PUT /v1/rules/{id}`: replaces the whole rule (trigger state starts over).
pub async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    let definition = json_body(body)?;
    store::get(&state.pool, &caller.user_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    save(&state, &caller, &id, definition).await
}

/// `PATCH /v1/rules/{id}`: a JSON object whose top-level fields replace the
/// rule's (`{"enabled": false}`, `{"actions": [...]}`); `null` removes an
/// optional field. The result is validated like a new rule.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    let Value::Object(patch) = json_body(body)? else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    let current = store::get(&state.pool, &caller.user_id, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let mut merged: Map<String, Value> = match current.definition {
        Value::Object(o) => o,
        _ => Map::new(),
    };
    for (k, v) in patch {
        if v.is_null() {
            merged.remove(&k);
        } else {
            merged.insert(k, v);
        }
    }
    save(&state, &caller, &id, Value::Object(merged)).await
}

async fn save(
    state: &AppState,
    caller: &Caller,
    id: &str,
    definition: Value,
) -> ApiResult<Json<Value>> {
    let (rule, definition) = accept(state, caller, definition).await?;
    let stored = store::replace(&state.pool, &caller.user_id, id, &definition)
        .await?
        .ok_or_else(ApiError::not_found)?;
    tracing::info!(rule_id = %stored.id, enabled = rule.enabled, "rule updated");
    Ok(loaded(state, rule, stored).await)
}

/// `DELETE /v1/rules/{id}`: the rule and its execution log.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    if !store::delete(&state.pool, &caller.user_id, &id).await? {
        return Err(ApiError::not_found());
    }
    state.rules.remove(&id).await;
    tracing::info!(rule_id = %id, "rule deleted");
    Ok(Json(Value::Object(Map::new())))
}

/// `GET /v1/rules/{id}/executions?limit=N`: newest first (default
/// [`DEFAULT_EXECUTIONS`], at most [`MAX_EXECUTIONS`]).
pub async fn executions(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_READ)?;
    let params = super::query_params(query.as_deref())?;
    let limit = super::limit_param(&params, DEFAULT_EXECUTIONS, MAX_EXECUTIONS)?;
    let rows = store::executions(&state.pool, &caller.user_id, &id, limit)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(Value::Array(rows)))
}
