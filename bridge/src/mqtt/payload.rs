//! The bridge's reading of the device protocol (`kumo_contract::payload`):
//! each document decoded strictly with the shared types, then turned into
//! what the bridge stores; and commands encoded for the wire.
//!
//! The cloud validates strictly (an unknown field, a wrong type or a value out
//! of range refuses the whole document); devices ignore what they do not know.
//! Timestamps (`ts`) are Unix epoch milliseconds. Nothing here touches the
//! database or the network.

use kumo_contract::appliance::echonet::Eoj;
use kumo_contract::payload::{
    decode, Ack as AckDoc, AckResult, Action, Command, MeterReport as MeterDoc, NodeEpoch,
    SensorReading, SensorReport,
};
use kumo_contract::topic::Sensor;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

pub use kumo_contract::payload::{PayloadError, Presence, StateReport};

use crate::commands::{Ack, CommandKind, QueuedCommand};

/// `devices/{id}/sensors/{s}`: the value and when it was measured.
pub fn sensor(body: &[u8], now: OffsetDateTime) -> Result<(f64, OffsetDateTime), PayloadError> {
    let r: SensorReading = decode(body)?;
    Ok((r.val, timestamp(r.ts, now)?))
}

/// `devices/{id}/sensors`: the readings and when they were measured.
pub fn sensors(
    body: &[u8],
    now: OffsetDateTime,
) -> Result<(Vec<(Sensor, f64)>, OffsetDateTime), PayloadError> {
    let r: SensorReport = decode(body)?;
    Ok((r.readings().collect(), timestamp(r.ts, now)?))
}

/// A gateway's report of one ECHONET Lite object: the smart meter's
/// properties, plus the power and energy readings derived from them for
/// history, or another appliance's (`object`), which make no readings.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterReport {
    /// `None` for the smart meter.
    pub object: Option<Eoj>,
    pub properties: Vec<(u8, String)>,
    /// `(sensor, value)`: `power` from EPC 0xE7, `energy` from 0xE0,
    /// `energy_sold` from 0xE3.
    pub readings: Vec<(&'static str, f64)>,
    pub at: OffsetDateTime,
}

/// `devices/{id}/meter`. A property repeated in one report counts once,
/// with its last value: one report states one value per property (and the
/// database row of a property can be written once per statement).
pub fn meter(body: &[u8], now: OffsetDateTime) -> Result<MeterReport, PayloadError> {
    let m: MeterDoc = decode(body)?;
    // `decode` checked that the object is one Kumo knows.
    let object = m
        .eoj
        .as_deref()
        .and_then(Eoj::parse)
        .filter(|e| e.class_properties() != Eoj::SMART_METER.class_properties());
    let mut properties: Vec<(u8, String)> = Vec::with_capacity(m.echonetlite_properties.len());
    let mut index = [None::<usize>; 256];
    for p in m.echonetlite_properties {
        match index[usize::from(p.epc)] {
            Some(i) => properties[i].1 = p.val,
            None => {
                index[usize::from(p.epc)] = Some(properties.len());
                properties.push((p.epc, p.val));
            }
        }
    }
    let readings = properties
        .iter()
        .filter_map(|(epc, val)| {
            if object.is_some() {
                return None;
            }
            let sensor = kumo_contract::appliance::echonet::meter_reading_sensor(*epc)?;
            let val = val.trim().parse::<f64>().ok().filter(|v| v.is_finite())?;
            Some((sensor, val))
        })
        .collect();
    Ok(MeterReport {
        object,
        properties,
        readings,
        at: timestamp(m.ts, now)?,
    })
}

/// `devices/{id}/presence`, as the node published it.
pub fn presence(body: &[u8]) -> Result<Presence, PayloadError> {
    decode(body)
}

/// `kumo/nodes/{node}/epoch`: when the node on `topic_node` started. The
/// document must name the node of its topic.
pub fn epoch(body: &[u8], topic_node: &str) -> Result<OffsetDateTime, PayloadError> {
    let e: NodeEpoch = decode(body)?;
    if e.node != topic_node {
        return Err(PayloadError::Range(
            "epoch names another node than its topic".into(),
        ));
    }
    Ok(e.started)
}

/// `devices/{id}/state`.
pub fn state(body: &[u8]) -> Result<StateReport, PayloadError> {
    decode(body)
}

/// `devices/{id}/acks`: the command id and the device's answer.
pub fn ack(body: &[u8]) -> Result<(Uuid, Ack), PayloadError> {
    let a: AckDoc = decode(body)?;
    let id =
        Uuid::parse_str(&a.id).map_err(|_| PayloadError::Range("id is not a command id".into()))?;
    let ok = a.result == AckResult::Ok;
    // ECHONET Lite properties ride in the state under the command kind, like
    // an aircon's settings, so the command's completion stores them.
    let mut state = a
        .state
        .filter(|s| !s.is_empty())
        .and_then(|s| serde_json::to_value(s).ok());
    if let Some(props) = a.echonetlite_properties {
        let props = serde_json::to_value(props).unwrap_or_default();
        let mut obj = match state.take() {
            Some(serde_json::Value::Object(o)) => o,
            _ => serde_json::Map::new(),
        };
        obj.insert(CommandKind::Echonet.as_str().into(), props);
        state = Some(serde_json::Value::Object(obj));
    }
    let error = match (ok, a.reason) {
        (true, _) => None,
        (false, reason) => Some(reason.unwrap_or_else(|| "the device reported a failure".into())),
    };
    Ok((
        id,
        Ack {
            ok,
            result: a.data.and_then(|d| serde_json::to_value(d).ok()),
            error,
            state,
        },
    ))
}

/// The JSON published on `devices/{id}/commands`: the stored action with the
/// command's `id` and `ts` (now, epoch milliseconds), through the protocol's
/// types so only what the protocol defines goes out. A stored payload that is
/// not an action of its kind (written by an older bridge) goes out as stored,
/// with `id`, `type` and `ts` added, and the device refuses it in its ack.
pub fn command(cmd: &QueuedCommand, now: OffsetDateTime) -> Vec<u8> {
    let mut body = match &cmd.payload {
        Value::Object(m) => m.clone(),
        other => {
            let mut m = Map::new();
            m.insert("payload".into(), other.clone());
            m
        }
    };
    if let Some(t) = wire_type(cmd.kind) {
        body.insert("type".into(), Value::String(t.into()));
    }
    let ms = (now.unix_timestamp_nanos() / 1_000_000).max(0);
    let ts = u64::try_from(ms).unwrap_or(0);
    if let Ok(action) = serde_json::from_value::<Action>(Value::Object(body.clone())) {
        let c = Command {
            id: cmd.id.to_string(),
            ts: Some(ts),
            action,
        };
        if let Ok(out) = serde_json::to_vec(&c) {
            return out;
        }
    }
    body.insert("id".into(), Value::String(cmd.id.to_string()));
    body.insert("ts".into(), Value::from(ts));
    // A map of JSON values always serializes.
    serde_json::to_vec(&Value::Object(body)).unwrap_or_default()
}

/// The wire `type` of a command kind; `None` for `echonet`, whose stored
/// action names its type (`echonet_set` or `echonet_refresh`).
fn wire_type(kind: CommandKind) -> Option<&'static str> {
    match kind {
        CommandKind::Ir => Some("signal"),
        CommandKind::Aircon => Some("aircon"),
        CommandKind::Tv => Some("tv"),
        CommandKind::Light => Some("light"),
        CommandKind::FloorHeater => Some("floor_heater"),
        CommandKind::LightProjector => Some("light_projector"),
        CommandKind::SesameBot => Some("sesame_bot"),
        CommandKind::Echonet => None,
    }
}

/// Epoch milliseconds to a time; absent means `now`.
fn timestamp(ms: Option<u64>, now: OffsetDateTime) -> Result<OffsetDateTime, PayloadError> {
    let Some(ms) = ms else { return Ok(now) };
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| PayloadError::Range("ts".into()))
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
    fn a_sensor_report_carries_each_value_it_has_with_one_timestamp() {
        let (readings, at) =
            sensors(br#"{"te": 21.5, "il": 80, "ts": 1700000000123}"#, NOW).unwrap();
        assert_eq!(
            readings,
            [(Sensor::Temperature, 21.5), (Sensor::Illuminance, 80.0)]
        );
        assert_eq!(at.millisecond(), 123);
        assert_eq!(sensors(br#"{"mo": 1}"#, NOW).unwrap().1, NOW);
        for bad in [
            &br#"{}"#[..],
            br#"{"te": 1, "xx": 2}"#,
            br#"{"te": null, "ts": 1}"#,
        ] {
            assert!(
                sensors(bad, NOW).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
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
    fn another_echonet_objects_report_names_it_and_makes_no_readings() {
        let body = br#"{"eoj": "013001", "echonetlite_properties": [
            {"epc": 128, "val": "30"}, {"epc": 231, "val": "1"}]}"#;
        let m = meter(body, NOW).unwrap();
        assert_eq!(m.object, Some(Eoj::HOME_AIR_CONDITIONER));
        assert!(m.readings.is_empty());
        let meter_named =
            br#"{"eoj": "028801", "echonetlite_properties": [{"epc": 231, "val": "5"}]}"#;
        let m = meter(meter_named, NOW).unwrap();
        assert_eq!((m.object, m.readings), (None, vec![("power", 5.0)]));
    }

    #[test]
    fn an_echonet_ack_carries_its_properties_under_the_command_kind() {
        let body = br#"{"id": "7e6d5c4b-3a29-4817-a6b5-c4d3e2f1a0b9", "result": "ok",
            "echonetlite_properties": [{"name": "set_temperature", "epc": 179, "val": "18"}],
            "ts": 1}"#;
        let (_, a) = ack(body).unwrap();
        assert_eq!(
            a.state,
            Some(json!({"echonet": [{"name": "set_temperature", "epc": 179, "val": "18"}]}))
        );
    }

    #[test]
    fn an_echonet_command_keeps_its_own_type_on_the_wire() {
        let cmd = QueuedCommand {
            id: Uuid::nil(),
            device_id: kumo_contract::DeviceId::parse("gw-1").unwrap(),
            kind: CommandKind::Echonet,
            payload: json!({"type": "echonet_refresh", "eoj": "013001", "epcs": [128]}),
            expires_at: NOW,
        };
        let wire: Value = serde_json::from_slice(&command(&cmd, NOW)).unwrap();
        assert_eq!(wire["type"], "echonet_refresh");
        assert_eq!(wire["epcs"], json!([128]));
    }

    #[test]
    fn a_meter_report_yields_properties_and_power_and_energy_readings() {
        let body = json!({"echonetlite_properties": [
            {"name": "measured_instantaneous", "epc": 231, "val": "452"},
            {"name": "normal_direction_cumulative_electric_energy", "epc": 224, "val": "10234"},
            {"name": "reverse_direction_cumulative_electric_energy", "epc": 227, "val": "12"},
            {"name": "coefficient", "epc": 211, "val": "1"}], "ts": 1700000000000u64});
        let m = meter(body.to_string().as_bytes(), NOW).unwrap();
        assert_eq!(m.properties.len(), 4);
        assert_eq!(
            m.readings,
            vec![("power", 452.0), ("energy", 10234.0), ("energy_sold", 12.0)]
        );
        assert!(meter(br#"{"echonetlite_properties": []}"#, NOW).is_err());
    }

    #[test]
    fn a_property_repeated_in_a_meter_report_counts_once_with_its_last_value() {
        let body = json!({"echonetlite_properties": [
            {"epc": 224, "val": "10"}, {"epc": 231, "val": "452"}, {"epc": 224, "val": "11"}],
            "ts": 1700000000000u64});
        let m = meter(body.to_string().as_bytes(), NOW).unwrap();
        assert_eq!(
            m.properties,
            vec![(224, "11".to_string()), (231, "452".to_string())]
        );
        assert_eq!(m.readings, vec![("energy", 11.0), ("power", 452.0)]);
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
        )
        .unwrap();
        assert!(p.online);
        assert_eq!(p.node, "node-1");
        assert_eq!(p.ts, datetime!(2026-02-03 04:05:06 UTC));
        assert!(presence(br#"{"online":true,"node":"node-1"}"#).is_err());
    }

    #[test]
    fn state_reports_facts_and_appliance_states() {
        let s = state(
            br#"{"online":true,"kind":"hub","firmware_version":"1.2.3",
                 "appliances":{"light":{"power":"off","brightness":"100","last_button":""}},
                 "ts":1}"#,
        )
        .unwrap();
        assert_eq!(s.firmware_version, "1.2.3");
        let apps = s.appliances.unwrap();
        assert_eq!(apps.light.unwrap().power, "off");
        assert!(apps.aircon.is_none());
    }

    #[test]
    fn the_cloud_refuses_state_with_fields_it_does_not_know() {
        for bad in [
            &br#"{"online":true,"kind":"hub","firmware_version":"1","ts":1,"mood":"happy"}"#[..],
            br#"{"online":true,"kind":"hub","firmware_version":"1","ts":1,
                 "appliances":{"light":{"power":"off","brightness":"1","last_button":"","x":1}}}"#,
            br#"{"online":true,"kind":"toaster","firmware_version":"1","ts":1}"#,
            br#"{"online":true,"kind":"hub","ts":1}"#,
        ] {
            assert!(state(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
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
        assert!(ack(br#"{"id":"c-1","result":"ok","ts":1}"#).is_err());
        assert!(ack(format!(r#"{{"id":"{id}","result":"ok"}}"#).as_bytes()).is_err());
        assert!(ack(br#"{"id":"x","result":"maybe"}"#).is_err());
    }

    #[test]
    fn an_ack_carries_the_state_the_device_reached() {
        let id = Uuid::new_v4();
        let body = format!(
            r#"{{"id":"{id}","result":"ok","ts":1,
                "state":{{"tv":{{"input":"bs","power":"on","channel":"3","volume":"10"}}}}}}"#
        );
        let (_, a) = ack(body.as_bytes()).unwrap();
        assert_eq!(a.state.unwrap()["tv"]["input"], "bs");
    }

    #[test]
    fn commands_carry_id_type_and_the_stored_payload() {
        let cmd = QueuedCommand {
            id: Uuid::new_v4(),
            device_id: kumo_contract::DeviceId::parse("remo-1").unwrap(),
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
