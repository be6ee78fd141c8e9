//! `/1/echonetlite/appliances` (smart meters and the ECHONET Lite appliances
//! gateways reach, with their properties), their `set` and `refresh`, and
//! `/1/detectappliance`.
//!
//! `set` and `refresh` are checked against the object's class
//! (`kumo_contract::appliance::echonet`: an unknown or read-only EPC, or a
//! value the property does not take, is a 400 naming `epc` or `val`) and go
//! to the gateway as durable commands; the properties change when the device
//! acks with what it read back. Both answer Nature's 202 `{}`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use kumo_contract::appliance::echonet::{self, hex, EchonetError, Eoj};
use kumo_contract::payload::Action;
use serde_json::{json, Value};

use crate::api::dispatch::{dispatch, Dispatch};
use crate::api::signals::ir_message;
use crate::appliance::{self, Target};
use crate::auth::{Caller, BASIC_READ, DETECT_APPLIANCE, ECHONETLITE_READ, ECHONETLITE_WRITE};
use crate::catalog::ApplianceType;
use crate::commands::CommandKind;
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

impl From<EchonetError> for ApiError {
    fn from(e: EchonetError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

/// The ECHONET Lite object an appliance is on its gateway; a 400 for
/// appliances that are not ECHONET Lite ones.
fn object_of(t: &Target) -> ApiResult<Eoj> {
    match t.kind {
        ApplianceType::ElAircon => Ok(Eoj::HOME_AIR_CONDITIONER),
        ApplianceType::SmartMeter => Ok(Eoj::SMART_METER),
        _ => Err(ApiError::bad_request(format!(
            "appliance {} is not an ECHONET Lite appliance",
            t.id
        ))),
    }
}

/// Sends `action` to the appliance's gateway; answers 202 `{}` (with
/// `Prefer: wait=N`, once the device answered or the wait ran out).
async fn send(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    t: &Target,
    action: &Action,
) -> ApiResult<Response> {
    let mut response = dispatch(
        state,
        caller,
        headers,
        Dispatch {
            device: &t.device,
            appliance: Some(&t.id),
            kind: CommandKind::Echonet,
            // A plain enum of strings and numbers always serializes.
            payload: serde_json::to_value(action).unwrap_or(Value::Null),
            expected: None,
            body: json!({}),
            held: None,
        },
    )
    .await?;
    *response.status_mut() = StatusCode::ACCEPTED;
    Ok(response)
}

/// `POST /1/echonetlite/appliances/{id}/set`: `epc` (two hex digits) and
/// `val` (hex EDT).
pub async fn set(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Form,
) -> ApiResult<Response> {
    caller.require(ECHONETLITE_WRITE)?;
    let epc = form.required_nonempty("epc")?;
    let val = form.required_nonempty("val")?;
    let t = appliance::target_of(&state.pool, &caller.user_id, &id).await?;
    let object = object_of(&t)?;
    let epc = echonet::parse_epc(epc)?;
    let edt = echonet::check_set(object, epc, val)?;
    let action = Action::EchonetSet {
        eoj: object.to_string(),
        epc,
        edt: hex(&edt),
    };
    send(&state, &caller, &headers, &t, &action).await
}

/// `POST /1/echonetlite/appliances/{id}/refresh`: `epc`, comma-separated
/// EPCs; the device reads them again and reports them.
pub async fn refresh(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Form,
) -> ApiResult<Response> {
    caller.require(ECHONETLITE_READ)?;
    let epcs = form.required_nonempty("epc")?;
    let t = appliance::target_of(&state.pool, &caller.user_id, &id).await?;
    let object = object_of(&t)?;
    let epcs = echonet::check_refresh(object, epcs)?;
    if t.kind == ApplianceType::SmartMeter {
        return Err(ApiError::bad_request(
            "a smart meter reports its properties by itself every interval; refresh is for the appliances a gateway controls",
        ));
    }
    let action = Action::EchonetRefresh {
        eoj: object.to_string(),
        epcs,
    };
    send(&state, &caller, &headers, &t, &action).await
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
