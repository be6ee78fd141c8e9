//! The common tail of every endpoint that reaches a device: write the
//! durable command, optionally wait for the device (`Prefer: wait=N`), and
//! answer in the endpoint's Nature shape with Kumo's command headers.

use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use deadpool_postgres::Object;
use kumo_contract::DeviceId;
use serde_json::Value;

use crate::auth::Caller;
use crate::commands::{prefer_wait, CommandKind, CommandStatus, NewCommand, Waited};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// What to send to which device, and the body to answer with on success.
pub(crate) struct Dispatch<'a> {
    pub device: &'a DeviceId,
    pub appliance: Option<&'a str>,
    pub kind: CommandKind,
    pub payload: Value,
    /// The appliance state the command should lead to.
    pub expected: Option<Value>,
    pub body: Value,
    /// The connection the target was looked up on, to write the command on.
    pub held: Option<Object>,
}

/// Queues the command and builds the response. With `Prefer: wait=N` the
/// response waits for the device: a failure ack is a 502, expiry a 504, and
/// running out of time returns the normal body with the current status.
pub(crate) async fn dispatch(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    d: Dispatch<'_>,
) -> ApiResult<Response> {
    let key = super::idempotency_key(headers)?;
    let wait = prefer_wait(headers);
    let cmd = NewCommand {
        user_id: &caller.user_id,
        device_id: d.device,
        appliance_id: d.appliance,
        kind: d.kind,
        payload: d.payload,
        expected: d.expected,
        idempotency_key: key.as_deref(),
    };
    // On the API's pool, not the command log's (the bridge's own work's).
    let held = match d.held {
        Some(held) => held,
        None => state.pool.get().await?,
    };
    let (id, waited) = match wait {
        // Watched from the moment it is written: the ack's wake-up carries
        // the final row, so waiting reads nothing back.
        Some(limit) => {
            let waited = state.commands.enqueue_and_wait(cmd, Some(held), limit);
            let (id, waited) = waited.await?;
            (id, Some(waited))
        }
        None => (state.commands.enqueue(cmd, Some(held)).await?, None),
    };
    let mut status = None;
    if let Some(waited) = waited {
        let view = match waited {
            Waited::Final(v) | Waited::Pending(v) => v,
        };
        match view.status {
            CommandStatus::Failed => {
                return Err(ApiError::bad_gateway(format!(
                    "the device reported a failure: {}",
                    view.error.as_deref().unwrap_or("no reason given")
                )))
            }
            CommandStatus::Expired => {
                return Err(ApiError::gateway_timeout(
                    "the device did not confirm the command before it expired",
                ))
            }
            _ => status = Some(view.status),
        }
    }
    let mut response = Json(d.body).into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        h.insert("x-kumo-command-id", v);
    }
    if let (Some(status), Some(limit)) = (status, wait) {
        if let Ok(v) = HeaderValue::from_str(status.as_str()) {
            h.insert("x-kumo-command-status", v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("wait={}", limit.as_secs())) {
            h.insert("preference-applied", v);
        }
    }
    Ok(response)
}
