//! Fuzzing of the device protocol's decoders: every example message of
//! `docs/device-protocol.md`, mutated as a JSON tree (values replaced by
//! other types and edge values, fields removed or added, deep nesting) and
//! as bytes (truncated, flipped, invalid UTF-8), is decoded the way its
//! receiver does. Properties: no panic, a refusal is a typed
//! [`PayloadError`], and whatever is accepted round-trips (encode, decode
//! again: the same message, still in range).
//!
//! `PROPTEST_CASES` raises the case count (`bench/fuzz/run.sh`).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::OnceLock;

use kumo_contract::payload::{
    decode, Ack, CertRequest, CertResponse, Checked, Command as DeviceCommand, MeterReport,
    NodeEpoch, PayloadError, Presence, SensorReading, SensorReport, StateReport,
};
use kumo_contract::topic::{
    device_topic, is_cert_response_topic, parse_device_topic, strip_device_prefix,
};
use kumo_contract::DeviceId;
use kumo_testkit::fuzz::{apply, config, damage, damaged, edit, same_json};
use proptest::prelude::*;
use proptest::sample::select;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// `(message, example)` for every ```json <message> block of the protocol document.
fn examples() -> &'static [(String, Value)] {
    static EXAMPLES: OnceLock<Vec<(String, Value)>> = OnceLock::new();
    EXAMPLES.get_or_init(read_examples)
}

fn read_examples() -> Vec<(String, Value)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/device-protocol.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.strip_prefix("```json ") else {
            continue;
        };
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        out.push((
            name.trim().to_string(),
            serde_json::from_str(&body.join("\n")).unwrap(),
        ));
    }
    out
}

/// Equal, or equal as JSON but for floats a few ULPs apart (see
/// [`kumo_testkit::fuzz::same_json`]).
fn same<T: Serialize + PartialEq>(a: &T, b: &T) -> bool {
    a == b
        || same_json(
            &serde_json::to_value(a).unwrap(),
            &serde_json::to_value(b).unwrap(),
        )
}

/// The cloud's strict decode: accepted documents must encode and decode to
/// themselves and still pass the range checks.
fn strict<T>(body: &[u8]) -> Result<(), TestCaseError>
where
    T: DeserializeOwned + Serialize + Checked + PartialEq + std::fmt::Debug,
{
    match decode::<T>(body) {
        Ok(doc) => {
            let again = serde_json::to_vec(&doc).unwrap();
            let back = decode::<T>(&again)
                .map_err(|e| TestCaseError::fail(format!("{doc:?} does not round-trip: {e}")))?;
            prop_assert!(same(&back, &doc), "{back:?} != {doc:?}");
        }
        Err(PayloadError::Json(_) | PayloadError::Range(_)) => {}
    }
    Ok(())
}

/// A device's lenient decode (what the cloud sends it).
fn lenient<T>(body: &[u8]) -> Result<(), TestCaseError>
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    if let Ok(doc) = serde_json::from_slice::<T>(body) {
        let again = serde_json::to_vec(&doc).unwrap();
        let back = serde_json::from_slice::<T>(&again);
        prop_assert!(
            back.as_ref().is_ok_and(|b| same(b, &doc)),
            "{back:?} != {doc:?}"
        );
    }
    Ok(())
}

/// Decodes `body` as message `name`, the way its receiver does.
fn receive(name: &str, body: &[u8]) -> Result<(), TestCaseError> {
    match name {
        "sensor-reading" => strict::<SensorReading>(body),
        "sensor-report" => strict::<SensorReport>(body),
        "meter-report" => strict::<MeterReport>(body),
        "state-report" => strict::<StateReport>(body),
        "ack" => strict::<Ack>(body),
        "presence" => strict::<Presence>(body),
        "node-epoch" => strict::<NodeEpoch>(body),
        "cert-request" => strict::<CertRequest>(body),
        "command" => lenient::<DeviceCommand>(body),
        "cert-response" => lenient::<CertResponse>(body),
        other => Err(TestCaseError::fail(format!("unknown message {other}"))),
    }
}

const MESSAGES: [&str; 10] = [
    "sensor-reading",
    "sensor-report",
    "meter-report",
    "state-report",
    "ack",
    "presence",
    "node-epoch",
    "cert-request",
    "command",
    "cert-response",
];

#[test]
fn every_example_is_received_and_round_trips() {
    for (name, doc) in examples() {
        let body = serde_json::to_vec(doc).unwrap();
        receive(name, &body).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

proptest! {
    #![proptest_config(config(1_500))]

    /// Examples edited as JSON trees, then damaged as bytes, decoded by
    /// their own receiver and by every other.
    #[test]
    fn mutated_examples_are_refused_or_round_trip(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..5),
        damage in damage(),
        receiver in select(MESSAGES.to_vec()),
    ) {
        let examples = examples();
        let (name, mut doc) = examples[pick.index(examples.len())].clone();
        for e in &edits {
            apply(&mut doc, e);
        }
        let body = damaged(serde_json::to_vec(&doc).unwrap(), &damage);
        receive(&name, &body)?;
        receive(receiver, &body)?;
    }

    /// Bytes with no structure at all.
    #[test]
    fn arbitrary_bytes_are_refused_without_panicking(
        body in prop::collection::vec(any::<u8>(), 0..256),
        receiver in select(MESSAGES.to_vec()),
    ) {
        receive(receiver, &body)?;
    }
}

/// Topic-ish text: the separators and wildcards that matter, ids, leaves.
fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(
        select(vec![
            "devices", "/", "remo-1", "a", "-", "_", "+", "#", "sensors", "te", "cert", "response",
            "request", "commands", "acks", "state", "\0", "é", "",
        ]),
        0..8,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(config(2_000))]

    /// Ids from paths and topics: accepted ones are the text they came from
    /// and survive a topic's round trip.
    #[test]
    fn accepted_ids_and_device_topics_round_trip(raw in topic(), id in "[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}") {
        if let Ok(parsed) = DeviceId::parse(raw.clone()) {
            prop_assert_eq!(parsed.as_str(), raw.as_str());
        }
        if let Some((id, leaf)) = parse_device_topic(&raw) {
            prop_assert_eq!(device_topic(&id, leaf), raw.clone());
        }
        let id = DeviceId::parse(id).map_err(|e| TestCaseError::fail(e.to_string()))?;
        if is_cert_response_topic(&raw, &id) {
            prop_assert!(!raw.contains(['+', '#']));
        }
        let _ = strip_device_prefix(&raw, &id);
    }
}
