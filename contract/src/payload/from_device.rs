//! What a device may put on the topics the contract gives it: the cloud's
//! strictness applied where a message enters, so a broker node can refuse a
//! document before it is routed, retained or stored (the bridge checks again).
//!
//! Only the contract's own namespaces are judged: `sensors…`, `meter…`,
//! `state…` and `acks…`. Below `sensors`, `meter` and `state` only the
//! contract's topics exist; below `acks` every topic is an MQTT 5 response
//! topic and carries an ack. Certificate requests are left to the cloud,
//! which answers a bad one on the device's response topic, and a device's
//! topics outside these namespaces are its own business.

use super::{decode, Ack, MeterReport, PayloadError, SensorReading, SensorReport, StateReport};
use crate::topic::Sensor;

/// Why a device's message is refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// A topic inside a contract namespace that the contract does not name
    /// (`sensors/xx`, `meter/now`).
    #[error("no such topic in the device protocol")]
    Topic,
    /// The payload is not the document the topic carries.
    #[error("payload: {0}")]
    Payload(#[from] PayloadError),
}

impl Refusal {
    /// Label for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::Topic => "topic_invalid",
            Refusal::Payload(_) => "payload_invalid",
        }
    }
}

/// Checks a device's publish on `rest`, its topic below `devices/{id}/`.
/// An empty `state` payload (clearing the retained state) is allowed.
pub fn check(rest: &str, body: &[u8]) -> Result<(), Refusal> {
    let (first, below) = match rest.split_once('/') {
        Some((first, below)) => (first, Some(below)),
        None => (rest, None),
    };
    match (first, below) {
        ("sensors", None) => decode::<SensorReport>(body).map(drop)?,
        ("sensors", Some(code)) if Sensor::from_code(code).is_some() => {
            decode::<SensorReading>(body).map(drop)?
        }
        ("meter", None) => decode::<MeterReport>(body).map(drop)?,
        ("state", None) if body.is_empty() => {}
        ("state", None) => decode::<StateReport>(body).map(drop)?,
        ("acks", _) => decode::<Ack>(body).map(drop)?,
        ("sensors" | "meter" | "state", _) => return Err(Refusal::Topic),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const READING: &[u8] = br#"{"val": 21.5, "ts": 1767225600000}"#;

    #[test]
    fn contract_documents_pass_on_their_topics() {
        check("sensors/te", READING).expect("reading");
        check("sensors/mo", br#"{"val": 1, "ts": 1767225600000}"#).expect("motion");
        check("sensors", br#"{"te": 21.5, "hu": 40, "ts": 1767225600000}"#).expect("report");
        check("state", b"").expect("clearing the retained state");
        check(
            "acks",
            br#"{"id": "7e6d5c4b-3a29-4817-a6b5-c4d3e2f1a0b9", "result": "ok", "ts": 1767225600120}"#,
        )
        .expect("ack");
    }

    #[test]
    fn a_document_on_the_wrong_topic_or_junk_is_refused() {
        for (rest, body) in [
            ("sensors/te", &b"hello"[..]),
            (
                "sensors/te",
                br#"{"val": 21.5, "ts": 1767225600000, "x": 1}"#,
            ),
            ("sensors", READING),
            ("meter", READING),
            ("state", READING),
            ("acks", READING),
            ("acks/reply-here", b"[[[]]]"),
        ] {
            assert!(
                matches!(check(rest, body), Err(Refusal::Payload(_))),
                "{rest}: {}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn only_the_contracts_topics_exist_in_its_namespaces() {
        for rest in [
            "sensors/xx",
            "sensors/te/1",
            "sensors/",
            "meter/now",
            "state/x",
        ] {
            assert!(
                matches!(check(rest, READING), Err(Refusal::Topic)),
                "{rest}"
            );
        }
    }

    #[test]
    fn the_devices_other_topics_and_certificate_requests_are_not_judged() {
        for rest in ["x/y/z", "cert/request", "sensorsx", "debug"] {
            check(rest, b"\xff junk").expect(rest);
        }
    }
}
