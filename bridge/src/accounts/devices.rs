//! Device ownership: registering a device to an account, listing devices for
//! the operator, releasing a device.

use deadpool_postgres::Pool;
use kumo_contract::DeviceId;
use time::OffsetDateTime;
use uuid::Uuid;

use super::AccountError;

/// What kind of device a registration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// An IR remote with sensors.
    Remo,
    /// A smart-meter gateway; gets an `EL_SMART_METER` appliance.
    SmartMeter,
}

/// Gives `device_id` to `user_id` (creating the device row if needed). A smart
/// meter also gets its `EL_SMART_METER` appliance, as in Nature's API.
pub async fn register_device(
    pool: &Pool,
    device_id: &DeviceId,
    user_id: &str,
    kind: DeviceKind,
    name: &str,
) -> Result<(), AccountError> {
    let kind_text = match kind {
        DeviceKind::Remo => "remo",
        DeviceKind::SmartMeter => "smart_meter",
    };
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let n = tx
        .execute(
            "INSERT INTO devices (id, user_id, kind, name)
             SELECT $1, id, $3, $4 FROM users WHERE id = $2
             ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id,
                 kind = EXCLUDED.kind, name = EXCLUDED.name, updated_at = now()",
            &[&device_id.as_str(), &user_id, &kind_text, &name],
        )
        .await?;
    if n == 0 {
        return Err(AccountError::NoSuchUser(user_id.into()));
    }
    // A device changing hands leaves the previous owner's appliances and
    // signals behind: they are that owner's data, not the new one's.
    tx.execute(
        "DELETE FROM appliances WHERE device_id = $1 AND user_id <> $2",
        &[&device_id.as_str(), &user_id],
    )
    .await?;
    if kind == DeviceKind::SmartMeter {
        tx.execute(
            "INSERT INTO appliances (id, user_id, device_id, type, nickname, image)
             SELECT $1, $2, $3, 'EL_SMART_METER', $4, 'ico_smartmeter'
             WHERE NOT EXISTS (SELECT 1 FROM appliances
                               WHERE device_id = $3 AND type = 'EL_SMART_METER')",
            &[
                &Uuid::new_v4().to_string(),
                &user_id,
                &device_id.as_str(),
                &name,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A device as the operator lists it.
#[derive(Debug, Clone)]
pub struct DeviceSummary {
    pub id: String,
    /// The owning account; `None` once released.
    pub user_id: Option<String>,
    pub kind: String,
    pub name: String,
    pub online: bool,
    pub node_id: Option<String>,
    pub last_seen_at: Option<OffsetDateTime>,
}

/// Every device, or those of `user_id`, by id.
pub async fn list_devices(
    pool: &Pool,
    user_id: Option<&str>,
) -> Result<Vec<DeviceSummary>, AccountError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, user_id, kind, name, online, node_id, last_seen_at FROM devices
             WHERE $1::text IS NULL OR id IN (SELECT device_id FROM device_access WHERE user_id = $1) ORDER BY id",
            &[&user_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| DeviceSummary {
            id: r.get(0),
            user_id: r.get(1),
            kind: r.get(2),
            name: r.get(3),
            online: r.get(4),
            node_id: r.get(5),
            last_seen_at: r.get(6),
        })
        .collect())
}

/// Releases `device_id` from its account (only if `owner` owns it, when
/// given): the device belongs to nobody and the account's appliances on it are
/// gone. `POST /1/devices/{id}/delete` and `kumo devices remove` both do this.
/// `false` if there is no such device (of `owner`).
pub async fn release_device(
    pool: &Pool,
    device_id: &str,
    owner: Option<&str>,
) -> Result<bool, AccountError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let released = tx
        .query_opt(
            "UPDATE devices d SET user_id = NULL, updated_at = now()
             FROM (SELECT user_id FROM devices WHERE id = $1) prev
             WHERE d.id = $1 AND ($2::text IS NULL OR d.user_id = $2)
             RETURNING prev.user_id",
            &[&device_id, &owner],
        )
        .await?;
    let Some(row) = released else {
        return Ok(false);
    };
    let previous: Option<String> = row.get(0);
    tx.execute(
        "DELETE FROM appliances WHERE device_id = $1 AND user_id = $2",
        &[&device_id, &previous],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// One setting of a device its owner may change.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceSetting {
    Name(String),
    TemperatureOffset(f64),
    HumidityOffset(f64),
}

/// Applies `setting` to `user`'s device `id`; `false` if it is not theirs.
pub async fn set_device(
    pool: &Pool,
    user: &str,
    id: &str,
    setting: &DeviceSetting,
) -> Result<bool, AccountError> {
    let client = pool.get().await?;
    let (sql, value): (&str, &(dyn tokio_postgres::types::ToSql + Sync)) = match setting {
        DeviceSetting::Name(name) => (
            "UPDATE devices SET name = $3, updated_at = now()
             WHERE id = $1 AND id IN (SELECT device_id FROM device_access WHERE user_id = $2)",
            name,
        ),
        DeviceSetting::TemperatureOffset(v) => (
            "UPDATE devices SET temperature_offset = $3, updated_at = now()
             WHERE id = $1 AND id IN (SELECT device_id FROM device_access WHERE user_id = $2)",
            v,
        ),
        DeviceSetting::HumidityOffset(v) => (
            "UPDATE devices SET humidity_offset = $3, updated_at = now()
             WHERE id = $1 AND id IN (SELECT device_id FROM device_access WHERE user_id = $2)",
            v,
        ),
    };
    Ok(client.execute(sql, &[&id, &user, value]).await? == 1)
}

/// When `user`'s ownership of `device` began, or `not_before` if later
/// (`None`: not theirs): what the device recorded before belongs to someone
/// else. (A first owner's `owner_since` is `-infinity`, hence the `greatest`.)
pub async fn owned_since(
    pool: &Pool,
    user: &str,
    device: &str,
    not_before: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, AccountError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT greatest(owner_since, $3) FROM devices
             WHERE id = $1 AND id IN (SELECT device_id FROM device_access WHERE user_id = $2)",
            &[&device, &user, &not_before],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}
