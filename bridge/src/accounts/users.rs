//! Accounts: creating one and listing them for the operator.

use deadpool_postgres::Pool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::AccountError;

/// A Kumo account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Account id (a UUID string, as Nature's user ids are).
    pub id: String,
    pub nickname: String,
    pub email: Option<String>,
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

/// An account's profile as `/1/users/me` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub id: String,
    pub nickname: String,
    /// `c` or `f`.
    pub temp_unit: String,
    /// `metric` or `imperial`.
    pub distance_unit: String,
    /// ISO 3166 alpha-2.
    pub country: String,
}

/// Profile fields to change (validated by the caller); `None` keeps one.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProfileChange<'a> {
    pub nickname: Option<&'a str>,
    pub temp_unit: Option<&'a str>,
    pub distance_unit: Option<&'a str>,
    pub country: Option<&'a str>,
}

fn profile_of(r: &tokio_postgres::Row) -> Profile {
    Profile {
        id: r.get(0),
        nickname: r.get(1),
        temp_unit: r.get(2),
        distance_unit: r.get(3),
        country: r.get(4),
    }
}

/// The profile of account `id`, if it exists.
pub async fn profile(pool: &Pool, id: &str) -> Result<Option<Profile>, AccountError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT id, nickname, temp_unit, distance_unit, country FROM users WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(row.as_ref().map(profile_of))
}

/// Applies `change` to account `id`; the profile after, if it exists.
pub async fn update_profile(
    pool: &Pool,
    id: &str,
    change: &ProfileChange<'_>,
) -> Result<Option<Profile>, AccountError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "UPDATE users SET nickname = coalesce($2, nickname),
                 temp_unit = coalesce($3, temp_unit),
                 distance_unit = coalesce($4, distance_unit),
                 country = coalesce($5, country), updated_at = now()
             WHERE id = $1
             RETURNING id, nickname, temp_unit, distance_unit, country",
            &[
                &id,
                &change.nickname,
                &change.temp_unit,
                &change.distance_unit,
                &change.country,
            ],
        )
        .await?;
    Ok(row.as_ref().map(profile_of))
}
