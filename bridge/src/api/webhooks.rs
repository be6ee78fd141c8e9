//! `/v1/webhooks`: account webhooks (create, list, get, delete, re-enable,
//! delivery history, test ping) and `/v1/webhook_secret` (rotate the secret
//! that signs rule-action deliveries). Bodies are form-urlencoded like the
//! rest of the API; the logic lives in [`crate::webhooks`].

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::{Caller, BASIC_READ, BASIC_WRITE};
use crate::error::{ApiError, ApiResult};
use crate::form::Form;
use crate::state::AppState;
use crate::webhooks::manage::parse_events;
use crate::webhooks::WebhookError;

/// Deliveries listed by default, and at most.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Target(_) | WebhookError::Invalid(_) => {
                ApiError::bad_request(e.to_string())
            }
            WebhookError::NotFound(_) => ApiError::not_found(),
            WebhookError::Limit(_) => ApiError::conflict(e.to_string()),
            WebhookError::Db(e) => e.into(),
        }
    }
}

fn webhook_id(raw: &str) -> Result<Uuid, ApiError> {
    // An id that cannot exist is just not found, like the other /v1 ids.
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found())
}

/// `GET /v1/webhooks`.
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(BASIC_READ)?;
    Ok(Json(json!(state.webhooks.list(&caller.user_id).await?)))
}

/// `POST /v1/webhooks`: `url` (http or https, public address unless private
/// targets are allowed), optional `events` (space- or comma-separated kinds;
/// empty = every kind but `reading`). 201 with the webhook and its `secret`,
/// which is never shown again.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    form: Form,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(BASIC_WRITE)?;
    form.only(&["url", "events"])?;
    let url = form.required_nonempty("url")?;
    let events = parse_events(form.get("events").unwrap_or_default())?;
    let (webhook, secret) = state.webhooks.create(&caller.user_id, url, events).await?;
    let mut body = json!(webhook);
    body["secret"] = Value::String(secret);
    Ok((StatusCode::CREATED, Json(body)))
}

/// `GET /v1/webhooks/{id}`.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_READ)?;
    let webhook = state
        .webhooks
        .get(&caller.user_id, webhook_id(&id)?)
        .await?;
    Ok(Json(json!(webhook)))
}

/// `DELETE /v1/webhooks/{id}`: 204.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(BASIC_WRITE)?;
    state
        .webhooks
        .delete(&caller.user_id, webhook_id(&id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/webhooks/{id}/enable`: re-enables and clears the failure streak.
pub async fn enable(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    let webhook = state
        .webhooks
        .enable(&caller.user_id, webhook_id(&id)?)
        .await?;
    Ok(Json(json!(webhook)))
}

/// `GET /v1/webhooks/{id}/deliveries?limit=N`: newest first, with attempts.
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_READ)?;
    let params = super::query_params(query.as_deref())?;
    let limit = super::limit_param(&params, DEFAULT_LIMIT, MAX_LIMIT)?;
    let list = state
        .webhooks
        .deliveries(&caller.user_id, webhook_id(&id)?, limit)
        .await?;
    Ok(Json(json!(list)))
}

/// `POST /v1/webhooks/{id}/test`: sends a `ping` now; 200 with the attempt's
/// outcome whether or not the receiver accepted it.
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    let report = state
        .webhooks
        .test(&caller.user_id, webhook_id(&id)?)
        .await?;
    Ok(Json(json!(report)))
}

/// `POST /v1/webhook_secret`: a new secret for rule-action deliveries (shown
/// only now; the previous one stops signing immediately).
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    let secret = state
        .webhooks
        .rotate_account_secret(&caller.user_id)
        .await?;
    Ok(Json(json!({ "secret": secret })))
}
