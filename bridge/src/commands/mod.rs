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

use deadpool_postgres::{Object, Pool};
use kumo_contract::DeviceId;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::ApiError;
use crate::json::rfc3339;
use crate::live::{LiveEvent, LiveFeed};

pub use lifecycle::{Ack, Completed, Finished, MarkedSent};
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
    /// Set or refresh ECHONET Lite properties through a gateway.
    Echonet,
    /// Apply floor heater settings.
    FloorHeater,
    /// Press a light projector button.
    LightProjector,
    /// Click a SESAME bot or run one of its BLE private macros.
    SesameBot,
}

impl CommandKind {
    /// The database and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ir => "ir",
            Self::Aircon => "aircon",
            Self::Tv => "tv",
            Self::Light => "light",
            Self::Echonet => "echonet",
            Self::FloorHeater => "floor_heater",
            Self::LightProjector => "light_projector",
            Self::SesameBot => "sesame_bot",
        }
    }

    /// Parses the database name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Ir,
            Self::Aircon,
            Self::Tv,
            Self::Light,
            Self::Echonet,
            Self::FloorHeater,
            Self::LightProjector,
            Self::SesameBot,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// Where a command is in its life: queued → sent → acked | failed, or
/// expired once its TTL passes unconfirmed (the `status` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandStatus {
    Queued,
    Sent,
    Acked,
    Failed,
    Expired,
}

impl CommandStatus {
    const ALL: [Self; 5] = [
        Self::Queued,
        Self::Sent,
        Self::Acked,
        Self::Failed,
        Self::Expired,
    ];

    /// The database and API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Acked => "acked",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }

    /// Parses the database name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether a command in this status can change no more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Acked | Self::Failed | Self::Expired)
    }
}

/// A command waiting for delivery.
#[derive(Debug, Clone)]
pub struct QueuedCommand {
    pub id: Uuid,
    pub device_id: DeviceId,
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
    pub device_id: &'a DeviceId,
    pub appliance_id: Option<&'a str>,
    pub kind: CommandKind,
    pub payload: Value,
    /// The appliance state the command should lead to (appliance commands).
    pub expected: Option<Value>,
    pub idempotency_key: Option<&'a str>,
}

/// The command table and everything that moves a row through its states.
pub struct CommandLog {
    pool: Pool,
    ttl: Duration,
    sink: Arc<dyn CommandSink>,
    /// Requests waiting for commands to reach a final state.
    waiters: Arc<wait::Waiters>,
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
        Self {
            pool,
            ttl,
            sink,
            waiters: Arc::default(),
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
        status: CommandStatus,
    ) {
        self.live.publish(LiveEvent::Command {
            device: device.to_string(),
            user: user.map(str::to_string),
            command_id: id,
            appliance: appliance.map(str::to_string),
            status: status.as_str(),
            at: OffsetDateTime::now_utc(),
        });
    }

    /// Writes a command (or finds the earlier one with the same idempotency
    /// key) and returns its id. A repeated key never creates a second command;
    /// reusing a key for a different command is a 409. `held`: a pooled
    /// connection the caller already holds (it looked the appliance up on
    /// it), so the request does not queue for a second one behind every other.
    pub async fn enqueue(
        &self,
        cmd: NewCommand<'_>,
        held: Option<Object>,
    ) -> Result<Uuid, ApiError> {
        Ok(self.enqueue_watched(cmd, false, held).await?.0)
    }

    /// [`CommandLog::enqueue`], then waits up to `limit` for the command to
    /// become final. A new command is watched before it is announced, so its
    /// result arrives without reading the row back.
    pub async fn enqueue_and_wait(
        &self,
        cmd: NewCommand<'_>,
        held: Option<Object>,
        limit: Duration,
    ) -> Result<(Uuid, Waited), ApiError> {
        let deadline = tokio::time::Instant::now() + limit;
        let user_id = cmd.user_id;
        match self.enqueue_watched(cmd, true, held).await? {
            (id, Some(watch)) => Ok((id, self.wait_watched(user_id, watch, deadline).await?)),
            // An earlier command with the same key: it may be final already.
            (id, None) => Ok((id, self.wait_final(user_id, id, limit).await?)),
        }
    }

    /// Writes the command (on `held`, if given); with `watch`, a new one is
    /// watched before it is announced.
    async fn enqueue_watched(
        &self,
        cmd: NewCommand<'_>,
        watch: bool,
        held: Option<Object>,
    ) -> Result<(Uuid, Option<wait::Watch>), ApiError> {
        let client = match held {
            Some(client) => client,
            None => self.pool.get().await?,
        };
        let id = Uuid::new_v4();
        let ttl_secs = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let expires_at = OffsetDateTime::now_utc() + time::Duration::seconds(ttl_secs);
        let insert = client
            .prepare_cached(
                "INSERT INTO commands (id, device_id, user_id, appliance_id, kind, payload,
                                       idempotency_key, expires_at, expected)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL
                 DO NOTHING RETURNING id",
            )
            .await?;
        let inserted = client
            .query_opt(
                &insert,
                &[
                    &id,
                    &cmd.device_id.as_str(),
                    &cmd.user_id,
                    &cmd.appliance_id,
                    &cmd.kind.as_str(),
                    &cmd.payload,
                    &cmd.idempotency_key,
                    &expires_at,
                    &cmd.expected,
                ],
            )
            .await?;
        if inserted.is_some() {
            drop(client);
            tracing::info!(command_id = %id, device_id = %cmd.device_id,
                kind = cmd.kind.as_str(), "command queued");
            let watch = watch.then(|| self.waiters.watch(id));
            self.announce(
                id,
                cmd.device_id.as_str(),
                Some(cmd.user_id),
                cmd.appliance_id,
                CommandStatus::Queued,
            );
            self.sink.announce(&QueuedCommand {
                id,
                device_id: cmd.device_id.clone(),
                kind: cmd.kind,
                payload: cmd.payload,
                expires_at,
            });
            return Ok((id, watch));
        }
        let earlier = client
            .query_one(
                "SELECT id, device_id, payload FROM commands
                 WHERE user_id = $1 AND idempotency_key = $2",
                &[&cmd.user_id, &cmd.idempotency_key],
            )
            .await?;
        let (device, payload): (String, Value) = (earlier.get(1), earlier.get(2));
        if device != cmd.device_id.as_str() || payload != cmd.payload {
            return Err(ApiError::conflict(
                "this Idempotency-Key was already used for a different command",
            ));
        }
        Ok((earlier.get(0), None))
    }

    /// The command `id` of `user_id`, if any.
    pub async fn find(&self, user_id: &str, id: Uuid) -> Result<Option<CommandView>, ApiError> {
        let client = self.pool.get().await?;
        let select = client
            .prepare_cached(&format!(
                "SELECT {VIEW_COLUMNS} FROM commands WHERE id = $1 AND user_id = $2"
            ))
            .await?;
        let row = client.query_opt(&select, &[&id, &user_id]).await?;
        Ok(row.as_ref().map(view_from_row))
    }
}

/// The columns [`view_from_row`] reads, in order.
pub(crate) const VIEW_COLUMNS: &str = "id, device_id, appliance_id, kind, status, payload, \
    result, error, created_at, sent_at, completed_at, expires_at";

/// A [`CommandView`] from a row that starts with [`VIEW_COLUMNS`].
pub(crate) fn view_from_row(r: &tokio_postgres::Row) -> CommandView {
    CommandView {
        id: r.get(0),
        device: r.get(1),
        appliance: r.get(2),
        kind: r.get(3),
        // The column's CHECK constraint admits only the five names.
        status: CommandStatus::parse(r.get(4)).unwrap_or(CommandStatus::Failed),
        payload: r.get(5),
        result: r.get(6),
        error: r.get(7),
        created_at: rfc3339(r.get(8)),
        sent_at: r.get::<_, Option<OffsetDateTime>>(9).map(rfc3339),
        completed_at: r.get::<_, Option<OffsetDateTime>>(10).map(rfc3339),
        expires_at: rfc3339(r.get(11)),
    }
}

/// A command as `GET /v1/commands/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CommandView {
    pub id: Uuid,
    pub device: String,
    pub appliance: Option<String>,
    pub kind: String,
    pub status: CommandStatus,
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
        self.status.is_final()
    }
}
