//! The three MQTT 3.1.1 packets the load tool needs, as raw bytes.

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
    fn connack_return_code_is_read_only_from_a_connack() {
        assert_eq!(connack_return_code(&[0x20, 0x02, 0x00, 0x00]), Some(0));
        assert_eq!(connack_return_code(&[0x20, 0x02, 0x00, 0x05]), Some(5));
        assert_eq!(connack_return_code(&[0x30, 0x02, 0x00, 0x00]), None);
    }
}
