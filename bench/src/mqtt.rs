//! The few MQTT 3.1.1 packets the load tool needs, as raw bytes.

/// A CONNECT packet: protocol level 4, clean session, the given keepalive, no
/// username or password (the brokers take the identity from the certificate).
pub fn connect_packet(client_id: &str, keepalive_secs: u16) -> Vec<u8> {
    let id = client_id.as_bytes();
    // Variable header (10 bytes) + client id length prefix + id.
    let remaining = 10 + 2 + id.len();
    let mut p = Vec::with_capacity(remaining + 5);
    p.push(0x10);
    push_remaining_length(&mut p, remaining);
    p.extend_from_slice(&[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02]);
    p.extend_from_slice(&keepalive_secs.to_be_bytes());
    // Device ids are at most 64 bytes, so the length always fits.
    p.extend_from_slice(&(id.len() as u16).to_be_bytes());
    p.extend_from_slice(id);
    p
}

/// A DISCONNECT packet.
pub const DISCONNECT: [u8; 2] = [0xE0, 0x00];

/// Length of a CONNACK packet in MQTT 3.1.1.
pub const CONNACK_LEN: usize = 4;

/// The return code of a CONNACK, or `None` if the bytes are not a CONNACK.
pub fn connack_return_code(bytes: &[u8; CONNACK_LEN]) -> Option<u8> {
    (bytes[0] == 0x20 && bytes[1] == 0x02).then_some(bytes[3])
}

/// Packet type of a PUBACK (the high nibble of its first byte).
pub const PUBACK: u8 = 4;

/// Appends a QoS 1 PUBLISH of `payload` on `topic` with `packet_id` to `out`.
pub fn publish_qos1(out: &mut Vec<u8>, topic: &str, packet_id: u16, payload: &[u8]) {
    let t = topic.as_bytes();
    let remaining = 2 + t.len() + 2 + payload.len();
    out.push(0x32);
    push_remaining_length(out, remaining);
    // Topics here are far shorter than 64 KiB.
    out.extend_from_slice(&(t.len() as u16).to_be_bytes());
    out.extend_from_slice(t);
    out.extend_from_slice(&packet_id.to_be_bytes());
    out.extend_from_slice(payload);
}

/// The type and total length of the complete packet at the start of `buf`, or
/// `None` if `buf` does not hold a whole packet yet.
pub fn packet_at(buf: &[u8]) -> Option<(u8, usize)> {
    let first = *buf.first()?;
    let mut len = 0usize;
    let mut shift = 0;
    for (i, byte) in buf.iter().skip(1).take(4).enumerate() {
        len |= usize::from(byte & 0x7F) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            let total = 1 + (i + 1) + len;
            return (buf.len() >= total).then_some((first >> 4, total));
        }
    }
    None
}

fn push_remaining_length(p: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        p.push(byte);
        if len == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_packet_encodes_client_id_and_keepalive() {
        let p = connect_packet("dev-1", 600);
        assert_eq!(p[0], 0x10);
        assert_eq!(p[1] as usize, p.len() - 2);
        assert_eq!(&p[2..10], b"\x00\x04MQTT\x04\x02");
        assert_eq!(u16::from_be_bytes([p[10], p[11]]), 600);
        assert_eq!(&p[12..14], &[0, 5]);
        assert_eq!(&p[14..], b"dev-1");
    }

    #[test]
    fn a_qos1_publish_parses_back_as_one_whole_packet() {
        let mut out = Vec::new();
        publish_qos1(&mut out, "devices/d/sensors/te", 7, &[b'x'; 200]);
        assert_eq!(out[0], 0x32);
        assert_eq!(packet_at(&out), Some((3, out.len())));
        assert_eq!(packet_at(&out[..out.len() - 1]), None);
        assert_eq!(packet_at(&[0x40, 0x02, 0x00, 0x07]), Some((PUBACK, 4)));
    }

    #[test]
    fn connack_return_code_is_read_only_from_a_connack() {
        assert_eq!(connack_return_code(&[0x20, 0x02, 0x00, 0x00]), Some(0));
        assert_eq!(connack_return_code(&[0x20, 0x02, 0x00, 0x05]), Some(5));
        assert_eq!(connack_return_code(&[0x30, 0x02, 0x00, 0x00]), None);
    }
}
