//! Opt-in synchronous results: `Prefer: wait=N` (RFC 7240) makes a command
//! request wait up to N seconds for the device's ack.
//!
//! A waiter registers its command id in [`Waiters`]; the transition that makes
//! the command final hands it the committed row, so the in-process path reads
//! nothing from the database. A command written by this process is watched
//! before it is announced, so not even the first read is needed. An ack that
//! changed nothing here (another bridge process stored it first) wakes the
//! waiter to re-read the row. Anything else done elsewhere is found by one
//! poll for all waiters every [`POLL`] ([`CommandLog::poll_elsewhere`]): a
//! poll per waiter was a query a second for each of the thousands of requests
//! that wait through a node's reconnection storm. This module must not move
//! commands through their states.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

use super::{view_from_row, CommandLog, CommandView, VIEW_COLUMNS};
use crate::db::DbError;
use crate::error::ApiError;

/// Longest wait a client may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often the watched commands are read in case another process completed
/// them without this one seeing it.
const POLL: Duration = Duration::from_secs(1);

/// The wait a request asks for with `Prefer: wait=N`, capped at [`MAX_WAIT`].
pub fn prefer_wait(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .filter_map(|pref| {
            let (name, value) = pref.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("wait")
                .then(|| value.trim().trim_matches('"').parse::<u64>().ok())
                .flatten()
        })
        .map(|secs| Duration::from_secs(secs).min(MAX_WAIT))
        .next()
}

/// How a wait ended.
#[derive(Debug, Clone)]
pub enum Waited {
    /// The command reached a final state (acked, failed or expired).
    Final(CommandView),
    /// Time ran out first; the command is still queued or sent.
    Pending(CommandView),
}

/// What a woken waiter gets: the final row, or `None` to re-read it.
type Wake = Option<CommandView>;

/// Command id → the requests waiting for it.
#[derive(Debug, Default)]
pub(super) struct Waiters {
    map: Mutex<HashMap<Uuid, Vec<oneshot::Sender<Wake>>>>,
}

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Vec<oneshot::Sender<Wake>>>> {
        // A poisoned lock only means a waiter panicked mid-insert; the map is usable.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts watching `id`; the watch unregisters itself when dropped.
    pub(super) fn watch(self: &Arc<Self>, id: Uuid) -> Watch {
        let (tx, rx) = oneshot::channel();
        self.lock().entry(id).or_default().push(tx);
        Watch {
            id,
            rx,
            waiters: self.clone(),
        }
    }

    /// Wakes everyone waiting for `id` with `view` (or a request to re-read).
    pub(super) fn wake(&self, id: Uuid, view: Wake) {
        let Some(senders) = self.lock().remove(&id) else {
            return;
        };
        for tx in senders {
            let _ = tx.send(view.clone());
        }
    }

    /// The commands someone waits for.
    fn ids(&self) -> Vec<Uuid> {
        self.lock().keys().copied().collect()
    }

    /// Whether anyone waits for `id`.
    pub(super) fn watched(&self, id: Uuid) -> bool {
        self.lock().contains_key(&id)
    }
}

/// One request's registration for a command's final state.
pub(super) struct Watch {
    id: Uuid,
    rx: oneshot::Receiver<Wake>,
    waiters: Arc<Waiters>,
}

impl Watch {
    /// Waits for the wake-up, at most until `until`; `None` on timeout.
    async fn woken(&mut self, until: Instant) -> Option<Wake> {
        match tokio::time::timeout_at(until, &mut self.rx).await {
            Ok(Ok(wake)) => Some(wake),
            // The sender went away without a word: treat it as "re-read".
            Ok(Err(_)) => Some(None),
            Err(_) => None,
        }
    }

    /// Registers again after a wake that carried no final row.
    fn renew(&mut self) {
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().entry(self.id).or_default().push(tx);
        self.rx = rx;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.rx.close();
        let mut map = self.waiters.lock();
        if let Some(senders) = map.get_mut(&self.id) {
            senders.retain(|tx| !tx.is_closed());
            if senders.is_empty() {
                map.remove(&self.id);
            }
        }
    }
}

impl CommandLog {
    /// Waits up to `limit` for command `id` of `user_id` to become final;
    /// returns early, still pending, when the bridge shuts down.
    pub async fn wait_final(
        &self,
        user_id: &str,
        id: Uuid,
        limit: Duration,
    ) -> Result<Waited, ApiError> {
        let watch = self.waiters.watch(id);
        let view = self
            .find(user_id, id)
            .await?
            .ok_or_else(ApiError::not_found)?;
        if view.is_final() {
            return Ok(Waited::Final(view));
        }
        self.wait_watched(user_id, watch, Instant::now() + limit)
            .await
    }

    /// Waits on a watch registered before the command could change (the
    /// caller knows it exists and belongs to `user_id`) until `deadline`.
    pub(super) async fn wait_watched(
        &self,
        user_id: &str,
        mut watch: Watch,
        deadline: Instant,
    ) -> Result<Waited, ApiError> {
        loop {
            let woken = tokio::select! {
                w = watch.woken(deadline) => w,
                () = self.shutdown.cancelled() => None,
            };
            if let Some(Some(view)) = woken {
                return Ok(Waited::Final(view));
            }
            let view = self
                .find(user_id, watch.id)
                .await?
                .ok_or_else(ApiError::not_found)?;
            if view.is_final() {
                return Ok(Waited::Final(view));
            }
            if Instant::now() >= deadline || self.shutdown.is_cancelled() {
                return Ok(Waited::Pending(view));
            }
            if woken.is_some() {
                watch.renew();
            }
        }
    }
}

impl CommandLog {
    /// Every [`POLL`] until shutdown, wakes the requests waiting for commands
    /// that became final without this process seeing it (another bridge
    /// process stored the ack or expired them): one statement for all waiters.
    pub async fn poll_elsewhere(&self) {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.wake_final_watched().await {
                tracing::warn!(error = %e, "reading waited-for commands failed; will retry");
            }
        }
    }

    async fn wake_final_watched(&self) -> Result<(), DbError> {
        let ids = self.waiters.ids();
        if ids.is_empty() {
            return Ok(());
        }
        let client = self.pool.get().await?;
        let select = client
            .prepare_cached(&format!(
                "SELECT {VIEW_COLUMNS} FROM commands
                 WHERE id = ANY($1) AND status IN ('acked', 'failed', 'expired')"
            ))
            .await?;
        for row in client.query(&select, &[&ids]).await? {
            let view = view_from_row(&row);
            self.waiters.wake(view.id, Some(view));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("prefer", v.parse().expect("header"));
        h
    }

    #[test]
    fn the_wait_preference_is_read_and_capped() {
        assert_eq!(
            prefer_wait(&headers("wait=5")),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            prefer_wait(&headers("respond-async, wait=3")),
            Some(Duration::from_secs(3))
        );
        assert_eq!(prefer_wait(&headers("wait=100000")), Some(MAX_WAIT));
        assert_eq!(prefer_wait(&headers("return=minimal")), None);
        assert_eq!(prefer_wait(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn a_dropped_watch_leaves_nothing_registered() {
        let waiters = Arc::new(Waiters::default());
        let id = Uuid::new_v4();
        let a = waiters.watch(id);
        let b = waiters.watch(id);
        drop(a);
        assert!(waiters.watched(id));
        drop(b);
        assert!(!waiters.watched(id));
    }

    #[tokio::test]
    async fn a_wake_reaches_every_watch_of_the_command() {
        let waiters = Arc::new(Waiters::default());
        let id = Uuid::new_v4();
        let (mut a, mut b) = (waiters.watch(id), waiters.watch(id));
        waiters.wake(id, None);
        let soon = Instant::now() + Duration::from_secs(1);
        assert!(matches!(a.woken(soon).await, Some(None)));
        assert!(matches!(b.woken(soon).await, Some(None)));
        assert!(!waiters.watched(id));
    }
}
