//! What the live fuzzer sends: MQTT 3.1.1 and 5 packets a device could send —
//! on its own topics and others', with and without properties, wildcards
//! where they do not belong, odd payloads — and mutations of them: cut short,
//! wrong remaining lengths, reserved flags, other packet types, rewritten
//! string and property lengths, invalid UTF-8, random bytes.
//!
//! Encoding is by hand so that anything can be encoded, including what no
//! codec would write. Randomness is a seeded xorshift: a run is reproducible.

/// A seeded xorshift64* generator: reproducible, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced: xorshift must not start at 0).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Protocol version of a fuzzing session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1.
    V4,
    /// MQTT 5.
    V5,
}

fn varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    // Every string built here is under 64 KiB; a longer one would be cut,
    // which is one more malformation.
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// Fixed header + body.
fn frame(byte1: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![byte1];
    varint(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// A valid CONNECT for `client_id`: clean session, no credentials (the node
/// takes the identity from the certificate).
pub fn connect(version: Version, client_id: &str, keepalive: u16) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, b"MQTT");
    body.push(if version == Version::V5 { 5 } else { 4 });
    body.push(0x02);
    body.extend_from_slice(&keepalive.to_be_bytes());
    if version == Version::V5 {
        body.push(0); // no properties
    }
    string(&mut body, client_id.as_bytes());
    frame(0x10, &body)
}

/// Topic names a device might try: its own subtree (allowed), another
/// device's and the service topics (denied), wildcards and empty levels
/// (malformed in a PUBLISH), invalid UTF-8 and NUL.
fn topic(rng: &mut Rng, id: &str) -> Vec<u8> {
    let own = |leaf: &str| format!("devices/{id}/{leaf}").into_bytes();
    // Mostly what the node accepts, so sessions live long enough for the
    // mutations to meet state; the rest is refused (v3.1.1: by a disconnect).
    match rng.below(24) {
        0..=11 => own(rng.pick(&["sensors/te", "sensors/hu", "sensors", "meter"])),
        12 | 13 => own("state"),
        14 | 15 => own("acks"),
        16 => own(rng.pick(&["commands", "presence", "cert/request", "x/y/z"])),
        17 => b"devices/sim-000001/sensors/te".to_vec(),
        18 => rng
            .pick(&["$SYS/x", "nodes/node-1/epoch", "", "/", "devices"])
            .as_bytes()
            .to_vec(),
        19 => own(rng.pick(&["+", "#", "sensors/+", ""])),
        20 => {
            let mut t = own("sensors/");
            let bad: &[&[u8]] = &[&[0xc0, 0x80], &[0xff], &[0xed, 0xa0, 0x80], &[0]];
            t.extend_from_slice(rng.pick(bad));
            t
        }
        21 => vec![b'a'; 1 + rng.below(2_000)],
        _ => own(&format!("{}", rng.next_u64())),
    }
}

fn payload(rng: &mut Rng) -> Vec<u8> {
    let ts = 1_767_225_600_000u64 + rng.below(1_000_000) as u64;
    match rng.below(8) {
        0 => format!("{{\"val\":{},\"ts\":{ts}}}", rng.below(100)).into_bytes(),
        1 => format!(
            "{{\"te\":21.5,\"hu\":40,\"il\":{},\"ts\":{ts}}}",
            rng.below(1000)
        )
        .into_bytes(),
        2 => b"{\"val\":1e999,\"ts\":-1}".to_vec(),
        3 => br#"{"id":"c1","result":"ok","extra":[[[[[[[[[]]]]]]]]]}"#.to_vec(),
        4 => Vec::new(),
        5 => {
            // Deep nesting: the receiver's recursion limit must hold.
            let depth = 1 + rng.below(4_000);
            let mut v = vec![b'['; depth];
            v.resize(2 * depth, b']');
            v
        }
        6 if rng.chance(0.05) => vec![b'x'; 20_000 + rng.below(100_000)],
        _ => {
            let n = rng.below(300);
            rng.bytes(n)
        }
    }
}

/// MQTT 5 properties of a PUBLISH: a random valid selection, sometimes one
/// that is invalid where it stands (a subscription identifier, a duplicate).
fn publish_properties(rng: &mut Rng) -> Vec<u8> {
    let mut p = Vec::new();
    for _ in 0..rng.below(4) {
        // Topic aliases and subscription ids end a session: rarely.
        match rng.below(40) {
            0..=5 => p.extend_from_slice(&[0x01, rng.below(3) as u8]),
            6..=11 => {
                p.push(0x02);
                p.extend_from_slice(&(rng.next_u64() as u32).to_be_bytes());
            }
            12..=17 => {
                p.push(0x03);
                string(&mut p, b"application/json");
            }
            18..=23 => {
                p.push(0x08);
                string(&mut p, b"devices/x/acks");
            }
            24..=29 => {
                p.push(0x09);
                let n = rng.below(40);
                let data = rng.bytes(n);
                string(&mut p, &data);
            }
            30 => {
                p.push(0x23);
                p.extend_from_slice(&(rng.below(20) as u16).to_be_bytes());
            }
            31..=37 => {
                p.push(0x26);
                string(&mut p, b"k");
                string(&mut p, b"v");
            }
            38 => {
                p.push(0x0b);
                varint(&mut p, rng.below(1 << 20));
            }
            _ => p.push(rng.next_u64() as u8),
        }
    }
    let mut out = Vec::new();
    varint(&mut out, p.len());
    out.extend(p);
    out
}

fn publish(rng: &mut Rng, version: Version, id: &str, pkid: u16) -> Vec<u8> {
    let qos = rng.pick(&[0u8, 0, 1, 1, 1, 2]);
    let retain = rng.chance(0.1) as u8;
    let dup = (qos > 0 && rng.chance(0.05)) as u8;
    let mut body = Vec::new();
    let t = topic(rng, id);
    string(&mut body, &t);
    if qos > 0 {
        body.extend_from_slice(&pkid.to_be_bytes());
    }
    if version == Version::V5 {
        body.extend(publish_properties(rng));
    }
    body.extend(payload(rng));
    frame(0x30 | (dup << 3) | (qos << 1) | retain, &body)
}

fn subscribe(rng: &mut Rng, version: Version, id: &str, pkid: u16, unsubscribe: bool) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if version == Version::V5 {
        let mut p = Vec::new();
        if rng.chance(0.3) {
            p.push(0x0b);
            varint(&mut p, rng.below(300));
        }
        varint(&mut body, p.len());
        body.extend(p);
    }
    for _ in 0..1 + rng.below(3) {
        let filter = match rng.below(6) {
            0 | 1 => format!("devices/{id}/commands"),
            2 => "devices/+/commands".to_string(),
            3 => "#".to_string(),
            4 => format!("devices/{id}/#"),
            _ => "$share/g/devices/x/commands".to_string(),
        };
        string(&mut body, filter.as_bytes());
        if !unsubscribe {
            let options = match version {
                Version::V4 => rng.below(3) as u8,
                Version::V5 => (rng.next_u64() as u8) & 0b0011_1111,
            };
            body.push(options);
        }
    }
    frame(if unsubscribe { 0xa2 } else { 0x82 }, &body)
}

/// The next packet of a session: mostly PUBLISH, some SUBSCRIBE, UNSUBSCRIBE,
/// PUBACK (for ids never sent), PINGREQ. All well formed; what they ask may
/// be refused.
pub fn next_packet(rng: &mut Rng, version: Version, id: &str, pkid: &mut u16) -> Vec<u8> {
    *pkid = pkid.wrapping_add(1).max(1);
    match rng.below(40) {
        0..=31 => publish(rng, version, id, *pkid),
        32 | 33 => subscribe(rng, version, id, *pkid, false),
        34 => subscribe(rng, version, id, *pkid, true),
        35 => {
            let mut body = pkid.to_be_bytes().to_vec();
            if version == Version::V5 && rng.chance(0.5) {
                body.push(rng.pick(&[0x00u8, 0x10, 0x80, 0x87, 0xff]));
            }
            frame(0x40, &body)
        }
        _ => vec![0xc0, 0x00],
    }
}

/// The next packet of a session that only churns (`Plan::churn`): a
/// SUBSCRIBE to the device's commands first, then PINGREQs — nothing the
/// node refuses, nothing it routes.
pub fn churn_packet(version: Version, id: &str, pkid: &mut u16) -> Vec<u8> {
    *pkid = pkid.wrapping_add(1).max(1);
    if *pkid > 1 {
        return vec![0xc0, 0x00];
    }
    let mut body = pkid.to_be_bytes().to_vec();
    if version == Version::V5 {
        body.push(0); // no properties
    }
    string(&mut body, format!("devices/{id}/commands").as_bytes());
    body.push(1); // QoS 1
    frame(0x82, &body)
}

/// One mutation of an encoded packet. Most keep the remaining length true so
/// the damage reaches the decoders' inner paths; some attack the framing.
pub fn mutate(rng: &mut Rng, packet: &[u8]) -> Vec<u8> {
    let (byte1, body) = split(packet);
    let mut body = body.to_vec();
    let mut byte1 = byte1;
    match rng.below(10) {
        0 => {
            let mut out = packet.to_vec();
            out.truncate(rng.below(packet.len()));
            return out;
        }
        1 => byte1 = (byte1 & 0xf0) | rng.below(16) as u8,
        2 => byte1 = ((rng.below(16) as u8) << 4) | (byte1 & 0x0f),
        3 => {
            // A lying remaining length, sometimes in a non-minimal or 5-byte encoding.
            let mut out = vec![byte1];
            let len = rng.below(1 << 28);
            for i in 0..1 + rng.below(5) {
                out.push(((len >> (7 * i)) & 0x7f) as u8 | 0x80);
            }
            if let Some(last) = out.last_mut() {
                *last &= if rng.chance(0.8) { 0x7f } else { 0xff };
            }
            out.extend(body);
            return out;
        }
        4 if body.len() >= 2 => {
            let i = rng.below(body.len() - 1);
            body[i..i + 2].copy_from_slice(&(rng.next_u64() as u16).to_be_bytes());
        }
        5 if !body.is_empty() => {
            let i = rng.below(body.len());
            let any = rng.next_u64() as u8;
            body[i] = rng.pick(&[0x00, 0x7f, 0x80, 0xc0, 0xed, 0xff, any]);
        }
        6 => {
            let i = rng.below(body.len() + 1);
            let n = 1 + rng.below(8);
            let insert = match rng.below(3) {
                0 => vec![0xc0, 0x80],
                1 => vec![0xed, 0xa0, 0x80],
                _ => rng.bytes(n),
            };
            body.splice(i..i, insert);
        }
        7 if !body.is_empty() => {
            let i = rng.below(body.len());
            let j = i + rng.below(body.len() - i + 1);
            body.drain(i..j);
        }
        8 => {
            let n = rng.below(64);
            return rng.bytes(n);
        }
        _ => {
            for _ in 0..1 + rng.below(4) {
                if !body.is_empty() {
                    let i = rng.below(body.len());
                    body[i] ^= 1 << rng.below(8);
                }
            }
        }
    }
    frame(byte1, &body)
}

/// First byte and body of a packet this module encoded.
fn split(packet: &[u8]) -> (u8, &[u8]) {
    let Some(&byte1) = packet.first() else {
        return (0, &[]);
    };
    let len_bytes = packet[1..]
        .iter()
        .take(4)
        .position(|b| b & 0x80 == 0)
        .map_or(1, |i| i + 1);
    (byte1, packet.get(1 + len_bytes..).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_packets_are_whole_frames() {
        let mut rng = Rng::new(7);
        let mut pkid = 0;
        for i in 0..2_000 {
            let version = if i % 2 == 0 { Version::V4 } else { Version::V5 };
            let p = next_packet(&mut rng, version, "fuzz-000000", &mut pkid);
            assert_eq!(crate::mqtt::packet_at(&p).map(|(_, n)| n), Some(p.len()));
            let (byte1, body) = split(&p);
            assert_eq!(frame(byte1, body), p);
        }
    }

    #[test]
    fn a_churn_session_subscribes_to_its_commands_then_pings() {
        for (version, props) in [(Version::V4, &[][..]), (Version::V5, &[0u8][..])] {
            let mut pkid = 0;
            let sub = churn_packet(version, "fuzz-000001", &mut pkid);
            let mut body = vec![0, 1];
            body.extend(props);
            string(&mut body, b"devices/fuzz-000001/commands");
            body.push(1);
            assert_eq!(sub, frame(0x82, &body));
            assert_eq!(churn_packet(version, "fuzz-000001", &mut pkid), [0xc0, 0]);
        }
    }

    #[test]
    fn a_connect_of_either_version_is_what_the_load_tool_sends() {
        assert_eq!(
            connect(Version::V4, "dev-1", 600),
            crate::mqtt::connect_packet("dev-1", 600)
        );
        assert_eq!(connect(Version::V5, "d", 1)[8], 5);
    }

    #[test]
    fn mutations_never_panic_and_usually_change_the_packet() {
        let mut rng = Rng::new(11);
        let mut pkid = 0;
        let mut changed = 0;
        for _ in 0..5_000 {
            let p = next_packet(&mut rng, Version::V5, "fuzz-000001", &mut pkid);
            changed += usize::from(mutate(&mut rng, &p) != p);
        }
        assert!(changed > 4_000, "{changed}");
    }
}
