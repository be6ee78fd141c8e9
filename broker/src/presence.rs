//! Presence messages: the retained `devices/{id}/presence` document a node
//! publishes when a device connects or goes away, for any reason.

use bytes::Bytes;
use kumo_contract::payload::{NodeEpoch, Presence};
use kumo_contract::topic::{self, Leaf};
use kumo_contract::DeviceId;
use rumqttd::protocol::Publish;
use time::OffsetDateTime;

/// The retained PUBLISH announcing `device` online or offline; `reason` is
/// `connected` or a [`crate::registry::CloseReason`] label.
pub fn publish(device: &DeviceId, node: &str, online: bool, reason: &str) -> Publish {
    let doc = Presence {
        online,
        node: node.to_string(),
        ts: OffsetDateTime::now_utc(),
        reason: reason.to_string(),
    };
    Publish::new(
        Bytes::from(topic::device_topic(device, Leaf::Presence)),
        Bytes::from(to_json(&doc)),
        true,
    )
}

/// The retained PUBLISH announcing that `node` started now: every device whose
/// last presence from it is older was lost with its previous run.
pub fn epoch(node: &str) -> Publish {
    let doc = NodeEpoch {
        node: node.to_string(),
        started: OffsetDateTime::now_utc(),
    };
    Publish::new(
        Bytes::from(kumo_contract::nodes::epoch_topic(node)),
        Bytes::from(to_json(&doc)),
        true,
    )
}

/// Strings, a bool and a time within RFC 3339's range (now) always serialize.
fn to_json(doc: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(doc).unwrap_or_default()
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
