//! Bearer-token authentication and scope checks.
//!
//! Tokens are random, shown once, and stored only as SHA-256. Missing,
//! malformed, unknown, revoked and expired tokens all get the same 401 so a
//! response never says whether a token existed. Scopes follow Nature's OAuth
//! scopes; a handler states the one it needs with [`Caller::require`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use deadpool_postgres::Pool;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::ApiError;

/// Nature's combined scope: `basic.read` and `basic.write`.
pub const BASIC: &str = "basic";
/// Read the account, its devices, appliances and signals.
pub const BASIC_READ: &str = "basic.read";
/// Change names, offsets, appliances and signals; manage tokens.
pub const BASIC_WRITE: &str = "basic.write";
/// Send commands to devices (signals, aircon, TV, light, floor heater,
/// light projector, SESAME bot and its BLE macros).
pub const SENDIR: &str = "sendir";
/// Send raw IR messages (accepted for Nature compatibility).
pub const SENDRAWIR: &str = "sendrawir";
/// Use appliance detection.
pub const DETECT_APPLIANCE: &str = "detectappliance";
/// Create, list and revoke claim codes that enrol devices into the account.
pub const PROVISION: &str = "provision";
/// Refresh ECHONET Lite properties (Nature's scope, for every class).
pub const ECHONETLITE_READ: &str = "echonetlite.*.read";
/// Set ECHONET Lite properties (Nature's scope, for every class).
pub const ECHONETLITE_WRITE: &str = "echonetlite.*.write";
/// Nature's combined home scope: `home.read` and `home.write`.
pub const HOME: &str = "home";
/// Read homes, their members and devices, and invites.
pub const HOME_READ: &str = "home.read";
/// Create and change homes, invite, accept, kick, part, transfer, geofence.
pub const HOME_WRITE: &str = "home.write";
/// Demand-response aggregator routes (`/v1/aggregator/…`). Held only by the
/// tokens of an aggregator, which `kumo aggregators create` issues; no
/// account's token can carry it.
pub const AGGREGATOR: &str = "aggregator";
/// Every scope an account's token can carry, in the order `kumo tokens create` documents them.
pub const ALL_SCOPES: &[&str] = &[
    BASIC,
    BASIC_READ,
    BASIC_WRITE,
    SENDIR,
    SENDRAWIR,
    DETECT_APPLIANCE,
    PROVISION,
    ECHONETLITE_READ,
    ECHONETLITE_WRITE,
    HOME,
    HOME_READ,
    HOME_WRITE,
];

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The account (user) id.
    pub user_id: String,
    /// The token's row id.
    pub token_id: Uuid,
    /// Scopes granted to the token.
    pub scopes: Vec<String>,
}

impl Caller {
    /// Whether the token carries `scope` (`basic` covers `basic.read` and
    /// `basic.write`, `home` covers `home.read` and `home.write`).
    pub fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| {
            s == scope
                || (s == BASIC && scope.starts_with("basic."))
                || (s == HOME && scope.starts_with("home."))
        })
    }

    /// A 403 unless the token carries `scope`.
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(scope))
        }
    }
}

/// The token in an `Authorization` header value, if it is a bearer token.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The request's bearer token; 401 without one.
pub fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .ok_or_else(ApiError::unauthorized)
}

/// What the database stores for a token.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Tokens this bridge accepted a moment ago, so a client sending request
/// after request waits for the database once per `bridge.auth_cache_secs`,
/// not once per request. It trusts an entry only while the bridge listens
/// for revocations (`crate::revocations`): a revoked token is forgotten the
/// moment PostgreSQL tells, wherever it was revoked, and everything is
/// forgotten when the listening connection is lost. An entry never
/// outlives its token's expiry; unknown tokens are never kept.
#[derive(Debug)]
pub struct TokenCache {
    ttl: Duration,
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    /// Whether revocations are being heard (nothing is trusted otherwise).
    listening: bool,
    /// Moves on with every revocation heard and every change of
    /// `listening`: a lookup that started before it moved may have read a
    /// token revoked since, so its result is not kept.
    generation: u64,
    by_hash: HashMap<Vec<u8>, (Caller, Instant)>,
}

/// Most tokens kept at once; past it, expired entries go, then all.
const TOKEN_CACHE_MAX: usize = 10_000;

impl TokenCache {
    /// Keeps an accepted token for `ttl` (zero: never) once listening.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            inner: Mutex::new(Entries::default()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, hash: &[u8]) -> Option<Caller> {
        let entries = self.entries();
        let (caller, until) = entries.by_hash.get(hash)?;
        (entries.listening && Instant::now() < *until).then(|| caller.clone())
    }

    /// Where revocations stand, read before a lookup starts.
    fn generation(&self) -> u64 {
        self.entries().generation
    }

    /// Keeps what a lookup that started at `generation` found.
    fn put(
        &self,
        generation: u64,
        hash: Vec<u8>,
        caller: &Caller,
        expires_at: Option<OffsetDateTime>,
    ) {
        let mut ttl = self.ttl;
        if let Some(expires_at) = expires_at {
            let left = expires_at - OffsetDateTime::now_utc();
            ttl = ttl.min(Duration::try_from(left).unwrap_or(Duration::ZERO));
        }
        let now = Instant::now();
        let mut entries = self.entries();
        if ttl.is_zero() || !entries.listening || entries.generation != generation {
            return;
        }
        if entries.by_hash.len() >= TOKEN_CACHE_MAX {
            entries.by_hash.retain(|_, (_, until)| now < *until);
            if entries.by_hash.len() >= TOKEN_CACHE_MAX {
                entries.by_hash.clear();
            }
        }
        entries.by_hash.insert(hash, (caller.clone(), now + ttl));
    }

    /// Forgets token `token_id` (revoked): refused from the next request on.
    pub fn forget(&self, token_id: Uuid) {
        let mut entries = self.entries();
        entries.generation += 1;
        entries
            .by_hash
            .retain(|_, (caller, _)| caller.token_id != token_id);
    }

    /// Whether revocations are heard: `false` forgets every token and keeps
    /// none until `true` again.
    pub fn set_listening(&self, listening: bool) {
        let mut entries = self.entries();
        entries.listening = listening;
        entries.generation += 1;
        entries.by_hash.clear();
    }

    /// How many tokens are trusted now (for tests and metrics).
    pub fn len(&self) -> usize {
        let entries = self.entries();
        let now = Instant::now();
        if !entries.listening {
            return 0;
        }
        entries
            .by_hash
            .values()
            .filter(|(_, until)| now < *until)
            .count()
    }

    /// Whether no token is trusted now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Pool: FromRef<S>,
    Arc<TokenCache>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = bearer_token(parts)?;
        let hash = token_hash(token);
        let cache = Arc::<TokenCache>::from_ref(state);
        if let Some(caller) = cache.get(&hash) {
            return Ok(caller);
        }
        let generation = cache.generation();
        let pool = Pool::from_ref(state);
        let client = pool.get().await?;
        // Every request without a kept token runs this: prepared once per pooled connection.
        let lookup = client
            .prepare_cached(
                "SELECT id, user_id, scopes,
                        last_used_at IS NULL OR last_used_at < now() - interval '1 minute',
                        expires_at
                 FROM access_tokens
                 WHERE token_hash = $1 AND revoked_at IS NULL
                   AND (expires_at IS NULL OR expires_at > now())",
            )
            .await?;
        let row = client
            .query_opt(&lookup, &[&hash])
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        drop(client);
        let caller = Self {
            token_id: row.get(0),
            user_id: row.get(1),
            scopes: row.get(2),
        };
        cache.put(generation, hash, &caller, row.get(4));
        if row.get::<_, bool>(3) {
            // Bookkeeping only: at most one write a minute per token, off the request path.
            let id = caller.token_id;
            tokio::spawn(async move {
                if let Ok(client) = pool.get().await {
                    let _ = client
                        .execute(
                            "UPDATE access_tokens SET last_used_at = now() WHERE id = $1",
                            &[&id],
                        )
                        .await;
                }
            });
        }
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(id: Uuid) -> Caller {
        Caller {
            user_id: "u".into(),
            token_id: id,
            scopes: vec![BASIC.into()],
        }
    }

    fn listening(ttl: Duration) -> TokenCache {
        let cache = TokenCache::new(ttl);
        cache.set_listening(true);
        cache
    }

    #[test]
    fn a_token_is_kept_only_while_listening_and_for_its_time() {
        let (id, hash) = (Uuid::new_v4(), token_hash("t"));
        let cache = TokenCache::new(Duration::from_secs(10));
        cache.put(cache.generation(), hash.clone(), &caller(id), None);
        assert!(cache.get(&hash).is_none(), "not listening: nothing kept");
        cache.set_listening(true);
        cache.put(cache.generation(), hash.clone(), &caller(id), None);
        assert_eq!(cache.get(&hash).map(|c| c.token_id), Some(id));
        cache.set_listening(false);
        assert!(cache.get(&hash).is_none(), "forgotten when listening stops");
        let cache = listening(Duration::ZERO);
        cache.put(cache.generation(), hash.clone(), &caller(id), None);
        assert!(cache.get(&hash).is_none(), "0 s: never kept");
    }

    #[test]
    fn an_entry_never_outlives_the_tokens_expiry() {
        let hash = token_hash("t");
        let cache = listening(Duration::from_secs(10));
        let soon = OffsetDateTime::now_utc() + time::Duration::milliseconds(30);
        cache.put(
            cache.generation(),
            hash.clone(),
            &caller(Uuid::new_v4()),
            Some(soon),
        );
        assert!(cache.get(&hash).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get(&hash).is_none());
        let gone = OffsetDateTime::now_utc() - time::Duration::seconds(1);
        cache.put(
            cache.generation(),
            hash.clone(),
            &caller(Uuid::new_v4()),
            Some(gone),
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn a_revocation_heard_during_a_lookup_keeps_its_result_out() {
        let (id, hash) = (Uuid::new_v4(), token_hash("t"));
        let other = (Uuid::new_v4(), token_hash("u"));
        let cache = listening(Duration::from_secs(10));
        cache.put(cache.generation(), other.1.clone(), &caller(other.0), None);
        let started = cache.generation();
        // The lookup read the token; then its revocation was heard.
        cache.forget(id);
        cache.put(started, hash.clone(), &caller(id), None);
        assert!(cache.get(&hash).is_none());
        // Forgetting one token leaves the others.
        assert!(cache.get(&other.1).is_some());
        cache.forget(other.0);
        assert!(cache.get(&other.1).is_none());
    }

    #[test]
    fn a_full_cache_makes_room() {
        let cache = listening(Duration::from_secs(10));
        for i in 0..TOKEN_CACHE_MAX + 5 {
            let hash = token_hash(&i.to_string());
            cache.put(cache.generation(), hash, &caller(Uuid::new_v4()), None);
        }
        assert!(cache.len() <= TOKEN_CACHE_MAX, "{}", cache.len());
        assert!(cache
            .get(&token_hash(&(TOKEN_CACHE_MAX + 4).to_string()))
            .is_some());
    }

    #[test]
    fn only_bearer_tokens_are_accepted() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }
}
