//! The appliance and signal tables: every statement the `/1/appliances` and
//! `/1/signals` endpoints run, scoped to what the calling account sees: the
//! devices of its homes (`device_access`, migration 0013). A new appliance
//! belongs to its device's account (the home owner), not to the member who
//! made it, so it stays with the device when that member leaves. Handlers parse
//! and answer; SQL lives here. `false` / `None` means "not this account's"
//! (or absent): the two are deliberately indistinguishable.

use deadpool_postgres::Pool;
use serde_json::Value;

use crate::catalog::Button;
use crate::db::DbError;

/// A new appliance row.
#[derive(Debug, Clone)]
pub struct NewAppliance<'a> {
    pub id: &'a str,
    pub device: &'a str,
    /// Nature's type name (`AC`, `TV`, `LIGHT`, `IR`).
    pub kind: &'a str,
    pub nickname: &'a str,
    pub image: &'a str,
    pub model: Option<&'a str>,
    pub settings: Option<Value>,
    pub state: Option<Value>,
    /// A BLE model's private macros, each stored with an id of its own.
    pub macros: &'a [Button],
}

/// Adds an appliance (and its private macros) to `user`'s device, last in
/// the account's order; `false` if the device is not the account's.
pub async fn create(pool: &Pool, user: &str, a: &NewAppliance<'_>) -> Result<bool, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let n = tx
        .execute(
            "INSERT INTO appliances (id, user_id, device_id, type, nickname, image, model_id,
                                     position, settings, state)
             SELECT $1, d.user_id, d.id, $4, $5, $6, $7,
                    coalesce((SELECT max(position) + 1 FROM appliances WHERE user_id = d.user_id), 0),
                    $8, $9
             FROM devices d WHERE d.id = $3 AND d.user_id IS NOT NULL
               AND d.id IN (SELECT device_id FROM device_access WHERE user_id = $2)",
            &[
                &a.id,
                &user,
                &a.device,
                &a.kind,
                &a.nickname,
                &a.image,
                &a.model,
                &a.settings,
                &a.state,
            ],
        )
        .await?;
    if n != 1 {
        return Ok(false);
    }
    if !a.macros.is_empty() {
        let ids: Vec<String> = a
            .macros
            .iter()
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        let names: Vec<&str> = a.macros.iter().map(|m| m.name).collect();
        tx.execute(
            "INSERT INTO ble_private_macros (id, appliance_id, name, position)
             SELECT m.id, $1, m.name, m.ord - 1
             FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS m(id, name, ord)",
            &[&a.id, &ids, &names],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// The private macros (id, name) of appliance `id`, in order; `None` if the
/// appliance is not one `user` sees.
pub async fn private_macros(
    pool: &Pool,
    user: &str,
    id: &str,
) -> Result<Option<Vec<(String, String)>>, DbError> {
    let client = pool.get().await?;
    let seen = client
        .query_opt(
            "SELECT 1 FROM appliances
             WHERE id = $1 AND device_id IN (SELECT device_id FROM device_access WHERE user_id = $2)",
            &[&id, &user],
        )
        .await?;
    if seen.is_none() {
        return Ok(None);
    }
    let rows = client
        .query(
            "SELECT id, name FROM ble_private_macros WHERE appliance_id = $1
             ORDER BY position, id",
            &[&id],
        )
        .await?;
    Ok(Some(rows.iter().map(|r| (r.get(0), r.get(1))).collect()))
}

/// The appliance and the name of private macro `id`, if `user` sees it.
pub async fn private_macro(
    pool: &Pool,
    user: &str,
    id: &str,
) -> Result<Option<(String, String)>, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT m.appliance_id, m.name FROM ble_private_macros m
             JOIN appliances a ON a.id = m.appliance_id
             WHERE m.id = $1
               AND a.device_id IN (SELECT device_id FROM device_access WHERE user_id = $2)",
            &[&id, &user],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Sets what is given of an appliance's nickname and image.
pub async fn relabel(
    pool: &Pool,
    user: &str,
    id: &str,
    nickname: Option<&str>,
    image: Option<&str>,
) -> Result<bool, DbError> {
    let client = pool.get().await?;
    let n = client
        .execute(
            "UPDATE appliances SET nickname = coalesce($3, nickname), image = coalesce($4, image),
                 updated_at = now()
             WHERE id = $1 AND device_id IN (SELECT device_id FROM device_access WHERE user_id = $2)",
            &[&id, &user, &nickname, &image],
        )
        .await?;
    Ok(n == 1)
}

/// Deletes an appliance (and its signals).
pub async fn delete(pool: &Pool, user: &str, id: &str) -> Result<bool, DbError> {
    let client = pool.get().await?;
    let n = client
        .execute(
            "DELETE FROM appliances WHERE id = $1 AND device_id IN (SELECT device_id FROM device_access WHERE user_id = $2)",
            &[&id, &user],
        )
        .await?;
    Ok(n == 1)
}

/// Puts the account's appliances in the order of `ids`; `false` (nothing
/// changed) unless `ids` lists each of them exactly once.
pub async fn reorder(pool: &Pool, user: &str, ids: &[String]) -> Result<bool, DbError> {
    reorder_rows(
        pool,
        "SELECT id FROM appliances WHERE device_id IN (SELECT device_id FROM device_access WHERE user_id = $1) FOR UPDATE",
        "UPDATE appliances a SET position = o.ord - 1
         FROM unnest($1::text[]) WITH ORDINALITY AS o(id, ord)
         WHERE a.id = o.id AND a.device_id IN (SELECT device_id FROM device_access WHERE user_id = $2)",
        user,
        ids,
    )
    .await
}

/// Whether `device` is `user`'s.
pub async fn device_owned(pool: &Pool, user: &str, device: &str) -> Result<bool, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT 1 FROM device_access WHERE device_id = $1 AND user_id = $2",
            &[&device, &user],
        )
        .await?;
    Ok(row.is_some())
}

/// Whether `appliance` is `user`'s.
pub async fn appliance_owned(pool: &Pool, user: &str, appliance: &str) -> Result<bool, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT 1 FROM appliances WHERE id = $1 AND device_id IN (SELECT device_id FROM device_access WHERE user_id = $2)",
            &[&appliance, &user],
        )
        .await?;
    Ok(row.is_some())
}

/// A learned signal as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalRow {
    pub id: String,
    pub name: String,
    pub image: String,
}

/// The signals of an appliance (ownership checked by the caller), in order.
pub async fn signals(pool: &Pool, appliance: &str) -> Result<Vec<SignalRow>, DbError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, name, image FROM signals WHERE appliance_id = $1
             ORDER BY position, created_at, id",
            &[&appliance],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| SignalRow {
            id: r.get(0),
            name: r.get(1),
            image: r.get(2),
        })
        .collect())
}

/// Stores a learned signal last in its appliance's order.
pub async fn create_signal(
    pool: &Pool,
    appliance: &str,
    signal: &SignalRow,
    message: &Value,
) -> Result<(), DbError> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO signals (id, appliance_id, name, image, message, position)
             VALUES ($1, $2, $3, $4, $5,
                     coalesce((SELECT max(position) + 1 FROM signals WHERE appliance_id = $2), 0))",
            &[
                &signal.id,
                &appliance,
                &signal.name,
                &signal.image,
                &message,
            ],
        )
        .await?;
    Ok(())
}

/// Sets what is given of a signal's name and image; the signal as stored.
pub async fn relabel_signal(
    pool: &Pool,
    user: &str,
    id: &str,
    name: Option<&str>,
    image: Option<&str>,
) -> Result<Option<SignalRow>, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "UPDATE signals s SET name = coalesce($3, s.name), image = coalesce($4, s.image),
                 updated_at = now()
             FROM appliances a
             WHERE s.id = $1 AND a.id = s.appliance_id AND a.device_id IN (SELECT device_id FROM device_access WHERE user_id = $2)
             RETURNING s.id, s.name, s.image",
            &[&id, &user, &name, &image],
        )
        .await?;
    Ok(row.map(|r| SignalRow {
        id: r.get(0),
        name: r.get(1),
        image: r.get(2),
    }))
}

/// Deletes a signal of one of `user`'s appliances.
pub async fn delete_signal(pool: &Pool, user: &str, id: &str) -> Result<bool, DbError> {
    let client = pool.get().await?;
    let n = client
        .execute(
            "DELETE FROM signals s USING appliances a
             WHERE s.id = $1 AND a.id = s.appliance_id AND a.device_id IN (SELECT device_id FROM device_access WHERE user_id = $2)",
            &[&id, &user],
        )
        .await?;
    Ok(n == 1)
}

/// Puts an appliance's signals in the order of `ids`; `false` (nothing
/// changed) unless `ids` lists each of them exactly once.
pub async fn reorder_signals(
    pool: &Pool,
    appliance: &str,
    ids: &[String],
) -> Result<bool, DbError> {
    reorder_rows(
        pool,
        "SELECT id FROM signals WHERE appliance_id = $1 FOR UPDATE",
        "UPDATE signals s SET position = o.ord - 1
         FROM unnest($1::text[]) WITH ORDINALITY AS o(id, ord)
         WHERE s.id = o.id AND s.appliance_id = $2",
        appliance,
        ids,
    )
    .await
}

/// Locks the rows `select` finds for `scope`, and if `ids` is exactly that
/// set, numbers them in its order with `update` (`$1` ids, `$2` scope).
async fn reorder_rows(
    pool: &Pool,
    select: &str,
    update: &str,
    scope: &str,
    ids: &[String],
) -> Result<bool, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let mut owned: Vec<String> = tx
        .query(select, &[&scope])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    owned.sort();
    let mut given = ids.to_vec();
    given.sort();
    if owned != given {
        return Ok(false);
    }
    tx.execute(update, &[&ids, &scope]).await?;
    tx.commit().await?;
    Ok(true)
}

/// The learned signal `id` of `user` with its appliance, device and message.
pub(super) async fn signal_for_sending(
    pool: &Pool,
    user: &str,
    id: &str,
) -> Result<Option<(String, String, Value)>, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT a.device_id, a.id, s.message FROM signals s
             JOIN appliances a ON a.id = s.appliance_id
             WHERE s.id = $1 AND a.device_id IN (SELECT device_id FROM device_access WHERE user_id = $2)",
            &[&id, &user],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1), r.get(2))))
}
