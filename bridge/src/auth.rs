//! Bearer-token authentication and scope checks.
//!
//! Tokens are random, shown once, and stored only as SHA-256. Missing,
//! malformed, unknown, revoked and expired tokens all get the same 401 so a
//! response never says whether a token existed. Scopes follow Nature's OAuth
//! scopes; a handler states the one it needs with [`Caller::require`].

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use deadpool_postgres::Pool;
use sha2::{Digest, Sha256};
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

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Pool: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let pool = Pool::from_ref(state);
        let token = bearer_token(parts)?;
        let client = pool.get().await?;
        // Every request runs this: prepared once per pooled connection.
        let lookup = client
            .prepare_cached(
                "SELECT id, user_id, scopes,
                        last_used_at IS NULL OR last_used_at < now() - interval '1 minute'
                 FROM access_tokens
                 WHERE token_hash = $1 AND revoked_at IS NULL
                   AND (expires_at IS NULL OR expires_at > now())",
            )
            .await?;
        let row = client
            .query_opt(&lookup, &[&token_hash(token)])
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        let caller = Self {
            token_id: row.get(0),
            user_id: row.get(1),
            scopes: row.get(2),
        };
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

    #[test]
    fn only_bearer_tokens_are_accepted() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }
}
