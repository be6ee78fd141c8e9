//! The node's copy of device ownership: device → the account that owns it
//! and the other accounts that see it (its home's members), fed by the bridge
//! over the `kumo/ownership/#` feed (see `kumo_contract::ownership`) through
//! one internal router link (`fabric.rs`), which also echoes the bridge's
//! sync markers once everything before them is applied.
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
    /// The owner first, then the other accounts that see the device.
    accounts: Vec<AccountId>,
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
            OwnershipMessage::Owner { device, accounts } if accounts.is_empty() => {
                inner.owners.remove(&device);
            }
            OwnershipMessage::Owner { device, accounts } => {
                let generation = inner.generation;
                inner.owners.insert(
                    device,
                    Owner {
                        accounts,
                        generation,
                    },
                );
            }
            // Applying is synchronous: the caller echoes the marker.
            OwnershipMessage::Sync(_) => {}
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
        inner
            .owners
            .get(device)
            .and_then(|o| o.accounts.first().cloned())
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
    /// Whether `account` owns `device` or sees it as a member of its home.
    fn owns(&self, account: &AccountId, device: &DeviceId) -> bool {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner
            .owners
            .get(device)
            .is_some_and(|o| o.accounts.contains(account))
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
    fn home_members_see_a_device_until_an_announcement_leaves_them_out() {
        let o = Ownership::default();
        announce(&o, "d1", "owner,member");
        assert!(o.owns(&acct("owner"), &dev("d1")));
        assert!(o.owns(&acct("member"), &dev("d1")));
        assert!(!o.owns(&acct("stranger"), &dev("d1")));
        assert_eq!(o.owner_of(&dev("d1")), Some(acct("owner")));
        announce(&o, "d1", "owner");
        assert!(!o.owns(&acct("member"), &dev("d1")));
        assert!(o.apply(ownership::SYNC, b"7"), "a marker is understood");
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
