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
    let arrivals = record_presences_in(client, std::slice::from_ref(p)).await?;
    Ok(arrivals.into_iter().next().unwrap_or_default())
}

/// [`record_presence_in`] for many devices in one statement; the answer has
/// one [`Arrival`] per record, in order. Each device may appear only once
/// (one row cannot be written twice by one statement): the caller splits
/// repeated reports of a device into later calls. A connect storm brings
/// hundreds of presences per batch, and one round trip each kept the report
/// transactions open for seconds.
pub async fn record_presences_in(
    client: &impl GenericClient,
    records: &[Presence<'_>],
) -> Result<Vec<Arrival>, DbError> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    // The same rules as the single form; the offline check reads the
    // reporting node from the input (`excluded` has no node for offline).
    let update = client
        .prepare_cached(
            "WITH input AS (
                 SELECT * FROM unnest($1::text[], $2::bool[], $3::text[], $4::timestamptz[])
                     WITH ORDINALITY AS i(id, online, node, at, n)),
             prev AS (
                 SELECT d.id, d.online AS was, d.node_id AS was_on
                 FROM devices d JOIN input i ON i.id = d.id),
             written AS (
                 INSERT INTO devices AS d (id, online, node_id, last_seen_at)
                 SELECT id, online, CASE WHEN online THEN node END, at FROM input
                 ON CONFLICT (id) DO UPDATE SET online = excluded.online,
                     node_id = CASE WHEN excluded.online THEN excluded.node_id
                                    ELSE d.node_id END,
                     last_seen_at = excluded.last_seen_at
                 WHERE (d.last_seen_at IS NULL OR d.last_seen_at <= excluded.last_seen_at)
                   AND (excluded.online
                        OR coalesce(d.node_id = (SELECT i.node FROM input i WHERE i.id = d.id),
                                    true))
                 RETURNING d.id)
             SELECT i.n, coalesce(p.was, false), p.was_on IS DISTINCT FROM i.node,
                    EXISTS (SELECT 1 FROM commands c
                            WHERE c.device_id = i.id AND c.status IN ('queued', 'sent')
                              AND c.expires_at > now())
             FROM written w JOIN input i ON i.id = w.id LEFT JOIN prev p ON p.id = i.id
             WHERE i.online",
        )
        .await?;
    let ids: Vec<&str> = records.iter().map(|p| p.device_id.as_str()).collect();
    let online: Vec<bool> = records.iter().map(|p| p.online).collect();
    let nodes: Vec<Option<&str>> = records.iter().map(|p| p.node).collect();
    let at: Vec<OffsetDateTime> = records.iter().map(|p| p.at).collect();
    let rows = client.query(&update, &[&ids, &online, &nodes, &at]).await?;
    let mut arrivals = vec![Arrival::default(); records.len()];
    for row in rows {
        let n: i64 = row.get(0);
        // `n` counts the input rows from 1.
        if let Some(slot) = usize::try_from(n - 1)
            .ok()
            .and_then(|i| arrivals.get_mut(i))
        {
            *slot = Arrival {
                arrived: !row.get::<_, bool>(1) || row.get::<_, bool>(2),
                commands_waiting: row.get(3),
            };
        }
    }
    Ok(arrivals)
}

/// A broker node started at `started` (its clock): every device still shown
/// online on it whose last announcement is older lost its connection with the
/// node's previous run. Marks them offline and returns their ids with that
/// last announcement's time (when they were last known there — not
/// `started`: a device may have announced itself on another node since, and
/// that announcement must still win). `last_seen_at` stays: any announcement
/// from the new run is newer.
pub async fn node_started_in(
    client: &impl GenericClient,
    node: &str,
    started: OffsetDateTime,
) -> Result<Vec<(String, OffsetDateTime)>, DbError> {
    let update = client
        .prepare_cached(
            "UPDATE devices SET online = false
             WHERE node_id = $1 AND online AND last_seen_at < $2
             RETURNING id, last_seen_at",
        )
        .await?;
    let rows = client.query(&update, &[&node, &started]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
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
