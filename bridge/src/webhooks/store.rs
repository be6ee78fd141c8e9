//! SQL for webhooks, the account secret and the delivery log. Every query
//! that takes a user id is scoped to it, so one account never sees another's.

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use tokio_postgres::{Client, Row};
use uuid::Uuid;

use crate::json::rfc3339;

/// A webhook as the API shows it (never its secret).
#[derive(Debug, Clone, Serialize)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub enabled: bool,
    pub consecutive_failures: i32,
    pub disabled_at: Option<String>,
    pub disabled_reason: Option<String>,
    pub created_at: String,
}

/// What creating a webhook needs.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub url: String,
    pub events: Vec<String>,
}

/// One attempt of a delivery.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub attempt: i32,
    pub at: String,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub latency_ms: i32,
}

/// A delivery as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub id: Uuid,
    pub kind: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<String>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub attempt_log: Vec<Attempt>,
}

/// A delivery row to insert.
#[derive(Debug)]
pub struct NewDelivery<'a> {
    pub id: Uuid,
    pub webhook_id: Option<Uuid>,
    pub user_id: &'a str,
    pub rule_id: Option<&'a str>,
    pub url: &'a str,
    pub kind: &'a str,
    pub body: &'a Value,
    /// Keep the worker off it for a lease: the caller attempts it itself.
    pub held: bool,
}

const WEBHOOK_COLUMNS: &str = "id, url, events, enabled, consecutive_failures, disabled_at, \
                               disabled_reason, created_at";

fn ts(t: Option<OffsetDateTime>) -> Option<String> {
    t.map(rfc3339)
}

fn webhook(row: &Row) -> Webhook {
    Webhook {
        id: row.get(0),
        url: row.get(1),
        events: row.get(2),
        enabled: row.get(3),
        consecutive_failures: row.get(4),
        disabled_at: ts(row.get(5)),
        disabled_reason: row.get(6),
        created_at: rfc3339(row.get(7)),
    }
}

/// Inserts a webhook with `secret`.
pub async fn create(
    client: &Client,
    user: &str,
    new: &NewWebhook,
    secret: &str,
) -> Result<Webhook, tokio_postgres::Error> {
    let row = client
        .query_one(
            &format!(
                "INSERT INTO webhooks (id, user_id, url, secret, events)
                 VALUES ($1, $2, $3, $4, $5) RETURNING {WEBHOOK_COLUMNS}"
            ),
            &[&Uuid::new_v4(), &user, &new.url, &secret, &new.events],
        )
        .await?;
    Ok(webhook(&row))
}

/// The account's webhooks, oldest first.
pub async fn list(client: &Client, user: &str) -> Result<Vec<Webhook>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE user_id = $1 ORDER BY created_at, id"
            ),
            &[&user],
        )
        .await?;
    Ok(rows.iter().map(webhook).collect())
}

/// One of the account's webhooks.
pub async fn get(
    client: &Client,
    user: &str,
    id: Uuid,
) -> Result<Option<Webhook>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1 AND user_id = $2"),
            &[&id, &user],
        )
        .await?;
    Ok(row.as_ref().map(webhook))
}

/// Deletes one of the account's webhooks (and its deliveries); whether it existed.
pub async fn delete(client: &Client, user: &str, id: Uuid) -> Result<bool, tokio_postgres::Error> {
    let n = client
        .execute(
            "DELETE FROM webhooks WHERE id = $1 AND user_id = $2",
            &[&id, &user],
        )
        .await?;
    Ok(n > 0)
}

/// Re-enables a webhook and clears its failure streak.
pub async fn enable(
    client: &Client,
    user: &str,
    id: Uuid,
) -> Result<Option<Webhook>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &format!(
                "UPDATE webhooks SET enabled = true, consecutive_failures = 0,
                        disabled_at = NULL, disabled_reason = NULL
                 WHERE id = $1 AND user_id = $2 RETURNING {WEBHOOK_COLUMNS}"
            ),
            &[&id, &user],
        )
        .await?;
    Ok(row.as_ref().map(webhook))
}

/// The webhook's newest deliveries, each with its attempts.
pub async fn deliveries(
    client: &Client,
    user: &str,
    webhook_id: Uuid,
    limit: i64,
) -> Result<Vec<Delivery>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT id, kind, status, attempts, next_attempt_at, last_status_code, last_error,
                    created_at, delivered_at
             FROM webhook_deliveries WHERE webhook_id = $1 AND user_id = $2
             ORDER BY created_at DESC, id LIMIT $3",
            &[&webhook_id, &user, &limit],
        )
        .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
    let attempts = client
        .query(
            "SELECT delivery_id, attempt, at, status_code, error, latency_ms
             FROM webhook_attempts WHERE delivery_id = ANY($1) ORDER BY delivery_id, attempt",
            &[&ids],
        )
        .await?;
    Ok(rows.iter().map(|r| delivery(r, &attempts)).collect())
}

fn delivery(r: &Row, attempts: &[Row]) -> Delivery {
    let id: Uuid = r.get(0);
    let status: String = r.get(2);
    let next: OffsetDateTime = r.get(4);
    Delivery {
        id,
        kind: r.get(1),
        next_attempt_at: (status == "pending").then(|| rfc3339(next)),
        status,
        attempts: r.get(3),
        last_status_code: r.get(5),
        last_error: r.get(6),
        created_at: rfc3339(r.get(7)),
        delivered_at: ts(r.get(8)),
        attempt_log: attempts
            .iter()
            .filter(|a| a.get::<_, Uuid>(0) == id)
            .map(|a| Attempt {
                attempt: a.get(1),
                at: rfc3339(a.get(2)),
                status_code: a.get(3),
                error: a.get(4),
                latency_ms: a.get(5),
            })
            .collect(),
    }
}

/// Creates the account's rule-action secret if it has none.
pub async fn ensure_account_secret(
    client: &Client,
    user: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO webhook_secrets (user_id, secret) VALUES ($1, $2)
             ON CONFLICT (user_id) DO NOTHING",
            &[&user, &super::new_secret()],
        )
        .await?;
    Ok(())
}

/// Replaces the account's rule-action secret; returns the new one.
pub async fn rotate_account_secret(
    client: &Client,
    user: &str,
) -> Result<String, tokio_postgres::Error> {
    let secret = super::new_secret();
    client
        .execute(
            "INSERT INTO webhook_secrets (user_id, secret) VALUES ($1, $2)
             ON CONFLICT (user_id) DO UPDATE SET secret = EXCLUDED.secret, created_at = now()",
            &[&user, &secret],
        )
        .await?;
    Ok(secret)
}

/// Inserts a pending delivery, due now (or after the lease when `held`).
pub async fn enqueue(client: &Client, d: &NewDelivery<'_>) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO webhook_deliveries
                 (id, webhook_id, user_id, rule_id, url, kind, body, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7,
                     now() + make_interval(secs => $8))",
            &[
                &d.id,
                &d.webhook_id,
                &d.user_id,
                &d.rule_id,
                &d.url,
                &d.kind,
                d.body,
                &if d.held {
                    super::worker::LEASE.as_secs_f64()
                } else {
                    0.0
                },
            ],
        )
        .await?;
    Ok(())
}

/// Every enabled webhook's (account, id, url, event filter).
pub async fn enabled_filters(
    client: &Client,
) -> Result<Vec<(String, Uuid, String, Vec<String>)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT user_id, id, url, events FROM webhooks WHERE enabled",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}
