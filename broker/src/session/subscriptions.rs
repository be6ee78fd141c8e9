//! A session's subscriptions and what they decide about a routed message:
//! whether it is sent, at which QoS and with which RETAIN flag.
//!
//! The rules (MQTT 3.1.1 §3.8.4, MQTT 5 §3.8.3.1 and §4.8): the delivered QoS
//! is the lower of the published QoS and the granted QoS; when several
//! subscriptions match, one copy goes out with the highest of them; a No Local
//! subscription never matches its own client's messages; live messages carry
//! RETAIN=0 unless a matching subscription asked for Retain As Published.

use rumqttd::protocol::QoS;

use crate::message::{min_qos, Stamp};
use crate::registry::Decided;

/// One granted subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sub {
    /// The filter without a `$share/{group}/` prefix.
    pub filter: String,
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
}

/// Every subscription of a session.
#[derive(Debug, Clone, Default)]
pub(crate) struct Subscriptions(Vec<Sub>);

impl Subscriptions {
    /// Adds `sub`, replacing one with the same filter (MQTT-3.8.4-3); true
    /// when it replaced one.
    pub fn insert(&mut self, sub: Sub) -> bool {
        match self.0.iter_mut().find(|s| s.filter == sub.filter) {
            Some(old) => {
                *old = sub;
                true
            }
            None => {
                self.0.push(sub);
                false
            }
        }
    }

    /// Removes the subscription to `filter`; true when there was one.
    pub fn remove(&mut self, filter: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|s| s.filter != filter);
        self.0.len() < before
    }

    /// Every filter, with whether it was granted QoS 1 or 2.
    pub fn granted(&self) -> impl Iterator<Item = (&str, bool)> {
        self.0
            .iter()
            .map(|s| (s.filter.as_str(), s.qos != QoS::AtMostOnce))
    }

    /// Whether any subscription matches `topic`.
    pub fn matches(&self, topic: &str) -> bool {
        self.0
            .iter()
            .any(|s| rumqttd::protocol::matches(topic, &s.filter))
    }

    /// How a live message on `topic`, published as `stamp` by `origin`, goes
    /// to the session of client `me`; `None` when no subscription takes it.
    pub fn decide(
        &self,
        topic: &str,
        stamp: Stamp,
        origin: Option<&str>,
        me: &str,
    ) -> Option<Decided> {
        let own = origin == Some(me);
        let mut granted: Option<QoS> = None;
        let mut keep_retain = false;
        for s in self
            .0
            .iter()
            .filter(|s| !(s.no_local && own) && rumqttd::protocol::matches(topic, &s.filter))
        {
            granted = Some(match granted {
                Some(g) if (g as u8) >= (s.qos as u8) => g,
                _ => s.qos,
            });
            keep_retain |= s.retain_as_published;
        }
        granted.map(|g| Decided {
            qos: min_qos(stamp.qos, g),
            retain: keep_retain && stamp.retain,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sub(filter: &str, qos: QoS, no_local: bool, rap: bool) -> Sub {
        Sub {
            filter: filter.into(),
            qos,
            no_local,
            retain_as_published: rap,
        }
    }

    const Q0_RETAINED: Stamp = Stamp {
        qos: QoS::AtMostOnce,
        retain: true,
        imported: false,
    };
    const Q1: Stamp = Stamp {
        qos: QoS::AtLeastOnce,
        retain: false,
        imported: false,
    };

    #[test]
    fn the_delivered_qos_is_the_lower_of_published_and_granted() {
        let mut s = Subscriptions::default();
        s.insert(sub("a/+", QoS::AtLeastOnce, false, false));
        assert_eq!(
            s.decide("a/b", Q0_RETAINED, None, "me").unwrap().qos,
            QoS::AtMostOnce
        );
        s.insert(sub("a/+", QoS::AtMostOnce, false, false));
        assert_eq!(
            s.decide("a/b", Q1, None, "me").unwrap().qos,
            QoS::AtMostOnce
        );
    }

    #[test]
    fn overlapping_subscriptions_give_one_copy_at_the_highest_grant() {
        let mut s = Subscriptions::default();
        s.insert(sub("a/#", QoS::AtMostOnce, false, false));
        s.insert(sub("a/b", QoS::AtLeastOnce, false, false));
        assert_eq!(
            s.decide("a/b", Q1, None, "me").unwrap().qos,
            QoS::AtLeastOnce
        );
    }

    #[test]
    fn no_local_skips_only_the_clients_own_messages() {
        let mut s = Subscriptions::default();
        s.insert(sub("a/b", QoS::AtLeastOnce, true, false));
        assert!(s.decide("a/b", Q1, Some("me"), "me").is_none());
        assert!(s.decide("a/b", Q1, Some("other"), "me").is_some());
        s.insert(sub("a/#", QoS::AtMostOnce, false, false));
        assert_eq!(
            s.decide("a/b", Q1, Some("me"), "me").unwrap().qos,
            QoS::AtMostOnce
        );
    }

    #[test]
    fn retain_is_kept_only_for_retain_as_published() {
        let mut s = Subscriptions::default();
        s.insert(sub("a/b", QoS::AtLeastOnce, false, false));
        assert!(!s.decide("a/b", Q0_RETAINED, None, "me").unwrap().retain);
        assert!(s.insert(sub("a/b", QoS::AtLeastOnce, false, true)));
        assert!(s.decide("a/b", Q0_RETAINED, None, "me").unwrap().retain);
        assert!(!s.decide("a/b", Q1, None, "me").unwrap().retain);
    }
}
