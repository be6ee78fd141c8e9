//! The per-token request limiter and the middleware that puts the
//! `X-Rate-Limit-Limit/Remaining/Reset` headers on every response.
//!
//! A fixed window per key: the SHA-256 of the presented bearer token (so the
//! limiter never learns whether the token exists), or the peer address for
//! requests without one. Counters live in memory; a restart resets them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Keys kept before expired windows are swept out.
const SWEEP_AT: usize = 10_000;
/// Keys kept at most: past this, windows that counted a single request
/// (typically made-up tokens) are forgotten so memory stays bounded.
const MAX_KEYS: usize = 200_000;

/// The outcome of counting one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests allowed per window.
    pub limit: u32,
    /// Requests left in this window after this one.
    pub remaining: u32,
    /// When the window ends, in seconds since the epoch.
    pub reset: u64,
    /// Whether this request is within the limit.
    pub allowed: bool,
}

/// Fixed-window counters keyed by token hash or peer address.
#[derive(Debug)]
pub struct RateLimiter {
    limit: u32,
    window: Duration,
    windows: Mutex<Windows>,
}

/// Window start and count per key, plus when the next sweep may run.
#[derive(Debug, Default)]
struct Windows {
    by_key: HashMap<String, (u64, u32)>,
    next_sweep: u64,
}

impl RateLimiter {
    /// `limit` requests per `window` for each key.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window: window.max(Duration::from_secs(1)),
            windows: Mutex::new(Windows::default()),
        }
    }

    /// Counts one request for `key` at `now` (seconds since the epoch).
    pub fn check_at(&self, key: &str, now: u64) -> Quota {
        let window = self.window.as_secs();
        // A poisoned lock only means another request panicked mid-update; the
        // counters are still usable.
        let mut guard = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let windows = &mut *guard;
        // Sweeping scans every key, so it runs at most once a second.
        if windows.by_key.len() >= SWEEP_AT && now >= windows.next_sweep {
            windows.next_sweep = now + 1;
            windows.by_key.retain(|_, (start, _)| *start + window > now);
            if windows.by_key.len() >= MAX_KEYS {
                windows.by_key.retain(|_, (_, count)| *count > 1);
            }
        }
        let entry = windows.by_key.entry(key.to_string()).or_insert((now, 0));
        if entry.0 + window <= now {
            *entry = (now, 0);
        }
        let allowed = entry.1 < self.limit;
        if allowed {
            entry.1 += 1;
        }
        Quota {
            limit: self.limit,
            remaining: self.limit - entry.1,
            reset: entry.0 + window,
            allowed,
        }
    }

    /// Counts one request for `key` now.
    pub fn check(&self, key: &str) -> Quota {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        self.check_at(key, now)
    }
}

/// The limiter key of a request: its bearer token's hash, else the peer address.
fn key_of(headers: &HeaderMap, peer: Option<SocketAddr>) -> String {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer);
    match (token, peer) {
        (Some(token), _) => format!("t:{}", hex::encode(Sha256::digest(token.as_bytes()))),
        (None, Some(peer)) => format!("ip:{}", peer.ip()),
        (None, None) => "anonymous".into(),
    }
}

/// Middleware: counts the request, answers 429001 over the limit, and sets the
/// three rate-limit headers on whatever response goes out.
pub async fn limit(State(limiter): State<Arc<RateLimiter>>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let quota = limiter.check(&key_of(req.headers(), peer));
    let mut response = if quota.allowed {
        next.run(req).await
    } else {
        ApiError::too_many_requests().into_response()
    };
    let headers = response.headers_mut();
    headers.insert("x-rate-limit-limit", HeaderValue::from(quota.limit));
    headers.insert("x-rate-limit-remaining", HeaderValue::from(quota.remaining));
    headers.insert("x-rate-limit-reset", HeaderValue::from(quota.reset));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_applies_per_key_and_resets_with_the_window() {
        let l = RateLimiter::new(2, Duration::from_secs(60));
        assert!(l.check_at("a", 100).allowed);
        let second = l.check_at("a", 110);
        assert_eq!(
            (second.allowed, second.remaining, second.reset),
            (true, 0, 160)
        );
        assert!(!l.check_at("a", 120).allowed);
        assert!(
            l.check_at("b", 120).allowed,
            "another key has its own window"
        );
        let fresh = l.check_at("a", 160);
        assert_eq!(
            (fresh.allowed, fresh.remaining, fresh.reset),
            (true, 1, 220)
        );
    }
}
