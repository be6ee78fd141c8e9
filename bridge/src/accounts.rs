//! Accounts, access tokens and device ownership as a library, for the CLI
//! (`kumo users …`, `kumo tokens …`, `kumo devices …`), the `/v1` token endpoints,
//! `/1/devices/{id}/delete` and the readers of `device_ownership_log`.
//!
//! Plaintext tokens exist only in the return value of [`create_token`].

use deadpool_postgres::{GenericClient, Pool};
use kumo_contract::DeviceId;
use rand::RngCore;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::{token_hash, ALL_SCOPES};
use crate::db::{db_error_from, DbError};

/// Prefix that makes Kumo tokens recognisable in logs and secret scanners.
const TOKEN_PREFIX: &str = "kumo_";

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("unknown scope {0:?}; known scopes: basic, basic.read, basic.write, sendir, sendrawir, detectappliance")]
    UnknownScope(String),
    #[error("a token needs at least one scope")]
    NoScopes,
    #[error("no user with id {0}")]
    NoSuchUser(String),
    #[error("the email address {0} is already taken")]
    EmailTaken(String),
    #[error("nickname must not be empty")]
    EmptyNickname,
}

db_error_from!(AccountError);

/// A Kumo account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Account id (a UUID string, as Nature's user ids are).
    pub id: String,
    pub nickname: String,
    pub email: Option<String>,
}

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

/// Creates an account.
pub async fn create_user(
    pool: &Pool,
    nickname: &str,
    email: Option<&str>,
) -> Result<User, AccountError> {
    if nickname.trim().is_empty() {
        return Err(AccountError::EmptyNickname);
    }
    let client = pool.get().await?;
    let id = Uuid::new_v4().to_string();
    let inserted = client
        .execute(
            "INSERT INTO users (id, nickname, email) VALUES ($1, $2, $3)
             ON CONFLICT (email) DO NOTHING",
            &[&id, &nickname, &email],
        )
        .await?;
    if inserted == 0 {
        return Err(AccountError::EmailTaken(email.unwrap_or_default().into()));
    }
    Ok(User {
        id,
        nickname: nickname.into(),
        email: email.map(str::to_string),
    })
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
    let row = client
        .query_opt(
            "UPDATE access_tokens SET revoked_at = coalesce(revoked_at, now())
             WHERE id = $1 AND ($2::text IS NULL OR user_id = $2) RETURNING user_id",
            &[&token_id, &owner],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// What kind of device a registration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// An IR remote with sensors.
    Remo,
    /// A smart-meter gateway; gets an `EL_SMART_METER` appliance.
    SmartMeter,
}

/// Gives `device_id` to `user_id` (creating the device row if needed). A smart
/// meter also gets its `EL_SMART_METER` appliance, as in Nature's API.
pub async fn register_device(
    pool: &Pool,
    device_id: &DeviceId,
    user_id: &str,
    kind: DeviceKind,
    name: &str,
) -> Result<(), AccountError> {
    let kind_text = match kind {
        DeviceKind::Remo => "remo",
        DeviceKind::SmartMeter => "smart_meter",
    };
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let n = tx
        .execute(
            "INSERT INTO devices (id, user_id, kind, name)
             SELECT $1, id, $3, $4 FROM users WHERE id = $2
             ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id,
                 kind = EXCLUDED.kind, name = EXCLUDED.name, updated_at = now()",
            &[&device_id.as_str(), &user_id, &kind_text, &name],
        )
        .await?;
    if n == 0 {
        return Err(AccountError::NoSuchUser(user_id.into()));
    }
    // A device changing hands leaves the previous owner's appliances and
    // signals behind: they are that owner's data, not the new one's.
    tx.execute(
        "DELETE FROM appliances WHERE device_id = $1 AND user_id <> $2",
        &[&device_id.as_str(), &user_id],
    )
    .await?;
    if kind == DeviceKind::SmartMeter {
        tx.execute(
            "INSERT INTO appliances (id, user_id, device_id, type, nickname, image)
             SELECT $1, $2, $3, 'EL_SMART_METER', $4, 'ico_smartmeter'
             WHERE NOT EXISTS (SELECT 1 FROM appliances
                               WHERE device_id = $3 AND type = 'EL_SMART_METER')",
            &[
                &Uuid::new_v4().to_string(),
                &user_id,
                &device_id.as_str(),
                &name,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// An account as the operator lists it.
#[derive(Debug, Clone)]
pub struct UserSummary {
    pub id: String,
    pub nickname: String,
    pub email: Option<String>,
    pub created_at: OffsetDateTime,
    /// Devices it owns.
    pub devices: i64,
}

/// Every account, oldest first.
pub async fn list_users(pool: &Pool) -> Result<Vec<UserSummary>, AccountError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT u.id, u.nickname, u.email, u.created_at,
                    (SELECT count(*) FROM devices d WHERE d.user_id = u.id)
             FROM users u ORDER BY u.created_at, u.id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| UserSummary {
            id: r.get(0),
            nickname: r.get(1),
            email: r.get(2),
            created_at: r.get(3),
            devices: r.get(4),
        })
        .collect())
}

/// A device as the operator lists it.
#[derive(Debug, Clone)]
pub struct DeviceSummary {
    pub id: String,
    /// The owning account; `None` once released.
    pub user_id: Option<String>,
    pub kind: String,
    pub name: String,
    pub online: bool,
    pub node_id: Option<String>,
    pub last_seen_at: Option<OffsetDateTime>,
}

/// Every device, or those of `user_id`, by id.
pub async fn list_devices(
    pool: &Pool,
    user_id: Option<&str>,
) -> Result<Vec<DeviceSummary>, AccountError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, user_id, kind, name, online, node_id, last_seen_at FROM devices
             WHERE $1::text IS NULL OR user_id = $1 ORDER BY id",
            &[&user_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| DeviceSummary {
            id: r.get(0),
            user_id: r.get(1),
            kind: r.get(2),
            name: r.get(3),
            online: r.get(4),
            node_id: r.get(5),
            last_seen_at: r.get(6),
        })
        .collect())
}

/// Releases `device_id` from its account (only if `owner` owns it, when
/// given): the device belongs to nobody and the account's appliances on it are
/// gone. `POST /1/devices/{id}/delete` and `kumo devices remove` both do this.
/// `false` if there is no such device (of `owner`).
pub async fn release_device(
    pool: &Pool,
    device_id: &str,
    owner: Option<&str>,
) -> Result<bool, AccountError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let released = tx
        .query_opt(
            "UPDATE devices d SET user_id = NULL, updated_at = now()
             FROM (SELECT user_id FROM devices WHERE id = $1) prev
             WHERE d.id = $1 AND ($2::text IS NULL OR d.user_id = $2)
             RETURNING prev.user_id",
            &[&device_id, &owner],
        )
        .await?;
    let Some(row) = released else {
        return Ok(false);
    };
    let previous: Option<String> = row.get(0);
    tx.execute(
        "DELETE FROM appliances WHERE device_id = $1 AND user_id = $2",
        &[&device_id, &previous],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Revokes token `token_id` whoever owns it; returns the owner, or `None` if
/// there is no such token.
pub async fn revoke_any_token(pool: &Pool, token_id: &str) -> Result<Option<String>, AccountError> {
    let Ok(token_id) = Uuid::parse_str(token_id) else {
        return Ok(None);
    };
    revoke(pool, token_id, None).await
}

/// One row of `device_ownership_log` (migration 0005): its sequence number,
/// the device, and the device's owner now (`None`: deleted or released).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnershipChange {
    pub seq: i64,
    pub device_id: String,
    pub owner: Option<String>,
}

/// The log's end: rows become visible in sequence order (see the migration),
/// so every change committed later has a larger number.
pub async fn ownership_log_end(client: &impl GenericClient) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT coalesce(max(seq), 0) FROM device_ownership_log",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Up to `limit` changes after `after`, oldest first, each with the device's
/// current owner (reading a row twice is harmless).
pub async fn ownership_changes(
    client: &impl GenericClient,
    after: i64,
    limit: i64,
) -> Result<Vec<OwnershipChange>, tokio_postgres::Error> {
    let read = client
        .prepare_cached(
            "SELECT l.seq, l.device_id, d.user_id
             FROM device_ownership_log l LEFT JOIN devices d ON d.id = l.device_id
             WHERE l.seq > $1 ORDER BY l.seq LIMIT $2",
        )
        .await?;
    let rows = client.query(&read, &[&after, &limit]).await?;
    Ok(rows
        .iter()
        .map(|r| OwnershipChange {
            seq: r.get(0),
            device_id: r.get(1),
            owner: r.get(2),
        })
        .collect())
}
