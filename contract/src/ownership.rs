//! The device-ownership feed: how the bridge tells every broker node which
//! account owns each device, so a node can scope integrations without asking
//! the database per message.
//!
//! Layout (published only by the service identity, never retained):
//! - `kumo/ownership/devices/{id}`: payload is the owning account id; an empty
//!   payload means the device belongs to no account (deleted or released);
//! - `kumo/ownership/snapshot/begin` and `…/end`: payload is an opaque snapshot
//!   token. Between a begin and the end with the same token the bridge publishes
//!   every owned device; at that end, entries not refreshed since the begin are
//!   gone from the database and the node forgets them.
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

const DEVICES_PREFIX: &str = "kumo/ownership/devices/";

/// One message of the feed, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnershipMessage<'a> {
    /// `device` now belongs to `account` (`None`: to no account).
    Owner {
        device: DeviceId,
        account: Option<AccountId>,
    },
    /// A snapshot starts; the token pairs it with its end.
    SnapshotBegin(&'a [u8]),
    /// A snapshot is complete.
    SnapshotEnd(&'a [u8]),
}

/// `kumo/ownership/devices/{id}`.
pub fn device_topic(id: &DeviceId) -> String {
    format!("{DEVICES_PREFIX}{id}")
}

/// The payload announcing `account` as the owner (empty for none).
pub fn owner_payload(account: Option<&AccountId>) -> Vec<u8> {
    account.map_or_else(Vec::new, |a| a.as_str().as_bytes().to_vec())
}

/// Parses a feed message; `None` for anything malformed (unknown topic, bad id).
pub fn parse<'a>(topic: &str, payload: &'a [u8]) -> Option<OwnershipMessage<'a>> {
    if let Some(id) = topic.strip_prefix(DEVICES_PREFIX) {
        let device = DeviceId::parse(id).ok()?;
        let account = if payload.is_empty() {
            None
        } else {
            Some(AccountId::parse(std::str::from_utf8(payload).ok()?).ok()?)
        };
        return Some(OwnershipMessage::Owner { device, account });
    }
    match topic {
        SNAPSHOT_BEGIN => Some(OwnershipMessage::SnapshotBegin(payload)),
        SNAPSHOT_END => Some(OwnershipMessage::SnapshotEnd(payload)),
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
        let topic = device_topic(&d);
        assert_eq!(topic, "kumo/ownership/devices/remo-1");
        assert_eq!(
            parse(&topic, &owner_payload(Some(&a))),
            Some(OwnershipMessage::Owner {
                device: d.clone(),
                account: Some(a)
            })
        );
        assert_eq!(
            parse(&topic, &owner_payload(None)),
            Some(OwnershipMessage::Owner {
                device: d,
                account: None
            })
        );
    }

    #[test]
    fn malformed_feed_messages_are_rejected() {
        assert_eq!(parse("kumo/ownership/devices/+", b"a"), None);
        assert_eq!(parse("kumo/ownership/devices/x", b"bad account"), None);
        assert_eq!(parse("kumo/ownership/other", b""), None);
        assert_eq!(
            parse(SNAPSHOT_END, b"t1"),
            Some(OwnershipMessage::SnapshotEnd(b"t1"))
        );
    }
}
