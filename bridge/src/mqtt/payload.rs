//! The JSON on device topics, as the bridge reads and writes it: parsing and
//! validating what devices (and broker nodes) publish, and encoding commands.
//!
//! Shapes follow the device simulator (`kumo-sim`'s `payload` module) and the
//! topic contract; timestamps (`ts`) are Unix epoch milliseconds. Parsing is
//! strict about types and lenient about extra fields. Nothing here touches the
//! database or the network.

use serde::Deserialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::commands::{Ack, CommandKind, QueuedCommand};

/// Why a payload was refused.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("value out of range: {0}")]
    Range(&'static str),
}

#[derive(Deserialize)]
struct SensorWire {
    val: f64,
    ts: Option<u64>,
}

/// `devices/{id}/sensors/{s}`: the value and when it was measured.
pub fn sensor(body: &[u8], now: OffsetDateTime) -> Result<(f64, OffsetDateTime), PayloadError> {
    let w: SensorWire = serde_json::from_slice(body)?;
    if !w.val.is_finite() {
        return Err(PayloadError::Range("val is not a finite number"));
    }
    Ok((w.val, timestamp(w.ts, now)?))
}

#[derive(Deserialize)]
struct PropertyWire {
    epc: u8,
    val: String,
}

#[derive(Deserialize)]
struct MeterWire {
    echonetlite_properties: Vec<PropertyWire>,
    ts: Option<u64>,
}

/// A smart meter's report: its properties, plus the power and energy readings
/// derived from them for history.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterReport {
    pub properties: Vec<(u8, String)>,
    /// `(sensor, value)`: `power` from EPC 0xE7, `energy` from 0xE0.
    pub readings: Vec<(&'static str, f64)>,
    pub at: OffsetDateTime,
}

/// `devices/{id}/meter`.
pub fn meter(body: &[u8], now: OffsetDateTime) -> Result<MeterReport, PayloadError> {
    let w: MeterWire = serde_json::from_slice(body)?;
    if w.echonetlite_properties.is_empty() {
        return Err(PayloadError::Range("no echonetlite_properties"));
    }
    let readings = w
        .echonetlite_properties
        .iter()
        .filter_map(|p| {
            let sensor = match p.epc {
                0xE7 => "power",
                0xE0 => "energy",
                _ => return None,
            };
            let val = p.val.trim().parse::<f64>().ok().filter(|v| v.is_finite())?;
            Some((sensor, val))
        })
        .collect();
    Ok(MeterReport {
        properties: w
            .echonetlite_properties
            .into_iter()
            .map(|p| (p.epc, p.val))
            .collect(),
        readings,
        at: timestamp(w.ts, now)?,
    })
}

#[derive(Deserialize)]
struct PresenceWire {
    online: bool,
    node: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    ts: Option<OffsetDateTime>,
}

/// A broker node's presence announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceReport {
    pub online: bool,
    pub node: Option<String>,
    pub at: OffsetDateTime,
}

/// `devices/{id}/presence`.
pub fn presence(body: &[u8], now: OffsetDateTime) -> Result<PresenceReport, PayloadError> {
    let w: PresenceWire = serde_json::from_slice(body)?;
    Ok(PresenceReport {
        online: w.online,
        node: w.node.filter(|n| !n.is_empty()),
        at: w.ts.unwrap_or(now),
    })
}

#[derive(Deserialize)]
struct EpochWire {
    node: String,
    #[serde(with = "time::serde::rfc3339")]
    started: OffsetDateTime,
}

/// `kumo/nodes/{node}/epoch`: when the node on `topic_node` started. The
/// document must name the node of its topic.
pub fn epoch(body: &[u8], topic_node: &str) -> Result<OffsetDateTime, PayloadError> {
    let w: EpochWire = serde_json::from_slice(body)?;
    if w.node != topic_node {
        return Err(PayloadError::Range(
            "epoch names another node than its topic",
        ));
    }
    Ok(w.started)
}

#[derive(Deserialize)]
struct StateWire {
    firmware_version: Option<String>,
    mac_address: Option<String>,
    serial_number: Option<String>,
    appliances: Option<Map<String, Value>>,
}

/// What a device reports about itself and its appliances.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateReport {
    pub firmware_version: Option<String>,
    pub mac_address: Option<String>,
    pub serial_number: Option<String>,
    /// AC settings as the device holds them, if reported.
    pub aircon: Option<Value>,
    /// TV state, if reported.
    pub tv: Option<Value>,
    /// Light state, if reported.
    pub light: Option<Value>,
}

/// `devices/{id}/state`.
pub fn state(body: &[u8]) -> Result<StateReport, PayloadError> {
    let w: StateWire = serde_json::from_slice(body)?;
    let mut apps = w.appliances.unwrap_or_default();
    let mut take = |k: &str| apps.remove(k).filter(Value::is_object);
    Ok(StateReport {
        aircon: take("aircon"),
        tv: take("tv"),
        light: take("light"),
        firmware_version: w.firmware_version,
        mac_address: w.mac_address,
        serial_number: w.serial_number,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum AckResult {
    Ok,
    Failed,
}

#[derive(Deserialize)]
struct AckWire {
    id: String,
    result: AckResult,
    reason: Option<String>,
    data: Option<Value>,
}

/// `devices/{id}/acks`: the command id and the device's answer.
pub fn ack(body: &[u8]) -> Result<(Uuid, Ack), PayloadError> {
    let w: AckWire = serde_json::from_slice(body)?;
    let id = Uuid::parse_str(&w.id).map_err(|_| PayloadError::Range("id is not a command id"))?;
    let ok = matches!(w.result, AckResult::Ok);
    let error = match (ok, w.reason) {
        (true, _) => None,
        (false, reason) => Some(reason.unwrap_or_else(|| "the device reported a failure".into())),
    };
    Ok((
        id,
        Ack {
            ok,
            result: w.data,
            error,
        },
    ))
}

/// The wire `type` of a command kind.
fn wire_type(kind: CommandKind) -> &'static str {
    match kind {
        CommandKind::Ir => "signal",
        CommandKind::Aircon => "aircon",
        CommandKind::Tv => "tv",
        CommandKind::Light => "light",
    }
}

/// The JSON published on `devices/{id}/commands`: the stored payload plus
/// `id`, `type` and `ts` (now, epoch milliseconds).
pub fn command(cmd: &QueuedCommand, now: OffsetDateTime) -> Vec<u8> {
    let mut body = match &cmd.payload {
        Value::Object(m) => m.clone(),
        other => {
            let mut m = Map::new();
            m.insert("payload".into(), other.clone());
            m
        }
    };
    body.insert("id".into(), Value::String(cmd.id.to_string()));
    body.insert("type".into(), Value::String(wire_type(cmd.kind).into()));
    let ms = (now.unix_timestamp_nanos() / 1_000_000).max(0);
    body.insert("ts".into(), Value::from(u64::try_from(ms).unwrap_or(0)));
    // A map of JSON values always serializes.
    serde_json::to_vec(&Value::Object(body)).unwrap_or_default()
}

/// Epoch milliseconds to a time; absent means `now`.
fn timestamp(ms: Option<u64>, now: OffsetDateTime) -> Result<OffsetDateTime, PayloadError> {
    let Some(ms) = ms else { return Ok(now) };
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| PayloadError::Range("ts"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);

    #[test]
    fn a_sensor_reading_carries_its_millisecond_timestamp() {
        let (val, at) = sensor(br#"{"val": 21.5, "ts": 1700000000123}"#, NOW).unwrap();
        assert_eq!(val, 21.5);
        assert_eq!(at.unix_timestamp(), 1_700_000_000);
        assert_eq!(at.millisecond(), 123);
        assert_eq!(sensor(br#"{"val": 1}"#, NOW).unwrap().1, NOW);
    }

    #[test]
    fn malformed_sensor_payloads_are_refused() {
        for bad in [
            &b"not json"[..],
            br#"{"val": "hot"}"#,
            br#"{"ts": 1}"#,
            br#"{"val": 1, "ts": -5}"#,
            br#""warm""#,
        ] {
            assert!(
                sensor(bad, NOW).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_meter_report_yields_properties_and_power_and_energy_readings() {
        let body = json!({"echonetlite_properties": [
            {"name": "measured_instantaneous", "epc": 231, "val": "452"},
            {"name": "normal_direction_cumulative_electric_energy", "epc": 224, "val": "10234"},
            {"name": "coefficient", "epc": 211, "val": "1"}], "ts": 1700000000000u64});
        let m = meter(body.to_string().as_bytes(), NOW).unwrap();
        assert_eq!(m.properties.len(), 3);
        assert_eq!(m.readings, vec![("power", 452.0), ("energy", 10234.0)]);
        assert!(meter(br#"{"echonetlite_properties": []}"#, NOW).is_err());
    }

    #[test]
    fn an_epoch_must_name_the_node_of_its_topic() {
        let body = br#"{"node":"node-2","started":"2026-03-01T10:00:00.5Z"}"#;
        assert_eq!(
            epoch(body, "node-2").unwrap(),
            datetime!(2026-03-01 10:00:00.5 UTC)
        );
        assert!(matches!(epoch(body, "node-1"), Err(PayloadError::Range(_))));
        assert!(epoch(br#"{"node":"node-2"}"#, "node-2").is_err());
        assert!(epoch(b"garbage", "node-2").is_err());
    }

    #[test]
    fn presence_reads_the_nodes_document() {
        let p = presence(
            br#"{"online":true,"node":"node-1","ts":"2026-02-03T04:05:06Z","reason":"connected"}"#,
            NOW,
        )
        .unwrap();
        assert!(p.online);
        assert_eq!(p.node.as_deref(), Some("node-1"));
        assert_eq!(p.at, datetime!(2026-02-03 04:05:06 UTC));
    }

    #[test]
    fn state_reports_facts_and_appliance_states() {
        let s = state(
            br#"{"online":true,"kind":"hub","firmware_version":"1.2.3",
                 "appliances":{"aircon":{"temp":"26"},"tv":{"power":"on"},"light":{"power":"off"}},
                 "ts":1}"#,
        )
        .unwrap();
        assert_eq!(s.firmware_version.as_deref(), Some("1.2.3"));
        assert_eq!(s.aircon, Some(json!({"temp": "26"})));
        assert_eq!(s.light, Some(json!({"power": "off"})));
    }

    #[test]
    fn acks_map_to_ok_or_failed_with_a_reason() {
        let id = Uuid::new_v4();
        let (got, a) = ack(format!(r#"{{"id":"{id}","result":"ok","ts":1}}"#).as_bytes()).unwrap();
        assert_eq!(got, id);
        assert!(a.ok && a.error.is_none());
        let (_, a) = ack(format!(
            r#"{{"id":"{id}","result":"failed","reason":"no such button","ts":1}}"#
        )
        .as_bytes())
        .unwrap();
        assert!(!a.ok);
        assert_eq!(a.error.as_deref(), Some("no such button"));
        assert!(ack(br#"{"id":"c-1","result":"ok"}"#).is_err());
        assert!(ack(br#"{"id":"x","result":"maybe"}"#).is_err());
    }

    #[test]
    fn commands_carry_id_type_and_the_stored_payload() {
        let cmd = QueuedCommand {
            id: Uuid::new_v4(),
            device_id: "remo-1".into(),
            kind: CommandKind::Aircon,
            payload: json!({"settings": {"temp": "26"}}),
            expires_at: NOW,
        };
        let v: Value = serde_json::from_slice(&command(&cmd, NOW)).unwrap();
        assert_eq!(v["id"], cmd.id.to_string());
        assert_eq!(v["type"], "aircon");
        assert_eq!(v["settings"]["temp"], "26");
        assert_eq!(v["ts"], NOW.unix_timestamp() * 1000);
    }
}
