//! Outgoing webhooks: account webhooks fed by the live event stream, rule
//! actions that post to a URL, and the durable delivery log behind both.
//!
//! Owns the `webhooks`, `webhook_secrets`, `webhook_deliveries` and
//! `webhook_attempts` tables, target checks ([`target`]), the fan-out of live
//! events to matching webhooks ([`fanout`]) and the delivery worker
//! ([`worker`]). Signing, retry backoff and auto-disable decisions come from
//! [`kumo_rules::webhook`]; this module only stores and schedules.
//!
//! # Secrets
//!
//! Each webhook has its own secret, returned once by `POST /v1/webhooks`.
//! Rule actions post to a bare URL with no webhook row; they are signed with
//! the account's webhook secret (`webhook_secrets`), created on first use and
//! rotated — and shown — by `POST /v1/webhook_secret`. Deliveries are signed
//! with the secret current at the attempt.
//!
//! # Bodies
//!
//! Every delivery is a JSON object with `id` (the delivery id), `kind` and
//! `created_at`. Account webhooks get `data` (the live event's SSE data) and
//! `event_id` (its SSE id, `null` when no stream kept it); a `ping` from the
//! test endpoint gets `data: {"webhook_id"}`; rule actions get `rule_id`,
//! `data` (the action's) and `event` (what the rules worker passed).
//!
//! # Volume
//!
//! A webhook with an empty `events` filter receives every kind except
//! `reading` (thousands per second across a fleet); readings must be asked for
//! by name. Fan-out goes through a bounded queue: when the database falls
//! behind, events for webhooks are dropped (and counted in the log) rather
//! than slowing ingest.

pub mod fanout;
pub mod manage;
pub mod store;
pub mod target;
pub mod worker;

use std::sync::Arc;

use deadpool_postgres::Pool;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db::{db_error_from, DbError};
use crate::events::EventHub;
use crate::json::rfc3339;
use crate::settings::WebhookSettings;
pub use store::{Delivery, NewWebhook, Webhook};
pub use target::TargetError;
pub use worker::AttemptReport;

/// Why a webhook operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("invalid webhook target: {0}")]
    Target(#[from] TargetError),
    #[error("invalid webhook: {0}")]
    Invalid(String),
    #[error("webhook {0} not found")]
    NotFound(Uuid),
    #[error("an account may have at most {0} webhooks")]
    Limit(i64),
    #[error(transparent)]
    Db(#[from] DbError),
}

db_error_from!(WebhookError);

pub(crate) struct Inner {
    pub(crate) pool: Pool,
    pub(crate) settings: WebhookSettings,
    /// Wakes the delivery worker when something was enqueued.
    pub(crate) wake: Notify,
    /// Asks the fan-out to reload its filters (a webhook was disabled).
    pub(crate) filters_changed: Notify,
    pub(crate) hub: EventHub,
}

/// Cheap to clone: every clone is the same webhook service.
#[derive(Clone)]
pub struct Webhooks {
    pub(crate) inner: Arc<Inner>,
    pub(crate) fanout: fanout::Fanout,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").finish_non_exhaustive()
    }
}

/// A fresh signing secret: `whsec_` and 32 random bytes in hex.
pub fn new_secret() -> String {
    format!("whsec_{}", hex::encode(rand::random::<[u8; 32]>()))
}

impl Webhooks {
    /// Starts the fan-out from `hub` and the delivery worker; both stop at
    /// `shutdown`.
    pub fn start(
        pool: Pool,
        settings: WebhookSettings,
        hub: EventHub,
        shutdown: CancellationToken,
    ) -> Self {
        let inner = Arc::new(Inner {
            pool,
            settings,
            wake: Notify::new(),
            filters_changed: Notify::new(),
            hub: hub.clone(),
        });
        let fanout = fanout::Fanout::start(inner.clone(), shutdown.clone());
        hub.set_tap(Arc::new(fanout.clone()));
        tokio::spawn(worker::run(inner.clone(), shutdown));
        Self { inner, fanout }
    }

    /// Whether private targets are allowed (`webhooks.allow_private_targets`).
    pub fn allow_private(&self) -> bool {
        self.inner.settings.allow_private_targets
    }

    /// Durably enqueues a rule action's POST to `action.url`, signed with the
    /// account's webhook secret; returns the delivery id. The delivered body
    /// is `{"id", "kind": "rule_action", "rule_id", "created_at", "data":
    /// action.data, "event": body}`.
    pub async fn rule_action(
        &self,
        account: &str,
        rule_id: &str,
        action: &kumo_rules::WebhookAction,
        body: Value,
    ) -> Result<Uuid, WebhookError> {
        let url = target::parse(&action.url, self.allow_private())?;
        let id = Uuid::new_v4();
        let payload = json!({
            "id": id,
            "kind": "rule_action",
            "rule_id": rule_id,
            "created_at": rfc3339(OffsetDateTime::now_utc()),
            "data": action.data,
            "event": body,
        });
        let client = self.inner.pool.get().await?;
        store::ensure_account_secret(&client, account).await?;
        store::enqueue(
            &client,
            &store::NewDelivery {
                id,
                webhook_id: None,
                user_id: account,
                rule_id: Some(rule_id),
                url: url.as_str(),
                kind: "rule_action",
                body: &payload,
                held: false,
            },
        )
        .await?;
        self.inner.wake.notify_one();
        Ok(id)
    }
}
