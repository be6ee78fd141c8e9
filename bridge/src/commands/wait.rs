//! Opt-in synchronous results: `Prefer: wait=N` (RFC 7240) makes a command
//! request wait up to N seconds for the device's ack.
//!
//! Completions in this process wake waiters at once; a short poll covers
//! completions written by another bridge process.

use std::time::Duration;

use axum::http::HeaderMap;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use uuid::Uuid;

use super::{CommandLog, CommandView};
use crate::error::ApiError;

/// Longest wait a client may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often a waiter re-reads the row in case another process completed it.
const POLL: Duration = Duration::from_millis(250);

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

impl CommandLog {
    /// Waits up to `limit` for command `id` of `user_id` to become final;
    /// returns early, still pending, when the bridge shuts down.
    pub async fn wait_final(
        &self,
        user_id: &str,
        id: Uuid,
        limit: Duration,
    ) -> Result<Waited, ApiError> {
        let mut done = self.done.subscribe();
        let deadline = Instant::now() + limit;
        loop {
            let view = self
                .find(user_id, id)
                .await?
                .ok_or_else(ApiError::not_found)?;
            if view.is_final() {
                return Ok(Waited::Final(view));
            }
            if Instant::now() >= deadline || self.shutdown.is_cancelled() {
                return Ok(Waited::Pending(view));
            }
            let poll = Instant::now() + POLL;
            tokio::select! {
                () = tokio::time::sleep_until(poll.min(deadline)) => {}
                () = self.shutdown.cancelled() => {}
                got = wait_for(&mut done, id) => if got.is_err() {
                    // The log is gone (shutting down): fall back to polling.
                    tokio::time::sleep_until(poll.min(deadline)).await;
                },
            }
        }
    }
}

/// Resolves when `id` is announced as done (or on lag, to re-check).
async fn wait_for(
    done: &mut tokio::sync::broadcast::Receiver<Uuid>,
    id: Uuid,
) -> Result<(), RecvError> {
    loop {
        match done.recv().await {
            Ok(finished) if finished == id => return Ok(()),
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => return Ok(()),
            Err(e @ RecvError::Closed) => return Err(e),
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
}
