//! Presence messages: the retained `devices/{id}/presence` document a node
//! publishes when a device connects or goes away, for any reason.

use bytes::Bytes;
use kumo_contract::topic::{self, Leaf};
use kumo_contract::DeviceId;
use rumqttd::protocol::Publish;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The presence document.
#[derive(Debug, Serialize)]
pub struct Presence<'a> {
    pub online: bool,
    pub node: &'a str,
    /// RFC 3339 time of the change.
    pub ts: String,
    /// `connected` or a [`crate::registry::CloseReason`] label.
    pub reason: &'a str,
}

/// The retained PUBLISH announcing `device` online or offline.
pub fn publish(device: &DeviceId, node: &str, online: bool, reason: &str) -> Publish {
    let ts = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"));
    let doc = Presence {
        online,
        node,
        ts,
        reason,
    };
    // Serializing a struct of strings and a bool cannot fail.
    let body = serde_json::to_vec(&doc).unwrap_or_default();
    Publish::new(
        Bytes::from(topic::device_topic(device, Leaf::Presence)),
        Bytes::from(body),
        true,
    )
}

/// The node's epoch document (see `kumo_contract::nodes`).
#[derive(Debug, Serialize)]
struct Epoch<'a> {
    node: &'a str,
    /// RFC 3339 time the node started.
    started: String,
}

/// The retained PUBLISH announcing that `node` started now: every device whose
/// last presence from it is older was lost with its previous run.
pub fn epoch(node: &str) -> Publish {
    let started = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"));
    let body = serde_json::to_vec(&Epoch { node, started }).unwrap_or_default();
    Publish::new(
        Bytes::from(kumo_contract::nodes::epoch_topic(node)),
        Bytes::from(body),
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_is_retained_json_on_the_devices_presence_topic() {
        let id = DeviceId::parse("remo-1").expect("valid");
        let p = publish(&id, "node-7", false, "keepalive_timeout");
        assert!(p.retain);
        assert_eq!(&p.topic[..], b"devices/remo-1/presence");
        let v: serde_json::Value = serde_json::from_slice(&p.payload).expect("json");
        assert_eq!(v["online"], false);
        assert_eq!(v["node"], "node-7");
        assert_eq!(v["reason"], "keepalive_timeout");
        assert!(v["ts"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
}
