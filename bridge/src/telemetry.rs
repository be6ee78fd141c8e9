//! What devices report besides readings: presence (online, node, last seen)
//! and smart-meter ECHONET Lite properties. The MQTT subscriber calls these;
//! they only touch the database.

use deadpool_postgres::Pool;
use time::OffsetDateTime;

use crate::commands::CommandError;

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
pub async fn record_presence(pool: &Pool, p: &Presence<'_>) -> Result<bool, CommandError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "UPDATE devices d SET online = $2,
                 node_id = CASE WHEN $2 THEN $3 ELSE d.node_id END,
                 last_seen_at = $4
             FROM (SELECT online AS was FROM devices WHERE id = $1) prev
             WHERE d.id = $1 AND (d.last_seen_at IS NULL OR d.last_seen_at <= $4)
             RETURNING prev.was",
            &[&p.device_id, &p.online, &p.node, &p.at],
        )
        .await?;
    Ok(p.online && row.is_some_and(|r| !r.get::<_, bool>(0)))
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
) -> Result<(), CommandError> {
    let epcs: Vec<i32> = properties.iter().map(|(e, _)| i32::from(*e)).collect();
    let names: Vec<&str> = properties
        .iter()
        .map(|(e, _)| meter_property_name(*e))
        .collect();
    let vals: Vec<&str> = properties.iter().map(|(_, v)| v.as_str()).collect();
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO smart_meter_properties (device_id, epc, name, val, updated_at)
             SELECT $1, p.epc, p.name, p.val, $5
             FROM unnest($2::int[], $3::text[], $4::text[]) AS p(epc, name, val)
             WHERE EXISTS (SELECT 1 FROM devices WHERE id = $1)
             ON CONFLICT (device_id, epc) DO UPDATE
                 SET val = EXCLUDED.val, name = EXCLUDED.name, updated_at = EXCLUDED.updated_at
                 WHERE EXCLUDED.updated_at >= smart_meter_properties.updated_at",
            &[&device_id, &epcs, &names, &vals, &at],
        )
        .await?;
    Ok(())
}
