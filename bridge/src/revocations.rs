//! Token revocations as they happen. Revoking a token notifies channel
//! [`CHANNEL`] in the same statement (`accounts::tokens`); every bridge
//! listens on a connection of its own and forgets the token in its
//! [`TokenCache`] at once, whoever revoked it (another bridge, `kumo tokens
//! revoke`). While that connection is down the cache trusts nothing, so a
//! revocation is never missed: requests look their token up again.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::auth::TokenCache;

/// The channel a revocation is announced on; the payload is the token's id.
pub const CHANNEL: &str = "kumo_token_revoked";

/// Listens on `url` until `shutdown`, reconnecting (0.25 s doubling to 10 s)
/// whenever the connection is lost, and keeps `cache` trusting tokens only
/// while it listens.
pub async fn listen(url: String, cache: Arc<TokenCache>, shutdown: CancellationToken) {
    let first = Duration::from_millis(250);
    let mut backoff = first;
    loop {
        let heard = hear(&url, &cache, &shutdown).await;
        cache.set_listening(false);
        match heard {
            Ok(()) => return,
            Err(Lost { listened, why }) => {
                if listened {
                    backoff = first;
                }
                tracing::warn!(error = %why, retry_ms = backoff.as_millis() as u64,
                    "not listening for token revocations; tokens are looked up on every request");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Why listening stopped, and whether it had started.
struct Lost {
    listened: bool,
    why: String,
}

fn lost(listened: bool, why: impl std::fmt::Display) -> Lost {
    Lost {
        listened,
        why: why.to_string(),
    }
}

/// One connection's life: `Ok` on shutdown.
async fn hear(url: &str, cache: &TokenCache, shutdown: &CancellationToken) -> Result<(), Lost> {
    let (client, mut connection) = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        connected = tokio_postgres::connect(url, NoTls) => connected.map_err(|e| lost(false, e))?,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Drives the connection and hands on the notifications it receives.
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = tx.send(Ok(n.payload().to_string()));
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    let result = async {
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(|e| lost(false, e))?;
        // From now on every revocation is heard; nothing looked up before
        // is kept (see `TokenCache::generation`).
        cache.set_listening(true);
        tracing::debug!("listening for token revocations");
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                message = rx.recv() => match message {
                    Some(Ok(payload)) => match Uuid::parse_str(&payload) {
                        Ok(id) => cache.forget(id),
                        // Not a token id: forget everything rather than guess.
                        Err(_) => cache.set_listening(true),
                    },
                    Some(Err(e)) => return Err(lost(true, e)),
                    None => return Err(lost(true, "the connection ended")),
                },
            }
        }
    }
    .await;
    driver.abort();
    result
}
