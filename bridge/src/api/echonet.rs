//! `/1/echonetlite/appliances` (smart meters and their ECHONET Lite
//! properties) and `/1/detectappliance`.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::api::signals::ir_message;
use crate::auth::{Caller, BASIC_READ, DETECT_APPLIANCE};
use crate::error::{ApiError, ApiResult};
use crate::form::Form;
use crate::state::AppState;
use crate::views::{self, Appliances};

/// `GET /1/echonetlite/appliances`: `{"appliances": [...]}` with each
/// property's `epc` as a hex string, as Nature's `Property` has it.
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(BASIC_READ)?;
    let client = state.pool.get().await?;
    let found = views::appliances(&**client, &caller.user_id, Appliances::Echonet).await?;
    let appliances: Vec<Value> = found
        .into_iter()
        .map(|a| {
            let properties: Vec<Value> = a["smart_meter"]["echonetlite_properties"]
                .as_array()
                .or_else(|| a["echonetlite_properties"].as_array())
                .into_iter()
                .flatten()
                .map(|p| {
                    json!({
                        "epc": format!("{:x}", p["epc"].as_u64().unwrap_or_default()),
                        "val": p["val"],
                        "updated_at": p["updated_at"],
                    })
                })
                .collect();
            json!({
                "id": a["id"],
                "nickname": a["nickname"],
                "type": a["type"],
                "Device": a["device"],
                "properties": properties,
            })
        })
        .collect();
    Ok(Json(json!({ "appliances": appliances })))
}

/// `POST /1/detectappliance`: `Message` (an IR message), optional `Device`.
///
/// Kumo's catalog holds generic models without IR fingerprints, so after
/// validating the request this returns the (empty) list of matches rather
/// than guessing a model.
pub async fn detect(
    State(state): State<AppState>,
    caller: Caller,
    form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(DETECT_APPLIANCE)?;
    let raw = form
        .get("Message")
        .or_else(|| form.get("message"))
        .ok_or_else(|| ApiError::bad_request("Message is required"))?;
    ir_message(raw, "Message")?;
    if let Some(device) = form.get("Device").filter(|d| !d.is_empty()) {
        if !crate::appliance::store::device_owned(&state.pool, &caller.user_id, device).await? {
            return Err(ApiError::bad_request(format!(
                "no device {device:?} in this account"
            )));
        }
    }
    Ok(Json(Value::Array(Vec::new())))
}
