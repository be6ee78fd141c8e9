//! Access tokens: scopes, creation (the only place a plaintext token exists),
//! listing and revocation.

use deadpool_postgres::Pool;
use rand::RngCore;
use time::OffsetDateTime;
use uuid::Uuid;

use super::AccountError;
use crate::auth::{token_hash, ALL_SCOPES};

/// Prefix that makes Kumo tokens recognisable in logs and secret scanners.
const TOKEN_PREFIX: &str = "kumo_";

/// A token as listed: never the token itself.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
}

/// Checks scope names against [`ALL_SCOPES`].
pub fn validate_scopes<S: AsRef<str>>(scopes: &[S]) -> Result<Vec<String>, AccountError> {
    if scopes.is_empty() {
        return Err(AccountError::NoScopes);
    }
    let mut out: Vec<String> = Vec::new();
    for s in scopes {
        let s = s.as_ref();
        if !ALL_SCOPES.contains(&s) {
            return Err(AccountError::UnknownScope(s.into()));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.into());
        }
    }
    Ok(out)
}

/// Creates a token for `user_id` and returns its plaintext, which is shown once.
pub async fn create_token<S: AsRef<str>>(
    pool: &Pool,
    user_id: &str,
    scopes: &[S],
    name: &str,
) -> Result<String, AccountError> {
    create_token_expiring(pool, user_id, scopes, name, None).await
}

/// [`create_token`] with an optional expiry.
pub async fn create_token_expiring<S: AsRef<str>>(
    pool: &Pool,
    user_id: &str,
    scopes: &[S],
    name: &str,
    expires_at: Option<OffsetDateTime>,
) -> Result<String, AccountError> {
    let scopes = validate_scopes(scopes)?;
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
    let client = pool.get().await?;
    let inserted = client
        .execute(
            "INSERT INTO access_tokens (id, user_id, token_hash, name, scopes, expires_at)
             SELECT $1, id, $3, $4, $5, $6 FROM users WHERE id = $2",
            &[
                &Uuid::new_v4(),
                &user_id,
                &token_hash(&token),
                &name,
                &scopes,
                &expires_at,
            ],
        )
        .await?;
    if inserted == 0 {
        return Err(AccountError::NoSuchUser(user_id.into()));
    }
    Ok(token)
}

/// Every token of `user_id`, newest first.
pub async fn list_tokens(pool: &Pool, user_id: &str) -> Result<Vec<TokenInfo>, AccountError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, name, scopes, created_at, expires_at, revoked_at, last_used_at
             FROM access_tokens WHERE user_id = $1 ORDER BY created_at DESC, id",
            &[&user_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| TokenInfo {
            id: r.get(0),
            name: r.get(1),
            scopes: r.get(2),
            created_at: r.get(3),
            expires_at: r.get(4),
            revoked_at: r.get(5),
            last_used_at: r.get(6),
        })
        .collect())
}

/// Revokes a token of `user_id`; `false` if it has none with that id.
pub async fn revoke_token(
    pool: &Pool,
    user_id: &str,
    token_id: Uuid,
) -> Result<bool, AccountError> {
    Ok(revoke(pool, token_id, Some(user_id)).await?.is_some())
}

/// Revokes token `token_id` (of `owner`, when given); returns its owner, or
/// `None` if there is no such token.
async fn revoke(
    pool: &Pool,
    token_id: Uuid,
    owner: Option<&str>,
) -> Result<Option<String>, AccountError> {
    let client = pool.get().await?;
    // Every bridge hears it (`crate::revocations`) once this commits.
    let row = client
        .query_opt(
            "WITH revoked AS (
                 UPDATE access_tokens SET revoked_at = coalesce(revoked_at, now())
                 WHERE id = $1 AND ($2::text IS NULL OR user_id = $2) RETURNING id, user_id)
             SELECT user_id, pg_notify('kumo_token_revoked', id::text) FROM revoked",
            &[&token_id, &owner],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Revokes token `token_id` whoever owns it; returns the owner, or `None` if
/// there is no such token.
pub async fn revoke_any_token(pool: &Pool, token_id: &str) -> Result<Option<String>, AccountError> {
    let Ok(token_id) = Uuid::parse_str(token_id) else {
        return Ok(None);
    };
    revoke(pool, token_id, None).await
}
