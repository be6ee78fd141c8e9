//! Which node holds each device, as learned from presence: the newest
//! announcement wins, so a late "offline" from the node a device left does not
//! hide it on the node it moved to.

use std::collections::HashMap;
use std::sync::Mutex;

use time::OffsetDateTime;

/// Where a device is, as far as presence tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whereabouts {
    /// Online on the node with this index.
    Online(usize),
    /// Its last announcement said offline.
    Offline,
    /// No presence seen yet.
    Unknown,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    node: usize,
    online: bool,
    at: OffsetDateTime,
}

/// Device id → the newest presence seen for it.
#[derive(Debug, Default)]
pub struct Affinity {
    map: Mutex<HashMap<String, Seen>>,
}

impl Affinity {
    /// Applies an announcement from node `node`; returns `false` if it was
    /// older than what is known.
    pub fn record(&self, device: &str, node: usize, online: bool, at: OffsetDateTime) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(device) {
            Some(seen) if seen.at > at => false,
            // An offline from a node the device has left must not undo its
            // online elsewhere, however late that node noticed.
            Some(seen) if !online && seen.online && seen.node != node => false,
            Some(seen) => {
                *seen = Seen { node, online, at };
                true
            }
            None => {
                map.insert(device.to_string(), Seen { node, online, at });
                true
            }
        }
    }

    /// Where `device` is.
    pub fn find(&self, device: &str) -> Whereabouts {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(device) {
            Some(s) if s.online => Whereabouts::Online(s.node),
            Some(_) => Whereabouts::Offline,
            None => Whereabouts::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_restart_sweep_stamped_with_the_last_announcement_lets_a_move_made_before_it_win() {
        // The device was last announced on node 0 at 00:00; node 0 crashed
        // unheard and the device moved to node 1 at 00:10; node 0's next run
        // started at 00:12 and its epoch reached the bridge before node 1's
        // presence did. The sweep records the device offline as of 00:00.
        let a = Affinity::default();
        a.record("d", 0, true, datetime!(2026-01-01 00:00:00 UTC));
        a.record("d", 0, false, datetime!(2026-01-01 00:00:00 UTC));
        assert_eq!(a.find("d"), Whereabouts::Offline);
        assert!(a.record("d", 1, true, datetime!(2026-01-01 00:00:10 UTC)));
        assert_eq!(a.find("d"), Whereabouts::Online(1));
        // Stamped with the new run's start instead, the move was dropped:
        let b = Affinity::default();
        b.record("d", 0, true, datetime!(2026-01-01 00:00:00 UTC));
        b.record("d", 0, false, datetime!(2026-01-01 00:00:12 UTC));
        assert!(!b.record("d", 1, true, datetime!(2026-01-01 00:00:10 UTC)));
    }

    #[test]
    fn a_late_offline_from_the_old_node_keeps_the_device_on_the_new_one() {
        let a = Affinity::default();
        assert_eq!(a.find("d"), Whereabouts::Unknown);
        a.record("d", 0, true, datetime!(2026-01-01 00:00:00 UTC));
        a.record("d", 1, true, datetime!(2026-01-01 00:00:05 UTC));
        assert!(!a.record("d", 0, false, datetime!(2026-01-01 00:00:04 UTC)));
        assert_eq!(a.find("d"), Whereabouts::Online(1));
        // Node 0 finds the dead connection only after the move.
        assert!(!a.record("d", 0, false, datetime!(2026-01-01 00:00:30 UTC)));
        assert_eq!(a.find("d"), Whereabouts::Online(1));
        a.record("d", 1, false, datetime!(2026-01-01 00:00:09 UTC));
        assert_eq!(a.find("d"), Whereabouts::Offline);
    }
}
