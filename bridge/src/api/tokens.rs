//! Kumo's `/v1/tokens`: list, create and revoke the caller's access tokens.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::accounts::{self, AccountError};
use crate::auth::{Caller, BASIC_READ, BASIC_WRITE};
use crate::error::{ApiError, ApiResult};
use crate::form::Form;
use crate::json::rfc3339;
use crate::state::AppState;

/// Longest lifetime a token created over the API may ask for (ten years).
const MAX_EXPIRES_IN: u64 = 10 * 365 * 24 * 3600;

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::UnknownScope(_)
            | AccountError::NoScopes
            | AccountError::EmptyNickname
            | AccountError::EmailTaken(_) => ApiError::bad_request(e.to_string()),
            AccountError::NoSuchUser(_) => ApiError::unauthorized(),
            AccountError::Db(e) => e.into(),
        }
    }
}

/// `GET /v1/tokens`: the caller's tokens, never their secrets.
pub async fn list_tokens(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(BASIC_READ)?;
    let tokens = accounts::list_tokens(&state.pool, &caller.user_id).await?;
    let out: Vec<Value> = tokens
        .into_iter()
        .map(|t| {
            json!({
                "id": t.id,
                "name": t.name,
                "scopes": t.scopes,
                "created_at": rfc3339(t.created_at),
                "expires_at": t.expires_at.map(rfc3339),
                "revoked_at": t.revoked_at.map(rfc3339),
                "last_used_at": t.last_used_at.map(rfc3339),
                "current": t.id == caller.token_id,
            })
        })
        .collect();
    Ok(Json(Value::Array(out)))
}

/// `POST /v1/tokens`: `name`, `scopes` (space- or comma-separated, each held
/// by the calling token), optional `expires_in` seconds. The token is in the
/// response and nowhere else.
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    form.only(&["name", "scopes", "expires_in"])?;
    let name = form.get("name").unwrap_or_default();
    let scopes: Vec<&str> = form
        .required_nonempty("scopes")?
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .collect();
    let scopes = accounts::validate_scopes(&scopes)?;
    if let Some(missing) = scopes.iter().find(|s| !caller.has(s)) {
        return Err(ApiError::forbidden(missing));
    }
    let expires_at = match form.get("expires_in") {
        None | Some("") => None,
        Some(raw) => {
            let secs = raw
                .parse::<u64>()
                .ok()
                .filter(|s| (1..=MAX_EXPIRES_IN).contains(s))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "expires_in must be a number of seconds between 1 and {MAX_EXPIRES_IN}"
                    ))
                })?;
            let secs = i64::try_from(secs).unwrap_or(i64::MAX);
            Some(OffsetDateTime::now_utc() + time::Duration::seconds(secs))
        }
    };
    let token =
        accounts::create_token_expiring(&state.pool, &caller.user_id, &scopes, name, expires_at)
            .await?;
    Ok(Json(json!({
        "token": token,
        "name": name,
        "scopes": scopes,
        "expires_at": expires_at.map(rfc3339),
    })))
}

/// `POST /v1/tokens/{id}/revoke`.
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found())?;
    if !accounts::revoke_token(&state.pool, &caller.user_id, id).await? {
        return Err(ApiError::not_found());
    }
    state.tokens.forget(id);
    Ok(Json(json!({})))
}
