//! An application message on its way through the node, and what the embedded
//! router would otherwise forget about it.
//!
//! rumqttd's router overwrites a forwarded PUBLISH's QoS with the reading
//! link's (always 0 here), clears RETAIN, and cannot say who published. MQTT
//! needs all three at delivery: the delivered QoS is the minimum of the
//! published and the granted QoS (MQTT-3.8.4-8), Retain As Published keeps the
//! flag, and No Local compares the publisher's client id. So the node hands the
//! router a QoS 0, RETAIN 0 publish whose packet id carries a [`Stamp`] (the
//! router keeps the packet id of QoS 0 forwards untouched), plus, for
//! publishers that may subscribe to what they publish (service and integration
//! sessions), the origin client id in a reserved user property that sessions
//! remove before anything reaches a client. Clients cannot forge it: an inbound
//! property with that name is dropped. Retained messages never enter the
//! router (see [`crate::retained`]).

use bytes::Bytes;
use rumqttd::protocol::{Publish, PublishProperties, QoS};

/// User property naming the publishing client; never leaves the node.
const ORIGIN: &str = "$kumo/origin";
/// The user properties the node uses between its own sessions; a client's
/// publish never carries one into the router. Only these names: MQTT 5
/// (MQTT-3.3.2-17) wants every other user property forwarded unaltered.
const RESERVED: [&str; 2] = [ORIGIN, crate::confirm::PROPERTY];

/// Set in every packet id the node stamps (a stamped id is never 0).
const STAMPED: u16 = 0x8000;
const RETAIN_BIT: u16 = 0x4;
const IMPORTED_BIT: u16 = 0x8;

/// An application message as a client (or the node itself) published it.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: Bytes,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: Option<PublishProperties>,
    /// Brought in from a peer node (see `peering`): delivered to this node's
    /// integrations and devices, never to its services (the bridge and the
    /// peers' links already have it from its own node).
    pub imported: bool,
    /// The token a service session confirms once its client has acknowledged
    /// the message (see `confirm`); routed only, never retained.
    pub confirm: Option<u64>,
}

/// What a delivering session needs to know about how a message was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub qos: QoS,
    pub retain: bool,
    pub imported: bool,
}

impl Message {
    /// A message the node publishes itself (presence, epochs), at QoS 1 so a
    /// QoS 1 subscriber gets it reliably.
    pub fn from_node(publish: Publish) -> Message {
        Message {
            topic: publish.topic,
            payload: publish.payload,
            qos: QoS::AtLeastOnce,
            retain: publish.retain,
            properties: None,
            imported: false,
            confirm: None,
        }
    }

    /// The PUBLISH handed to the router: QoS 0 and RETAIN 0, with the stamp in
    /// its packet id and `origin` in the reserved property.
    pub fn into_routed(self, origin: Option<&str>) -> (Publish, Option<PublishProperties>) {
        let mut properties = self.properties;
        detach(&mut properties);
        if let Some(origin) = origin {
            properties
                .get_or_insert_with(PublishProperties::default)
                .user_properties
                .push((ORIGIN.to_string(), origin.to_string()));
        }
        if let Some(token) = self.confirm {
            crate::confirm::put(&mut properties, token);
        }
        let mut id = STAMPED | self.qos as u16;
        if self.retain {
            id |= RETAIN_BIT;
        }
        if self.imported {
            id |= IMPORTED_BIT;
        }
        let publish =
            crate::codec::publish(self.topic, self.payload, QoS::AtMostOnce, id, false, false);
        (publish, properties)
    }
}

/// Gives the correlation data its own allocation. A session decodes a
/// PUBLISH in place, so its topic, payload and correlation data are slices of
/// the buffer the packet arrived in — for a client that sent a large packet,
/// a buffer of a hundred kilobytes or more. A message that outlives its
/// packet (in the router's logs, the retained store) must not keep that
/// buffer alive: the router gets a fresh topic and payload
/// ([`crate::codec::publish`]), the retained store copies them, and this
/// copies the one property held as such a slice.
pub fn detach(properties: &mut Option<PublishProperties>) {
    if let Some(c) = properties
        .as_mut()
        .and_then(|p| p.correlation_data.as_mut())
    {
        *c = Bytes::copy_from_slice(c);
    }
}

/// Whether `part` lies inside `buffer`'s bytes (tests of [`detach`] and the
/// retained store's copies).
#[cfg(test)]
pub(crate) fn shares(part: &[u8], buffer: &[u8]) -> bool {
    let range = buffer.as_ptr_range();
    range.contains(&part.as_ptr())
}

/// Removes what a client may not set: the node's reserved user properties
/// (the origin and the confirmation token).
pub fn sanitize(properties: &mut Option<PublishProperties>) {
    if let Some(p) = properties {
        p.user_properties
            .retain(|(k, _)| !RESERVED.contains(&k.as_str()));
    }
}

/// Takes the reserved user property `key` out of a routed message's
/// properties (the node adds at most one of each; the last one wins).
pub(crate) fn take_reserved(
    properties: &mut Option<PublishProperties>,
    key: &str,
) -> Option<String> {
    debug_assert!(RESERVED.contains(&key));
    let p = properties.as_mut()?;
    let at = p.user_properties.iter().rposition(|(k, _)| k == key)?;
    Some(p.user_properties.remove(at).1)
}

/// Takes the origin client id out of a routed message's properties.
pub fn take_origin(properties: &mut Option<PublishProperties>) -> Option<String> {
    take_reserved(properties, ORIGIN)
}

/// The stamp of a routed publish. A publish the node did not stamp counts as
/// QoS 1, not retained.
pub fn stamp(publish: &Publish) -> Stamp {
    // rumqttd keeps the packet id crate-private; its documented serialized
    // form puts it right after the first byte. Serialized without topic and
    // payload (a clone shares their bytes), that is a 5-byte copy, not one
    // of the whole message per delivery.
    let mut header = publish.clone();
    header.topic = Bytes::new();
    header.payload = Bytes::new();
    let bytes = header.serialize();
    let id = u16::from_be_bytes([bytes[1], bytes[2]]);
    if id & STAMPED == 0 {
        return Stamp {
            qos: QoS::AtLeastOnce,
            retain: false,
            imported: false,
        };
    }
    Stamp {
        qos: match id & 0x3 {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        },
        retain: id & RETAIN_BIT != 0,
        imported: id & IMPORTED_BIT != 0,
    }
}

/// The lower of two QoS levels.
pub fn min_qos(a: QoS, b: QoS) -> QoS {
    if (a as u8) <= (b as u8) {
        a
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn message(qos: QoS, retain: bool) -> Message {
        Message {
            topic: Bytes::from_static(b"a/b"),
            payload: Bytes::from_static(b"x"),
            qos,
            retain,
            properties: None,
            imported: false,
            confirm: None,
        }
    }

    #[test]
    fn the_stamp_survives_the_routed_form_for_every_qos_and_flag() {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for retain in [false, true] {
                for imported in [false, true] {
                    let mut m = message(qos, retain);
                    m.imported = imported;
                    let (p, props) = m.into_routed(None);
                    assert!(!p.retain, "the router must never see RETAIN");
                    assert!(props.is_none());
                    assert_eq!(
                        stamp(&p),
                        Stamp {
                            qos,
                            retain,
                            imported
                        }
                    );
                }
            }
        }
    }

    #[test]
    fn the_origin_travels_in_a_property_that_can_be_taken_out_again() {
        let mut m = message(QoS::AtLeastOnce, false);
        m.properties = Some(PublishProperties {
            user_properties: vec![("k".into(), "v".into())],
            ..Default::default()
        });
        let (_, mut props) = m.into_routed(Some("svc-a"));
        assert_eq!(take_origin(&mut props).as_deref(), Some("svc-a"));
        assert_eq!(
            props.unwrap().user_properties,
            vec![("k".into(), "v".into())]
        );
    }

    #[test]
    fn a_client_cannot_forge_a_reserved_property_and_other_properties_pass() {
        let mut props = Some(PublishProperties {
            user_properties: vec![
                (ORIGIN.into(), "victim".into()),
                ("k".into(), "v".into()),
                (crate::confirm::PROPERTY.into(), "7".into()),
                ("$kumo/other".into(), "x".into()),
            ],
            ..Default::default()
        });
        sanitize(&mut props);
        assert_eq!(take_origin(&mut props), None);
        assert_eq!(
            props.unwrap().user_properties,
            vec![("k".into(), "v".into()), ("$kumo/other".into(), "x".into())]
        );
    }

    #[test]
    fn a_routed_message_keeps_nothing_of_the_buffer_it_was_read_from() {
        let buffer = Bytes::from(b"a/bpayloadcorrelation".repeat(1_000));
        let mut m = message(QoS::AtLeastOnce, false);
        m.topic = buffer.slice(0..3);
        m.payload = buffer.slice(3..10);
        m.properties = Some(PublishProperties {
            correlation_data: Some(buffer.slice(10..21)),
            ..Default::default()
        });
        let (p, props) = m.into_routed(Some("svc"));
        let correlation = props.unwrap().correlation_data.unwrap();
        assert_eq!(&correlation[..], b"correlation");
        assert_eq!(
            (&p.topic[..], &p.payload[..]),
            (&b"a/b"[..], &b"payload"[..])
        );
        for part in [&p.topic[..], &p.payload[..], &correlation[..]] {
            assert!(
                !shares(part, &buffer),
                "{part:?} still points into the read buffer"
            );
        }
    }

    #[test]
    fn min_qos_is_the_lower_level() {
        assert_eq!(min_qos(QoS::AtMostOnce, QoS::AtLeastOnce), QoS::AtMostOnce);
        assert_eq!(
            min_qos(QoS::ExactlyOnce, QoS::AtLeastOnce),
            QoS::AtLeastOnce
        );
    }
}
