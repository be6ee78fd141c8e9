//! Moving commands through their states, for the delivery side (the MQTT
//! sink, presence and ack handling) and the expiry sweep.
//!
//! Every transition is one guarded UPDATE, so a late, duplicate or foreign
//! ack changes nothing. An ack that confirms a command also updates the
//! appliance's confirmed state (AC settings, TV/light state) in the same
//! transaction: the API shows what the device did, not what was asked.

use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{CommandKind, CommandLog, QueuedCommand};
use crate::error::ApiError;
use crate::json::rfc3339;

/// Why a lifecycle step failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Pool(e) => e.into(),
            CommandError::Db(e) => e.into(),
        }
    }
}

/// A device's answer to a command.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    /// Whether the device carried the command out.
    pub ok: bool,
    /// What the device reported, if anything.
    pub result: Option<Value>,
    /// The device's reason for a failure.
    pub error: Option<String>,
}

/// A command that an ack just finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    pub id: Uuid,
    /// `acked` or `failed`.
    pub status: &'static str,
    pub appliance_id: Option<String>,
}

impl CommandLog {
    /// Queued, unexpired commands for `device_id`, oldest first: what to
    /// deliver when its presence turns online.
    pub async fn pending_for_device(
        &self,
        device_id: &str,
    ) -> Result<Vec<QueuedCommand>, CommandError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, kind, payload, expires_at FROM commands
                 WHERE device_id = $1 AND status = 'queued' AND expires_at > now()
                 ORDER BY created_at, id",
                &[&device_id],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(QueuedCommand {
                    id: r.get(0),
                    device_id: device_id.to_string(),
                    kind: CommandKind::parse(r.get(1))?,
                    payload: r.get(2),
                    expires_at: r.get(3),
                })
            })
            .collect())
    }

    /// Queued or sent, unexpired commands for `device_id` last handled before
    /// `before`, oldest first: what to (re)deliver when it comes online — a
    /// `sent` command may have been lost with the device's previous
    /// connection. Later ones were routed while it was known to be online.
    pub async fn outstanding_for_device(
        &self,
        device_id: &str,
        before: OffsetDateTime,
    ) -> Result<Vec<QueuedCommand>, CommandError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, device_id, kind, payload, expires_at FROM commands
                 WHERE device_id = $1 AND status IN ('queued', 'sent') AND expires_at > now()
                   AND coalesce(sent_at, created_at) < $2
                 ORDER BY created_at, id",
                &[&device_id, &before],
            )
            .await?;
        Ok(rows.iter().filter_map(queued_from_row).collect())
    }

    /// Unexpired commands still waiting for an ack whose last send (or
    /// creation) is older than `quiet`, oldest first, at most `limit`: the
    /// redelivery sweep's work list.
    pub async fn unacknowledged(
        &self,
        quiet: std::time::Duration,
        limit: i64,
    ) -> Result<Vec<QueuedCommand>, CommandError> {
        let client = self.pool.get().await?;
        let secs = quiet.as_secs_f64();
        let rows = client
            .query(
                "SELECT id, device_id, kind, payload, expires_at FROM commands
                 WHERE status IN ('queued', 'sent') AND expires_at > now()
                   AND coalesce(sent_at, created_at) < now() - make_interval(secs => $1)
                 ORDER BY created_at, id LIMIT $2",
                &[&secs, &limit],
            )
            .await?;
        Ok(rows.iter().filter_map(queued_from_row).collect())
    }

    /// Records that `id` was published (through `node`); `false` if it was
    /// already final or expired. Re-sending a sent command counts an attempt.
    /// A device may ack before the node's PUBACK reaches the bridge: then the
    /// final status stays and only a missing send time or node is filled.
    pub async fn mark_sent(&self, id: Uuid, node: Option<&str>) -> Result<bool, CommandError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "UPDATE commands SET
                     status = CASE WHEN status IN ('queued', 'sent') THEN 'sent' ELSE status END,
                     sent_at = CASE WHEN status IN ('queued', 'sent') THEN now()
                                    ELSE coalesce(sent_at, now()) END,
                     attempts = attempts + 1, node_id = coalesce($2, node_id),
                     updated_at = now()
                 WHERE id = $1
                   AND ((status IN ('queued', 'sent') AND expires_at > now())
                        OR (status IN ('acked', 'failed') AND (sent_at IS NULL OR node_id IS NULL)))
                 RETURNING status = 'sent', device_id, user_id, appliance_id",
                &[&id, &node],
            )
            .await?;
        let Some(row) = row.filter(|r| r.get::<_, bool>(0)) else {
            return Ok(false);
        };
        let (device, user, appliance): (String, Option<String>, Option<String>) =
            (row.get(1), row.get(2), row.get(3));
        self.announce(id, &device, user.as_deref(), appliance.as_deref(), "sent");
        Ok(true)
    }

    /// Applies `device_id`'s ack for `id` (an ack also proves the send, should
    /// it overtake the node's PUBACK). Returns `None` when the ack changes
    /// nothing: unknown id, another device's command, or already final.
    pub async fn complete(
        &self,
        device_id: &str,
        id: Uuid,
        ack: Ack,
    ) -> Result<Option<Completed>, CommandError> {
        let status = if ack.ok { "acked" } else { "failed" };
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "UPDATE commands SET status = $3, result = $4, error = $5,
                     completed_at = now(), updated_at = now(),
                     sent_at = coalesce(sent_at, now())
                 WHERE id = $1 AND device_id = $2 AND status IN ('queued', 'sent')
                 RETURNING kind, payload, appliance_id, user_id",
                &[&id, &device_id, &status, &ack.result, &ack.error],
            )
            .await?
        else {
            return Ok(None);
        };
        let (kind, payload, appliance_id): (String, Value, Option<String>) =
            (row.get(0), row.get(1), row.get(2));
        let user: Option<String> = row.get(3);
        if let (true, Some(appliance)) = (ack.ok, appliance_id.as_deref()) {
            apply_confirmed_state(&tx, appliance, CommandKind::parse(&kind), &payload).await?;
        }
        tx.commit().await?;
        tracing::info!(command_id = %id, device_id, status, "command completed");
        // Nobody waiting is fine: the send only fails without receivers.
        let _ = self.done.send(id);
        self.announce(
            id,
            device_id,
            user.as_deref(),
            appliance_id.as_deref(),
            status,
        );
        Ok(Some(Completed {
            id,
            status,
            appliance_id,
        }))
    }

    /// Marks every queued or sent command past its expiry as `expired`;
    /// returns how many.
    pub async fn expire_due(&self) -> Result<u64, CommandError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "UPDATE commands SET status = 'expired', completed_at = now(), updated_at = now()
                 WHERE status IN ('queued', 'sent') AND expires_at <= now()
                 RETURNING id, device_id, user_id, appliance_id",
                &[],
            )
            .await?;
        for r in &rows {
            let id: Uuid = r.get(0);
            let device: String = r.get(1);
            let (user, appliance): (Option<String>, Option<String>) = (r.get(2), r.get(3));
            tracing::info!(command_id = %id, device_id = %device, "command expired");
            let _ = self.done.send(id);
            self.announce(
                id,
                &device,
                user.as_deref(),
                appliance.as_deref(),
                "expired",
            );
        }
        Ok(rows.len() as u64)
    }
}

fn queued_from_row(r: &tokio_postgres::Row) -> Option<QueuedCommand> {
    Some(QueuedCommand {
        id: r.get(0),
        device_id: r.get(1),
        kind: CommandKind::parse(r.get(2))?,
        payload: r.get(3),
        expires_at: r.get(4),
    })
}

/// Stores what a confirmed command changed on its appliance.
async fn apply_confirmed_state(
    tx: &tokio_postgres::Transaction<'_>,
    appliance: &str,
    kind: Option<CommandKind>,
    payload: &Value,
) -> Result<(), tokio_postgres::Error> {
    match kind {
        Some(CommandKind::Aircon) => {
            let mut settings = payload.get("settings").cloned().unwrap_or(Value::Null);
            if let Some(obj) = settings.as_object_mut() {
                obj.insert(
                    "updated_at".into(),
                    Value::String(rfc3339(OffsetDateTime::now_utc())),
                );
            }
            tx.execute(
                "UPDATE appliances SET settings = $2, updated_at = now() WHERE id = $1",
                &[&appliance, &settings],
            )
            .await?;
        }
        Some(CommandKind::Tv | CommandKind::Light) => {
            let state = payload.get("state").cloned().unwrap_or(Value::Null);
            tx.execute(
                "UPDATE appliances SET state = $2, updated_at = now() WHERE id = $1",
                &[&appliance, &state],
            )
            .await?;
        }
        Some(CommandKind::Ir) | None => {}
    }
    Ok(())
}
