//! What devices report about themselves besides readings: their facts
//! (firmware, MAC, serial), their appliances' states, smart-meter ECHONET
//! Lite properties and those of other ECHONET Lite appliances a gateway reaches. The MQTT subscriber calls these; they only touch the
//! database. Like `presence.rs`, each record has a pool and an `_in` form, and
//! a report that changes nothing writes nothing.

use deadpool_postgres::{GenericClient, Pool};
use time::OffsetDateTime;

use kumo_contract::appliance::echonet::{self, Eoj};
use kumo_contract::DeviceId;

use crate::catalog::ApplianceType;

use crate::db::DbError;

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
    device_id: &DeviceId,
    facts: &DeviceFacts<'_>,
) -> Result<(), DbError> {
    record_facts_in(&pool.get().await?, device_id, facts).await
}

/// [`record_facts`] on the caller's connection or transaction.
pub async fn record_facts_in(
    client: &impl GenericClient,
    device_id: &DeviceId,
    facts: &DeviceFacts<'_>,
) -> Result<(), DbError> {
    let record = StateRecord {
        device_id,
        facts: facts.clone(),
        appliances: None,
    };
    record_states_in(client, &[record]).await
}

/// Stores the appliance states a device reported in its `state`: AC settings
/// on its `AC` appliances, TV and light state on its `TV` and `LIGHT` ones
/// (a report's other kinds go through [`record_states_in`]).
/// What the device holds is the truth; absent parts keep their value.
pub async fn record_appliance_states(
    pool: &Pool,
    device_id: &DeviceId,
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
    device_id: &DeviceId,
    aircon: Option<&serde_json::Value>,
    tv: Option<&serde_json::Value>,
    light: Option<&serde_json::Value>,
) -> Result<(), DbError> {
    let mut appliances = serde_json::Map::new();
    for (key, v) in [("aircon", aircon), ("tv", tv), ("light", light)] {
        if let Some(v) = v {
            appliances.insert(key.into(), v.clone());
        }
    }
    let record = StateRecord {
        device_id,
        facts: DeviceFacts::default(),
        appliances: Some(serde_json::Value::Object(appliances)),
    };
    record_states_in(client, &[record]).await
}

/// One device's `state` report for [`record_states_in`].
#[derive(Debug, Clone, PartialEq)]
pub struct StateRecord<'a> {
    pub device_id: &'a DeviceId,
    pub facts: DeviceFacts<'a>,
    /// The reported appliance states, keyed as in the protocol's
    /// `appliances` (`aircon`, `tv`, `light`, `floor_heater`,
    /// `light_projector`, `sesame_bot`).
    pub appliances: Option<serde_json::Value>,
}

/// [`record_facts_in`] and [`record_appliance_states_in`] for many devices,
/// in two statements. Each device may appear only once (an `UPDATE … FROM`
/// applies one input row per target row): the caller splits repeated
/// reports of a device into later calls.
pub async fn record_states_in(
    client: &impl GenericClient,
    records: &[StateRecord<'_>],
) -> Result<(), DbError> {
    let with_facts: Vec<&StateRecord> = records
        .iter()
        .filter(|r| r.facts != DeviceFacts::default())
        .collect();
    if !with_facts.is_empty() {
        let update = client
            .prepare_cached(
                "UPDATE devices d SET firmware_version = coalesce(i.fw, d.firmware_version),
                     mac_address = coalesce(i.mac, d.mac_address),
                     serial_number = coalesce(i.serial, d.serial_number), updated_at = now()
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS i(id, fw, mac, serial)
                 WHERE d.id = i.id
                   AND (d.firmware_version, d.mac_address, d.serial_number)
                       IS DISTINCT FROM (coalesce(i.fw, d.firmware_version),
                                         coalesce(i.mac, d.mac_address),
                                         coalesce(i.serial, d.serial_number))",
            )
            .await?;
        let ids: Vec<&str> = with_facts.iter().map(|r| r.device_id.as_str()).collect();
        let fw: Vec<Option<&str>> = with_facts
            .iter()
            .map(|r| r.facts.firmware_version)
            .collect();
        let mac: Vec<Option<&str>> = with_facts.iter().map(|r| r.facts.mac_address).collect();
        let serial: Vec<Option<&str>> = with_facts.iter().map(|r| r.facts.serial_number).collect();
        client.execute(&update, &[&ids, &fw, &mac, &serial]).await?;
    }
    let with_apps: Vec<&StateRecord> = records
        .iter()
        .filter(|r| {
            r.appliances
                .as_ref()
                .and_then(serde_json::Value::as_object)
                .is_some_and(|o| !o.is_empty())
        })
        .collect();
    if with_apps.is_empty() {
        return Ok(());
    }
    let now = crate::json::rfc3339(OffsetDateTime::now_utc());
    let ids: Vec<&str> = with_apps.iter().map(|r| r.device_id.as_str()).collect();
    let apps: Vec<Option<&serde_json::Value>> =
        with_apps.iter().map(|r| r.appliances.as_ref()).collect();
    // Each appliance type reads its key of the report; settings (AC, floor
    // heater) are compared without their `updated_at`.
    let update = client
        .prepare_cached(
            "WITH reported AS (
                 SELECT i.id AS device_id, k.type, k.settings, i.apps -> k.key AS v
                 FROM unnest($1::text[], $2::jsonb[]) AS i(id, apps)
                 CROSS JOIN (VALUES ('AC', 'aircon', true), ('TV', 'tv', false),
                                    ('LIGHT', 'light', false),
                                    ('FLOOR_HEATER', 'floor_heater', true),
                                    ('LIGHT_PROJECTOR', 'light_projector', false),
                                    ('SESAME_BOT', 'sesame_bot', false))
                            AS k(type, key, settings)
                 WHERE jsonb_typeof(i.apps -> k.key) = 'object')
             UPDATE appliances a SET
                 settings = CASE WHEN r.settings
                                 THEN r.v || jsonb_build_object('updated_at', $3::text)
                                 ELSE a.settings END,
                 state = CASE WHEN r.settings THEN a.state ELSE r.v END,
                 updated_at = now()
             FROM reported r
             WHERE a.device_id = r.device_id AND a.type = r.type
               AND CASE WHEN r.settings
                        THEN CASE WHEN jsonb_typeof(a.settings) = 'object'
                                  THEN a.settings - 'updated_at' ELSE a.settings END
                             IS DISTINCT FROM r.v - 'updated_at'
                        ELSE a.state IS DISTINCT FROM r.v END",
        )
        .await?;
    client.execute(&update, &[&ids, &apps, &now]).await?;
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
    device_id: &DeviceId,
    properties: &[(u8, String)],
    at: OffsetDateTime,
) -> Result<(), DbError> {
    record_meter_in(&pool.get().await?, device_id, properties, at).await
}

/// [`record_meter`] on the caller's connection or transaction.
pub async fn record_meter_in(
    client: &impl GenericClient,
    device_id: &DeviceId,
    properties: &[(u8, String)],
    at: OffsetDateTime,
) -> Result<(), DbError> {
    record_meters_in(client, &[(device_id, properties, at)]).await
}

/// One smart meter's report: the device, its `(EPC, value)` properties, when
/// they were read.
pub type MeterProperties<'a> = (&'a DeviceId, &'a [(u8, String)], OffsetDateTime);

/// Several meters' reports `(device, properties, at)` in one statement (the
/// report shards write a batch's meter reports a round at a time). A
/// statement cannot write one row twice: each device at most once, and each
/// of its properties at most once (the payload parser keeps the last value
/// of a repeated EPC).
pub async fn record_meters_in(
    client: &impl GenericClient,
    reports: &[MeterProperties<'_>],
) -> Result<(), DbError> {
    let rows = reports
        .iter()
        .flat_map(|(d, props, at)| props.iter().map(move |p| (*d, p, *at)));
    let (mut devices, mut epcs, mut names, mut vals, mut ats) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (device, (epc, val), at) in rows {
        devices.push(device.as_str());
        epcs.push(i32::from(*epc));
        names.push(meter_property_name(*epc));
        vals.push(val.as_str());
        ats.push(at);
    }
    if devices.is_empty() {
        return Ok(());
    }
    let upsert = client
        .prepare_cached(
            "INSERT INTO smart_meter_properties (device_id, epc, name, val, updated_at)
             SELECT p.device_id, p.epc, p.name, p.val, p.at
             FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::timestamptz[])
                  AS p(device_id, epc, name, val, at)
             WHERE EXISTS (SELECT 1 FROM devices WHERE id = p.device_id)
             ON CONFLICT (device_id, epc) DO UPDATE
                 SET val = EXCLUDED.val, name = EXCLUDED.name, updated_at = EXCLUDED.updated_at
                 WHERE EXCLUDED.updated_at >= smart_meter_properties.updated_at",
        )
        .await?;
    client
        .execute(&upsert, &[&devices, &epcs, &names, &vals, &ats])
        .await?;
    Ok(())
}

/// The appliance type Kumo gives an ECHONET Lite object other than the smart
/// meter, by its class; `None` for classes it does not model.
pub fn echonet_appliance_type(object: Eoj) -> Option<ApplianceType> {
    (object.class_properties() == Eoj::HOME_AIR_CONDITIONER.class_properties())
        .then_some(ApplianceType::ElAircon)
}

/// Stores the newest value of each property a gateway reported for `object`
/// (hex EDT). The first report of an object creates its appliance in the
/// gateway owner's account (one per class and gateway); an unowned gateway's
/// reports are dropped.
pub async fn record_echonet_in(
    client: &impl GenericClient,
    device_id: &DeviceId,
    object: Eoj,
    properties: &[(u8, String)],
    at: OffsetDateTime,
) -> Result<(), DbError> {
    record_echonets_in(client, &[(device_id, object, properties, at)]).await
}

/// One gateway's report of an ECHONET Lite object other than its meter: the
/// device, the object, its `(EPC, value)` properties, when they were read.
pub type EchonetProperties<'a> = (&'a DeviceId, Eoj, &'a [(u8, String)], OffsetDateTime);

/// Several gateways' [`record_echonet_in`] in one statement (the report
/// shards write a batch's reports a round at a time). A statement cannot
/// write one row twice: each device at most once (its objects of one class
/// share an appliance), each property at most once.
pub async fn record_echonets_in(
    client: &impl GenericClient,
    reports: &[EchonetProperties<'_>],
) -> Result<(), DbError> {
    // One row per report (the appliance it may create) ...
    let (mut devices, mut kinds, mut new_ids) = (Vec::new(), Vec::new(), Vec::new());
    // ... and one per property.
    let (mut p_devices, mut p_kinds, mut epcs, mut names, mut vals, mut ats) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for &(device, object, properties, at) in reports {
        let Some(kind) = echonet_appliance_type(object) else {
            continue;
        };
        devices.push(device.as_str());
        kinds.push(kind.as_str());
        new_ids.push(uuid::Uuid::new_v4().to_string());
        for (epc, val) in properties {
            p_devices.push(device.as_str());
            p_kinds.push(kind.as_str());
            epcs.push(i32::from(*epc));
            names.push(echonet::property(object, *epc).map_or("unknown", |p| p.name));
            vals.push(val.as_str());
            ats.push(at);
        }
    }
    if devices.is_empty() {
        return Ok(());
    }
    // An appliance row inserted by `created` is not visible to the scan in
    // `target` (one snapshot), so exactly one of them yields its id.
    let upsert = client
        .prepare_cached(
            "WITH r AS (
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS r(device_id, type, new_id)),
             created AS (
                 INSERT INTO appliances (id, user_id, device_id, type, nickname, image)
                 SELECT r.new_id, d.user_id, d.id, r.type, 'Air conditioner', 'ico_ac_1'
                 FROM r JOIN devices d ON d.id = r.device_id
                 WHERE d.user_id IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM appliances a
                                   WHERE a.device_id = r.device_id AND a.type = r.type)
                 RETURNING id, device_id, type),
             target AS (
                 SELECT id, device_id, type FROM created
                 UNION ALL
                 SELECT a.id, a.device_id, a.type
                 FROM appliances a JOIN r ON a.device_id = r.device_id AND a.type = r.type)
             INSERT INTO echonet_properties (appliance_id, epc, name, val, updated_at)
             SELECT t.id, p.epc, p.name, p.val, p.at
             FROM unnest($4::text[], $5::text[], $6::int[], $7::text[], $8::text[],
                         $9::timestamptz[]) AS p(device_id, type, epc, name, val, at)
             JOIN target t ON t.device_id = p.device_id AND t.type = p.type
             ON CONFLICT (appliance_id, epc) DO UPDATE
                 SET val = EXCLUDED.val, name = EXCLUDED.name, updated_at = EXCLUDED.updated_at
                 WHERE EXCLUDED.updated_at >= echonet_properties.updated_at",
        )
        .await?;
    client
        .execute(
            &upsert,
            &[
                &devices, &kinds, &new_ids, &p_devices, &p_kinds, &epcs, &names, &vals, &ats,
            ],
        )
        .await?;
    Ok(())
}
