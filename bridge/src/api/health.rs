//! Liveness and readiness probes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Alive as long as the process serves requests.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers and, with MQTT configured, every broker
/// node is connected; a 503 body names what is down.
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Response> {
    let client = state.pool.get().await?;
    client.simple_query("SELECT 1").await.map_err(|e| {
        tracing::warn!(error = %e, "readiness: database ping failed");
        ApiError::unavailable()
    })?;
    let Some(mqtt) = &state.mqtt else {
        return Ok(Json(json!({"status": "ready", "database": "ok"})).into_response());
    };
    let brokers: Map<String, Value> = mqtt
        .nodes
        .iter()
        .map(|n| {
            let s = if n.connected() {
                "connected"
            } else {
                "disconnected"
            };
            (n.addr.clone(), Value::from(s))
        })
        .collect();
    let ready = mqtt.all_connected();
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "database": "ok",
        "brokers": brokers,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(body)).into_response())
}
