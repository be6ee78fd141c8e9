//! Opt-in synchronous results: `Prefer: wait=N` (RFC 7240) makes a command
//! request wait up to N seconds for the device's ack.
//!
//! A waiter registers its command id in [`Waiters`]; the transition that makes
//! the command final hands it the committed row, so the in-process path reads
//! nothing from the database. A command written by this process is watched
//! before it is announced, so not even the first read is needed. An ack that
//! changed nothing here (another bridge process stored it first) wakes the
//! waiter to re-read the row; a slow poll covers anything else done elsewhere.
//! This module must not move commands through their states.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

use super::{CommandLog, CommandView};
use crate::error::ApiError;

/// Longest wait a client may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often a waiter re-reads the row in case another process completed it
/// without this one seeing the ack.
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
            let until = (Instant::now() + POLL).min(deadline);
            let woken = tokio::select! {
                w = watch.woken(until) => w,
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
