//! The device-ownership feed: how the bridge tells every broker node which
//! accounts see each device — its owner and the other members of its home —
//! so a node can scope integrations without asking the database per message.
//!
//! Layout (published only by the service identity, never retained):
//! - `kumo/ownership/devices/{id}`: payload is the owning account id, then the
//!   other accounts that see the device (its home's members), comma-separated;
//!   an empty payload means the device belongs to no account (deleted or
//!   released);
//! - `kumo/ownership/snapshot/begin` and `…/end`: payload is an opaque snapshot
//!   token. Between a begin and the end with the same token the bridge publishes
//!   every owned device; at that end, entries not refreshed since the begin are
//!   gone from the database and the node forgets them;
//! - `kumo/ownership/sync`: payload is an opaque marker (the bridge's position
//!   in its change log). A node that has applied everything before it echoes
//!   the marker on `kumo/nodes/{node}/ownership` ([`applied_topic`]), so the
//!   bridge knows when a change is in force on that node.
//!
//! Parsing and building only; no I/O.

use crate::{AccountId, DeviceId};

/// Root of the feed; devices and integrations may neither publish nor subscribe here.
pub const ROOT: &str = "kumo/ownership";

/// The filter a node subscribes to.
pub const FILTER: &str = "kumo/ownership/#";

/// Topic opening a full snapshot.
pub const SNAPSHOT_BEGIN: &str = "kumo/ownership/snapshot/begin";

/// Topic closing a full snapshot.
pub const SNAPSHOT_END: &str = "kumo/ownership/snapshot/end";

/// Topic of the bridge's sync marker.
pub const SYNC: &str = "kumo/ownership/sync";

/// The filter the bridge subscribes to for nodes' echoes of the sync marker.
pub const APPLIED_FILTER: &str = "kumo/nodes/+/ownership";

const DEVICES_PREFIX: &str = "kumo/ownership/devices/";

/// One message of the feed, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnershipMessage<'a> {
    /// `device` now belongs to the first of `accounts`, and the others see
    /// it too (none: it belongs to no account).
    Owner {
        device: DeviceId,
        accounts: Vec<AccountId>,
    },
    /// A snapshot starts; the token pairs it with its end.
    SnapshotBegin(&'a [u8]),
    /// A snapshot is complete.
    SnapshotEnd(&'a [u8]),
    /// Everything before this marker is to be in force; echo it.
    Sync(&'a [u8]),
}

/// `kumo/ownership/devices/{id}`.
pub fn device_topic(id: &DeviceId) -> String {
    format!("{DEVICES_PREFIX}{id}")
}

/// The payload announcing the first of `accounts` as the owner and the
/// others as seeing the device (empty for no account).
pub fn owner_payload(accounts: &[AccountId]) -> Vec<u8> {
    accounts
        .iter()
        .map(AccountId::as_str)
        .collect::<Vec<_>>()
        .join(",")
        .into_bytes()
}

/// `kumo/nodes/{node}/ownership`: where node `node` echoes sync markers.
pub fn applied_topic(node: &str) -> String {
    format!("kumo/nodes/{node}/ownership")
}

/// The node of an [`applied_topic`].
pub fn parse_applied_topic(topic: &str) -> Option<&str> {
    topic
        .strip_prefix("kumo/nodes/")?
        .strip_suffix("/ownership")
        .filter(|n| !n.is_empty() && !n.contains('/'))
}

/// Parses a feed message; `None` for anything malformed (unknown topic, bad id).
pub fn parse<'a>(topic: &str, payload: &'a [u8]) -> Option<OwnershipMessage<'a>> {
    if let Some(id) = topic.strip_prefix(DEVICES_PREFIX) {
        let device = DeviceId::parse(id).ok()?;
        let accounts = if payload.is_empty() {
            Vec::new()
        } else {
            std::str::from_utf8(payload)
                .ok()?
                .split(',')
                .map(AccountId::parse)
                .collect::<Result<Vec<_>, _>>()
                .ok()?
        };
        return Some(OwnershipMessage::Owner { device, accounts });
    }
    match topic {
        SNAPSHOT_BEGIN => Some(OwnershipMessage::SnapshotBegin(payload)),
        SNAPSHOT_END => Some(OwnershipMessage::SnapshotEnd(payload)),
        SYNC => Some(OwnershipMessage::Sync(payload)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_messages_round_trip() {
        let d = DeviceId::parse("remo-1").expect("valid id");
        let a = AccountId::parse("acct-1").expect("valid id");
        let b = AccountId::parse("acct-2").expect("valid id");
        let topic = device_topic(&d);
        assert_eq!(topic, "kumo/ownership/devices/remo-1");
        assert_eq!(owner_payload(&[a.clone(), b.clone()]), b"acct-1,acct-2");
        assert_eq!(
            parse(&topic, &owner_payload(&[a.clone(), b.clone()])),
            Some(OwnershipMessage::Owner {
                device: d.clone(),
                accounts: vec![a.clone(), b]
            })
        );
        assert_eq!(
            parse(&topic, &owner_payload(std::slice::from_ref(&a))),
            Some(OwnershipMessage::Owner {
                device: d.clone(),
                accounts: vec![a]
            })
        );
        assert_eq!(
            parse(&topic, &owner_payload(&[])),
            Some(OwnershipMessage::Owner {
                device: d,
                accounts: vec![]
            })
        );
    }

    #[test]
    fn sync_markers_are_echoed_on_the_nodes_applied_topic() {
        assert_eq!(parse(SYNC, b"42"), Some(OwnershipMessage::Sync(b"42")));
        let topic = applied_topic("node-1");
        assert_eq!(parse_applied_topic(&topic), Some("node-1"));
        assert_eq!(parse_applied_topic("kumo/nodes/a/b/ownership"), None);
        assert_eq!(parse_applied_topic("kumo/nodes/node-1/epoch"), None);
    }

    #[test]
    fn malformed_feed_messages_are_rejected() {
        assert_eq!(parse("kumo/ownership/devices/+", b"a"), None);
        assert_eq!(parse("kumo/ownership/devices/x", b"bad account"), None);
        assert_eq!(parse("kumo/ownership/devices/x", b"a,"), None);
        assert_eq!(parse("kumo/ownership/other", b""), None);
        assert_eq!(
            parse(SNAPSHOT_END, b"t1"),
            Some(OwnershipMessage::SnapshotEnd(b"t1"))
        );
    }
}
