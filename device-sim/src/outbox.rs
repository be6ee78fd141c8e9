//! A device's outbox: the QoS 1 telemetry it sent that the node has not
//! acknowledged yet, kept across connections and sent again on the next one,
//! as firmware with an outbox does. The simulator's sessions are clean (a
//! new connection has no MQTT state to resume, MQTT 3.1.1 §4.4 asks nothing
//! of it), so a report goes again as a new publish; the cloud stores a
//! reading once however often it comes (at least once, MQTT 3.1.1 §4.3.2).
//! A node that is killed, or a connection that breaks, between the publish
//! and its PUBACK then loses nothing.
//!
//! Bounded by the link's in-flight window: what cannot be sent waits here
//! (unnumbered) and new telemetry is refused while the window is full. With
//! a ledger, an acknowledged report's time and sensor codes go to it
//! ([`crate::ledger`]).

use kumo_contract::topic::{device_topic, Leaf};
use kumo_contract::DeviceId;

use crate::link::Link;

/// One unacknowledged report.
#[derive(Debug)]
struct Entry {
    /// Its packet id on the current connection; 0 while not sent on it.
    pkid: u16,
    leaf: Leaf,
    payload: Vec<u8>,
    /// The report's time and the sensor codes the ledger records (empty for
    /// what the ledger does not track: meter reports, malformed payloads).
    ts_ms: u64,
    sensors: String,
}

/// A device's unacknowledged QoS 1 telemetry.
#[derive(Debug, Default)]
pub struct Outbox(Vec<Entry>);

impl Outbox {
    /// Remembers a report sent with packet id `pkid`.
    pub fn sent(&mut self, pkid: u16, leaf: Leaf, payload: Vec<u8>, ts_ms: u64, sensors: String) {
        // Packet ids are reused only after their PUBACK on the same
        // connection, and every entry is renumbered on a new one.
        self.0.retain(|e| e.pkid != pkid);
        self.0.push(Entry {
            pkid,
            leaf,
            payload,
            ts_ms,
            sensors,
        });
    }

    /// The report a PUBACK of `pkid` acknowledged, if it was one: its time
    /// and sensor codes.
    pub fn acked(&mut self, pkid: u16) -> Option<(u64, String)> {
        let i = self.0.iter().position(|e| e.pkid == pkid && pkid != 0)?;
        let e = self.0.remove(i);
        Some((e.ts_ms, e.sensors))
    }

    /// A new connection: nothing is in flight on it yet.
    pub fn reconnected(&mut self) {
        for e in &mut self.0 {
            e.pkid = 0;
        }
    }

    /// Sends what is not in flight on `link`, oldest first, as far as its
    /// window allows; returns how many went.
    pub fn resend(&mut self, device: &DeviceId, link: &mut Link) -> u64 {
        let mut sent = 0;
        for e in self.0.iter_mut().filter(|e| e.pkid == 0) {
            let topic = device_topic(device, e.leaf);
            match link.publish_tracked(&topic, true, e.payload.clone()) {
                Some(pkid) => {
                    e.pkid = pkid;
                    sent += 1;
                }
                None => break,
            }
        }
        sent
    }

    /// Reports waiting for an acknowledgement.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kumo_contract::topic::Sensor;

    const TE: Leaf = Leaf::Sensor(Sensor::Temperature);

    #[test]
    fn only_reports_the_node_acknowledged_leave_the_outbox() {
        let mut o = Outbox::default();
        o.sent(1, TE, b"a".to_vec(), 10, "te".into());
        o.sent(2, TE, b"b".to_vec(), 20, "hu".into());
        assert_eq!(o.acked(3), None, "a PUBACK of something else");
        assert_eq!(o.acked(2), Some((20, "hu".into())));
        assert_eq!(o.acked(2), None, "acknowledged once");
        o.sent(1, TE, b"c".to_vec(), 30, "il".into());
        assert_eq!(
            o.acked(1),
            Some((30, "il".into())),
            "a reused id is the newest report"
        );
        assert!(o.is_empty());
    }

    #[test]
    fn after_a_reconnect_nothing_is_in_flight_and_a_puback_of_an_old_id_acknowledges_nothing() {
        let mut o = Outbox::default();
        o.sent(5, TE, b"a".to_vec(), 10, "te".into());
        o.reconnected();
        assert_eq!(o.acked(5), None);
        assert_eq!(o.acked(0), None, "an unsent entry has no packet id");
        assert_eq!(o.len(), 1, "still waiting to go again");
    }
}
