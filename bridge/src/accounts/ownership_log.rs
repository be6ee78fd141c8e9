//! The reader of `device_ownership_log` (migration 0005), shared by the node
//! announcer (`mqtt/ownership.rs`) and the event router.

use deadpool_postgres::GenericClient;

/// One row of `device_ownership_log` (migration 0005): its sequence number,
/// the device, and the device's owner now (`None`: deleted or released)
/// with the other accounts that see it now (its home's members).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnershipChange {
    pub seq: i64,
    pub device_id: String,
    pub owner: Option<String>,
    pub members: Vec<String>,
}

/// The log's end: rows become visible in sequence order (see the migration),
/// so every change committed later has a larger number.
pub async fn ownership_log_end(client: &impl GenericClient) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT coalesce(max(seq), 0) FROM device_ownership_log",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Up to `limit` changes after `after`, oldest first, each with the device's
/// current owner (reading a row twice is harmless).
pub async fn ownership_changes(
    client: &impl GenericClient,
    after: i64,
    limit: i64,
) -> Result<Vec<OwnershipChange>, tokio_postgres::Error> {
    let read = client
        .prepare_cached(
            "SELECT l.seq, l.device_id, d.user_id,
                    array(SELECT a.user_id FROM device_access a
                          WHERE a.device_id = d.id AND a.user_id <> d.user_id
                          ORDER BY a.user_id)
             FROM device_ownership_log l LEFT JOIN devices d ON d.id = l.device_id
             WHERE l.seq > $1 ORDER BY l.seq LIMIT $2",
        )
        .await?;
    let rows = client.query(&read, &[&after, &limit]).await?;
    Ok(rows
        .iter()
        .map(|r| OwnershipChange {
            seq: r.get(0),
            device_id: r.get(1),
            owner: r.get(2),
            members: r.get(3),
        })
        .collect())
}
