//! Moving commands through their states, for the delivery side (the MQTT
//! sink, presence and ack handling) and the expiry sweep.
//!
//! Every transition is one guarded UPDATE, so a late, duplicate or foreign
//! ack changes nothing. An ack that confirms a command also updates the
//! appliance's confirmed state (AC and floor heater settings, TV, light,
//! light projector and SESAME bot state, ECHONET Lite properties) in the same
//! transaction: the API shows what the device did, not what was asked.
//! Batching callers apply acks inside their own transaction
//! ([`CommandLog::complete_in`]) and announce them after the commit
//! ([`CommandLog::finish`]); sends are recorded many at a time
//! ([`CommandLog::mark_sent_many`]). Statements are prepared once per connection.

use deadpool_postgres::GenericClient;
use kumo_contract::DeviceId;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    view_from_row, CommandKind, CommandLog, CommandStatus, CommandView, QueuedCommand, VIEW_COLUMNS,
};
use crate::db::DbError;
use crate::json::rfc3339;

/// A device's answer to a command.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    /// Whether the device carried the command out.
    pub ok: bool,
    /// What the device reported, if anything.
    pub result: Option<Value>,
    /// The device's reason for a failure.
    pub error: Option<String>,
    /// The appliance states the device reported with it, keyed by command
    /// kind (`{"aircon": {…}}`); they become the appliance's confirmed state.
    pub state: Option<Value>,
}

/// A command that an ack just finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    pub id: Uuid,
    /// `Acked` or `Failed`.
    pub status: CommandStatus,
    pub appliance_id: Option<String>,
}

/// What [`CommandLog::mark_sent_many`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarkedSent {
    /// Commands that are now `sent`.
    pub sent: usize,
    /// Every row it updated: the sent ones and final ones whose missing send
    /// time or node it filled. Ids not here were ineligible or skipped.
    pub touched: Vec<Uuid>,
}

/// A command an ack finished inside a caller's transaction, to announce with
/// [`CommandLog::finish`] once that transaction has committed.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The row as committed.
    pub view: CommandView,
    /// Its account (none for commands whose user was deleted).
    pub user: Option<String>,
    /// `Acked` or `Failed`.
    pub status: CommandStatus,
}

impl Finished {
    /// What [`CommandLog::complete`] reports.
    pub fn completed(&self) -> Completed {
        Completed {
            id: self.view.id,
            status: self.status,
            appliance_id: self.view.appliance.clone(),
        }
    }
}

impl CommandLog {
    /// Queued, unexpired commands for `device_id`, oldest first: what to
    /// deliver when its presence turns online.
    pub async fn pending_for_device(
        &self,
        device_id: &DeviceId,
    ) -> Result<Vec<QueuedCommand>, DbError> {
        let client = self.pool.get().await?;
        let select = client
            .prepare_cached(
                "SELECT id, kind, payload, expires_at FROM commands
                 WHERE device_id = $1 AND status = 'queued' AND expires_at > now()
                 ORDER BY created_at, id",
            )
            .await?;
        let rows = client.query(&select, &[&device_id.as_str()]).await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(QueuedCommand {
                    id: r.get(0),
                    device_id: device_id.clone(),
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
    ) -> Result<Vec<QueuedCommand>, DbError> {
        let client = self.pool.get().await?;
        let select = client
            .prepare_cached(
                "SELECT id, device_id, kind, payload, expires_at FROM commands
                 WHERE device_id = $1 AND status IN ('queued', 'sent') AND expires_at > now()
                   AND coalesce(sent_at, created_at) < $2
                 ORDER BY created_at, id",
            )
            .await?;
        let rows = client.query(&select, &[&device_id, &before]).await?;
        Ok(rows.iter().filter_map(queued_from_row).collect())
    }

    /// Unexpired commands still waiting for an ack whose last send (or
    /// creation) is older than `quiet`, oldest first, at most `limit`: the
    /// redelivery sweep's work list.
    pub async fn unacknowledged(
        &self,
        quiet: std::time::Duration,
        limit: i64,
    ) -> Result<Vec<QueuedCommand>, DbError> {
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
    pub async fn mark_sent(&self, id: Uuid, node: Option<&str>) -> Result<bool, DbError> {
        Ok(self.mark_sent_many(&[id], node).await?.sent == 1)
    }

    /// [`CommandLog::mark_sent`] for many commands in one statement (an id
    /// listed twice counts one attempt). Rows another transaction holds (an
    /// ack being stored) are skipped rather than waited for, so this never
    /// joins a lock cycle with the ack path; the caller may retry them.
    pub async fn mark_sent_many(
        &self,
        ids: &[Uuid],
        node: Option<&str>,
    ) -> Result<MarkedSent, DbError> {
        let client = self.pool.get().await?;
        let update = client
            .prepare_cached(
                "WITH due AS (
                     SELECT id FROM commands
                     WHERE id = ANY($1)
                       AND ((status IN ('queued', 'sent') AND expires_at > now())
                            OR (status IN ('acked', 'failed')
                                AND (sent_at IS NULL OR node_id IS NULL)))
                     FOR UPDATE SKIP LOCKED)
                 UPDATE commands c SET
                     status = CASE WHEN c.status IN ('queued', 'sent') THEN 'sent'
                                   ELSE c.status END,
                     sent_at = CASE WHEN c.status IN ('queued', 'sent') THEN now()
                                    ELSE coalesce(c.sent_at, now()) END,
                     attempts = c.attempts + 1, node_id = coalesce($2, c.node_id),
                     updated_at = now()
                 FROM due WHERE c.id = due.id
                 RETURNING c.status = 'sent', c.id, c.device_id, c.user_id, c.appliance_id",
            )
            .await?;
        let rows = client.query(&update, &[&ids, &node]).await?;
        drop(client);
        let mut marked = MarkedSent {
            sent: 0,
            touched: Vec::with_capacity(rows.len()),
        };
        for row in &rows {
            let id: Uuid = row.get(1);
            marked.touched.push(id);
            if row.get::<_, bool>(0) {
                let device: String = row.get(2);
                let (user, appliance): (Option<String>, Option<String>) = (row.get(3), row.get(4));
                self.announce(
                    id,
                    &device,
                    user.as_deref(),
                    appliance.as_deref(),
                    CommandStatus::Sent,
                );
                marked.sent += 1;
            }
        }
        Ok(marked)
    }

    /// Applies `device_id`'s ack for `id` (an ack also proves the send, should
    /// it overtake the node's PUBACK). Returns `None` when the ack changes
    /// nothing: unknown id, another device's command, or already final.
    pub async fn complete(
        &self,
        device_id: &DeviceId,
        id: Uuid,
        ack: Ack,
    ) -> Result<Option<Completed>, DbError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let Some(finished) = self.complete_in(&tx, device_id, id, &ack).await? else {
            drop(tx);
            self.unchanged_by_ack(id);
            return Ok(None);
        };
        tx.commit().await?;
        drop(client);
        self.finish(&finished);
        Ok(Some(finished.completed()))
    }

    /// Prepares [`CommandLog::complete_in`]'s statement on `tx`'s connection
    /// (nothing to do once it is cached there), so that completions issued
    /// together are sent at once, in the order they were issued.
    pub async fn prepare_complete(&self, tx: &impl GenericClient) -> Result<(), DbError> {
        tx.prepare_cached(&complete_sql()).await?;
        Ok(())
    }

    /// The transition of [`CommandLog::complete`] inside the caller's
    /// transaction; nothing is announced until the caller calls
    /// [`CommandLog::finish`] after its commit.
    pub async fn complete_in(
        &self,
        tx: &impl GenericClient,
        device_id: &DeviceId,
        id: Uuid,
        ack: &Ack,
    ) -> Result<Option<Finished>, DbError> {
        let status = if ack.ok {
            CommandStatus::Acked
        } else {
            CommandStatus::Failed
        };
        let update = tx.prepare_cached(&complete_sql()).await?;
        let now = rfc3339(OffsetDateTime::now_utc());
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
            &id,
            &device_id.as_str(),
            &status.as_str(),
            &ack.result,
            &ack.error,
            &now,
            &ack.state,
        ];
        let Some(row) = tx.query_opt(&update, &params).await? else {
            return Ok(None);
        };
        let view = view_from_row(&row);
        let user: Option<String> = row.get(12);
        Ok(Some(Finished { view, user, status }))
    }

    /// Announces a committed [`Finished`]: wakes its waiters and tells the
    /// live stream.
    pub fn finish(&self, f: &Finished) {
        let id = f.view.id;
        tracing::info!(command_id = %id, device_id = %f.view.device, status = f.status.as_str(),
            "command completed");
        self.waiters.wake(id, Some(f.view.clone()));
        self.announce(
            id,
            &f.view.device,
            f.user.as_deref(),
            f.view.appliance.as_deref(),
            f.status,
        );
    }

    /// An ack for `id` changed nothing here; if a request waits for it here,
    /// it re-reads the row (another bridge process may have stored the ack).
    pub fn unchanged_by_ack(&self, id: Uuid) {
        if self.waiters.watched(id) {
            self.waiters.wake(id, None);
        }
    }

    /// Marks every queued or sent command past its expiry as `expired`;
    /// returns how many.
    pub async fn expire_due(&self) -> Result<u64, DbError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "UPDATE commands SET status = 'expired', completed_at = now(),
                         updated_at = now()
                     WHERE status IN ('queued', 'sent') AND expires_at <= now()
                     RETURNING {VIEW_COLUMNS}, user_id"
                ),
                &[],
            )
            .await?;
        for r in &rows {
            let view = view_from_row(r);
            let user: Option<String> = r.get(12);
            tracing::info!(command_id = %view.id, device_id = %view.device, "command expired");
            self.announce(
                view.id,
                &view.device,
                user.as_deref(),
                view.appliance.as_deref(),
                CommandStatus::Expired,
            );
            self.waiters.wake(view.id, Some(view));
        }
        Ok(rows.len() as u64)
    }
}

fn queued_from_row(r: &tokio_postgres::Row) -> Option<QueuedCommand> {
    Some(QueuedCommand {
        id: r.get(0),
        // Stored ids were valid when written; one that is not is skipped.
        device_id: DeviceId::parse(r.get::<_, String>(1)).ok()?,
        kind: CommandKind::parse(r.get(2))?,
        payload: r.get(3),
        expires_at: r.get(4),
    })
}

/// The completion of [`CommandLog::complete_in`], in one statement (one
/// round trip, atomic without a transaction): the guarded transition, then,
/// for a confirmation, the appliance's state.
fn complete_sql() -> String {
    format!(
        "WITH done AS (
                     UPDATE commands SET status = $3, result = $4, error = $5,
                         completed_at = now(), updated_at = now(),
                         sent_at = coalesce(sent_at, now())
                     WHERE id = $1 AND device_id = $2 AND status IN ('queued', 'sent')
                     RETURNING {VIEW_COLUMNS}, user_id, expected),
                 confirmed AS (
                     SELECT d.appliance_id, d.kind,
                            coalesce($7::jsonb -> d.kind, d.expected) AS reached
                     FROM done d WHERE $3 = 'acked'),
                 applied AS (
                     UPDATE appliances a SET
                         settings = CASE WHEN c.kind IN ('aircon', 'floor_heater') THEN
                             CASE WHEN jsonb_typeof(c.reached) = 'object'
                                  THEN c.reached || jsonb_build_object('updated_at', $6::text)
                                  ELSE a.settings END
                             ELSE a.settings END,
                         state = CASE WHEN c.kind IN ('tv', 'light', 'light_projector', 'sesame_bot')
                                           AND c.reached IS NOT NULL
                                      THEN c.reached ELSE a.state END,
                         updated_at = now()
                     FROM confirmed c
                     WHERE a.id = c.appliance_id AND c.reached IS NOT NULL
                       AND (c.kind IN ('aircon', 'floor_heater')
                            OR (c.kind IN ('tv', 'light', 'light_projector', 'sesame_bot')
                                AND a.state IS DISTINCT FROM c.reached))),
                 echonet AS (
                     INSERT INTO echonet_properties (appliance_id, epc, name, val, updated_at)
                     SELECT c.appliance_id, (p ->> 'epc')::int, coalesce(p ->> 'name', ''),
                            p ->> 'val', now()
                     FROM confirmed c JOIN appliances a ON a.id = c.appliance_id
                          CROSS JOIN jsonb_array_elements(c.reached) p
                     WHERE c.kind = 'echonet' AND jsonb_typeof(c.reached) = 'array'
                       AND a.type <> 'EL_SMART_METER'
                     ON CONFLICT (appliance_id, epc) DO UPDATE
                         SET val = EXCLUDED.val, name = EXCLUDED.name,
                             updated_at = EXCLUDED.updated_at)
                 SELECT * FROM done"
    )
}
