//! MQTT framing on top of `rumqttd::protocol`: picks 3.1.1 or 5 from the CONNECT,
//! refuses packet types a client must never send before the codec sees them
//! (rumqttd's v5 decoder panics on some), and works around `Publish` keeping its
//! QoS and packet id crate-private.
//!
//! Owns bytes ↔ packets only; what a packet means is the session's business.

use bytes::{BufMut, Bytes, BytesMut};
use rumqttd::protocol::v4::FixedHeader;
use rumqttd::protocol::{v4, v5, ConnectProperties, Packet, Protocol, Publish, QoS};

/// Protocol version negotiated by the CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V4,
    /// MQTT 5.
    V5,
}

/// Why bytes could not become a packet.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("packet of {0} bytes exceeds the maximum packet size")]
    TooLarge(usize),
    #[error("packet type {0} may not be sent by a client")]
    ForbiddenType(u8),
    #[error("first packet is not a CONNECT")]
    NotConnect,
    #[error("unsupported protocol level {0}")]
    UnsupportedLevel(u8),
    #[error("malformed packet: {0}")]
    Malformed(rumqttd::protocol::Error),
    #[error("malformed packet: {0}")]
    Reserved(&'static str),
}

/// A decoded packet plus what rumqttd does not expose about PUBLISH.
#[derive(Debug)]
pub struct Frame {
    pub packet: Packet,
    /// QoS of a PUBLISH (0 otherwise).
    pub qos: u8,
    /// Packet id of a QoS 1/2 PUBLISH (0 otherwise).
    pub pkid: u16,
}

/// Frames the packet at the front of `buf`. `max` bounds the whole packet,
/// fixed header included, as MQTT 5 §3.2.2.3.6 counts it; rumqttd's check
/// counts only the Remaining Length, so the whole size is checked here too.
fn frame(buf: &[u8], max: usize) -> Result<Option<FixedHeader>, CodecError> {
    match v4::check(buf.iter(), max) {
        Ok(h) if h.frame_length() > max => Err(CodecError::TooLarge(h.frame_length())),
        Ok(h) => Ok(Some(h)),
        Err(rumqttd::protocol::Error::InsufficientBytes(_)) => Ok(None),
        Err(rumqttd::protocol::Error::PayloadSizeLimitExceeded(n)) => Err(CodecError::TooLarge(n)),
        Err(e) => Err(CodecError::Malformed(e)),
    }
}

/// Reads the protocol level of a CONNECT at the front of `buf` without consuming
/// it. `Ok(None)`: not enough bytes yet.
pub fn peek_version(buf: &[u8], max: usize) -> Result<Option<Version>, CodecError> {
    let Some(header) = frame(buf, max)? else {
        return Ok(None);
    };
    if header.byte1 != 0x10 {
        return Err(CodecError::NotConnect);
    }
    let body = &buf[header.fixed_header_len..header.frame_length()];
    // Variable header: protocol name (u16 length + "MQTT") then the level byte.
    if body.len() < 7 || &body[..6] != b"\x00\x04MQTT" {
        return Err(CodecError::UnsupportedLevel(
            body.get(6).copied().unwrap_or(0),
        ));
    }
    match body[6] {
        4 => Ok(Some(Version::V4)),
        5 => Ok(Some(Version::V5)),
        other => Err(CodecError::UnsupportedLevel(other)),
    }
}

/// Decodes the next packet from `buf`; `Ok(None)` when more bytes are needed.
pub fn read(version: Version, buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, CodecError> {
    let Some(header) = frame(buf, max)? else {
        return Ok(None);
    };
    let kind = header.byte1 >> 4;
    // CONNACK, SUBACK, UNSUBACK, PINGRESP are server-only; 0 and 15 (AUTH) unsupported.
    if matches!(kind, 0 | 2 | 9 | 11 | 13 | 15) {
        return Err(CodecError::ForbiddenType(kind));
    }
    let body = &buf[header.fixed_header_len..header.frame_length()];
    check_reserved_bits(version, header.byte1, body)?;
    let (qos, pkid) = if kind == 3 {
        publish_qos_pkid(header.byte1, body)
    } else {
        (0, 0)
    };
    let packet = match version {
        Version::V4 => v4::V4.read_mut(buf, max),
        Version::V5 => v5::V5.read_mut(buf, max),
    }
    .map_err(CodecError::Malformed)?;
    Ok(Some(Frame { packet, qos, pkid }))
}

/// The reserved bits rumqttd's decoders do not look at. MQTT-2.2.2-2: fixed
/// header flags other than those listed are malformed (PUBREL, SUBSCRIBE and
/// UNSUBSCRIBE carry 0010, every other non-PUBLISH packet 0000); a PUBLISH
/// with QoS 3 is malformed (MQTT-3.3.1-4). In SUBSCRIBE options, bits 2–7
/// (3.1.1, MQTT-3.8.3-4) or 6–7 (MQTT 5, MQTT-3.8.3-5) are reserved.
fn check_reserved_bits(version: Version, byte1: u8, body: &[u8]) -> Result<(), CodecError> {
    let flags = byte1 & 0x0f;
    match (byte1 >> 4, flags) {
        (3, f) if (f >> 1) & 0b11 == 3 => Err(CodecError::Reserved("PUBLISH with QoS 3")),
        (3, _) | (6 | 10, 0b0010) | (1 | 4 | 5 | 7 | 12 | 14, 0) => Ok(()),
        (8, 0b0010) => check_subscribe_options(version, body),
        _ => Err(CodecError::Reserved("fixed header flags")),
    }
}

/// Walks a SUBSCRIBE's topic filters for their options bytes. Length errors
/// are left to rumqttd's decoder, which reports them properly.
fn check_subscribe_options(version: Version, body: &[u8]) -> Result<(), CodecError> {
    let mut at = 2; // packet identifier
    let reserved = match version {
        Version::V4 => 0b1111_1100,
        Version::V5 => {
            let Some((len, used)) = varint(body.get(at..).unwrap_or_default()) else {
                return Ok(());
            };
            at += used + len;
            0b1100_0000
        }
    };
    while let Some(l) = body.get(at..at + 2) {
        at += 2 + u16::from_be_bytes([l[0], l[1]]) as usize;
        let Some(&options) = body.get(at) else {
            return Ok(());
        };
        if options & reserved != 0 {
            return Err(CodecError::Reserved("SUBSCRIBE options"));
        }
        at += 1;
    }
    Ok(())
}

/// A Variable Byte Integer: (value, bytes used), `None` if cut short or over 4 bytes.
fn varint(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, b) in bytes.iter().take(4).enumerate() {
        value |= ((b & 0x7f) as usize) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// QoS and packet id straight from a PUBLISH's bytes (rumqttd keeps them private).
pub(crate) fn publish_qos_pkid(byte1: u8, body: &[u8]) -> (u8, u16) {
    let qos = (byte1 >> 1) & 0b11;
    if qos == 0 || body.len() < 2 {
        return (qos, 0);
    }
    let topic_len = u16::from_be_bytes([body[0], body[1]]) as usize;
    match body.get(2 + topic_len..4 + topic_len) {
        Some(id) => (qos, u16::from_be_bytes([id[0], id[1]])),
        None => (qos, 0),
    }
}

/// Encodes `packet` onto `out`. The caller never hands a v4 session packets with
/// MQTT 5 properties or reason codes (rumqttd's v4 writer panics on those).
pub fn write(version: Version, packet: Packet, out: &mut BytesMut) -> Result<usize, CodecError> {
    match version {
        Version::V4 => v4::V4.write(strip_properties(packet), out),
        Version::V5 => v5::V5.write(packet, out),
    }
    .map_err(CodecError::Malformed)
}

fn strip_properties(packet: Packet) -> Packet {
    match packet {
        Packet::Publish(p, _) => Packet::Publish(p, None),
        Packet::PubAck(p, _) => Packet::PubAck(p, None),
        Packet::SubAck(p, _) => Packet::SubAck(p, None),
        Packet::UnsubAck(p, _) => Packet::UnsubAck(p, None),
        Packet::PubRec(p, _) => Packet::PubRec(p, None),
        Packet::PubComp(p, _) => Packet::PubComp(p, None),
        Packet::PubRel(p, _) => Packet::PubRel(p, None),
        other => other,
    }
}

/// CONNECT properties with nothing set (what MQTT 3.1.1 implies).
pub(crate) fn no_connect_properties() -> ConnectProperties {
    ConnectProperties {
        session_expiry_interval: None,
        receive_maximum: None,
        max_packet_size: None,
        topic_alias_max: None,
        request_response_info: None,
        request_problem_info: None,
        user_properties: Vec::new(),
        authentication_method: None,
        authentication_data: None,
    }
}

/// Builds a PUBLISH with the given QoS, packet id and flags. rumqttd only
/// offers a QoS 0 constructor publicly, so this goes through its documented
/// serialized form, which keeps the packet id even at QoS 0 (the wire writers
/// leave it out there; [`crate::message`] relies on it surviving the router).
pub fn publish(
    topic: Bytes,
    payload: Bytes,
    qos: QoS,
    pkid: u16,
    retain: bool,
    dup: bool,
) -> Publish {
    let mut o = BytesMut::with_capacity(5 + topic.len() + payload.len());
    o.put_u8(0b0011_0000 | retain as u8 | ((qos as u8) << 1) | ((dup as u8) << 3));
    o.put_u16(pkid);
    o.put_u16(topic.len() as u16);
    o.extend_from_slice(&topic);
    o.extend_from_slice(&payload);
    Publish::deserialize(o.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_qos1_publish_round_trips_through_the_v4_codec() {
        let p = publish(
            Bytes::from_static(b"a/b"),
            Bytes::from_static(b"x"),
            QoS::AtLeastOnce,
            7,
            false,
            false,
        );
        let mut buf = BytesMut::new();
        write(Version::V4, Packet::Publish(p, None), &mut buf).expect("encode");
        let frame = read(Version::V4, &mut buf, 1024)
            .expect("decode")
            .expect("complete");
        assert_eq!((frame.qos, frame.pkid), (1, 7));
        assert!(buf.is_empty());
    }

    #[test]
    fn server_only_packet_types_are_refused_before_decoding() {
        // CONNACK sent by a client to a v5 session would hit rumqttd's unreachable!().
        let mut buf = BytesMut::from(&[0x20u8, 0x03, 0x00, 0x00, 0x00][..]);
        assert!(matches!(
            read(Version::V5, &mut buf, 1024),
            Err(CodecError::ForbiddenType(2))
        ));
    }

    #[test]
    fn the_connect_level_selects_the_codec() {
        let v5 = [
            0x10u8, 0x0d, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 0, 0, 0,
        ];
        assert_eq!(peek_version(&v5, 1024).expect("ok"), Some(Version::V5));
        assert_eq!(peek_version(&v5[..4], 1024).expect("ok"), None);
        let pub0 = [0x30u8, 0x02, 0, 0];
        assert!(matches!(
            peek_version(&pub0, 1024),
            Err(CodecError::NotConnect)
        ));
    }

    #[test]
    fn the_maximum_packet_size_counts_the_fixed_header() {
        // 2-byte fixed header + 62 bytes = 64: fits a 64-byte maximum, 65 does not.
        let packet = |n: u8| {
            let mut b = vec![0x30u8, n, 0, 1, b't'];
            b.resize(2 + n as usize, b'x');
            BytesMut::from(&b[..])
        };
        assert!(read(Version::V4, &mut packet(62), 64)
            .expect("fits")
            .is_some());
        assert!(matches!(
            read(Version::V4, &mut packet(63), 64),
            Err(CodecError::TooLarge(65))
        ));
    }

    #[test]
    fn reserved_fixed_header_flags_are_malformed() {
        // SUBSCRIBE 0x80 instead of 0x82, PINGREQ 0xC1, PUBLISH QoS 3.
        for bytes in [
            &[0x80u8, 0x06, 0, 1, 0, 1, b'a', 0][..],
            &[0xc1, 0x00][..],
            &[0x36, 0x05, 0, 1, b'a', 0, 1][..],
        ] {
            let mut buf = BytesMut::from(bytes);
            assert!(
                matches!(
                    read(Version::V4, &mut buf, 1024),
                    Err(CodecError::Reserved(_))
                ),
                "{bytes:02x?}"
            );
        }
    }

    #[test]
    fn reserved_subscribe_option_bits_are_malformed() {
        // 3.1.1: bits 2-7 reserved; MQTT 5: bits 6-7 (bit 2 is No Local there).
        let sub = |props: &[u8], options: u8| {
            let mut b = vec![0x82u8, 0, 0, 1];
            b.extend_from_slice(props);
            b.extend_from_slice(&[0, 1, b'a', options]);
            b[1] = (b.len() - 2) as u8;
            BytesMut::from(&b[..])
        };
        let reserved =
            |r: Result<Option<Frame>, CodecError>| matches!(r, Err(CodecError::Reserved(_)));
        assert!(reserved(read(Version::V4, &mut sub(&[], 0x04), 1024)));
        assert!(read(Version::V5, &mut sub(&[0], 0x04), 1024)
            .expect("no local")
            .is_some());
        assert!(reserved(read(Version::V5, &mut sub(&[0], 0x41), 1024)));
        assert!(read(Version::V4, &mut sub(&[], 0x01), 1024)
            .expect("qos 1")
            .is_some());
    }

    #[test]
    fn oversized_frames_are_refused_from_the_header_alone() {
        let mut buf = BytesMut::from(&[0x30u8, 0xff, 0xff, 0x03][..]);
        assert!(matches!(
            read(Version::V4, &mut buf, 1024),
            Err(CodecError::TooLarge(_))
        ));
    }
}

#[cfg(test)]
#[path = "codec_fuzz.rs"]
mod fuzz;
