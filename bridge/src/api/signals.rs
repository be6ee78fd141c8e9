//! `/1/appliances/{id}/signals` and `/1/signals/{id}`: learned IR signals —
//! list, create, update, delete, reorder, and send (a durable command).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde_json::{json, Value};
use uuid::Uuid;

use kumo_contract::payload::{IrMessage, PayloadError};

use crate::api::appliances::id_list;
use crate::api::dispatch::{dispatch, Dispatch};
use crate::appliance;
use crate::auth::{Caller, BASIC_READ, BASIC_WRITE, SENDIR};
use crate::commands::CommandKind;
use crate::error::{ApiError, ApiResult};
use crate::form::Form;
use crate::state::AppState;
use crate::views::signal_json;

/// Validates Nature's IR `message` (`{"format":"us","freq":38,"data":[...]}`)
/// with the device protocol's rules (`IrMessage::check`) and returns it
/// normalised (`format` defaults to `us`).
pub(crate) fn ir_message(raw: &str, field: &str) -> ApiResult<Value> {
    let bad =
        |why: &str| ApiError::bad_request(format!("{field} is not a valid IR message: {why}"));
    let v: Value = serde_json::from_str(raw).map_err(|_| bad("not JSON"))?;
    let whole = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    let message = IrMessage {
        format: v
            .get("format")
            .and_then(Value::as_str)
            .unwrap_or("us")
            .to_string(),
        freq: v
            .get("freq")
            .and_then(whole)
            .ok_or_else(|| bad("freq must be a carrier frequency in kHz between 30 and 80"))?,
        data: v
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("data must be a non-empty array of durations"))?
            .iter()
            .map(|d| whole(d).filter(|n| *n > 0))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| {
                bad("every duration in data must be a positive whole number of microseconds")
            })?,
    };
    match message.check() {
        Ok(()) => Ok(json!(message)),
        Err(PayloadError::Range(why)) => Err(bad(&why)),
        Err(e) => Err(bad(&e.to_string())),
    }
}

async fn owned_appliance(state: &AppState, caller: &Caller, id: &str) -> ApiResult<()> {
    let client = state.pool.get().await?;
    client
        .query_opt(
            "SELECT 1 FROM appliances WHERE id = $1 AND user_id = $2",
            &[&id, &caller.user_id],
        )
        .await?
        .map(|_| ())
        .ok_or_else(ApiError::not_found)
}

/// `GET /1/appliances/{id}/signals`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(appliance): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_READ)?;
    owned_appliance(&state, &caller, &appliance).await?;
    let client = state.pool.get().await?;
    let rows = client
        .query(
            "SELECT id, name, image FROM signals WHERE appliance_id = $1
             ORDER BY position, created_at, id",
            &[&appliance],
        )
        .await?;
    Ok(Json(Value::Array(
        rows.iter()
            .map(|r| signal_json(r.get(0), r.get(1), r.get(2)))
            .collect(),
    )))
}

/// `POST /1/appliances/{id}/signals`: `name`, `image`, `message`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(appliance): Path<String>,
    form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    let name = form.required_nonempty("name")?.to_string();
    let image = form.get("image").unwrap_or_default().to_string();
    let message = ir_message(form.required("message")?, "message")?;
    owned_appliance(&state, &caller, &appliance).await?;
    let id = Uuid::new_v4().to_string();
    let client = state.pool.get().await?;
    client
        .execute(
            "INSERT INTO signals (id, appliance_id, name, image, message, position)
             VALUES ($1, $2, $3, $4, $5,
                     coalesce((SELECT max(position) + 1 FROM signals WHERE appliance_id = $2), 0))",
            &[&id, &appliance, &name, &image, &message],
        )
        .await?;
    Ok(Json(signal_json(id, name, image)))
}

/// `POST /1/signals/{id}`: `name`, `image`.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    let (name, image) = form.label_and_image("name")?;
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            "UPDATE signals s SET name = coalesce($3, s.name), image = coalesce($4, s.image),
                 updated_at = now()
             FROM appliances a
             WHERE s.id = $1 AND a.id = s.appliance_id AND a.user_id = $2
             RETURNING s.id, s.name, s.image",
            &[&id, &caller.user_id, &name, &image],
        )
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(signal_json(row.get(0), row.get(1), row.get(2))))
}

/// `POST /1/signals/{id}/delete`.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    _form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    let client = state.pool.get().await?;
    let n = client
        .execute(
            "DELETE FROM signals s USING appliances a
             WHERE s.id = $1 AND a.id = s.appliance_id AND a.user_id = $2",
            &[&id, &caller.user_id],
        )
        .await?;
    if n == 0 {
        return Err(ApiError::not_found());
    }
    Ok(Json(json!({})))
}

/// `POST /1/appliances/{id}/signal_orders`: `signals` lists every signal id, in order.
pub async fn reorder(
    State(state): State<AppState>,
    caller: Caller,
    Path(appliance): Path<String>,
    form: Form,
) -> ApiResult<Json<Value>> {
    caller.require(BASIC_WRITE)?;
    let ids = id_list(form.required_nonempty("signals")?, "signals")?;
    owned_appliance(&state, &caller, &appliance).await?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let mut owned: Vec<String> = tx
        .query(
            "SELECT id FROM signals WHERE appliance_id = $1 FOR UPDATE",
            &[&appliance],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    owned.sort();
    let mut given = ids.clone();
    given.sort();
    if owned != given {
        return Err(ApiError::bad_request(
            "signals must list every signal of this appliance exactly once",
        ));
    }
    tx.execute(
        "UPDATE signals s SET position = o.ord - 1
         FROM unnest($1::text[]) WITH ORDINALITY AS o(id, ord)
         WHERE s.id = o.id AND s.appliance_id = $2",
        &[&ids, &appliance],
    )
    .await?;
    tx.commit().await?;
    Ok(Json(json!({})))
}

/// `POST /1/signals/{id}/send`: queues the IR message for the appliance's device.
pub async fn send(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    _form: Form,
) -> ApiResult<Response> {
    caller.require(SENDIR)?;
    let c = appliance::signal_command(&state.pool, &caller.user_id, &id).await?;
    dispatch(
        &state,
        &caller,
        &headers,
        Dispatch {
            device: &c.device,
            appliance: Some(&c.appliance),
            kind: CommandKind::Ir,
            payload: c.payload,
            expected: None,
            body: json!({}),
        },
    )
    .await
}
