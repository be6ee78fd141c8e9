//! Presence as the broker nodes announce it: online, on which node, last
//! seen; and what a node's restart or loss means for the devices it held.
//! The MQTT subscriber calls these; they only touch the database.
//!
//! Each record has a pool form and an `_in` form that runs on the caller's
//! connection or transaction (the MQTT side applies many reports per
//! transaction). Statements are prepared once per connection, and a report
//! that changes nothing writes nothing.

use deadpool_postgres::{GenericClient, Pool};
use time::OffsetDateTime;

use kumo_contract::DeviceId;

use crate::db::DbError;

/// A device's connection state as its broker node announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence<'a> {
    pub device_id: &'a DeviceId,
    pub online: bool,
    /// The node holding the connection.
    pub node: Option<&'a str>,
    pub at: OffsetDateTime,
}

/// What recording a presence changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Arrival {
    /// The device just came online, or is now online on another node than
    /// the one on record (a device whose node died reconnects elsewhere
    /// before anyone marks it offline).
    pub arrived: bool,
    /// It has commands queued or sent and not final: they are delivered now,
    /// there. Asked in the same statement, so a connect storm does not cost
    /// one more query per device (250,000 of them queued for the pool in the
    /// fleet run and held every report behind them).
    pub commands_waiting: bool,
}

/// Records presence and says whether the device arrived (see [`Arrival`]).
/// Stale announcements are ignored, and so
/// is "offline" from a node that no longer holds the device: one that moved
/// to another node is online there, whatever its old node finds out later. A
/// device nobody registered yet gets its row here (owned by nobody), so one
/// registered while connected shows online at once.
pub async fn record_presence(pool: &Pool, p: &Presence<'_>) -> Result<Arrival, DbError> {
    record_presence_in(&pool.get().await?, p).await
}

/// [`record_presence`] on the caller's connection or transaction.
pub async fn record_presence_in(
    client: &impl GenericClient,
    p: &Presence<'_>,
) -> Result<Arrival, DbError> {
    let update = client
        .prepare_cached(
            "WITH prev AS (SELECT online AS was, node_id AS was_on FROM devices WHERE id = $1)
             INSERT INTO devices AS d (id, online, node_id, last_seen_at)
             VALUES ($1, $2, CASE WHEN $2 THEN $3 END, $4)
             ON CONFLICT (id) DO UPDATE SET online = $2,
                 node_id = CASE WHEN $2 THEN $3 ELSE d.node_id END,
                 last_seen_at = $4
             WHERE (d.last_seen_at IS NULL OR d.last_seen_at <= $4)
               AND ($2 OR $3::text IS NULL OR d.node_id IS NULL OR d.node_id = $3)
             RETURNING coalesce((SELECT was FROM prev), false),
                       (SELECT was_on FROM prev) IS DISTINCT FROM $3,
                       $2 AND EXISTS (SELECT 1 FROM commands c
                                      WHERE c.device_id = $1 AND c.status IN ('queued', 'sent')
                                        AND c.expires_at > now())",
        )
        .await?;
    let row = client
        .query_opt(&update, &[&p.device_id.as_str(), &p.online, &p.node, &p.at])
        .await?;
    Ok(row
        .filter(|_| p.online)
        .map(|r| Arrival {
            arrived: !r.get::<_, bool>(0) || r.get::<_, bool>(1),
            commands_waiting: r.get(2),
        })
        .unwrap_or_default())
}

/// A broker node started at `started` (its clock): every device still shown
/// online on it whose last announcement is older lost its connection with the
/// node's previous run. Marks them offline and returns their ids.
/// `last_seen_at` stays: any announcement from the new run is newer.
pub async fn node_started_in(
    client: &impl GenericClient,
    node: &str,
    started: OffsetDateTime,
) -> Result<Vec<String>, DbError> {
    let update = client
        .prepare_cached(
            "UPDATE devices SET online = false
             WHERE node_id = $1 AND online AND last_seen_at < $2
             RETURNING id",
        )
        .await?;
    let rows = client.query(&update, &[&node, &started]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The bridge lost node `node` (unreachable for long): every device shown
/// online on it is marked offline and returned. `last_seen_at` stays, so the
/// node's retained presence, read again when it is reached, restores the
/// devices still connected to it.
pub async fn node_lost(pool: &Pool, node: &str) -> Result<Vec<String>, DbError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "UPDATE devices SET online = false WHERE node_id = $1 AND online RETURNING id",
            &[&node],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
