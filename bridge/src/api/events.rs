//! `GET /v1/events`: the caller's account events as Server-Sent Events.
//!
//! Each message has `id:` (monotonic per account), `event:` (the kind:
//! `reading`, `presence`, `appliance_state`, `command`, and what the rules
//! publish) and `data:` (JSON with `device_id` and RFC 3339 timestamps where
//! they apply). A client resumes with the `Last-Event-ID` header (or
//! `?last_event_id=`): it gets exactly the events after that id still in the
//! backlog. If the id is no longer covered it first gets
//! `event: reset` with `data: {"reason": "backlog_gap", ...}` — events were
//! lost, refetch state — then everything the backlog holds. A keep-alive
//! comment goes out every `events.keepalive_secs`. A client too slow to keep
//! up with its buffer has its stream closed; it reconnects and resumes. An
//! account may hold `events.max_streams_per_account` streams at once; more
//! get 429.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::json;

use crate::auth::{Caller, BASIC_READ};
use crate::error::{ApiError, ApiResult};
use crate::events::{router, Event};
use crate::state::AppState;

fn last_event_id(headers: &HeaderMap, query: Option<&str>) -> Result<Option<u64>, ApiError> {
    let from_header = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("?").trim().to_string());
    let raw = match from_header {
        Some(v) => Some(v),
        None => {
            let params: HashMap<String, String> =
                serde_urlencoded::from_str(query.unwrap_or_default())
                    .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?;
            params.get("last_event_id").map(|v| v.trim().to_string())
        }
    };
    match raw.as_deref() {
        None | Some("") => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
            ApiError::bad_request("Last-Event-ID (last_event_id) must be a non-negative integer")
        }),
    }
}

fn sse(event: &Event) -> SseEvent {
    SseEvent::default()
        .id(event.id.to_string())
        .event(event.event.kind.as_str())
        .data(&*event.event.data)
}

/// The SSE handler.
pub async fn stream_events(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    caller.require(BASIC_READ)?;
    let last = last_event_id(&headers, query.as_deref())?;
    let sub = state
        .events
        .subscribe(&caller.user_id, last)
        .ok_or_else(ApiError::too_many_requests)?;
    // Route this account's device events from now on (after subscribing, so
    // a concurrent owner reload already counts the account as interested).
    if let Err(e) = router::load_account(&state.pool, &state.events, &caller.user_id).await {
        tracing::warn!(error = %e, "loading devices for a live event stream failed");
    }
    let mut prefix = Vec::with_capacity(sub.replay.len() + 1);
    if sub.gap {
        let data = json!({
            "reason": "backlog_gap",
            "last_event_id": last,
            "oldest_event_id": sub.replay.first().map(|e| e.id),
        });
        prefix.push(SseEvent::default().event("reset").data(data.to_string()));
    }
    prefix.extend(sub.replay.iter().map(sse));
    let live = stream::unfold(sub.live, |mut rx| async move {
        rx.recv().await.map(|event| (sse(&event), rx))
    });
    let events = stream::iter(prefix).chain(live).map(Ok);
    let keepalive = state.events.keepalive();
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(keepalive)))
}
