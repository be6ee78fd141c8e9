//! State shared by every request handler.

use std::sync::Arc;

use axum::extract::FromRef;
use deadpool_postgres::Pool;

use crate::commands::CommandLog;
use crate::metrics::Metrics;
use crate::mqtt::MqttStatus;
use crate::ratelimit::RateLimiter;

impl FromRef<AppState> for Pool {
    fn from_ref(state: &AppState) -> Pool {
        state.pool.clone()
    }
}

impl FromRef<AppState> for Arc<crate::auth::TokenCache> {
    fn from_ref(state: &AppState) -> Self {
        state.tokens.clone()
    }
}

/// Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    /// The system of record.
    pub pool: Pool,
    /// Tokens accepted a moment ago (`bridge.auth_cache_ms`).
    pub tokens: Arc<crate::auth::TokenCache>,
    /// Per-token request counters.
    pub limiter: Arc<RateLimiter>,
    /// The durable command table and its delivery sink.
    pub commands: Arc<CommandLog>,
    /// Request counters, served on `bridge.metrics_listen`.
    pub metrics: Arc<Metrics>,
    /// Broker connections, when the MQTT side runs.
    pub mqtt: Option<Arc<MqttStatus>>,
    /// How far each node has applied the device-ownership feed (integrations'
    /// scope), when the MQTT side runs.
    pub ownership: Option<Arc<crate::mqtt::OwnershipSync>>,
    /// Per-account live events behind `GET /v1/events`.
    pub events: crate::events::EventHub,
    /// Account webhooks, rule-action POSTs and their delivery worker.
    pub webhooks: crate::webhooks::Webhooks,
    /// The running rules worker: `/v1/rules` tells it about every change.
    pub rules: crate::rules::RulesHandle,
    /// `[bridge.homes]`.
    pub homes: crate::settings::HomeSettings,
    /// `[bridge.energy]`.
    pub energy: crate::settings::EnergySettings,
    /// `[bridge.demand_response]`.
    pub demand_response: crate::settings::DemandResponseSettings,
    /// Wakes the demand-response worker (an opt-out's restore is due now).
    pub demand: crate::demand::worker::DemandHandle,
}
