//! Reads the devices and appliances one user sees (its homes', through the
//! `device_access` view) and renders them in Nature's JSON
//! shapes (`DeviceResponse`, `ApplianceResponse`), field names and types
//! exactly as in the API reference; parts that do not apply are `null`.

use std::collections::HashMap;

use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use tokio_postgres::{GenericClient, Row};

use crate::catalog::{self, ApplianceType};
use crate::json::{number, rfc3339};

const DEVICE_COLUMNS: &str =
    "d.id, d.name, d.temperature_offset, d.humidity_offset, d.created_at, \
     d.updated_at, d.firmware_version, d.mac_address, d.serial_number, d.online";

/// Nature's `DevicePtr` (the device inside an appliance) from [`DEVICE_COLUMNS`] at `at`.
fn device_ptr(row: &Row, at: usize) -> Value {
    json!({
        "id": row.get::<_, String>(at),
        "name": row.get::<_, String>(at + 1),
        "temperature_offset": number(row.get(at + 2)),
        "humidity_offset": number(row.get(at + 3)),
        "created_at": rfc3339(row.get(at + 4)),
        "updated_at": rfc3339(row.get(at + 5)),
        "firmware_version": row.get::<_, String>(at + 6),
        "mac_address": row.get::<_, String>(at + 7),
        "bt_mac_address": Value::Null,
        "serial_number": row.get::<_, String>(at + 8),
    })
}

/// The devices `user_id` sees — those of the homes it belongs to — (or one
/// of them) as `DeviceResponse`s, oldest first.
pub async fn devices(
    client: &impl GenericClient,
    user_id: &str,
    only: Option<&str>,
) -> Result<Vec<Value>, tokio_postgres::Error> {
    devices_where(client, user_id, only, None).await
}

/// The devices of home `home` that `user_id` sees (all of them, if it is a
/// member; none otherwise), as `DeviceResponse`s, oldest first.
pub async fn home_devices(
    client: &impl GenericClient,
    user_id: &str,
    home: &str,
) -> Result<Vec<Value>, tokio_postgres::Error> {
    devices_where(client, user_id, None, Some(home)).await
}

async fn devices_where(
    client: &impl GenericClient,
    user_id: &str,
    only: Option<&str>,
    home: Option<&str>,
) -> Result<Vec<Value>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {DEVICE_COLUMNS}, u.nickname, u.id FROM devices d JOIN users u ON u.id = d.user_id
         WHERE d.id IN (SELECT device_id FROM device_access WHERE user_id = $1)
           AND ($2::text IS NULL OR d.id = $2) AND ($3::text IS NULL OR d.home_id = $3)
         ORDER BY d.created_at, d.id"
    );
    let rows = client.query(&sql, &[&user_id, &only, &home]).await?;
    let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    // The newest reading per sensor since the device's current ownership
    // began: one backward step of the readings index each.
    let events = client
        .query(
            "SELECT d.id, s.sensor, r.val, r.at
             FROM devices d
             CROSS JOIN unnest(ARRAY['te', 'hu', 'il', 'mo']) AS s(sensor)
             CROSS JOIN LATERAL (
                 SELECT val, at FROM readings
                 WHERE device_id = d.id AND sensor = s.sensor AND at >= d.owner_since
                 ORDER BY at DESC, val DESC LIMIT 1) r
             WHERE d.id = ANY($1)",
            &[&ids],
        )
        .await?;
    let mut newest: HashMap<String, Map<String, Value>> = HashMap::new();
    for e in &events {
        let val: f64 = e.get(2);
        newest.entry(e.get(0)).or_default().insert(
            e.get(1),
            json!({"val": number(val), "created_at": rfc3339(e.get(3))}),
        );
    }
    Ok(rows
        .iter()
        .map(|r| {
            let mut device = device_ptr(r, 0);
            let id: String = r.get(0);
            device["online"] = Value::Bool(r.get(9));
            device["newest_events"] = Value::Object(newest.remove(&id).unwrap_or_default());
            // Nature's deprecated `users`: the account the device belongs to
            // (its home's owner).
            device["users"] = json!([{"id": r.get::<_, String>(11),
                "nickname": r.get::<_, String>(10), "superuser": true}]);
            device
        })
        .collect())
}

/// Which appliances to render.
#[derive(Debug, Clone, Copy)]
pub enum Appliances<'a> {
    /// All of the user's, in their order.
    All,
    /// Those on one device.
    OnDevice(&'a str),
    /// One appliance.
    One(&'a str),
    /// The user's ECHONET Lite appliances: smart meters and the appliances
    /// gateways reach (these appear nowhere else, as in Nature's API).
    Echonet,
}

/// The user's appliances as `ApplianceResponse`s, in the user's order.
pub async fn appliances(
    client: &impl GenericClient,
    user_id: &str,
    which: Appliances<'_>,
) -> Result<Vec<Value>, tokio_postgres::Error> {
    let (device, one, echonet) = match which {
        Appliances::All => (None, None, false),
        Appliances::OnDevice(d) => (Some(d), None, false),
        Appliances::One(a) => (None, Some(a), false),
        Appliances::Echonet => (None, None, true),
    };
    let sql = format!(
        "SELECT a.id, a.type, a.nickname, a.image, a.model_id, a.settings, a.state, {DEVICE_COLUMNS}
         FROM appliances a JOIN devices d ON d.id = a.device_id
         WHERE a.device_id IN (SELECT device_id FROM device_access WHERE user_id = $1) AND ($2::text IS NULL OR a.device_id = $2)
           AND ($3::text IS NULL OR a.id = $3)
           AND CASE WHEN $4 THEN a.type LIKE 'EL\\_%' ELSE a.type <> 'EL_AIRCON' END
         ORDER BY a.position, a.created_at, a.id"
    );
    let rows = client
        .query(&sql, &[&user_id, &device, &one, &echonet])
        .await?;
    let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let signal_rows = client
        .query(
            "SELECT appliance_id, id, name, image FROM signals WHERE appliance_id = ANY($1)
             ORDER BY position, created_at, id",
            &[&ids],
        )
        .await?;
    let mut signals: HashMap<String, Vec<Value>> = HashMap::new();
    for s in &signal_rows {
        signals
            .entry(s.get(0))
            .or_default()
            .push(signal_json(s.get(1), s.get(2), s.get(3)));
    }
    let meter_devices: Vec<String> = rows
        .iter()
        .filter(|r| r.get::<_, String>(1) == "EL_SMART_METER")
        .map(|r| r.get(7))
        .collect();
    let mut properties = meter_properties(client, &meter_devices).await?;
    let mut macros = private_macros(client, &ids).await?;
    let mut el_properties = if echonet {
        echonet_properties(client, &ids).await?
    } else {
        HashMap::new()
    };
    Ok(rows
        .iter()
        .map(|r| {
            let id: String = r.get(0);
            let device_id: String = r.get(7);
            let props = match el_properties.remove(&id) {
                Some(p) => Some(p),
                None => properties.remove(&device_id),
            };
            let extra = Extra {
                meter: props,
                macros: macros.remove(&id).unwrap_or_default(),
            };
            appliance_json(r, signals.remove(&id).unwrap_or_default(), extra)
        })
        .collect())
}

/// Nature's `Signal`.
pub fn signal_json(id: String, name: String, image: String) -> Value {
    json!({"id": id, "name": name, "image": image})
}

/// What an appliance shows besides its row: ECHONET Lite properties, BLE
/// private macros.
struct Extra {
    meter: Option<Vec<Value>>,
    macros: Map<String, Value>,
}

/// `model`, `settings` and `aircon` are always present (null when unused), as
/// Nature sends them; `tv`, `light`, `smart_meter`, `floor_heater`,
/// `light_projector` and `ble` only on appliances that have them — published
/// clients (e.g. PyPI `nature-remo`) reject a null there.
fn appliance_json(r: &Row, signals: Vec<Value>, extra: Extra) -> Value {
    let Extra { meter, macros } = extra;
    let kind = ApplianceType::parse(&r.get::<_, String>(1)).unwrap_or(ApplianceType::Ir);
    let model = r
        .get::<_, Option<String>>(4)
        .and_then(|m| catalog::model(&m));
    let settings: Option<Value> = r.get(5);
    let state: Option<Value> = r.get(6);
    let mut out = json!({
        "id": r.get::<_, String>(0),
        "device": device_ptr(r, 7),
        "model": model.map_or(Value::Null, catalog::model_json),
        "type": kind.as_str(),
        "nickname": r.get::<_, String>(2),
        "image": r.get::<_, String>(3),
        "settings": Value::Null,
        "aircon": Value::Null,
        "signals": signals,
    });
    match (kind, model) {
        (ApplianceType::Ac, Some(m)) => {
            if let Some(caps) = m.aircon() {
                out["aircon"] = catalog::aircon_json(caps);
            }
            out["settings"] = settings.unwrap_or(Value::Null);
        }
        (ApplianceType::Tv, Some(m)) => {
            out["tv"] = json!({"buttons": catalog::buttons_json(m.buttons()), "state": state});
        }
        (ApplianceType::Light, Some(m)) => {
            out["light"] = json!({"buttons": catalog::buttons_json(m.buttons()), "state": state});
        }
        (ApplianceType::FloorHeater, Some(m)) => {
            if let Some(caps) = m.floor_heater() {
                out["floor_heater"] = catalog::aircon_json(caps);
            }
            out["settings"] = settings.unwrap_or(Value::Null);
        }
        (ApplianceType::LightProjector, Some(m)) => {
            out["light_projector"] =
                json!({"layout": catalog::projector_layout_json(m), "state": state});
        }
        (ApplianceType::SesameBot, Some(_)) => {
            out["ble"] = ble_json(&r.get::<_, String>(0), macros, state);
        }
        (ApplianceType::SmartMeter, _) => {
            out["smart_meter"] = json!({"echonetlite_properties": meter.unwrap_or_default()});
        }
        // Only `/1/echonetlite/appliances` shows these; it reads this key.
        (ApplianceType::ElAircon, _) => {
            out["echonetlite_properties"] = Value::Array(meter.unwrap_or_default());
        }
        _ => {}
    }
    out
}

/// Nature's `BLEControlItem` for a SESAME bot, with Kumo's `state`. Kumo
/// pairs nothing itself: the address is derived from the appliance id (a
/// static random address), and the hub is the bot's bonded owner.
fn ble_json(id: &str, macros: Map<String, Value>, state: Option<Value>) -> Value {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(id.as_bytes());
    let mut addr: Vec<String> = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    // A static random address has its two top bits set.
    addr[0] = format!("{:02x}", digest[0] | 0xc0);
    json!({
        "addr": addr.join(":"),
        "addr_type": "random",
        "bonded": true,
        "sesame": {"uuid": id, "device_type": "sesame_bot", "key_level": "owner",
                   "user_index": []},
        "macros": macros,
        "state": state,
    })
}

/// Nature's `BLEPrivateMacroResponse`.
pub fn private_macro_json(id: &str) -> Value {
    json!({"id": id, "url": format!("/1/ble/private_macros/{id}/exec")})
}

/// Each appliance's private macros, by name, keyed by appliance id.
async fn private_macros(
    client: &impl GenericClient,
    appliance_ids: &[String],
) -> Result<HashMap<String, Map<String, Value>>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT appliance_id, id, name FROM ble_private_macros
             WHERE appliance_id = ANY($1) ORDER BY appliance_id, position",
            &[&appliance_ids],
        )
        .await?;
    let mut out: HashMap<String, Map<String, Value>> = HashMap::new();
    for m in &rows {
        let id: String = m.get(1);
        out.entry(m.get(0))
            .or_default()
            .insert(m.get(2), private_macro_json(&id));
    }
    Ok(out)
}

/// Each meter device's properties as Nature's `ELPropertyResponse` list (`epc` a number).
pub async fn meter_properties(
    client: &impl GenericClient,
    device_ids: &[String],
) -> Result<HashMap<String, Vec<Value>>, tokio_postgres::Error> {
    el_properties(
        client,
        "SELECT device_id, epc, name, val, updated_at FROM smart_meter_properties
         WHERE device_id = ANY($1) ORDER BY device_id, epc",
        device_ids,
    )
    .await
}

/// Each gateway-reached ECHONET Lite appliance's properties, by appliance id
/// (`epc` a number, `val` hex EDT).
pub async fn echonet_properties(
    client: &impl GenericClient,
    appliance_ids: &[String],
) -> Result<HashMap<String, Vec<Value>>, tokio_postgres::Error> {
    el_properties(
        client,
        "SELECT appliance_id, epc, name, val, updated_at FROM echonet_properties
         WHERE appliance_id = ANY($1) ORDER BY appliance_id, epc",
        appliance_ids,
    )
    .await
}

/// `ELPropertyResponse` lists keyed by the first column of `sql`, which
/// selects (key, epc, name, val, updated_at) for the keys in `$1`.
async fn el_properties(
    client: &impl GenericClient,
    sql: &str,
    keys: &[String],
) -> Result<HashMap<String, Vec<Value>>, tokio_postgres::Error> {
    let rows = client.query(sql, &[&keys]).await?;
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for p in &rows {
        let updated: OffsetDateTime = p.get(4);
        out.entry(p.get(0)).or_default().push(json!({
            "name": p.get::<_, String>(2),
            "epc": p.get::<_, i32>(1),
            "val": p.get::<_, String>(3),
            "updated_at": rfc3339(updated),
        }));
    }
    Ok(out)
}
