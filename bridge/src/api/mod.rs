//! The HTTP routes: Nature's `/1` and `/2` API, Kumo's `/v1`, health checks,
//! the reference docs (`crate::docs`) and the web console (`crate::console`).
//!
//! Every response, errors and unknown paths included, passes through the rate
//! limiter layer, which stamps the `X-Rate-Limit-*` headers; hyper adds `Date`.

mod appliances;
mod ble;
mod claim_codes;
mod commands;
pub(crate) mod control;
pub(crate) mod demand;
mod devices;
mod dispatch;
mod echonet;
mod energy;
mod events;
mod health;
mod history;
mod homes;
mod rules;
pub(crate) mod signals;
mod tokens;
mod users;
mod webhooks;

use std::collections::HashMap;

use axum::http::{HeaderMap, Method, Uri};
use axum::routing::{get, post};
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;

/// The whole REST application.
pub fn router(state: AppState) -> Router {
    let limiter = state.limiter.clone();
    let metrics = state.metrics.clone();
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/1/users/me", get(users::me).post(users::update_me))
        .route("/1/devices", get(devices::list))
        .route("/1/devices/{id}", post(devices::rename))
        .route("/1/devices/{id}/delete", post(devices::delete))
        .route(
            "/1/devices/{id}/temperature_offset",
            post(devices::temperature_offset),
        )
        .route(
            "/1/devices/{id}/humidity_offset",
            post(devices::humidity_offset),
        )
        .route(
            "/1/devices/{id}/appliances",
            get(appliances::list_on_device),
        )
        .route(
            "/1/appliances",
            get(appliances::list).post(appliances::create),
        )
        .route("/1/appliance_orders", post(appliances::reorder))
        .route("/1/appliances/{id}", post(appliances::update))
        .route("/1/appliances/{id}/delete", post(appliances::delete))
        .route(
            "/1/appliances/{id}/signals",
            get(signals::list).post(signals::create),
        )
        .route("/1/appliances/{id}/signal_orders", post(signals::reorder))
        .route(
            "/1/appliances/{id}/aircon_settings",
            post(control::aircon_v1),
        )
        .route(
            "/2/appliances/{id}/aircon_settings",
            post(control::aircon_v2),
        )
        .route("/1/appliances/{id}/tv", post(control::tv))
        .route("/1/appliances/{id}/light", post(control::light))
        .route(
            "/1/appliances/{id}/floor_heater_settings",
            post(control::floor_heater),
        )
        .route(
            "/1/appliances/{id}/light_projector",
            post(control::light_projector),
        )
        .route("/1/appliances/{id}/sesame_bot/click", post(ble::click))
        .route(
            "/1/ble/appliances/{id}/private_macros",
            get(ble::private_macros),
        )
        .route("/1/ble/private_macros/{id}/exec", post(ble::exec))
        .route("/1/signals/{id}", post(signals::update))
        .route("/1/signals/{id}/delete", post(signals::delete))
        .route("/1/signals/{id}/send", post(signals::send))
        .route("/1/detectappliance", post(echonet::detect))
        .route("/1/echonetlite/appliances", get(echonet::list))
        .route("/1/echonetlite/appliances/{id}/set", post(echonet::set))
        .route(
            "/1/echonetlite/appliances/{id}/refresh",
            post(echonet::refresh),
        )
        .route("/1/homes", get(homes::list).post(homes::create))
        .route("/1/homes/{id}", post(homes::update))
        .route("/1/homes/{id}/delete", post(homes::delete))
        .route("/1/homes/{id}/devices", get(homes::devices))
        .route("/1/homes/{id}/users", get(homes::users))
        .route("/1/homes/{id}/invites", post(homes::invite))
        .route("/1/homes/{id}/kick", post(homes::kick))
        .route("/1/homes/{id}/part", post(homes::part))
        .route("/1/homes/{id}/owner", post(homes::owner))
        .route("/1/homes/{id}/transfer/{to}", post(homes::transfer))
        .route("/1/homes/{id}/location", post(homes::set_location))
        .route(
            "/1/homes/{id}/location/delete",
            post(homes::delete_location),
        )
        .route(
            "/1/homes/{id}/location_state/update",
            post(homes::update_location_state),
        )
        .route(
            "/1/invites/{token}",
            get(homes::show_invite).post(homes::accept_invite),
        )
        .route(
            "/v1/tokens",
            get(tokens::list_tokens).post(tokens::create_token),
        )
        .route("/v1/tokens/{id}/revoke", post(tokens::revoke_token))
        .route("/v1/commands/{id}", get(commands::command))
        .route(
            "/v1/claim_codes",
            get(claim_codes::list).post(claim_codes::create),
        )
        .route("/v1/claim_codes/{id}/revoke", post(claim_codes::revoke))
        .route("/v1/devices", get(devices::presence))
        .route("/v1/devices/{id}/readings", get(history::readings))
        .route("/v1/devices/{id}/energy", get(energy::energy))
        .route(
            "/v1/aggregator/programs",
            get(demand::list_programs).post(demand::create_program),
        )
        .route(
            "/v1/aggregator/programs/{id}/events",
            get(demand::list_events).post(demand::create_event),
        )
        .route("/v1/aggregator/events/{id}", get(demand::show_event))
        .route(
            "/v1/aggregator/events/{id}/results",
            get(demand::event_results),
        )
        .route("/v1/programs", get(demand::programs))
        .route("/v1/programs/{id}/enrolments", post(demand::enrol))
        .route(
            "/v1/programs/{id}/enrolments/{appliance}/opt_out",
            post(demand::opt_out),
        )
        .route("/v1/programs/{id}/events", get(demand::my_events))
        .route(
            "/v1/programs/{id}/events/{event}/results",
            get(demand::my_event_results),
        )
        .route("/v1/rules", get(rules::list).post(rules::create))
        .route(
            "/v1/rules/{id}",
            get(rules::show)
                .put(rules::replace)
                .patch(rules::update)
                .delete(rules::delete),
        )
        .route("/v1/rules/{id}/executions", get(rules::executions))
        .route("/v1/events", get(events::stream_events))
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get).delete(webhooks::delete),
        )
        .route("/v1/webhooks/{id}/enable", post(webhooks::enable))
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/v1/webhooks/{id}/test", post(webhooks::test))
        .route("/v1/webhook_secret", post(webhooks::rotate_secret))
        .merge(crate::docs::routes())
        .merge(crate::console::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::form::BODY_LIMIT,
        ))
        .layer(axum::middleware::from_fn(refuse_bad_paths))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            limiter,
            crate::ratelimit::limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::track,
        ))
        .layer(axum::middleware::from_fn(crate::linger::close_if_unread))
}

async fn not_found(_method: Method, _uri: Uri) -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// The query string as name → value pairs; a malformed one is a 400.
pub(crate) fn query_params(query: Option<&str>) -> Result<HashMap<String, String>, ApiError> {
    let raw = query.unwrap_or_default().as_bytes();
    Ok(crate::text::decode_form(raw, "query parameter")?
        .into_iter()
        .collect())
}

/// `limit` from the query: `default` when absent, else a whole number from 1
/// to `max` (a 400 otherwise).
pub(crate) fn limit_param(
    params: &HashMap<String, String>,
    default: i64,
    max: i64,
) -> Result<i64, ApiError> {
    let Some(raw) = params.get("limit") else {
        return Ok(default);
    };
    raw.parse::<i64>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(format!("limit must be a whole number from 1 to {max}"))
        })
}

/// The `Idempotency-Key` header, if present and sane.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::bad_request("Idempotency-Key must be 1 to 255 visible characters")
        })?;
    Ok(Some(key.to_string()))
}

/// Refuses a request whose path holds a control character or broken UTF-8
/// (a 400 in Nature's shape) before any route sees it: path ids then reach
/// SQL only as text PostgreSQL can hold.
async fn refuse_bad_paths(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match crate::text::check_path(req.uri().path()) {
        Ok(()) => next.run(req).await,
        Err(e) => axum::response::IntoResponse::into_response(e),
    }
}
