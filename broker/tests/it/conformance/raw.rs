//! A raw MQTT 3.1.1 / 5 client: its own encoder and decoder, written from the
//! specifications (no MQTT library), so nothing a server sends is smoothed
//! over by a codec. Only TLS comes from a library.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// One MQTT 5 property value (§2.2.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Byte(u8),
    U16(u16),
    U32(u32),
    Var(u32),
    Str(String),
    Bin(Vec<u8>),
    Pair(String, String),
}

/// MQTT 5 properties in the order they came, repeated ones included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Props(pub Vec<(u8, Val)>);

pub const PAYLOAD_FORMAT: u8 = 0x01;
pub const MESSAGE_EXPIRY: u8 = 0x02;
pub const CONTENT_TYPE: u8 = 0x03;
pub const RESPONSE_TOPIC: u8 = 0x08;
pub const CORRELATION_DATA: u8 = 0x09;
pub const SUBSCRIPTION_ID: u8 = 0x0B;
pub const SESSION_EXPIRY: u8 = 0x11;
pub const ASSIGNED_CLIENT_ID: u8 = 0x12;
pub const SERVER_KEEP_ALIVE: u8 = 0x13;
pub const WILL_DELAY: u8 = 0x18;
pub const RECEIVE_MAXIMUM: u8 = 0x21;
pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
pub const TOPIC_ALIAS: u8 = 0x23;
pub const MAXIMUM_QOS: u8 = 0x24;
pub const RETAIN_AVAILABLE: u8 = 0x25;
pub const USER_PROPERTY: u8 = 0x26;
pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
pub const WILDCARD_SUBS_AVAILABLE: u8 = 0x28;
pub const SUBSCRIPTION_IDS_AVAILABLE: u8 = 0x29;
pub const SHARED_SUBS_AVAILABLE: u8 = 0x2A;

impl Props {
    pub fn with(mut self, id: u8, v: Val) -> Props {
        self.0.push((id, v));
        self
    }

    pub fn get(&self, id: u8) -> Option<&Val> {
        self.0.iter().find(|(i, _)| *i == id).map(|(_, v)| v)
    }

    /// A numeric property, whatever its width.
    pub fn num(&self, id: u8) -> Option<u32> {
        match self.get(id)? {
            Val::Byte(b) => Some(u32::from(*b)),
            Val::U16(n) => Some(u32::from(*n)),
            Val::U32(n) | Val::Var(n) => Some(*n),
            _ => None,
        }
    }

    pub fn user(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter_map(|(_, v)| match v {
                Val::Pair(k, v) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let mut body = Vec::new();
        for (id, v) in &self.0 {
            body.push(*id);
            match v {
                Val::Byte(b) => body.push(*b),
                Val::U16(n) => body.extend_from_slice(&n.to_be_bytes()),
                Val::U32(n) => body.extend_from_slice(&n.to_be_bytes()),
                Val::Var(n) => var_int(*n, &mut body),
                Val::Str(s) => string(s.as_bytes(), &mut body),
                Val::Bin(b) => string(b, &mut body),
                Val::Pair(k, v) => {
                    string(k.as_bytes(), &mut body);
                    string(v.as_bytes(), &mut body);
                }
            }
        }
        var_int(body.len() as u32, out);
        out.extend_from_slice(&body);
    }

    fn decode(r: &mut Reader<'_>) -> Option<Props> {
        let len = r.var()? as usize;
        let mut p = Reader(r.take(len)?);
        let mut props = Props::default();
        while !p.0.is_empty() {
            let id = p.u8()?;
            let v = match id {
                0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => Val::Byte(p.u8()?),
                0x13 | 0x21 | 0x22 | 0x23 => Val::U16(p.u16()?),
                0x02 | 0x11 | 0x18 | 0x27 => Val::U32(p.u32()?),
                0x0B => Val::Var(p.var()?),
                0x03 | 0x08 | 0x12 | 0x15 | 0x1A | 0x1C | 0x1F => Val::Str(p.str()?),
                0x09 | 0x16 => Val::Bin(p.bin()?),
                0x26 => Val::Pair(p.str()?, p.str()?),
                _ => return None,
            };
            props.0.push((id, v));
        }
        Some(props)
    }
}

/// A packet from the server, every field kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    ConnAck {
        session_present: bool,
        code: u8,
        props: Props,
    },
    Publish(Publish),
    PubAck(u16, u8),
    PubRec(u16, u8),
    PubRel(u16, u8),
    PubComp(u16, u8),
    SubAck {
        pkid: u16,
        codes: Vec<u8>,
        props: Props,
    },
    UnsubAck {
        pkid: u16,
        codes: Vec<u8>,
        props: Props,
    },
    PingResp,
    Disconnect {
        reason: u8,
        props: Props,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: u8,
    pub retain: bool,
    pub topic: String,
    pub pkid: u16,
    pub payload: Vec<u8>,
    pub props: Props,
}

/// A last will for [`connect`].
pub struct Will<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub qos: u8,
    pub retain: bool,
    pub props: Props,
}

fn var_int(mut n: u32, out: &mut Vec<u8>) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return;
        }
    }
}

fn string(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

fn frame(byte1: u8, body: Vec<u8>) -> Vec<u8> {
    let mut out = vec![byte1];
    var_int(body.len() as u32, &mut out);
    out.extend(body);
    out
}

/// CONNECT (§3.1). `props` only for MQTT 5.
pub fn connect(
    v: u8,
    client_id: &str,
    clean: bool,
    keepalive: u16,
    props: &Props,
    will: Option<&Will<'_>>,
) -> Vec<u8> {
    let mut b = Vec::new();
    string(b"MQTT", &mut b);
    b.push(v);
    let mut flags = if clean { 0x02 } else { 0 };
    if let Some(w) = will {
        flags |= 0x04 | (w.qos << 3) | if w.retain { 0x20 } else { 0 };
    }
    b.push(flags);
    b.extend_from_slice(&keepalive.to_be_bytes());
    if v == 5 {
        props.encode(&mut b);
    }
    string(client_id.as_bytes(), &mut b);
    if let Some(w) = will {
        if v == 5 {
            w.props.encode(&mut b);
        }
        string(w.topic.as_bytes(), &mut b);
        string(w.payload, &mut b);
    }
    frame(0x10, b)
}

/// PUBLISH (§3.3); `pkid` is ignored at QoS 0.
#[allow(clippy::too_many_arguments)]
pub fn publish(
    v: u8,
    topic: &str,
    payload: &[u8],
    qos: u8,
    retain: bool,
    dup: bool,
    pkid: u16,
    props: &Props,
) -> Vec<u8> {
    let mut b = Vec::new();
    string(topic.as_bytes(), &mut b);
    if qos > 0 {
        b.extend_from_slice(&pkid.to_be_bytes());
    }
    if v == 5 {
        props.encode(&mut b);
    }
    b.extend_from_slice(payload);
    let byte1 = 0x30 | (u8::from(dup) << 3) | (qos << 1) | u8::from(retain);
    frame(byte1, b)
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP (`kind` 4–7) with a reason (MQTT 5).
pub fn ack(v: u8, kind: u8, pkid: u16, reason: u8) -> Vec<u8> {
    let mut b = pkid.to_be_bytes().to_vec();
    if v == 5 && reason != 0 {
        b.push(reason);
    }
    let flags = if kind == 6 { 0x02 } else { 0 };
    frame((kind << 4) | flags, b)
}

/// SUBSCRIBE (§3.8); each filter with its options byte (QoS in bits 0–1; MQTT
/// 5: No Local 0x04, Retain As Published 0x08, Retain Handling << 4).
pub fn subscribe(v: u8, pkid: u16, filters: &[(&str, u8)], props: &Props) -> Vec<u8> {
    let mut b = pkid.to_be_bytes().to_vec();
    if v == 5 {
        props.encode(&mut b);
    }
    for (f, o) in filters {
        string(f.as_bytes(), &mut b);
        b.push(*o);
    }
    frame(0x82, b)
}

pub fn unsubscribe(v: u8, pkid: u16, filters: &[&str]) -> Vec<u8> {
    let mut b = pkid.to_be_bytes().to_vec();
    if v == 5 {
        Props::default().encode(&mut b);
    }
    for f in filters {
        string(f.as_bytes(), &mut b);
    }
    frame(0xA2, b)
}

pub fn pingreq() -> Vec<u8> {
    vec![0xC0, 0]
}

/// DISCONNECT; MQTT 5 with a reason and properties.
pub fn disconnect(v: u8, reason: u8, props: &Props) -> Vec<u8> {
    if v != 5 {
        return vec![0xE0, 0];
    }
    let mut b = vec![reason];
    props.encode(&mut b);
    frame(0xE0, b)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn var(&mut self) -> Option<u32> {
        let mut n = 0u32;
        for i in 0..4 {
            let b = self.u8()?;
            n |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }
    fn bin(&mut self) -> Option<Vec<u8>> {
        let n = self.u16()? as usize;
        Some(self.take(n)?.to_vec())
    }
    fn str(&mut self) -> Option<String> {
        String::from_utf8(self.bin()?).ok()
    }
}

/// Decodes one packet body (after the fixed header); `None` if malformed,
/// including reserved fixed-header flags that are not as §2.2.2 requires
/// (PUBREL 0b0010, the other packets a server sends 0) and a PUBLISH with
/// QoS 3 (MQTT-3.3.1-4) or DUP=1 at QoS 0 (MQTT-3.3.1-2).
fn decode(v: u8, byte1: u8, body: &[u8]) -> Option<Packet> {
    let kind = byte1 >> 4;
    let flags = byte1 & 0x0F;
    let flags_ok = match kind {
        3 => (flags >> 1) & 3 != 3 && !(flags & 0x08 != 0 && (flags >> 1) & 3 == 0),
        6 => flags == 0x02,
        _ => flags == 0,
    };
    if !flags_ok {
        return None;
    }
    let mut r = Reader(body);
    // PUBACK, PUBREC, PUBREL, PUBCOMP: their properties (a reason string,
    // user properties) are decoded, so a malformed one fails, but not kept.
    let with_reason = |r: &mut Reader<'_>| -> Option<(u16, u8)> {
        let pkid = r.u16()?;
        let reason = if v == 5 && !r.0.is_empty() {
            r.u8()?
        } else {
            0
        };
        if v == 5 && !r.0.is_empty() {
            Props::decode(r)?;
        }
        Some((pkid, reason))
    };
    Some(match kind {
        2 => {
            let flags = r.u8()?;
            let code = r.u8()?;
            let props = if v == 5 && !r.0.is_empty() {
                Props::decode(&mut r)?
            } else {
                Props::default()
            };
            Packet::ConnAck {
                session_present: flags & 1 == 1,
                code,
                props,
            }
        }
        3 => {
            let qos = (byte1 >> 1) & 3;
            let topic = r.str()?;
            let pkid = if qos > 0 { r.u16()? } else { 0 };
            let props = if v == 5 {
                Props::decode(&mut r)?
            } else {
                Props::default()
            };
            Packet::Publish(Publish {
                dup: byte1 & 0x08 != 0,
                qos,
                retain: byte1 & 1 == 1,
                topic,
                pkid,
                payload: r.0.to_vec(),
                props,
            })
        }
        4 => {
            let (p, c) = with_reason(&mut r)?;
            Packet::PubAck(p, c)
        }
        5 => {
            let (p, c) = with_reason(&mut r)?;
            Packet::PubRec(p, c)
        }
        6 => {
            let (p, c) = with_reason(&mut r)?;
            Packet::PubRel(p, c)
        }
        7 => {
            let (p, c) = with_reason(&mut r)?;
            Packet::PubComp(p, c)
        }
        9 | 11 => {
            let pkid = r.u16()?;
            let props = if v == 5 {
                Props::decode(&mut r)?
            } else {
                Props::default()
            };
            let codes = r.0.to_vec();
            if kind == 9 {
                Packet::SubAck { pkid, codes, props }
            } else {
                Packet::UnsubAck { pkid, codes, props }
            }
        }
        13 => Packet::PingResp,
        14 => {
            let reason = r.u8().unwrap_or(0);
            let props = if r.0.is_empty() {
                Props::default()
            } else {
                Props::decode(&mut r)?
            };
            Packet::Disconnect { reason, props }
        }
        _ => return None,
    })
}

/// What waiting for a packet ended with.
enum Next {
    Packet(Packet),
    Timeout,
    Closed,
}

/// A connection to the server: raw bytes out, decoded packets in.
pub struct Raw {
    stream: TlsStream<TcpStream>,
    pub v: u8,
    buf: Vec<u8>,
    next_pkid: u16,
}

/// Default wait for something that must arrive.
pub const WAIT: Duration = Duration::from_secs(5);
/// Wait for something that must not arrive.
pub const QUIET: Duration = Duration::from_millis(400);

impl Raw {
    pub fn new(stream: TlsStream<TcpStream>, v: u8) -> Raw {
        Raw {
            stream,
            v,
            buf: Vec::new(),
            next_pkid: 0,
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    pub fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
        self.next_pkid
    }

    /// The next packet; `None` on close or after `d`. Bytes that are not a
    /// well-formed packet fail the test: a server that sends them is wrong,
    /// and a check waiting for silence must not take them for it.
    pub async fn recv_within(&mut self, d: Duration) -> Option<Packet> {
        match self.next(d).await {
            Next::Packet(p) => Some(p),
            Next::Timeout | Next::Closed => None,
        }
    }

    async fn next(&mut self, d: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if let Some((byte1, start, len)) = self.header() {
                let body = self.buf[start..start + len].to_vec();
                self.buf.drain(..start + len);
                return match decode(self.v, byte1, &body) {
                    Some(p) => Next::Packet(p),
                    None => panic!("malformed packet from the server: {byte1:#04x} {body:02x?}"),
                };
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                Ok(_) => return Next::Closed,
                Err(_) => return Next::Timeout,
            }
        }
    }

    pub async fn recv(&mut self) -> Option<Packet> {
        self.recv_within(WAIT).await
    }

    /// A complete packet's first byte, body offset and body length.
    fn header(&self) -> Option<(u8, usize, usize)> {
        let b = &self.buf;
        let mut len = 0usize;
        for i in 0..4 {
            let byte = *b.get(1 + i)?;
            len |= usize::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                let start = 2 + i;
                return (b.len() >= start + len).then_some((b[0], start, len));
            }
        }
        None
    }

    /// The next PUBLISH within `d`, `None` if none came. Any other packet, or
    /// the connection closing, fails the test: either would otherwise pass
    /// for "nothing was sent".
    pub async fn publish_within(&mut self, d: Duration) -> Option<Publish> {
        match self.next(d).await {
            Next::Packet(Packet::Publish(p)) => Some(p),
            Next::Timeout => None,
            Next::Closed => panic!("the connection was closed while waiting for a PUBLISH"),
            Next::Packet(other) => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// No PUBLISH (and no other packet) within `d`, the connection still open.
    pub async fn no_publish(&mut self, d: Duration) {
        if let Some(p) = self.publish_within(d).await {
            panic!("unexpected PUBLISH: {p:?}");
        }
    }

    /// The next PUBLISH within [`WAIT`]; fails the test otherwise.
    pub async fn expect_publish(&mut self) -> Publish {
        self.publish_within(WAIT)
            .await
            .expect("a PUBLISH within 5 s")
    }

    /// True if no packet at all arrives for [`QUIET`] and the connection
    /// stays open (a closed connection is not a server keeping quiet).
    pub async fn quiet(&mut self) -> bool {
        self.no_packet(QUIET).await
    }

    /// True if no packet at all arrives for `d` and the connection stays open.
    pub async fn no_packet(&mut self, d: Duration) -> bool {
        match self.next(d).await {
            Next::Timeout => true,
            Next::Closed => {
                eprintln!("unexpected: the connection was closed");
                false
            }
            Next::Packet(p) => {
                eprintln!("unexpected: {p:?}");
                false
            }
        }
    }

    /// Whether the server closes the connection within `d`, and the reason
    /// of the DISCONNECT it sent first, if any (packets before it are skipped).
    pub async fn closed_within(&mut self, d: Duration) -> (bool, Option<u8>) {
        let deadline = tokio::time::Instant::now() + d;
        let mut reason = None;
        loop {
            while let Some((byte1, start, len)) = self.header() {
                if byte1 >> 4 == 14 {
                    reason = Some(if len > 0 { self.buf[start] } else { 0 });
                }
                self.buf.drain(..start + len);
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return (false, reason),
                Ok(Ok(0)) | Ok(Err(_)) => return (true, reason),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// CONNECT and its CONNACK.
    pub async fn connect(
        &mut self,
        client_id: &str,
        clean: bool,
        keepalive: u16,
        props: &Props,
        will: Option<&Will<'_>>,
    ) -> Packet {
        let v = self.v;
        self.send(&connect(v, client_id, clean, keepalive, props, will))
            .await;
        self.recv().await.expect("a CONNACK")
    }

    /// SUBSCRIBE and its SUBACK's codes.
    pub async fn subscribe(&mut self, filters: &[(&str, u8)]) -> Vec<u8> {
        self.subscribe_with(filters, &Props::default()).await
    }

    pub async fn subscribe_with(&mut self, filters: &[(&str, u8)], props: &Props) -> Vec<u8> {
        let pkid = self.pkid();
        let v = self.v;
        self.send(&subscribe(v, pkid, filters, props)).await;
        match self.recv().await {
            Some(Packet::SubAck { pkid: p, codes, .. }) if p == pkid => codes,
            other => panic!("expected SUBACK {pkid}, got {other:?}"),
        }
    }

    /// PUBLISH at any QoS, completing the QoS 1/2 exchange with the server.
    pub async fn publish(&mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) {
        self.publish_with(topic, payload, qos, retain, &Props::default())
            .await;
    }

    pub async fn publish_with(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: u8,
        retain: bool,
        props: &Props,
    ) {
        let pkid = self.pkid();
        let v = self.v;
        self.send(&publish(v, topic, payload, qos, retain, false, pkid, props))
            .await;
        match qos {
            0 => {}
            1 => match self.recv().await {
                Some(Packet::PubAck(p, c)) if p == pkid && c < 0x80 => {}
                other => panic!("expected PUBACK {pkid}, got {other:?}"),
            },
            _ => {
                match self.recv().await {
                    Some(Packet::PubRec(p, c)) if p == pkid && c < 0x80 => {}
                    other => panic!("expected PUBREC {pkid}, got {other:?}"),
                }
                self.send(&ack(v, 6, pkid, 0)).await;
                match self.recv().await {
                    Some(Packet::PubComp(p, 0)) if p == pkid => {}
                    other => panic!("expected PUBCOMP {pkid}, got {other:?}"),
                }
            }
        }
    }

    /// Acknowledges a received PUBLISH as its QoS requires (QoS 2: PUBREC,
    /// then PUBREL expected, then PUBCOMP).
    pub async fn ack_publish(&mut self, p: &Publish) {
        let v = self.v;
        match p.qos {
            1 => self.send(&ack(v, 4, p.pkid, 0)).await,
            2 => {
                self.send(&ack(v, 5, p.pkid, 0)).await;
                match self.recv().await {
                    Some(Packet::PubRel(id, 0)) if id == p.pkid => {}
                    other => panic!("expected PUBREL {}, got {other:?}", p.pkid),
                }
                self.send(&ack(v, 7, p.pkid, 0)).await;
            }
            _ => {}
        }
    }

    pub async fn ping(&mut self) -> bool {
        self.send(&pingreq()).await;
        matches!(self.recv().await, Some(Packet::PingResp))
    }

    pub async fn disconnect(&mut self) {
        let v = self.v;
        self.send(&disconnect(v, 0, &Props::default())).await;
        let _ = self.stream.shutdown().await;
    }
}
