//! The node's copy of device ownership: device → account, fed by the bridge
//! over the `kumo/ownership/#` feed (see `kumo_contract::ownership`) through
//! one internal router link (`fabric.rs`).
//!
//! Integration sessions ask it about every message they are about to
//! deliver, so a lookup is one read-locked hash probe and never touches the
//! database or the network. A change applies to the next message. A node
//! starts empty (integrations see nothing) until the bridge's snapshot
//! arrives; a device the map does not know belongs to no account.
//!
//! This module must not decide who may do what: that is `acl.rs`.

use std::collections::HashMap;
use std::sync::RwLock;

use kumo_contract::ownership::{self, OwnershipMessage};
use kumo_contract::{AccountId, DeviceId};

use crate::acl::AccountDevices;

/// Device ownership as last announced by the bridge.
#[derive(Debug, Default)]
pub struct Ownership {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    owners: HashMap<DeviceId, Owner>,
    /// Bumped by every snapshot begin; entries remember the one they were written in.
    generation: u64,
    /// Token of the snapshot in progress, if any.
    snapshot: Option<Vec<u8>>,
}

#[derive(Debug)]
struct Owner {
    account: AccountId,
    generation: u64,
}

impl Ownership {
    /// Applies one feed message; false if it was malformed and ignored.
    pub fn apply(&self, topic: &str, payload: &[u8]) -> bool {
        let Some(msg) = ownership::parse(topic, payload) else {
            return false;
        };
        // A poisoned lock only means a panic elsewhere mid-update; the map is still usable.
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        match msg {
            OwnershipMessage::Owner {
                device,
                account: Some(account),
            } => {
                let generation = inner.generation;
                inner.owners.insert(
                    device,
                    Owner {
                        account,
                        generation,
                    },
                );
            }
            OwnershipMessage::Owner {
                device,
                account: None,
            } => {
                inner.owners.remove(&device);
            }
            OwnershipMessage::SnapshotBegin(token) => {
                inner.generation += 1;
                inner.snapshot = Some(token.to_vec());
            }
            OwnershipMessage::SnapshotEnd(token) => {
                // An end whose begin was overtaken by a newer snapshot sweeps nothing.
                if inner.snapshot.as_deref() == Some(token) {
                    let current = inner.generation;
                    inner.owners.retain(|_, o| o.generation == current);
                    inner.snapshot = None;
                }
            }
        }
        true
    }

    /// The account owning `device`, if any.
    pub fn owner_of(&self, device: &DeviceId) -> Option<AccountId> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.owners.get(device).map(|o| o.account.clone())
    }

    /// How many devices have an owner.
    pub fn len(&self) -> usize {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.owners.len()
    }

    /// True when no device has an owner.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl AccountDevices for Ownership {
    fn owns(&self, account: &AccountId, device: &DeviceId) -> bool {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner
            .owners
            .get(device)
            .is_some_and(|o| o.account == *account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(s: &str) -> DeviceId {
        DeviceId::parse(s).expect("valid id")
    }

    fn acct(s: &str) -> AccountId {
        AccountId::parse(s).expect("valid id")
    }

    fn announce(o: &Ownership, device: &str, account: &str) {
        assert!(o.apply(&ownership::device_topic(&dev(device)), account.as_bytes()));
    }

    #[test]
    fn announcements_move_and_release_devices() {
        let o = Ownership::default();
        announce(&o, "d1", "a");
        assert!(o.owns(&acct("a"), &dev("d1")));
        assert!(!o.owns(&acct("b"), &dev("d1")));
        announce(&o, "d1", "b");
        assert!(o.owns(&acct("b"), &dev("d1")));
        assert!(!o.owns(&acct("a"), &dev("d1")));
        announce(&o, "d1", "");
        assert!(!o.owns(&acct("b"), &dev("d1")));
        assert!(o.is_empty());
    }

    #[test]
    fn a_snapshot_forgets_devices_it_did_not_mention() {
        let o = Ownership::default();
        announce(&o, "gone", "a");
        announce(&o, "kept", "a");
        assert!(o.apply(ownership::SNAPSHOT_BEGIN, b"s1"));
        announce(&o, "kept", "a");
        announce(&o, "new", "b");
        assert_eq!(o.len(), 3, "nothing is forgotten before the end");
        assert!(o.apply(ownership::SNAPSHOT_END, b"s1"));
        assert_eq!(o.owner_of(&dev("gone")), None);
        assert_eq!(o.owner_of(&dev("kept")), Some(acct("a")));
        assert_eq!(o.owner_of(&dev("new")), Some(acct("b")));
    }

    #[test]
    fn an_overtaken_snapshot_end_sweeps_nothing() {
        let o = Ownership::default();
        assert!(o.apply(ownership::SNAPSHOT_BEGIN, b"s1"));
        announce(&o, "early", "a");
        assert!(o.apply(ownership::SNAPSHOT_BEGIN, b"s2"));
        assert!(o.apply(ownership::SNAPSHOT_END, b"s1"));
        assert_eq!(o.owner_of(&dev("early")), Some(acct("a")));
        announce(&o, "early", "a");
        assert!(o.apply(ownership::SNAPSHOT_END, b"s2"));
        assert_eq!(o.owner_of(&dev("early")), Some(acct("a")));
    }

    #[test]
    fn malformed_messages_change_nothing() {
        let o = Ownership::default();
        assert!(!o.apply("kumo/ownership/devices/a+b", b"a"));
        assert!(!o.apply("kumo/ownership/devices/d1", b"not an id"));
        assert!(o.is_empty());
    }
}
