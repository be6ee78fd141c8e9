//! Aggregators: principals of their own, not accounts. They are created and
//! given tokens by an administrator (`kumo aggregators create`); no request
//! to the REST API can create one or turn an account's token into one.
//!
//! [`Aggregator`] authenticates `/v1/aggregator/…` requests against
//! `aggregator_tokens` only. An account's valid token gets a 403 naming the
//! `aggregator` scope it lacks; anything else the usual 401.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use deadpool_postgres::Pool;
use rand::RngCore;
use uuid::Uuid;

use super::DemandError;
use crate::auth::{bearer_token, token_hash, AGGREGATOR};
use crate::error::ApiError;

/// Aggregator tokens are told apart from account tokens at a glance.
const TOKEN_PREFIX: &str = "kumo_agg_";

/// The aggregator calling a request.
#[derive(Debug, Clone)]
pub struct Aggregator {
    pub id: String,
}

/// Creates an aggregator named `name`; returns its id and first token (shown once).
pub async fn create(pool: &Pool, name: &str) -> Result<(String, String), DemandError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(DemandError::Invalid(
            "an aggregator's name must be 1 to 200 characters".into(),
        ));
    }
    let id = format!("agg-{}", Uuid::new_v4().simple());
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO aggregators (id, name) VALUES ($1, $2)",
        &[&id, &name],
    )
    .await?;
    let token = insert_token(&tx, &id).await?;
    tx.commit().await?;
    Ok((id, token))
}

/// A further token for aggregator `id`.
pub async fn create_token(pool: &Pool, id: &str) -> Result<String, DemandError> {
    let client = pool.get().await?;
    let known = client
        .query_opt("SELECT 1 FROM aggregators WHERE id = $1", &[&id])
        .await?;
    if known.is_none() {
        return Err(DemandError::NotFound(format!("aggregator {id}")));
    }
    insert_token(&client, id).await
}

async fn insert_token(
    db: &impl deadpool_postgres::GenericClient,
    id: &str,
) -> Result<String, DemandError> {
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
    db.execute(
        "INSERT INTO aggregator_tokens (id, aggregator_id, token_hash) VALUES ($1, $2, $3)",
        &[&Uuid::new_v4(), &id, &token_hash(&token)],
    )
    .await?;
    Ok(token)
}

impl<S> FromRequestParts<S> for Aggregator
where
    S: Send + Sync,
    Pool: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let pool = Pool::from_ref(state);
        let token = bearer_token(parts)?;
        let hash = token_hash(token);
        let client = pool.get().await?;
        let lookup = client
            .prepare_cached(
                "SELECT aggregator_id FROM aggregator_tokens
                 WHERE token_hash = $1 AND revoked_at IS NULL",
            )
            .await?;
        if let Some(row) = client.query_opt(&lookup, &[&hash]).await? {
            return Ok(Self { id: row.get(0) });
        }
        let account = client
            .query_opt(
                "SELECT 1 FROM access_tokens WHERE token_hash = $1 AND revoked_at IS NULL
                   AND (expires_at IS NULL OR expires_at > now())",
                &[&hash],
            )
            .await?;
        Err(match account {
            Some(_) => ApiError::forbidden(AGGREGATOR),
            None => ApiError::unauthorized(),
        })
    }
}
