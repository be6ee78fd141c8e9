//! The node's retained messages: the last RETAIN=1 message per topic, sent to
//! a session when it subscribes.
//!
//! The node keeps them itself instead of leaving them to rumqttd's router,
//! which removes a retained message on any empty payload (MQTT-3.3.1-12 says a
//! RETAIN=0 publish must leave it alone), sends them only for a filter the link
//! did not have yet (MQTT-3.8.4-3 and Retain Handling need more) and drops
//! their properties. Messages are ordered by topic, so a filter reads only the
//! range below its first wildcard: a device's `devices/{id}/…` subscription
//! touches its own few topics, never the fleet's.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttd::protocol::{PublishProperties, QoS};

use crate::message::Message;

/// One retained message.
#[derive(Debug)]
pub struct Retained {
    pub topic: Bytes,
    pub payload: Bytes,
    pub qos: QoS,
    pub properties: Option<PublishProperties>,
    /// When the node received it (Message Expiry counts from here).
    pub at: Instant,
    /// Brought in from a peer node (never sent to service sessions).
    pub imported: bool,
}

impl Retained {
    fn expired(&self, now: Instant) -> bool {
        self.properties
            .as_ref()
            .and_then(|p| p.message_expiry_interval)
            .is_some_and(|s| now.duration_since(self.at) >= Duration::from_secs(s.into()))
    }
}

/// Every retained message of the node, by topic.
#[derive(Debug, Default)]
pub struct RetainedStore {
    map: RwLock<BTreeMap<String, Arc<Retained>>>,
}

impl RetainedStore {
    /// Applies a RETAIN=1 message (MQTT-3.3.1-5, -10, -11): an empty payload
    /// removes the topic's retained message, anything else replaces it.
    /// RETAIN=0 messages are ignored (MQTT-3.3.1-12).
    pub fn apply(&self, message: &Message) {
        if !message.retain {
            return;
        }
        let Ok(topic) = std::str::from_utf8(&message.topic) else {
            return;
        };
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if message.payload.is_empty() {
            map.remove(topic);
        } else {
            // Copies, not slices of the buffer the packet arrived in: a
            // retained message lives until replaced, and must not keep a
            // client's (possibly large) read buffer with it.
            let mut properties = message.properties.clone();
            crate::message::detach(&mut properties);
            map.insert(
                topic.to_string(),
                Arc::new(Retained {
                    topic: Bytes::copy_from_slice(&message.topic),
                    payload: Bytes::copy_from_slice(&message.payload),
                    qos: message.qos,
                    properties,
                    at: Instant::now(),
                    imported: message.imported,
                }),
            );
        }
    }

    /// Whether device `id` may retain a message on `topic`: it holds one
    /// there already (replacing is always allowed), or fewer than `quota`
    /// of the topics under `devices/{id}/` that `own` says it set itself
    /// (not its presence, which the node retains for it). Counts at most
    /// `quota` entries.
    pub fn admits(&self, id: &str, topic: &str, quota: usize, own: impl Fn(&str) -> bool) -> bool {
        let prefix = format!("devices/{id}/");
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        if map.contains_key(topic) {
            return true;
        }
        map.range::<str, _>((
            std::ops::Bound::Included(prefix.as_str()),
            std::ops::Bound::Unbounded,
        ))
        .take_while(|(t, _)| t.starts_with(&prefix))
        .filter(|(t, _)| own(t))
        .take(quota)
        .count()
            < quota
    }

    /// The unexpired retained messages whose topic matches `filter`, in topic order.
    pub fn matching(&self, filter: &str) -> Vec<Arc<Retained>> {
        let now = Instant::now();
        // Topics matching the filter all start with the levels before its
        // first wildcard (without the separator: `a/#` matches `a` too).
        let prefix = match filter.find(['+', '#']) {
            Some(i) => filter[..i].strip_suffix('/').unwrap_or(&filter[..i]),
            None => filter,
        };
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.range::<str, _>((
            std::ops::Bound::Included(prefix),
            std::ops::Bound::Unbounded,
        ))
        .take_while(|(t, _)| t.starts_with(prefix))
        .filter(|(t, r)| rumqttd::protocol::matches(t, filter) && !r.expired(now))
        .map(|(_, r)| r.clone())
        .collect()
    }

    /// Drops expired messages; returns how many remain.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, r| !r.expired(now));
        map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &'static str, payload: &'static [u8], retain: bool) -> Message {
        Message {
            topic: Bytes::from_static(topic.as_bytes()),
            payload: Bytes::from_static(payload),
            qos: QoS::AtLeastOnce,
            retain,
            properties: None,
            imported: false,
            confirm: None,
        }
    }

    fn topics(store: &RetainedStore, filter: &str) -> Vec<String> {
        store
            .matching(filter)
            .iter()
            .map(|r| String::from_utf8_lossy(&r.topic).into_owned())
            .collect()
    }

    #[test]
    fn only_retain_1_messages_store_or_remove() {
        let s = RetainedStore::default();
        s.apply(&msg("a/b", b"1", true));
        s.apply(&msg("a/b", b"", false));
        s.apply(&msg("a/b", b"2", false));
        assert_eq!(&s.matching("a/b")[0].payload[..], b"1");
        s.apply(&msg("a/b", b"", true));
        assert!(s.matching("a/b").is_empty());
    }

    #[test]
    fn wildcard_filters_read_only_their_prefix_and_follow_the_matching_rules() {
        let s = RetainedStore::default();
        for t in ["a", "a/b", "a/b/c", "a/x/c", "ab/c", "b/c"] {
            s.apply(&Message {
                topic: Bytes::from(t.to_string()),
                ..msg("", b"v", true)
            });
        }
        assert_eq!(topics(&s, "a/#"), ["a", "a/b", "a/b/c", "a/x/c"]);
        assert_eq!(topics(&s, "a/+/c"), ["a/b/c", "a/x/c"]);
        assert_eq!(topics(&s, "+"), ["a"]);
        assert_eq!(topics(&s, "#").len(), 6);
        assert_eq!(topics(&s, "ab/c"), ["ab/c"]);
    }

    #[test]
    fn a_retained_message_keeps_nothing_of_the_buffer_it_was_read_from() {
        let buffer = Bytes::from(b"a/bvaluecorrelation".repeat(1_000));
        let s = RetainedStore::default();
        let mut m = msg("", b"", true);
        m.topic = buffer.slice(0..3);
        m.payload = buffer.slice(3..8);
        m.properties = Some(PublishProperties {
            correlation_data: Some(buffer.slice(8..19)),
            ..Default::default()
        });
        s.apply(&m);
        let r = s.matching("a/b").pop().expect("retained");
        let correlation = r
            .properties
            .as_ref()
            .and_then(|p| p.correlation_data.clone());
        let correlation = correlation.expect("correlation data");
        assert_eq!((&r.topic[..], &r.payload[..]), (&b"a/b"[..], &b"value"[..]));
        assert_eq!(&correlation[..], b"correlation");
        for part in [&r.topic[..], &r.payload[..], &correlation[..]] {
            assert!(
                !crate::message::shares(part, &buffer),
                "{part:?} still points into the read buffer"
            );
        }
    }

    #[test]
    fn a_device_may_retain_on_so_many_topics_and_always_replace_one() {
        let s = RetainedStore::default();
        let own = |t: &str| !t.ends_with("/presence");
        let retain = |t: String| {
            s.apply(&Message {
                topic: Bytes::from(t),
                ..msg("", b"v", true)
            })
        };
        // The node's own retained presence does not count.
        retain("devices/d1/presence".into());
        for i in 0..3 {
            assert!(s.admits("d1", &format!("devices/d1/t{i}"), 3, own));
            retain(format!("devices/d1/t{i}"));
        }
        retain("devices/d10/x".into());
        retain("devices/d0/x".into());
        assert!(!s.admits("d1", "devices/d1/t3", 3, own), "a fourth topic");
        assert!(s.admits("d1", "devices/d1/t0", 3, own), "replacing one");
        assert!(
            s.admits("d10", "devices/d10/y", 3, own),
            "another device's count"
        );
        s.apply(&Message {
            topic: Bytes::from("devices/d1/t1"),
            ..msg("", b"", true)
        });
        assert!(
            s.admits("d1", "devices/d1/t3", 3, own),
            "after clearing one"
        );
    }

    #[test]
    fn an_expired_message_is_not_sent_and_is_swept() {
        let s = RetainedStore::default();
        let mut m = msg("e", b"v", true);
        m.properties = Some(PublishProperties {
            message_expiry_interval: Some(0),
            ..Default::default()
        });
        s.apply(&m);
        assert!(s.matching("e").is_empty());
        assert_eq!(s.sweep(), 0);
    }
}
