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
