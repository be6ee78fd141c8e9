//! Liveness and readiness probes.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Alive as long as the process serves requests.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers.
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let client = state.pool.get().await?;
    client.simple_query("SELECT 1").await.map_err(|e| {
        tracing::warn!(error = %e, "readiness: database ping failed");
        ApiError::unavailable()
    })?;
    Ok(Json(json!({"status": "ready", "database": "ok"})))
}
