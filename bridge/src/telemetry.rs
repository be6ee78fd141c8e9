//! What devices report besides readings: presence (online, node, last seen)
//! and smart-meter ECHONET Lite properties. The MQTT subscriber calls these;
//! they only touch the database.
//!
//! Each record has a pool form and an `_in` form that runs on the caller's
//! connection or transaction (the MQTT side applies many reports per
//! transaction). Statements are prepared once per connection, and a report
//! that changes nothing writes nothing.

use crate::db::DbError;
use deadpool_postgres::{GenericClient, Pool};
use time::OffsetDateTime;

/// A device's connection state as its broker node announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence<'a> {
    pub device_id: &'a str,
    pub online: bool,
    /// The node holding the connection.
    pub node: Option<&'a str>,
    pub at: OffsetDateTime,
}

/// Records presence; returns `true` when the device just came online (time
/// to deliver its queued commands). Stale announcements are ignored.
pub async fn record_presence(pool: &Pool, p: &Presence<'_>) -> Result<bool, DbError> {
    record_presence_in(&pool.get().await?, p).await
}

/// [`record_presence`] on the caller's connection or transaction.
pub async fn record_presence_in(
    client: &impl GenericClient,
    p: &Presence<'_>,
) -> Result<bool, DbError> {
    let update = client
        .prepare_cached(
            "UPDATE devices d SET online = $2,
                 node_id = CASE WHEN $2 THEN $3 ELSE d.node_id END,
                 last_seen_at = $4
             FROM (SELECT online AS was FROM devices WHERE id = $1) prev
             WHERE d.id = $1 AND (d.last_seen_at IS NULL OR d.last_seen_at <= $4)
             RETURNING prev.was",
        )
        .await?;
    let row = client
        .query_opt(&update, &[&p.device_id, &p.online, &p.node, &p.at])
        .await?;
    Ok(p.online && row.is_some_and(|r| !r.get::<_, bool>(0)))
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

/// What a device reports about itself in its retained `state`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFacts<'a> {
    pub firmware_version: Option<&'a str>,
    pub mac_address: Option<&'a str>,
    pub serial_number: Option<&'a str>,
}

/// Stores the facts a device reported; absent ones keep their value.
pub async fn record_facts(
    pool: &Pool,
    device_id: &str,
    facts: &DeviceFacts<'_>,
) -> Result<(), DbError> {
    record_facts_in(&pool.get().await?, device_id, facts).await
}

/// [`record_facts`] on the caller's connection or transaction.
pub async fn record_facts_in(
    client: &impl GenericClient,
    device_id: &str,
    facts: &DeviceFacts<'_>,
) -> Result<(), DbError> {
    if *facts == DeviceFacts::default() {
        return Ok(());
    }
    let update = client
        .prepare_cached(
            "UPDATE devices SET firmware_version = coalesce($2, firmware_version),
                 mac_address = coalesce($3, mac_address),
                 serial_number = coalesce($4, serial_number), updated_at = now()
             WHERE id = $1 AND (firmware_version, mac_address, serial_number)
                 IS DISTINCT FROM (coalesce($2, firmware_version),
                                   coalesce($3, mac_address), coalesce($4, serial_number))",
        )
        .await?;
    client
        .execute(
            &update,
            &[
                &device_id,
                &facts.firmware_version,
                &facts.mac_address,
                &facts.serial_number,
            ],
        )
        .await?;
    Ok(())
}

/// Stores the appliance states a device reported in its `state`: AC settings
/// on its `AC` appliances, TV and light state on its `TV` and `LIGHT` ones.
/// What the device holds is the truth; absent parts keep their value.
pub async fn record_appliance_states(
    pool: &Pool,
    device_id: &str,
    aircon: Option<&serde_json::Value>,
    tv: Option<&serde_json::Value>,
    light: Option<&serde_json::Value>,
) -> Result<(), DbError> {
    let client = pool.get().await?;
    record_appliance_states_in(&client, device_id, aircon, tv, light).await
}

/// [`record_appliance_states`] on the caller's connection or transaction.
/// Appliances whose stored value already equals the report (AC settings
/// compared without their `updated_at`) are not rewritten.
pub async fn record_appliance_states_in(
    client: &impl GenericClient,
    device_id: &str,
    aircon: Option<&serde_json::Value>,
    tv: Option<&serde_json::Value>,
    light: Option<&serde_json::Value>,
) -> Result<(), DbError> {
    if aircon.is_none() && tv.is_none() && light.is_none() {
        return Ok(());
    }
    let settings = aircon.cloned().map(|mut v| {
        if let Some(obj) = v.as_object_mut() {
            let now = OffsetDateTime::now_utc();
            obj.insert(
                "updated_at".into(),
                serde_json::Value::String(crate::json::rfc3339(now)),
            );
        }
        v
    });
    // `updated_at` inside the settings is when they were stored, not part of
    // them: compare without it (only objects have it; `-` fails on scalars).
    let update = client
        .prepare_cached(
            "UPDATE appliances SET
                 settings = CASE WHEN type = 'AC' THEN coalesce($2, settings) ELSE settings END,
                 state = CASE type WHEN 'TV' THEN coalesce($3, state)
                                   WHEN 'LIGHT' THEN coalesce($4, state) ELSE state END,
                 updated_at = now()
             WHERE device_id = $1
               AND ((type = 'AC' AND $2::jsonb IS NOT NULL
                     AND CASE WHEN jsonb_typeof(settings) = 'object'
                              THEN settings - 'updated_at' ELSE settings END
                         IS DISTINCT FROM CASE WHEN jsonb_typeof($2::jsonb) = 'object'
                                               THEN $2::jsonb - 'updated_at' ELSE $2::jsonb END)
                 OR (type = 'TV' AND $3::jsonb IS NOT NULL AND state IS DISTINCT FROM $3::jsonb)
                 OR (type = 'LIGHT' AND $4::jsonb IS NOT NULL
                     AND state IS DISTINCT FROM $4::jsonb))",
        )
        .await?;
    client
        .execute(&update, &[&device_id, &settings, &tv, &light])
        .await?;
    Ok(())
}

/// Creates next month's `readings` partition ahead of time, so readings never
/// pile up in the default partition.
pub async fn ensure_partitions(pool: &Pool) -> Result<(), DbError> {
    let client = pool.get().await?;
    client
        .batch_execute(
            "SELECT kumo_ensure_readings_partition(now());
             SELECT kumo_ensure_readings_partition(now() + interval '1 month');",
        )
        .await?;
    Ok(())
}

/// Known ECHONET Lite properties of a low-voltage smart meter (class 0x0288).
pub fn meter_property_name(epc: u8) -> &'static str {
    match epc {
        0xD3 => "coefficient",
        0xD7 => "cumulative_electric_energy_effective_digits",
        0xE0 => "normal_direction_cumulative_electric_energy",
        0xE1 => "cumulative_electric_energy_unit",
        0xE3 => "reverse_direction_cumulative_electric_energy",
        0xE7 => "measured_instantaneous",
        0xE8 => "measured_instantaneous_currents",
        _ => "unknown",
    }
}

/// Stores the newest value of each reported meter property.
pub async fn record_meter(
    pool: &Pool,
    device_id: &str,
    properties: &[(u8, String)],
    at: OffsetDateTime,
) -> Result<(), DbError> {
    record_meter_in(&pool.get().await?, device_id, properties, at).await
}

/// [`record_meter`] on the caller's connection or transaction.
pub async fn record_meter_in(
    client: &impl GenericClient,
    device_id: &str,
    properties: &[(u8, String)],
    at: OffsetDateTime,
) -> Result<(), DbError> {
    let epcs: Vec<i32> = properties.iter().map(|(e, _)| i32::from(*e)).collect();
    let names: Vec<&str> = properties
        .iter()
        .map(|(e, _)| meter_property_name(*e))
        .collect();
    let vals: Vec<&str> = properties.iter().map(|(_, v)| v.as_str()).collect();
    let upsert = client
        .prepare_cached(
            "INSERT INTO smart_meter_properties (device_id, epc, name, val, updated_at)
             SELECT $1, p.epc, p.name, p.val, $5
             FROM unnest($2::int[], $3::text[], $4::text[]) AS p(epc, name, val)
             WHERE EXISTS (SELECT 1 FROM devices WHERE id = $1)
             ON CONFLICT (device_id, epc) DO UPDATE
                 SET val = EXCLUDED.val, name = EXCLUDED.name, updated_at = EXCLUDED.updated_at
                 WHERE EXCLUDED.updated_at >= smart_meter_properties.updated_at",
        )
        .await?;
    client
        .execute(&upsert, &[&device_id, &epcs, &names, &vals, &at])
        .await?;
    Ok(())
}
