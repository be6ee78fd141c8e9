//! Routes device events from the [`LiveFeed`] to the [`EventHub`]: which
//! accounts see this device (the members of its home, `device_access`), and
//! what does the SSE `data:` say.
//!
//! Fills the device → accounts map of watched accounts (those with a backlog or
//! an account webhook), reloaded every `owner_refresh_secs` and when an account
//! starts being watched. Between reloads it follows `device_ownership_log`
//! (every [`FOLLOW_EVERY`]), so a device that is added, deleted, changes hands
//! or whose home gains or loses a member is routed to who sees it now — and no
//! longer to anyone else — within a fraction of a second; a home change waits
//! for that ([`EventHub::wait_followed`]) before it answers. Devices of unwatched accounts are dropped with one
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

/// Loads the devices `account` sees into the hub's map now, so events of a
/// client that just subscribed are routed without waiting for a refresh.
pub async fn load_account(pool: &Pool, hub: &EventHub, account: &str) -> Result<(), String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let rows = client
        .query(
            "SELECT device_id FROM device_access WHERE user_id = $1",
            &[&account],
        )
        .await
        .map_err(|e| e.to_string())?;
    let devices = rows.iter().map(|r| r.get::<_, String>(0));
    hub.add_viewers(account, devices);
    Ok(())
}

async fn reload(pool: &Pool, hub: &EventHub) -> Result<(), String> {
    let accounts = hub.interested_accounts();
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let rows = client
        .query(
            "SELECT device_id, user_id FROM device_access WHERE user_id = ANY($1)",
            &[&accounts],
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut viewers: HashMap<String, Vec<Arc<str>>> = HashMap::new();
    for r in &rows {
        viewers
            .entry(r.get::<_, String>(0))
            .or_default()
            .push(Arc::from(r.get::<_, String>(1)));
    }
    hub.replace_viewers(&accounts, viewers);
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
        hub.followed_to(end);
        return Ok(());
    };
    loop {
        let changes = crate::accounts::ownership_changes(&client, after, FOLLOW_PAGE)
            .await
            .map_err(|e| e.to_string())?;
        if changes.is_empty() {
            return Ok(());
        }
        let devices: Vec<&str> = changes.iter().map(|c| c.device_id.as_str()).collect();
        let rows = client
            .query(
                "SELECT device_id, user_id FROM device_access WHERE device_id = ANY($1)",
                &[&devices],
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut viewers: HashMap<String, Vec<String>> = devices
            .iter()
            .map(|d| (d.to_string(), Vec::new()))
            .collect();
        for r in &rows {
            viewers
                .entry(r.get(0))
                .or_default()
                .push(r.get::<_, String>(1));
        }
        let viewers: Vec<(String, Vec<String>)> = viewers.into_iter().collect();
        hub.update_viewers(&viewers);
        if let Some(last) = changes.last() {
            after = last.seq;
            *cursor = Some(after);
            hub.followed_to(after);
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
    let accounts = match event {
        LiveEvent::Command {
            user: Some(user), ..
        } => vec![Arc::from(user.as_str())],
        LiveEvent::Command { user: None, .. } => return,
        other => hub.viewers_of(other.device()),
    };
    let kind = match event {
        LiveEvent::Reading { .. } => "reading",
        LiveEvent::Presence { .. } => "presence",
        LiveEvent::ApplianceState { .. } => "appliance_state",
        LiveEvent::Command { .. } => "command",
    };
    let watching: Vec<Arc<str>> = accounts
        .into_iter()
        .filter(|a| hub.watches(a, kind))
        .collect();
    if watching.is_empty() {
        return;
    }
    let (kind, data) = describe(event);
    for account in watching {
        hub.offer_device_event(&account, kind, data.clone());
    }
}
