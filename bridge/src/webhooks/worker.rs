//! The delivery worker: claims due deliveries, attempts them, records every
//! outcome, schedules retries and disables webhooks that keep failing.
//!
//! Claiming uses `FOR UPDATE SKIP LOCKED` and a lease (the claimed row's
//! `next_attempt_at` moves [`LEASE`] ahead), so several bridges share the
//! queue without holding a transaction across the HTTP call, and a bridge that
//! dies mid-attempt only delays that delivery by the lease. Must not decide
//! policy itself: [`RetryPolicy`] and [`DisablePolicy`] do.

use std::sync::Arc;
use std::time::Duration;

use kumo_rules::webhook::{deliver, DeliveryOutcome, DisablePolicy, Next, RetryPolicy, Verdict};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::{Client, Row};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{target, Inner, TargetError, WebhookError};

/// How long a claimed delivery stays invisible to other workers (the SQL in
/// [`CLAIM_TAIL`] spells it out too).
pub const LEASE: Duration = Duration::from_secs(60);

const CLAIM_TAIL: &str = "
    claimed AS (
        UPDATE webhook_deliveries d
        SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => 60)
        FROM due WHERE d.id = due.id
        RETURNING d.id, d.webhook_id, d.user_id, d.url, d.body, d.attempts)
    SELECT c.id, c.webhook_id, c.user_id, c.url, c.body, c.attempts,
           COALESCE(w.secret, s.secret), w.enabled
    FROM claimed c
    LEFT JOIN webhooks w ON w.id = c.webhook_id
    LEFT JOIN webhook_secrets s ON s.user_id = c.user_id";

/// A claimed delivery.
#[derive(Debug)]
struct Claimed {
    id: Uuid,
    webhook_id: Option<Uuid>,
    url: String,
    body: Value,
    attempts: u32,
    secret: Option<String>,
    webhook_enabled: Option<bool>,
}

fn claimed(row: &Row) -> Claimed {
    Claimed {
        id: row.get(0),
        webhook_id: row.get(1),
        url: row.get(3),
        body: row.get(4),
        attempts: u32::try_from(row.get::<_, i32>(5)).unwrap_or(1),
        secret: row.get(6),
        webhook_enabled: row.get(7),
    }
}

/// What one attempt led to, as `POST /v1/webhooks/{id}/test` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptReport {
    pub delivery_id: Uuid,
    pub delivered: bool,
    /// The delivery's status after the attempt.
    pub status: &'static str,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: u64,
}

/// How often finished deliveries past their retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub(crate) async fn run(inner: Arc<Inner>, shutdown: CancellationToken) {
    let poll = Duration::from_millis(inner.settings.poll_ms);
    let mut prune_due = tokio::time::Instant::now();
    loop {
        if inner.settings.retention_days > 0 && tokio::time::Instant::now() >= prune_due {
            match prune(&inner).await {
                Ok(_) => prune_due += PRUNE_EVERY,
                Err(e) => tracing::warn!(error = %e, "pruning old webhook deliveries failed"),
            }
        }
        match drain_once(&inner).await {
            Ok(n) if n >= inner.settings.batch as usize => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "webhook delivery poll failed; will retry"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(poll) => {}
            () = inner.wake.notified() => {}
        }
    }
}

async fn prune(inner: &Inner) -> Result<u64, WebhookError> {
    let days = i32::try_from(inner.settings.retention_days).unwrap_or(i32::MAX);
    let client = inner.pool.get().await?;
    let n = client
        .execute(
            "DELETE FROM webhook_deliveries
             WHERE status <> 'pending' AND created_at < now() - make_interval(days => $1)",
            &[&days],
        )
        .await?;
    if n > 0 {
        tracing::info!(count = n, "old webhook deliveries deleted");
    }
    Ok(n)
}

async fn drain_once(inner: &Inner) -> Result<usize, WebhookError> {
    let client = inner.pool.get().await?;
    let batch = i64::from(inner.settings.batch);
    let rows = client
        .query(
            &format!(
                "WITH due AS (SELECT id FROM webhook_deliveries
                     WHERE status = 'pending' AND next_attempt_at <= now()
                     ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED), {CLAIM_TAIL}"
            ),
            &[&batch],
        )
        .await?;
    let attempts = rows.iter().map(|row| {
        let c = claimed(row);
        let client = &client;
        async move {
            if let Err(e) = attempt(inner, client, c, false).await {
                tracing::warn!(error = %e, "recording a webhook attempt failed");
            }
        }
    });
    futures_util::future::join_all(attempts).await;
    Ok(rows.len())
}

/// Attempts one pending delivery now (the test endpoint), even if its
/// webhook is disabled.
pub(crate) async fn attempt_now(
    inner: &Inner,
    delivery: Uuid,
) -> Result<Option<AttemptReport>, WebhookError> {
    let client = inner.pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "WITH due AS (SELECT id FROM webhook_deliveries
                     WHERE id = $1 AND status = 'pending' FOR UPDATE SKIP LOCKED), {CLAIM_TAIL}"
            ),
            &[&delivery],
        )
        .await?;
    match row {
        Some(row) => Ok(Some(attempt(inner, &client, claimed(&row), true).await?)),
        None => Ok(None),
    }
}

/// What became of an attempt.
enum Outcome {
    /// A request was sent (or failed in transit, or the host did not resolve:
    /// worth retrying).
    Sent(DeliveryOutcome),
    /// Refused before sending, for good: counts against the webhook.
    Refused(&'static str),
    /// Its webhook was disabled meanwhile: dropped, not counted.
    Dropped(&'static str),
}

async fn attempt(
    inner: &Inner,
    client: &Client,
    c: Claimed,
    even_if_disabled: bool,
) -> Result<AttemptReport, WebhookError> {
    let outcome = if c.webhook_enabled == Some(false) && !even_if_disabled {
        Outcome::Dropped("webhook is disabled")
    } else if let Some(secret) = &c.secret {
        match send(inner, &c.url, secret, &c.body).await {
            Ok(outcome) => Outcome::Sent(outcome),
            Err(TargetError::NotPublic) => Outcome::Refused("target address is not allowed"),
            Err(TargetError::Unresolvable(e)) => Outcome::Sent(DeliveryOutcome {
                status: None,
                latency: Duration::ZERO,
                error: Some(format!("cannot resolve host: {e}")),
            }),
            Err(_) => Outcome::Refused("target URL is not valid"),
        }
    } else {
        Outcome::Refused("no signing secret")
    };
    record(inner, client, &c, outcome).await
}

/// Resolves and checks the target, then POSTs through a client pinned to the
/// checked addresses, with redirects off (a redirect could lead inside).
async fn send(
    inner: &Inner,
    url: &str,
    secret: &str,
    body: &Value,
) -> Result<DeliveryOutcome, TargetError> {
    let allow = inner.settings.allow_private_targets;
    let parsed = target::parse(url, allow)?;
    let addrs = target::resolve(&parsed, allow).await?;
    let host = parsed.host_str().unwrap_or_default().to_string();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve_to_addrs(&host, &addrs)
        .build()
        .map_err(|e| TargetError::Unresolvable(e.to_string()))?;
    Ok(deliver(&client, parsed.as_str(), secret.as_bytes(), body).await)
}

fn policies(inner: &Inner) -> (RetryPolicy, DisablePolicy) {
    let s = &inner.settings;
    (
        RetryPolicy {
            max_attempts: s.max_attempts,
            base_delay: Duration::from_millis(s.base_delay_ms),
            max_delay: Duration::from_secs(s.max_delay_secs),
        },
        DisablePolicy {
            after_failures: s.disable_after_failures,
        },
    )
}

/// An attempt's outcome, judged by the retry policy.
struct Judged {
    status_code: Option<u16>,
    error: Option<String>,
    latency_ms: u64,
    next: Next,
    /// The delivery's status after it.
    status: &'static str,
}

fn judge(inner: &Inner, attempts: u32, outcome: Outcome) -> Judged {
    let (retry, _) = policies(inner);
    let (status_code, error, latency, next, verdict) = match outcome {
        Outcome::Sent(o) => (
            o.status,
            o.error,
            o.latency,
            retry.next(attempts, o.status, rand::random::<f64>()),
            Verdict::of(o.status),
        ),
        Outcome::Refused(reason) => (
            None,
            Some(reason.into()),
            Duration::ZERO,
            Next::Failed,
            Verdict::GiveUp,
        ),
        Outcome::Dropped(reason) => (
            None,
            Some(reason.into()),
            Duration::ZERO,
            Next::Failed,
            Verdict::Retry,
        ),
    };
    let status = match next {
        Next::Done => "delivered",
        Next::RetryAfter(_) => "pending",
        Next::Failed if verdict == Verdict::GiveUp => "failed",
        Next::Failed => "gave_up",
    };
    Judged {
        status_code,
        error,
        latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
        next,
        status,
    }
}

/// Records the attempt and moves the delivery on.
async fn record(
    inner: &Inner,
    client: &Client,
    c: &Claimed,
    outcome: Outcome,
) -> Result<AttemptReport, WebhookError> {
    let counts = !matches!(outcome, Outcome::Dropped(_));
    let Judged {
        status_code,
        error,
        latency_ms,
        next,
        status,
    } = judge(inner, c.attempts, outcome);
    let code = status_code.map(i32::from);
    client
        .execute(
            "INSERT INTO webhook_attempts (delivery_id, attempt, status_code, error, latency_ms)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[
                &c.id,
                &i32::try_from(c.attempts).unwrap_or(i32::MAX),
                &code,
                &error,
                &i32::try_from(latency_ms).unwrap_or(i32::MAX),
            ],
        )
        .await?;
    let wait = match next {
        Next::RetryAfter(d) => d.as_secs_f64(),
        _ => 0.0,
    };
    client
        .execute(
            "UPDATE webhook_deliveries
             SET status = $2, last_status_code = $3, last_error = $4,
                 next_attempt_at = now() + make_interval(secs => $5),
                 delivered_at = CASE WHEN $2 = 'delivered' THEN now() END
             WHERE id = $1",
            &[&c.id, &status, &code, &error, &wait],
        )
        .await?;
    if let (Some(webhook), true) = (c.webhook_id, counts) {
        match next {
            Next::Done => streak(inner, client, webhook, true).await?,
            Next::Failed => streak(inner, client, webhook, false).await?,
            Next::RetryAfter(_) => {}
        }
    }
    tracing::debug!(delivery_id = %c.id, status, attempt = c.attempts, "webhook attempt recorded");
    Ok(AttemptReport {
        delivery_id: c.id,
        delivered: status == "delivered",
        status,
        status_code,
        error,
        latency_ms,
    })
}

/// Updates the webhook's failure streak; disables it when the policy says so.
async fn streak(
    inner: &Inner,
    client: &Client,
    webhook: Uuid,
    delivered: bool,
) -> Result<(), WebhookError> {
    if delivered {
        client
            .execute(
                "UPDATE webhooks SET consecutive_failures = 0 WHERE id = $1",
                &[&webhook],
            )
            .await?;
        return Ok(());
    }
    let Some(row) = client
        .query_opt(
            "UPDATE webhooks SET consecutive_failures = consecutive_failures + 1
             WHERE id = $1 RETURNING consecutive_failures",
            &[&webhook],
        )
        .await?
    else {
        return Ok(());
    };
    let before = u32::try_from(row.get::<_, i32>(0) - 1).unwrap_or(0);
    let (_, disable) = policies(inner);
    if disable.record(before, false).disable {
        let reason = format!("{} consecutive deliveries failed", before + 1);
        let n = client
            .execute(
                "UPDATE webhooks SET enabled = false, disabled_at = now(), disabled_reason = $2
                 WHERE id = $1 AND enabled",
                &[&webhook, &reason],
            )
            .await?;
        if n > 0 {
            tracing::warn!(webhook_id = %webhook, "webhook disabled after repeated failures");
            inner.filters_changed.notify_one();
        }
    }
    Ok(())
}
