//! The device protocol as firmware teams see it: the JSON Schemas checked in
//! under `contract/schema/` are exactly what the types generate, every example
//! in `docs/device-protocol.md` is a valid message (for the Rust types and,
//! through Python's `jsonschema`, for the schemas), and the compatibility rule
//! holds: devices ignore fields they do not know, the cloud refuses them.
//!
//! After changing a payload type: `KUMO_BLESS=1 cargo test -p kumo-contract
//! --test protocol` rewrites the schema files; review and commit them.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use kumo_contract::payload::{
    decode, schemas, Ack, Action, CertRequest, CertResponse, Command as DeviceCommand, MeterReport,
    NodeEpoch, PayloadError, Presence, SensorReading, SensorReport, StateReport,
};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn schema_path(name: &str) -> PathBuf {
    root()
        .join("contract/schema")
        .join(format!("{name}.schema.json"))
}

/// `(message, example)` for every ```json <message> block of the document.
fn examples() -> Vec<(String, Value)> {
    let doc = std::fs::read_to_string(root().join("docs/device-protocol.md")).unwrap();
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.strip_prefix("```json ") else {
            continue;
        };
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        let v: Value = serde_json::from_str(&body.join("\n"))
            .unwrap_or_else(|e| panic!("example {name} is not JSON: {e}"));
        out.push((name.trim().to_string(), v));
    }
    out
}

/// Decodes `v` as message `name` the way its receiver does.
fn receive(name: &str, v: &Value) -> Result<(), PayloadError> {
    let body = serde_json::to_vec(v).unwrap();
    match name {
        "sensor-reading" => decode::<SensorReading>(&body).map(drop),
        "sensor-report" => decode::<SensorReport>(&body).map(drop),
        "meter-report" => decode::<MeterReport>(&body).map(drop),
        "state-report" => decode::<StateReport>(&body).map(drop),
        "ack" => decode::<Ack>(&body).map(drop),
        "presence" => decode::<Presence>(&body).map(drop),
        "node-epoch" => decode::<NodeEpoch>(&body).map(drop),
        "cert-request" => decode::<CertRequest>(&body).map(drop),
        "command" => serde_json::from_slice::<DeviceCommand>(&body)
            .map(drop)
            .map_err(PayloadError::Json),
        "cert-response" => serde_json::from_slice::<CertResponse>(&body)
            .map(drop)
            .map_err(PayloadError::Json),
        other => panic!("unknown message {other} in the document"),
    }
}

#[test]
fn the_checked_in_schemas_are_what_the_types_generate() {
    let bless = std::env::var_os("KUMO_BLESS").is_some();
    for (name, schema) in schemas() {
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let path = schema_path(name);
        if bless {
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == text,
            "{} is out of date with the payload types; run \
             `KUMO_BLESS=1 cargo test -p kumo-contract --test protocol` and commit it",
            path.display()
        );
    }
}

#[test]
fn every_message_has_an_example_and_every_example_is_received() {
    let examples = examples();
    for (name, _) in schemas() {
        assert!(
            examples.iter().any(|(n, _)| n == name),
            "docs/device-protocol.md has no example of {name}"
        );
    }
    for (name, v) in &examples {
        receive(name, v).unwrap_or_else(|e| panic!("example {name} refused: {e}\n{v}"));
    }
}

#[test]
fn devices_ignore_fields_they_do_not_know() {
    let body = br#"{"id":"c-1","ts":1,"type":"aircon","model":"kumo-ac-generic","priority":9,
        "settings":{"temp":"26","temp_unit":"c","eco":"on"}}"#;
    let c: DeviceCommand = serde_json::from_slice(body).unwrap();
    let Action::Aircon { settings, .. } = c.action else {
        panic!("not aircon")
    };
    assert_eq!(settings.temp.as_deref(), Some("26"));
}

#[test]
fn the_cloud_refuses_a_field_it_does_not_know_in_anything_a_device_sends() {
    for (name, mut v) in examples() {
        if name == "command" || name == "cert-response" {
            continue;
        }
        v.as_object_mut()
            .unwrap()
            .insert("firmware_secret".into(), Value::from(1));
        assert!(
            receive(&name, &v).is_err(),
            "{name} accepted an unknown field"
        );
    }
}

#[test]
fn the_cloud_refuses_values_out_of_range() {
    for bad in [
        &br#"{"val": 1e999}"#[..],
        br#"{"val": 1, "ts": 99999999999999999}"#,
        br#"{"val": "warm"}"#,
    ] {
        assert!(decode::<SensorReading>(bad).is_err());
    }
    for bad in [
        &br#"{}"#[..],
        br#"{"ts": 1767225600000}"#,
        br#"{"te": 1e999, "hu": 40}"#,
        br#"{"te": "warm"}"#,
        br#"{"te": 20, "ts": 99999999999999999}"#,
    ] {
        assert!(decode::<SensorReport>(bad).is_err());
    }
    assert!(decode::<MeterReport>(br#"{"echonetlite_properties": []}"#).is_err());
    assert!(
        decode::<MeterReport>(br#"{"echonetlite_properties": [{"epc": 300, "val": "1"}]}"#)
            .is_err()
    );
    assert!(decode::<Ack>(br#"{"id": "", "result": "ok", "ts": 1}"#).is_err());
    // An ECHONET Lite object Kumo does not model, or not an EOJ at all.
    for eoj in ["026b01", "0130", "zz3001"] {
        let body = format!(
            r#"{{"eoj": "{eoj}", "echonetlite_properties": [{{"epc": 128, "val": "30"}}]}}"#
        );
        assert!(decode::<MeterReport>(body.as_bytes()).is_err(), "{eoj}");
    }
    assert!(decode::<Ack>(
        br#"{"id": "x", "result": "ok", "echonetlite_properties": [], "ts": 1}"#
    )
    .is_err());
}

/// The schemas, read by a JSON Schema validator that is not Kumo's: every
/// example is valid, and every device-sent example with an unknown field is not.
#[test]
fn the_schemas_accept_the_examples_and_refuse_unknown_fields() {
    let ok = Command::new("python3")
        .args(["-c", "import jsonschema"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "python3 with jsonschema is required (bash scripts/install-test-deps)"
    );
    let cases: Vec<Value> = examples()
        .into_iter()
        .flat_map(|(name, v)| {
            let mut extra = v.clone();
            extra
                .as_object_mut()
                .unwrap()
                .insert("firmware_secret".into(), Value::from(1));
            let schema = schema_path(&name).display().to_string();
            let strict = name != "command" && name != "cert-response";
            [
                serde_json::json!({"schema": schema, "doc": v, "valid": true}),
                serde_json::json!({"schema": schema, "doc": extra, "valid": !strict}),
            ]
        })
        .collect();
    let script = r#"
import json, sys, jsonschema
failures = []
for case in json.load(sys.stdin):
    schema = json.load(open(case["schema"]))
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(case["doc"]))
    if bool(not errors) != case["valid"]:
        failures.append((case["schema"], case["doc"], [e.message for e in errors]))
for f in failures:
    print(f)
sys.exit(1 if failures else 0)
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), &cases).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_cloud_refuses_appliance_states_no_model_can_be_in() {
    let ack = |state: &str| {
        format!(r#"{{"id": "c", "result": "ok", "ts": 1, "state": {state}}}"#).into_bytes()
    };
    let aircon = |temp: &str, mode: &str| {
        format!(
            r#"{{"aircon": {{"temp": "{temp}", "temp_unit": "c", "mode": "{mode}", "vol": "auto",
                "dir": "auto", "dirh": "auto", "button": ""}}}}"#
        )
    };
    assert!(decode::<Ack>(&ack(&aircon("26", "cool"))).is_ok());
    for bad in [
        aircon("99", "cool"),
        aircon("26", "turbo"),
        aircon("26", "blow"),
        r#"{"tv": {"input": "t", "power": "on", "channel": "13", "volume": "10"}}"#.into(),
        r#"{"tv": {"input": "hdmi", "power": "on", "channel": "1", "volume": "10"}}"#.into(),
        r#"{"light": {"brightness": "0", "power": "on", "last_button": "on"}}"#.into(),
        r#"{"light": {"brightness": "50", "power": "dim", "last_button": "on"}}"#.into(),
    ] {
        let err = decode::<Ack>(&ack(&bad));
        assert!(err.is_err(), "accepted {bad}");
    }
    let state = br#"{"online": true, "kind": "hub", "firmware_version": "1", "ts": 1,
        "appliances": {"tv": {"input": "t", "power": "maybe", "channel": "1", "volume": "1"}}}"#;
    assert!(decode::<StateReport>(state).is_err());
}
