//! Claim codes: created for an account, shown once, stored as a hash;
//! redeemed atomically (expiry, revocation and uses checked in one
//! statement); and the audit trail of every provisioning attempt.

use deadpool_postgres::{GenericClient, Pool};
use rand::RngCore;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::DbError;

/// Unambiguous base-32 (no I, L, O, U): 5 bits a character.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// 20 characters: 100 bits of randomness.
const CODE_CHARS: usize = 20;

/// A claim code as listed (never the code itself).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClaimCode {
    pub id: Uuid,
    pub uses: i32,
    pub uses_left: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// A fresh random code, `XXXXX-XXXXX-XXXXX-XXXXX`.
fn new_code() -> String {
    let mut bytes = [0u8; CODE_CHARS];
    rand::thread_rng().fill_bytes(&mut bytes);
    let chars: Vec<char> = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    chars
        .chunks(5)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// The stored form of a code: SHA-256 of its canonical spelling (upper
/// case, no separators), so `abcde-fghij…` and `ABCDEFGHIJ…` are the same code.
pub fn code_hash(code: &str) -> Vec<u8> {
    let canonical: String = code
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    Sha256::digest(canonical.as_bytes()).to_vec()
}

fn from_row(r: &tokio_postgres::Row) -> ClaimCode {
    ClaimCode {
        id: r.get(0),
        uses: r.get(1),
        uses_left: r.get(2),
        created_at: r.get(3),
        expires_at: r.get(4),
        revoked_at: r.get(5),
    }
}

const COLUMNS: &str = "id, uses, uses_left, created_at, expires_at, revoked_at";

/// Creates a code for `user`; returns it as listed and its plaintext.
pub async fn create(
    pool: &Pool,
    user: &str,
    uses: i32,
    ttl: time::Duration,
) -> Result<(ClaimCode, String), DbError> {
    let code = new_code();
    let client = pool.get().await?;
    let row = client
        .query_one(
            &format!(
                "INSERT INTO claim_codes (id, user_id, code_hash, uses, uses_left, expires_at)
                 VALUES ($1, $2, $3, $4, $4, now() + make_interval(secs => $5))
                 RETURNING {COLUMNS}"
            ),
            &[
                &Uuid::new_v4(),
                &user,
                &code_hash(&code),
                &uses,
                &(ttl.whole_seconds() as f64),
            ],
        )
        .await?;
    Ok((from_row(&row), code))
}

/// `user`'s codes, newest first.
pub async fn list(pool: &Pool, user: &str) -> Result<Vec<ClaimCode>, DbError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM claim_codes WHERE user_id = $1
                 ORDER BY created_at DESC, id LIMIT 200"
            ),
            &[&user],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Revokes one of `user`'s codes; `false` if it has none with that id.
pub async fn revoke(pool: &Pool, user: &str, id: Uuid) -> Result<bool, DbError> {
    let client = pool.get().await?;
    let n = client
        .execute(
            "UPDATE claim_codes SET revoked_at = coalesce(revoked_at, now())
             WHERE id = $1 AND user_id = $2",
            &[&id, &user],
        )
        .await?;
    Ok(n == 1)
}

/// What a presented code turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// Valid: one use taken; the account and the code's id.
    Account {
        user: String,
        code: Uuid,
    },
    /// Known, but expired, revoked or used up.
    Spent(Uuid),
    Unknown,
}

/// Takes one use of `code` if it is valid, in the caller's transaction.
pub async fn redeem(client: &impl GenericClient, code: &str) -> Result<Redeemed, DbError> {
    let hash = code_hash(code);
    let taken = client
        .query_opt(
            "UPDATE claim_codes SET uses_left = uses_left - 1
             WHERE code_hash = $1 AND uses_left > 0 AND revoked_at IS NULL
               AND expires_at > now()
             RETURNING user_id, id",
            &[&hash],
        )
        .await?;
    if let Some(r) = taken {
        return Ok(Redeemed::Account {
            user: r.get(0),
            code: r.get(1),
        });
    }
    let known = client
        .query_opt("SELECT id FROM claim_codes WHERE code_hash = $1", &[&hash])
        .await?;
    Ok(known.map_or(Redeemed::Unknown, |r| Redeemed::Spent(r.get(0))))
}

/// One audit row.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    pub remote: &'a str,
    pub code: Option<Uuid>,
    pub outcome: &'a str,
    pub device: Option<&'a str>,
    pub serial: Option<&'a str>,
}

/// Records a provisioning attempt.
pub async fn audit(client: &impl GenericClient, a: &Attempt<'_>) -> Result<(), DbError> {
    client
        .execute(
            "INSERT INTO provisioning_attempts (remote, claim_code, outcome, device_id, serial)
             VALUES ($1, $2, $3, $4, $5)",
            &[&a.remote, &a.code, &a.outcome, &a.device, &a.serial],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_carry_100_bits_and_their_spelling_does_not_matter() {
        let c = new_code();
        assert_eq!(c.len(), 23, "{c}");
        assert_ne!(c, new_code());
        assert_eq!(code_hash(&c), code_hash(&c.to_lowercase().replace('-', "")));
    }
}
