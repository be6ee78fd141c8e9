//! Durable commands: every call that reaches a device first writes a row
//! here, then announces it to a [`CommandSink`], which delivers it over MQTT.
//!
//! [`CommandLog`] owns the command table's lifecycle — queued → sent → acked |
//! failed, or expired once its TTL passes undelivered — and wakes requests
//! waiting for a result. It must not talk to a broker itself: delivery belongs
//! to the sink. Until a real sink is plugged in ([`NoDelivery`]), commands
//! stay `queued`; nothing pretends they were sent.

mod lifecycle;
mod wait;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::ApiError;
use crate::json::rfc3339;
use crate::live::{LiveEvent, LiveFeed};

pub use lifecycle::{Ack, CommandError, Completed};
pub use wait::{prefer_wait, Waited};

/// What kind of command a row holds (the `kind` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    /// Emit an IR message.
    Ir,
    /// Apply air-conditioner settings.
    Aircon,
    /// Press a TV button.
    Tv,
    /// Press a light button.
    Light,
}

impl CommandKind {
    /// The database and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ir => "ir",
            Self::Aircon => "aircon",
            Self::Tv => "tv",
            Self::Light => "light",
        }
    }

    /// Parses the database name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Ir, Self::Aircon, Self::Tv, Self::Light]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A command waiting for delivery.
#[derive(Debug, Clone)]
pub struct QueuedCommand {
    pub id: Uuid,
    pub device_id: String,
    pub kind: CommandKind,
    pub payload: Value,
    pub expires_at: OffsetDateTime,
}

/// Delivers queued commands to devices. Implementations publish on
/// `devices/{id}/commands`, then call [`CommandLog::mark_sent`]; device acks
/// reach [`CommandLog::complete`].
pub trait CommandSink: Send + Sync + 'static {
    /// Called after `command` is committed. Must not block: hand the work to a task.
    fn announce(&self, command: &QueuedCommand);
}

/// The sink used while no MQTT connection exists: commands stay queued and
/// are picked up from the table once a delivering sink starts.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoDelivery;

impl CommandSink for NoDelivery {
    fn announce(&self, command: &QueuedCommand) {
        tracing::debug!(command_id = %command.id, device_id = %command.device_id,
            "command queued; no delivery path is configured yet");
    }
}

/// A command to write.
#[derive(Debug, Clone)]
pub struct NewCommand<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub appliance_id: Option<&'a str>,
    pub kind: CommandKind,
    pub payload: Value,
    pub idempotency_key: Option<&'a str>,
}

/// The command table and everything that moves a row through its states.
pub struct CommandLog {
    pool: Pool,
    ttl: Duration,
    sink: Arc<dyn CommandSink>,
    /// Ids of commands that just reached a final state, for waiting requests.
    done: broadcast::Sender<Uuid>,
    /// Ends waits early when the bridge shuts down.
    shutdown: CancellationToken,
    /// Where status changes are announced to rules, events and webhooks.
    live: LiveFeed,
}

impl std::fmt::Debug for CommandLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandLog")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl CommandLog {
    /// Commands expire `ttl` after they are written; waits end at `shutdown`.
    pub fn new(
        pool: Pool,
        ttl: Duration,
        sink: Arc<dyn CommandSink>,
        live: LiveFeed,
        shutdown: CancellationToken,
    ) -> Self {
        let (done, _) = broadcast::channel(1024);
        Self {
            pool,
            ttl,
            sink,
            done,
            shutdown,
            live,
        }
    }

    /// The live stream status changes are published on.
    pub fn live(&self) -> &LiveFeed {
        &self.live
    }

    /// Announces a status change on the live stream.
    fn announce(
        &self,
        id: Uuid,
        device: &str,
        user: Option<&str>,
        appliance: Option<&str>,
        status: &'static str,
    ) {
        self.live.publish(LiveEvent::Command {
            device: device.to_string(),
            user: user.map(str::to_string),
            command_id: id,
            appliance: appliance.map(str::to_string),
            status,
            at: OffsetDateTime::now_utc(),
        });
    }

    /// Writes a command (or finds the earlier one with the same idempotency
    /// key) and returns its id. A repeated key never creates a second command;
    /// reusing a key for a different command is a 409.
    pub async fn enqueue(&self, cmd: NewCommand<'_>) -> Result<Uuid, ApiError> {
        let client = self.pool.get().await?;
        let id = Uuid::new_v4();
        let ttl_secs = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let expires_at = OffsetDateTime::now_utc() + time::Duration::seconds(ttl_secs);
        let inserted = client
            .query_opt(
                "INSERT INTO commands (id, device_id, user_id, appliance_id, kind, payload,
                                       idempotency_key, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL
                 DO NOTHING RETURNING id",
                &[
                    &id,
                    &cmd.device_id,
                    &cmd.user_id,
                    &cmd.appliance_id,
                    &cmd.kind.as_str(),
                    &cmd.payload,
                    &cmd.idempotency_key,
                    &expires_at,
                ],
            )
            .await?;
        if inserted.is_some() {
            tracing::info!(command_id = %id, device_id = %cmd.device_id,
                kind = cmd.kind.as_str(), "command queued");
            self.announce(
                id,
                cmd.device_id,
                Some(cmd.user_id),
                cmd.appliance_id,
                "queued",
            );
            self.sink.announce(&QueuedCommand {
                id,
                device_id: cmd.device_id.to_string(),
                kind: cmd.kind,
                payload: cmd.payload,
                expires_at,
            });
            return Ok(id);
        }
        let earlier = client
            .query_one(
                "SELECT id, device_id, payload FROM commands
                 WHERE user_id = $1 AND idempotency_key = $2",
                &[&cmd.user_id, &cmd.idempotency_key],
            )
            .await?;
        let (device, payload): (String, Value) = (earlier.get(1), earlier.get(2));
        if device != cmd.device_id || payload != cmd.payload {
            return Err(ApiError::conflict(
                "this Idempotency-Key was already used for a different command",
            ));
        }
        Ok(earlier.get(0))
    }

    /// The command `id` of `user_id`, if any.
    pub async fn find(&self, user_id: &str, id: Uuid) -> Result<Option<CommandView>, ApiError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT id, device_id, appliance_id, kind, status, payload, result, error,
                        created_at, sent_at, completed_at, expires_at
                 FROM commands WHERE id = $1 AND user_id = $2",
                &[&id, &user_id],
            )
            .await?;
        Ok(row.map(|r| CommandView {
            id: r.get(0),
            device: r.get(1),
            appliance: r.get(2),
            kind: r.get(3),
            status: r.get(4),
            payload: r.get(5),
            result: r.get(6),
            error: r.get(7),
            created_at: rfc3339(r.get(8)),
            sent_at: r.get::<_, Option<OffsetDateTime>>(9).map(rfc3339),
            completed_at: r.get::<_, Option<OffsetDateTime>>(10).map(rfc3339),
            expires_at: rfc3339(r.get(11)),
        }))
    }
}

/// A command as `GET /v1/commands/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CommandView {
    pub id: Uuid,
    pub device: String,
    pub appliance: Option<String>,
    pub kind: String,
    pub status: String,
    pub payload: Value,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub created_at: String,
    pub sent_at: Option<String>,
    pub completed_at: Option<String>,
    pub expires_at: String,
}

impl CommandView {
    /// Whether the command can change no more.
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "acked" | "failed" | "expired")
    }
}
