//! Routes device events from the [`LiveFeed`] to the [`EventHub`]: which
//! account does this device belong to, and what does the SSE `data:` say.
//!
//! Owns the device → account map of watched accounts (those with a backlog or
//! an account webhook), reloaded every `owner_refresh_secs` and when an account
//! starts being watched. Between reloads it follows `device_ownership_log`
//! (every [`FOLLOW_EVERY`]), so a device that is added, deleted or changes hands
//! is routed to its new owner — and no longer to the old one — within a
//! fraction of a second. Devices of unwatched accounts are dropped with one
//! map lookup — no database query per reading. Command events carry their
//! account already. It must not block ingest: it is one more broadcast
//! subscriber, and if it lags it loses events (logged), never slows producers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::EventHub;
use crate::json::{number, rfc3339};
use crate::live::{LiveEvent, LiveFeed};

/// The SSE event name and JSON data of a device event.
pub fn describe(event: &LiveEvent) -> (&'static str, Value) {
    match event {
        LiveEvent::Reading {
            device,
            sensor,
            val,
            at,
        } => (
            "reading",
            json!({"device_id": device, "sensor": sensor, "val": number(*val), "created_at": rfc3339(*at)}),
        ),
        LiveEvent::Presence {
            device,
            online,
            node,
            at,
        } => (
            "presence",
            json!({"device_id": device, "online": online, "node": node, "at": rfc3339(*at)}),
        ),
        LiveEvent::ApplianceState {
            device,
            appliances,
            at,
        } => (
            "appliance_state",
            json!({"device_id": device, "appliances": appliances, "at": rfc3339(*at)}),
        ),
        LiveEvent::Command {
            device,
            command_id,
            appliance,
            status,
            at,
            ..
        } => (
            "command",
            json!({"device_id": device, "command_id": command_id, "appliance_id": appliance,
                   "status": status, "at": rfc3339(*at)}),
        ),
    }
}

/// Loads the devices of `account` into the hub's owner map now, so events of
/// a client that just subscribed are routed without waiting for a refresh.
pub async fn load_account(pool: &Pool, hub: &EventHub, account: &str) -> Result<(), String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let rows = client
        .query("SELECT id FROM devices WHERE user_id = $1", &[&account])
        .await
        .map_err(|e| e.to_string())?;
    let devices = rows.iter().map(|r| r.get::<_, String>(0));
    hub.add_owners(account, devices);
    Ok(())
}

async fn reload(pool: &Pool, hub: &EventHub) -> Result<(), String> {
    let accounts = hub.interested_accounts();
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let rows = client
        .query(
            "SELECT id, user_id FROM devices WHERE user_id = ANY($1)",
            &[&accounts],
        )
        .await
        .map_err(|e| e.to_string())?;
    let owners: HashMap<String, Arc<str>> = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), Arc::from(r.get::<_, String>(1))))
        .collect();
    hub.replace_owners(&accounts, owners);
    Ok(())
}

/// How often the ownership change log is read.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(200);
/// Log rows per read.
const FOLLOW_PAGE: i64 = 1_000;

/// Applies `device_ownership_log` rows past `cursor` to the hub's owner map.
/// The first call only finds the log's end (the reloads cover what came
/// before). Runs in the router's loop, never at the same time as a reload, so
/// a reload cannot overwrite a newer change with what it read earlier.
async fn follow_once(pool: &Pool, hub: &EventHub, cursor: &mut Option<i64>) -> Result<(), String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let Some(mut after) = *cursor else {
        let end = crate::accounts::ownership_log_end(&client)
            .await
            .map_err(|e| e.to_string())?;
        *cursor = Some(end);
        return Ok(());
    };
    loop {
        let changes = crate::accounts::ownership_changes(&client, after, FOLLOW_PAGE)
            .await
            .map_err(|e| e.to_string())?;
        let owners: Vec<(String, Option<String>)> = changes
            .iter()
            .map(|c| (c.device_id.clone(), c.owner.clone()))
            .collect();
        hub.update_owners(&owners);
        if let Some(last) = changes.last() {
            after = last.seq;
            *cursor = Some(after);
        }
        if changes.len() < FOLLOW_PAGE as usize {
            return Ok(());
        }
    }
}

/// Starts routing `feed` into `hub` until `shutdown`; also evicts idle
/// backlogs, follows ownership changes and, at shutdown, ends every SSE stream.
pub fn spawn(
    hub: EventHub,
    feed: &LiveFeed,
    pool: Pool,
    refresh: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let mut rx = feed.subscribe();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(refresh);
        let mut follow = tokio::time::interval(FOLLOW_EVERY);
        follow.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut cursor = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = follow.tick() => {
                    if let Err(e) = follow_once(&pool, &hub, &mut cursor).await {
                        tracing::debug!(error = %e, "following device ownership for live events failed");
                    }
                }
                _ = tick.tick() => {
                    hub.evict_idle();
                    if let Err(e) = reload(&pool, &hub).await {
                        tracing::warn!(error = %e, "reloading device owners for live events failed");
                    }
                }
                () = hub.interest_changed() => {
                    if let Err(e) = reload(&pool, &hub).await {
                        tracing::warn!(error = %e, "reloading device owners for live events failed");
                    }
                }
                received = rx.recv() => match received {
                    Ok(event) => route(&hub, &event),
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(lost = n, "live event router fell behind; events lost");
                    }
                    Err(RecvError::Closed) => break,
                },
            }
        }
        hub.close_all();
    })
}

fn route(hub: &EventHub, event: &LiveEvent) {
    let account = match event {
        LiveEvent::Command {
            user: Some(user), ..
        } => Arc::from(user.as_str()),
        LiveEvent::Command { user: None, .. } => return,
        other => match hub.owner_of(other.device()) {
            Some(account) => account,
            None => return,
        },
    };
    let kind = match event {
        LiveEvent::Reading { .. } => "reading",
        LiveEvent::Presence { .. } => "presence",
        LiveEvent::ApplianceState { .. } => "appliance_state",
        LiveEvent::Command { .. } => "command",
    };
    if !hub.watches(&account, kind) {
        return;
    }
    let (kind, data) = describe(event);
    hub.offer_device_event(&account, kind, data);
}
