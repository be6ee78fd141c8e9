//! `/1/appliances`: list, create, update, delete, reorder; and
//! `/1/devices/{id}/appliances`.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::api::control::stamped;
use crate::appliance::store::{self, NewAppliance};
use crate::auth::{Caller, BASIC_READ, BASIC_WRITE};
use crate::catalog::{self, ApplianceType, Capabilities};
use crate::error::{ApiError, ApiResult};
use crate::form::Form;
use crate::state::AppState;
use crate::views::{self, Appliances};
use kumo_contract::appliance::{LightProjectorState, LightState, SesameBotState, TvState};

/// `GET /1/appliances`.
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(BASIC_READ)?;
    let client = state.pool.get().await?;
    let all = views::appliances(&**client, &caller.user_id, Appliances::All).await?;
    Ok(Json(Value::Array(all)))
}

/// `GET /1/devices/{id}/appliances`.
pub async fn list_on_device(
    State(state): State<AppState>,
    caller: Caller,
    Path(device): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_READ)?;
    if !store::device_owned(&state.pool, &caller.user_id, &device).await? {
        return Err(ApiError::not_found());
    }
    let client = state.pool.get().await?;
    let on = views::appliances(&**client, &caller.user_id, Appliances::OnDevice(&device)).await?;
    Ok(Json(Value::Array(on)))
}

/// One appliance of the caller as `ApplianceResponse`, or 404.
pub(crate) async fn one(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Value> {
    let client = state.pool.get().await?;
    views::appliances(&**client, &caller.user_id, Appliances::One(id))
        .await?
        .pop()
        .ok_or_else(ApiError::not_found)
}

/// The initial confirmed state of a new appliance of `model`: the model's
/// own starting state, the one a device starts its appliance in.
fn initial_state(model: &catalog::Model) -> (Option<Value>, Option<Value>) {
    match model.capabilities {
        Capabilities::Aircon(caps) => (Some(stamped(json!(caps.initial()))), None),
        Capabilities::Tv { .. } => (None, Some(json!(TvState::default()))),
        Capabilities::Light { .. } => (None, Some(json!(LightState::default()))),
        Capabilities::FloorHeater(caps) => (Some(stamped(json!(caps.initial()))), None),
        Capabilities::LightProjector { .. } => (None, Some(json!(LightProjectorState::default()))),
        Capabilities::SesameBot { .. } => (None, Some(json!(SesameBotState::default()))),
    }
}

/// The appliance type and catalog model a create request names. Without a
/// model the appliance is a learned-IR one.
fn kind_and_model(form: &Form) -> ApiResult<(ApplianceType, Option<&'static catalog::Model>)> {
    let model_id = form.get("model").filter(|m| !m.is_empty());
    let declared = match form.get("model_type").filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => Some(ApplianceType::parse(t).ok_or_else(|| {
            ApiError::bad_request(format!(
                "model_type {t:?} is not one of AC, TV, LIGHT, FLOOR_HEATER, LIGHT_PROJECTOR, \
                 SESAME_BOT, IR"
            ))
        })?),
    };
    match model_id {
        Some(id) => {
            let model = catalog::model(id)
                .ok_or_else(|| ApiError::bad_request(format!("unknown model {id:?}")))?;
            let kind = ApplianceType::of(model);
            if declared.is_some_and(|d| d != kind) {
                return Err(ApiError::bad_request(format!(
                    "model {id} is a {} model, not {}",
                    kind.as_str(),
                    declared.map_or("", ApplianceType::as_str)
                )));
            }
            Ok((kind, Some(model)))
        }
        None => match declared {
            None | Some(ApplianceType::Ir) => Ok((ApplianceType::Ir, None)),
            Some(other) => Err(ApiError::bad_request(format!(
                "a {} appliance needs a model",
                other.as_str()
            ))),
        },
    }
}

/// `POST /1/appliances`: `nickname`, `image`, `device`, `model`, `model_type`.
/// Without a model the appliance is a learned-IR one (`IR`).
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    let nickname = form.required_nonempty("nickname")?;
    let image = form.get("image").unwrap_or_default();
    let device = form.required_nonempty("device")?;
    let (kind, model) = kind_and_model(&form)?;
    let (settings, app_state) = model.map(initial_state).unwrap_or((None, None));
    let id = Uuid::new_v4().to_string();
    let row = NewAppliance {
        id: &id,
        device,
        kind: kind.as_str(),
        nickname,
        image,
        model: model.map(|m| m.id),
        settings,
        state: app_state,
        macros: model.map(|m| m.macros()).unwrap_or_default(),
    };
    if !store::create(&state.pool, &caller.user_id, &row).await? {
        return Err(ApiError::bad_request(format!(
            "no device {device:?} in this account"
        )));
    }
    one(&state, &caller, &id).await.map(Json)
}

/// `POST /1/appliances/{id}`: `nickname`, `image`.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    let (nickname, image) = form.label_and_image("nickname")?;
    if !store::relabel(&state.pool, &caller.user_id, &id, nickname, image).await? {
        return Err(ApiError::not_found());
    }
    one(&state, &caller, &id).await.map(Json)
}

/// `POST /1/appliances/{id}/delete`.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    _form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    if !store::delete(&state.pool, &caller.user_id, &id).await? {
        return Err(ApiError::not_found());
    }
    Ok(Json(json!({})))
}

/// Splits Nature's comma-separated id list, refusing blanks and repeats.
pub(crate) fn id_list(raw: &str, field: &str) -> ApiResult<Vec<String>> {
    let ids: Vec<String> = raw.split(',').map(|s| s.trim().to_string()).collect();
    if ids.iter().any(String::is_empty) {
        return Err(ApiError::bad_request(format!("{field} has an empty id")));
    }
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != ids.len() {
        return Err(ApiError::bad_request(format!("{field} lists an id twice")));
    }
    Ok(ids)
}

/// `POST /1/appliance_orders`: `appliances` lists every appliance id, in order.
pub async fn reorder(
    State(state): State<AppState>,
    caller: Caller,
    form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    let ids = id_list(form.required_nonempty("appliances")?, "appliances")?;
    if !store::reorder(&state.pool, &caller.user_id, &ids).await? {
        return Err(ApiError::bad_request(
            "appliances must list every appliance of this account exactly once",
        ));
    }
    Ok(Json(json!({})))
}
