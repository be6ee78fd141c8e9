//! One device's MQTT connection, 3.1.1 or 5, kept lean enough for ~20,000 per
//! process: TLS on rustls' unbuffered API ([`kumo_tls_io`], no buffers held
//! while idle), rumqttc's packet codecs and nothing of its event loop (which
//! reserves ~20 KB of buffers and a request channel per connection).
//!
//! A `Link` is one established connection (CONNACK accepted). It is driven by
//! [`Link::poll`]; [`Link::publish`], [`Link::subscribe`] and
//! [`Link::disconnect`] only encode into a small outgoing buffer that the next
//! `poll` writes, so callers never wait on the network. On any error the
//! runtime drops the link and connects again after its own backoff. Dropping a
//! `Link` closes the socket without an MQTT DISCONNECT — exactly what an abrupt
//! kill needs.
//!
//! Owns the connection's bytes and the keepalive; what a device says and how it
//! answers belong to the runtime and the model.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kumo_tls_io::ClientTls;
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::QoS as QoS4;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{sleep_until, timeout, Instant};

use crate::error::SimError;
use crate::settings::{split_host_port, Protocol};
use crate::stats::FailureReason;

/// Largest packet a device accepts (commands are small JSON documents).
const MAX_INCOMING: usize = 256 * 1024;

/// Encoded bytes waiting for the next `poll` beyond which publishes are
/// refused (and counted as dropped by the caller).
const OUT_LIMIT: usize = 32 * 1024;

/// Unacknowledged QoS 1 publishes beyond which further ones are refused.
const INFLIGHT: u16 = 32;

/// Where one connection goes: the address to dial and the name its
/// certificate must carry.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub name: ServerName<'static>,
}

impl Endpoint {
    /// Resolves `host:port` once, so that no connect waits on a name lookup.
    pub async fn resolve(node: &str) -> Result<Endpoint, SimError> {
        let fail = |reason: String| SimError::Node {
            node: node.to_owned(),
            reason,
        };
        let (host, port) = split_host_port(node).map_err(fail)?;
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| fail(e.to_string()))?
            .next()
            .ok_or_else(|| fail("no address".into()))?;
        let name = ServerName::try_from(host).map_err(|e| fail(e.to_string()))?;
        Ok(Endpoint { addr, name })
    }
}

/// Everything needed to open one connection.
pub struct LinkOptions<'a> {
    pub protocol: Protocol,
    pub client_id: &'a str,
    pub endpoint: &'a Endpoint,
    /// Local address to connect from (`None`: the kernel's choice).
    pub source: Option<IpAddr>,
    pub tls: Arc<ClientConfig>,
    pub keep_alive: Duration,
    /// Deadline for TCP, TLS and CONNACK together.
    pub connect_timeout: Duration,
    /// Last will: topic and payload (QoS 1, not retained).
    pub will: (String, Vec<u8>),
}

/// What the connection produced.
#[derive(Debug)]
pub enum LinkEvent {
    /// SUBACK; `false` if any filter was refused.
    Subscribed(bool),
    /// An incoming PUBLISH (already acknowledged if it was QoS 1).
    Message {
        topic: String,
        payload: Bytes,
        /// MQTT 5 response topic and correlation data, when the sender set them.
        response: Option<Response>,
    },
    /// PUBACK of the QoS 1 publish with this packet id.
    PubAck(u16),
    /// Anything else (subscription and ping answers).
    Other,
}

/// Where an MQTT 5 requester wants its answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub topic: String,
    pub correlation: Option<Bytes>,
}

/// A connection attempt failed or a live connection broke.
#[derive(Debug)]
pub struct LinkError {
    pub reason: FailureReason,
    pub detail: String,
}

impl LinkError {
    fn new(reason: FailureReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }

    fn io(e: io::Error, handshaking: bool) -> Self {
        use io::ErrorKind::*;
        let reason = match e.kind() {
            ConnectionRefused => FailureReason::Refused,
            TimedOut => FailureReason::Timeout,
            InvalidData if handshaking => FailureReason::Tls,
            _ => FailureReason::Io,
        };
        Self::new(reason, e.to_string())
    }
}

/// One established MQTT connection.
pub struct Link {
    /// The TLS handshake resumed the device's previous session.
    pub resumed: bool,
    tls: ClientTls,
    protocol: Protocol,
    /// Bytes read and not yet decoded (freed when empty).
    inbuf: BytesMut,
    /// Packets encoded and not yet written (freed when written).
    out: BytesMut,
    next_pkid: u16,
    unacked: u16,
    keep_alive: Duration,
    /// When the keepalive next needs attention: a PINGREQ is due, or the
    /// answer to the one sent is overdue.
    ping_at: Instant,
    ping_outstanding: bool,
    /// A DISCONNECT is queued: the next `poll` writes it and ends the link.
    closing: bool,
}

impl Link {
    /// Connects: TCP, TLS with the device's certificate, CONNECT, CONNACK.
    pub async fn connect(o: LinkOptions<'_>) -> Result<Link, LinkError> {
        Self::connect_then(o, |_| ()).await.map(|(link, ())| link)
    }

    /// [`Link::connect`], with `early` queueing packets that leave in the
    /// CONNECT's write instead of a round trip after the CONNACK: MQTT 3.1.1
    /// and 5 (§3.1.4) let a client send on without waiting for the CONNACK,
    /// and a server that refuses the CONNECT processes nothing after it.
    /// What `early` returns comes back with the link.
    pub async fn connect_then<T>(
        o: LinkOptions<'_>,
        early: impl FnOnce(&mut Link) -> T,
    ) -> Result<(Link, T), LinkError> {
        let deadline = o.connect_timeout;
        match timeout(deadline, Self::open(o, early)).await {
            Ok(r) => r,
            Err(_) => Err(LinkError::new(FailureReason::Timeout, "connect deadline")),
        }
    }

    async fn open<T>(
        o: LinkOptions<'_>,
        early: impl FnOnce(&mut Link) -> T,
    ) -> Result<(Link, T), LinkError> {
        let tcp = dial(o.endpoint.addr, o.source)
            .await
            .map_err(|e| LinkError::io(e, false))?;
        // A device answers a command with several small writes; without
        // NODELAY the later ones wait ~40 ms for the peer's delayed ACK.
        tcp.set_nodelay(true).map_err(|e| LinkError::io(e, false))?;
        let mut tls = ClientTls::client(tcp, o.tls, o.endpoint.name.clone())
            .map_err(|e| LinkError::new(FailureReason::Tls, e.to_string()))?;
        // The CONNECT below leaves with the handshake's last flight.
        tls.handshake_corked()
            .await
            .map_err(|e| LinkError::io(e, true))?;
        let resumed = tls.resumed();
        let mut link = Link {
            resumed,
            tls,
            protocol: o.protocol,
            inbuf: BytesMut::new(),
            out: BytesMut::new(),
            next_pkid: 0,
            unacked: 0,
            keep_alive: o.keep_alive,
            ping_at: Instant::now() + o.keep_alive,
            ping_outstanding: false,
            closing: false,
        };
        link.encode_connect(o.client_id, o.will)?;
        let early = early(&mut link);
        link.flush().await?;
        match link.next_packet().await? {
            Incoming::ConnAck(0) => Ok((link, early)),
            Incoming::ConnAck(code) => Err(LinkError::new(
                FailureReason::MqttRefused,
                format!("CONNACK {code:#04x}"),
            )),
            _ => Err(LinkError::new(
                FailureReason::Protocol,
                "first packet is not CONNACK",
            )),
        }
    }

    /// Writes what is queued, then waits for the next packet (or the
    /// keepalive). Cancel-safe: every partial state lives in the link.
    pub async fn poll(&mut self) -> Result<LinkEvent, LinkError> {
        self.flush().await?;
        if self.closing {
            // Boxed: its read buffer would otherwise be part of every poll.
            Box::pin(self.close()).await;
            return Err(LinkError::new(FailureReason::Io, "disconnected"));
        }
        Ok(match self.next_packet().await? {
            Incoming::ConnAck(_) => {
                return Err(LinkError::new(FailureReason::Protocol, "second CONNACK"))
            }
            Incoming::SubAck(ok) => LinkEvent::Subscribed(ok),
            Incoming::Publish {
                topic,
                payload,
                pkid,
                response,
            } => {
                if pkid != 0 {
                    self.encode_puback(pkid);
                }
                LinkEvent::Message {
                    topic,
                    payload,
                    response,
                }
            }
            Incoming::PubAck(pkid) => {
                self.unacked = self.unacked.saturating_sub(1);
                LinkEvent::PubAck(pkid)
            }
            Incoming::PingResp | Incoming::Other => LinkEvent::Other,
        })
    }

    /// Closes TLS and reads until the broker closes its side. Closing a
    /// socket with unread data in it (a PUBACK still on its way) sends a
    /// reset, which can discard the DISCONNECT before the broker read it —
    /// and the broker then publishes the will of a clean shutdown.
    async fn close(&mut self) {
        let _ = self.tls.shutdown().await;
        let mut sink = [0u8; 256];
        while matches!(self.tls.read(&mut sink).await, Ok(n) if n > 0) {}
    }

    /// Whether a QoS 1 publish would be queued now (room in the write
    /// buffer and the in-flight window).
    pub fn can_publish_qos1(&self) -> bool {
        !self.closing && self.out.len() < OUT_LIMIT && self.unacked < INFLIGHT
    }

    /// QoS 1 publishes not acknowledged yet.
    pub fn unacked(&self) -> u16 {
        self.unacked
    }

    /// Queues a publish; `false` if too much is already waiting (the caller
    /// counts a drop).
    pub fn publish(&mut self, topic: &str, qos1: bool, retain: bool, payload: Vec<u8>) -> bool {
        self.publish_with(topic, qos1, retain, payload, None, None)
    }

    /// Queues a publish and returns its packet id (0 for QoS 0), so that the
    /// caller can match the PUBACK; `None` if too much is already waiting.
    pub fn publish_tracked(&mut self, topic: &str, qos1: bool, payload: Vec<u8>) -> Option<u16> {
        // A queued QoS 1 publish took the next packet id.
        let pkid = if qos1 {
            self.next_pkid.wrapping_add(1).max(1)
        } else {
            0
        };
        self.publish_with(topic, qos1, false, payload, None, None)
            .then_some(pkid)
    }

    /// Queues an MQTT 5 response (QoS 1) carrying the requester's correlation
    /// data; on MQTT 3.1.1 a plain publish to `response.topic`.
    pub fn respond(&mut self, response: &Response, payload: Vec<u8>) -> bool {
        let correlation = response.correlation.clone();
        self.publish_with(&response.topic, true, false, payload, None, correlation)
    }

    /// Queues a request (QoS 1) that names where the answer should go and
    /// what it carries back (MQTT 5 Response Topic and Correlation Data); on
    /// MQTT 3.1.1 a plain publish.
    pub fn request(&mut self, topic: &str, payload: Vec<u8>, reply_to: &Response) -> bool {
        let (to, correlation) = (Some(reply_to.topic.clone()), reply_to.correlation.clone());
        self.publish_with(topic, true, false, payload, to, correlation)
    }

    fn publish_with(
        &mut self,
        topic: &str,
        qos1: bool,
        retain: bool,
        payload: Vec<u8>,
        response_topic: Option<String>,
        correlation: Option<Bytes>,
    ) -> bool {
        if self.closing || self.out.len() >= OUT_LIMIT || (qos1 && self.unacked >= INFLIGHT) {
            return false;
        }
        let pkid = if qos1 { self.pkid() } else { 0 };
        let written = match self.protocol {
            Protocol::V4 => {
                let mut p = v4::Publish::new(topic, qos4(qos1), payload);
                p.retain = retain;
                p.pkid = pkid;
                p.write(&mut self.out).is_ok()
            }
            Protocol::V5 => {
                let props = (correlation.is_some() || response_topic.is_some()).then(|| {
                    v5::PublishProperties {
                        correlation_data: correlation,
                        response_topic,
                        ..Default::default()
                    }
                });
                let mut p = v5::Publish::new(topic, qos5(qos1), payload, props);
                p.retain = retain;
                p.pkid = pkid;
                p.write(&mut self.out).is_ok()
            }
        };
        if written && qos1 {
            self.unacked += 1;
        }
        written
    }

    /// Queues a QoS 1 subscription.
    pub fn subscribe(&mut self, filter: &str) -> bool {
        let pkid = self.pkid();
        match self.protocol {
            Protocol::V4 => {
                let mut s = v4::Subscribe::new(filter, QoS4::AtLeastOnce);
                s.pkid = pkid;
                s.write(&mut self.out).is_ok()
            }
            Protocol::V5 => {
                let mut s = v5::Subscribe::new(v5::Filter::new(filter, QoS5::AtLeastOnce), None);
                s.pkid = pkid;
                s.write(&mut self.out).is_ok()
            }
        }
    }

    /// Queues a clean DISCONNECT; the next `poll` writes it, closes the TLS
    /// session and returns an error.
    pub fn disconnect(&mut self) -> bool {
        let written = match self.protocol {
            Protocol::V4 => v4::Disconnect.write(&mut self.out).is_ok(),
            Protocol::V5 => v5::Disconnect::new(v5::DisconnectReasonCode::NormalDisconnection)
                .write(&mut self.out)
                .is_ok(),
        };
        self.closing = written;
        self.closing
    }

    fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
        self.next_pkid
    }

    fn encode_connect(
        &mut self,
        client_id: &str,
        will: (String, Vec<u8>),
    ) -> Result<(), LinkError> {
        let keep_alive = u16::try_from(self.keep_alive.as_secs()).unwrap_or(u16::MAX);
        let written = match self.protocol {
            Protocol::V4 => {
                let mut c = v4::Connect::new(client_id);
                c.keep_alive = keep_alive;
                c.clean_session = true;
                c.last_will = Some(v4::LastWill::new(will.0, will.1, QoS4::AtLeastOnce, false));
                c.write(&mut self.out).map_err(|e| e.to_string())
            }
            Protocol::V5 => {
                let c = v5::Connect {
                    keep_alive,
                    client_id: client_id.to_owned(),
                    clean_start: true,
                    properties: None,
                };
                let will = v5::LastWill::new(will.0, will.1, QoS5::AtLeastOnce, false, None);
                c.write(&Some(will), &None, &mut self.out)
                    .map_err(|e| e.to_string())
            }
        };
        written
            .map(|_| ())
            .map_err(|e| LinkError::new(FailureReason::Protocol, e))
    }

    fn encode_puback(&mut self, pkid: u16) {
        // Writing a fixed 4-byte PUBACK into a BytesMut cannot fail.
        match self.protocol {
            Protocol::V4 => drop(v4::PubAck::new(pkid).write(&mut self.out)),
            Protocol::V5 => drop(v5::PubAck::new(pkid, None).write(&mut self.out)),
        }
    }

    /// Writes every queued packet through TLS, then frees the buffer.
    async fn flush(&mut self) -> Result<(), LinkError> {
        if self.out.is_empty() {
            return Ok(());
        }
        // TlsIo takes the whole slice into its record buffer at once, so this
        // loop neither loses nor repeats bytes if the future is dropped.
        while !self.out.is_empty() {
            let n = self
                .tls
                .write(&self.out)
                .await
                .map_err(|e| LinkError::io(e, false))?;
            let _ = self.out.split_to(n);
        }
        self.out = BytesMut::new();
        self.ping_at = Instant::now() + self.keep_alive;
        self.tls.flush().await.map_err(|e| LinkError::io(e, false))
    }

    /// The next complete packet, reading and keeping the connection alive
    /// while there is none.
    async fn next_packet(&mut self) -> Result<Incoming, LinkError> {
        loop {
            if let Some(packet) = self.decode()? {
                if self.inbuf.is_empty() {
                    self.inbuf = BytesMut::new();
                }
                return Ok(packet);
            }
            tokio::select! {
                read = self.tls.read_buf(&mut self.inbuf) => match read {
                    Ok(0) => {
                        // Every write moves the ping deadline: this is when the last was.
                        let idle = (Instant::now() + self.keep_alive).saturating_duration_since(self.ping_at);
                        let detail = format!("closed by the broker {} ms after the last write", idle.as_millis());
                        return Err(LinkError::new(FailureReason::Io, detail));
                    }
                    Ok(_) => {}
                    Err(e) => return Err(LinkError::io(e, false)),
                },
                _ = sleep_until(self.ping_at) => self.keepalive().await?,
            }
        }
    }

    /// Sends a PINGREQ when one is due; fails when the last one went
    /// unanswered for a whole keepalive.
    async fn keepalive(&mut self) -> Result<(), LinkError> {
        if self.ping_outstanding {
            return Err(LinkError::new(FailureReason::Timeout, "no PINGRESP"));
        }
        // A 2-byte PINGREQ into a BytesMut cannot fail.
        match self.protocol {
            Protocol::V4 => drop(v4::PingReq.write(&mut self.out)),
            Protocol::V5 => drop(v5::PingReq::write(&mut self.out)),
        }
        self.flush().await?;
        self.ping_outstanding = true;
        Ok(())
    }

    fn decode(&mut self) -> Result<Option<Incoming>, LinkError> {
        if self.inbuf.is_empty() {
            return Ok(None);
        }
        let protocol_error = |e: String| LinkError::new(FailureReason::Protocol, e);
        let packet = match self.protocol {
            Protocol::V4 => match v4::Packet::read(&mut self.inbuf, MAX_INCOMING) {
                Ok(p) => Incoming::from_v4(p),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => return Ok(None),
                Err(e) => return Err(protocol_error(e.to_string())),
            },
            Protocol::V5 => match v5::Packet::read(&mut self.inbuf, Some(MAX_INCOMING as u32)) {
                Ok(p) => Incoming::from_v5(p)?,
                Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => return Ok(None),
                Err(e) => return Err(protocol_error(e.to_string())),
            },
        };
        if matches!(packet, Incoming::PingResp) {
            self.ping_outstanding = false;
            return Ok(Some(Incoming::Other));
        }
        Ok(Some(packet))
    }
}

/// Opens the TCP connection, from `source` when given.
async fn dial(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(addr).await
}

/// The address a device connects from to a loopback node: its own
/// 127.x.y.z (x ≥ 1) from its index, or `None` for other nodes.
///
/// With ~20,000 connections from one source address to one node, the
/// kernel's search for a free ephemeral port dominated the simulator's CPU
/// (37 % of it in `__inet_check_established` and `__inet_hash_connect`);
/// spread over source addresses each search finds a free port at once.
pub fn loopback_source(index: u64, node: SocketAddr) -> Option<IpAddr> {
    match node.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            let b = index.to_be_bytes();
            let x = 1 + (u32::from(b[5]) % 254) as u8;
            Some(IpAddr::V4(Ipv4Addr::new(127, x, b[6], b[7])))
        }
        _ => None,
    }
}

/// What the link makes of a decoded packet.
enum Incoming {
    ConnAck(u8),
    SubAck(bool),
    Publish {
        topic: String,
        payload: Bytes,
        /// 0 for QoS 0.
        pkid: u16,
        response: Option<Response>,
    },
    PubAck(u16),
    PingResp,
    Other,
}

impl Incoming {
    fn from_v4(p: v4::Packet) -> Self {
        match p {
            v4::Packet::ConnAck(ack) => Self::ConnAck(ack.code as u8),
            v4::Packet::SubAck(ack) => Self::SubAck(
                ack.return_codes
                    .iter()
                    .all(|c| matches!(c, v4::SubscribeReasonCode::Success(_))),
            ),
            v4::Packet::Publish(p) => Self::Publish {
                topic: p.topic,
                payload: p.payload,
                pkid: if p.qos == QoS4::AtMostOnce { 0 } else { p.pkid },
                response: None,
            },
            v4::Packet::PubAck(ack) => Self::PubAck(ack.pkid),
            v4::Packet::PingResp => Self::PingResp,
            _ => Self::Other,
        }
    }

    fn from_v5(p: v5::Packet) -> Result<Self, LinkError> {
        Ok(match p {
            v5::Packet::ConnAck(ack) => Self::ConnAck(ack.code as u8),
            v5::Packet::SubAck(ack) => Self::SubAck(
                ack.return_codes
                    .iter()
                    .all(|c| matches!(c, v5::SubscribeReasonCode::Success(_))),
            ),
            v5::Packet::Publish(p) => {
                let response = p.properties.and_then(|props| {
                    props.response_topic.map(|topic| Response {
                        topic,
                        correlation: props.correlation_data,
                    })
                });
                Self::Publish {
                    topic: String::from_utf8_lossy(&p.topic).into_owned(),
                    payload: p.payload,
                    pkid: if p.qos == QoS5::AtMostOnce { 0 } else { p.pkid },
                    response,
                }
            }
            v5::Packet::PubAck(ack) => Self::PubAck(ack.pkid),
            v5::Packet::PingResp(_) => Self::PingResp,
            v5::Packet::Disconnect(d) => {
                return Err(LinkError::new(
                    FailureReason::Io,
                    format!("DISCONNECT from the broker: {:?}", d.reason_code),
                ))
            }
            _ => Self::Other,
        })
    }
}

fn qos4(qos1: bool) -> QoS4 {
    if qos1 {
        QoS4::AtLeastOnce
    } else {
        QoS4::AtMostOnce
    }
}

fn qos5(qos1: bool) -> QoS5 {
    if qos1 {
        QoS5::AtLeastOnce
    } else {
        QoS5::AtMostOnce
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_connect_to_a_loopback_node_from_their_own_loopback_address() {
        let node: SocketAddr = "127.0.0.1:8883".parse().unwrap_or_else(|_| unreachable!());
        let a = loopback_source(0, node);
        let b = loopback_source(1, node);
        let far = loopback_source(250_000, node);
        assert_eq!(a, Some(IpAddr::V4(Ipv4Addr::new(127, 1, 0, 0))));
        assert_eq!(b, Some(IpAddr::V4(Ipv4Addr::new(127, 1, 0, 1))));
        assert_eq!(far, Some(IpAddr::V4(Ipv4Addr::new(127, 4, 208, 144))));
        let other: SocketAddr = "192.0.2.1:8883".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(loopback_source(7, other), None);
    }
}
