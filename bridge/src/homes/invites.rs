//! Home invites: a random token (128 bits) the owner hands to someone, who
//! accepts it to become a member. Only its SHA-256 is stored; it expires and
//! is good for one acceptance, which is recorded atomically.

use deadpool_postgres::Pool;
use rand::RngCore;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::{HomeError, Role};
use crate::auth::token_hash;

/// Every invite token starts with this (it tells a reader what it is).
const PREFIX: &str = "inv_";

/// An invite as its holder sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Invite {
    pub home_id: String,
    pub home_name: String,
    /// Who made it.
    pub user_id: String,
    pub user_nickname: String,
    pub expires_at: OffsetDateTime,
}

/// Makes an invite to home `id` (the owner only) valid for `ttl`; returns the
/// token — shown this once — and the invite.
pub async fn create_invite(
    pool: &Pool,
    user: &str,
    id: &str,
    ttl: Duration,
) -> Result<(String, Invite), HomeError> {
    let mut secret = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut secret);
    let token = format!("{PREFIX}{}", hex::encode(secret));
    let client = pool.get().await?;
    let role = client
        .query_opt(
            "SELECT role FROM home_members WHERE home_id = $1 AND user_id = $2",
            &[&id, &user],
        )
        .await?
        .map(|r| Role::parse(r.get(0)))
        .ok_or_else(|| HomeError::NotFound(id.into()))?;
    if role != Role::Owner {
        return Err(HomeError::NotOwner(id.into()));
    }
    let expires_at = OffsetDateTime::now_utc() + ttl;
    client
        .execute(
            "INSERT INTO home_invites (id, home_id, token_hash, created_by, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &Uuid::new_v4(),
                &id,
                &token_hash(&token),
                &user,
                &expires_at,
            ],
        )
        .await?;
    let invite = show_invite(pool, &token).await?;
    Ok((token, invite))
}

/// The invite behind `token`, if it can still be accepted.
pub async fn show_invite(pool: &Pool, token: &str) -> Result<Invite, HomeError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT h.id, h.name, u.id, u.nickname, i.expires_at, i.used_at IS NOT NULL,
                    i.expires_at <= now()
             FROM home_invites i JOIN homes h ON h.id = i.home_id
             JOIN users u ON u.id = i.created_by
             WHERE i.token_hash = $1",
            &[&token_hash(token)],
        )
        .await?
        .ok_or(HomeError::NoInvite)?;
    if row.get(5) {
        return Err(HomeError::InviteUsed);
    }
    if row.get(6) {
        return Err(HomeError::InviteExpired);
    }
    Ok(Invite {
        home_id: row.get(0),
        home_name: row.get(1),
        user_id: row.get(2),
        user_nickname: row.get(3),
        expires_at: row.get(4),
    })
}

/// `user` accepts the invite behind `token` and joins its home; returns the
/// home's id. Used up only if it makes `user` a member.
pub async fn accept_invite(pool: &Pool, user: &str, token: &str) -> Result<String, HomeError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT id, home_id, used_at IS NOT NULL, expires_at <= now()
             FROM home_invites WHERE token_hash = $1 FOR UPDATE",
            &[&token_hash(token)],
        )
        .await?
        .ok_or(HomeError::NoInvite)?;
    let (invite, home): (Uuid, String) = (row.get(0), row.get(1));
    if row.get(2) {
        return Err(HomeError::InviteUsed);
    }
    if row.get(3) {
        return Err(HomeError::InviteExpired);
    }
    let joined = tx
        .execute(
            "INSERT INTO home_members (home_id, user_id, role) VALUES ($1, $2, 'member')
             ON CONFLICT (home_id, user_id) DO NOTHING",
            &[&home, &user],
        )
        .await?;
    if joined == 0 {
        return Err(HomeError::AlreadyMember);
    }
    tx.execute(
        "UPDATE home_invites SET used_at = now(), used_by = $2 WHERE id = $1",
        &[&invite, &user],
    )
    .await?;
    tx.commit().await?;
    Ok(home)
}
