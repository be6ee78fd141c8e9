//! Links to the other nodes of the cloud, so an integration sees and reaches
//! the devices of its account wherever they are connected.
//!
//! The node keeps one MQTT 5 connection to every peer in `broker.peers`
//! (mutual TLS with its peer service certificate) and there:
//! - always subscribes `devices/+/commands` and `devices/+/cert/response/#`:
//!   a command (or certificate) published on the peer (by an integration
//!   connected there, or by the bridge to a node the device has left) is
//!   imported here and reaches the device if it is here. The link marks its
//!   CONNECT ([`PEER_LINK_PROPERTY`]), and the peer passes it no command for
//!   a device connected there (it is delivered there; a copy here would only
//!   be dropped);
//! - while this node has integration sessions (connected or parked, see
//!   [`Interest`]), subscribes the leaves integrations may read — sensors,
//!   meter, state, presence, acks — with Retain As Published, importing them
//!   (retained ones into this node's store) for the local integrations, which
//!   ownership then narrows as for local messages.
//!
//! Imported messages are marked ([`crate::message::Message::imported`]):
//! service sessions — the bridge, which reads every node itself, and the
//! peers' own links — never receive them, so nothing is delivered twice or
//! goes round in circles. A device's message crosses exactly one link (from
//! the node holding the device), in order. While a peer is unreachable its
//! devices' messages do not reach this node's integrations, and the link
//! reconnects with backoff; messages published there meanwhile are not
//! replayed (the integrations' own sessions are where queueing happens).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttd::protocol::{
    v4, v5, Connect, Filter, Packet, PingReq, Protocol, PubAck, PubAckReason, QoS,
    RetainForwardRule, Subscribe, Unsubscribe,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::fabric::Fabric;
use crate::message::Message;
use crate::pressure::Pressure;
use crate::{BrokerError, Settings};

/// What integrations may read, imported while this node has any.
const INTEGRATION_FILTERS: [&str; 5] = [
    "devices/+/sensors/#",
    "devices/+/meter",
    "devices/+/state",
    "devices/+/presence",
    "devices/+/acks",
];
/// The CONNECT user property that marks a session as a peer link (honoured
/// for service identities only): the node then passes it a command only for
/// a device that is not connected here (see `Session::deliver`).
pub(crate) const PEER_LINK_PROPERTY: (&str, &str) = ("kumo-link", "peer");
/// Device-bound traffic, imported from every peer.
const DEVICE_BOUND: [&str; 2] = crate::fabric::DEVICE_BOUND_FILTERS;
const KEEPALIVE: Duration = Duration::from_secs(20);
const MAX_PACKET: usize = 1 << 20;

/// How many integration sessions (connected or parked) this node holds;
/// peer links import integration traffic only while there are any.
#[derive(Debug)]
pub(crate) struct Interest(watch::Sender<usize>);

/// One integration session's share of the [`Interest`]; dropping it ends it.
#[derive(Debug)]
pub(crate) struct InterestGuard(Arc<Interest>);

impl Interest {
    pub fn new() -> Arc<Interest> {
        Arc::new(Interest(watch::channel(0).0))
    }

    pub fn hold(self: &Arc<Self>) -> InterestGuard {
        self.0.send_modify(|n| *n += 1);
        InterestGuard(self.clone())
    }

    fn watch(&self) -> watch::Receiver<usize> {
        self.0.subscribe()
    }
}

impl Drop for InterestGuard {
    fn drop(&mut self) {
        self.0 .0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// What every link shares.
struct Shared {
    tls: tokio_rustls::TlsConnector,
    client_id: String,
    fabric: Fabric,
    pressure: Arc<Pressure>,
    metrics: Arc<crate::Metrics>,
}

/// Starts a link to every peer in `settings.peers`.
pub(crate) fn start(
    settings: &Settings,
    fabric: Fabric,
    pressure: Arc<Pressure>,
    metrics: Arc<crate::Metrics>,
    interest: &Interest,
    shutdown: CancellationToken,
) -> Result<(), BrokerError> {
    if settings.peers.is_empty() {
        return Ok(());
    }
    let cert = settings
        .peer_cert
        .as_ref()
        .ok_or(BrokerError::MissingPath { key: "peer_cert" })?;
    let key = settings
        .peer_key
        .as_ref()
        .ok_or(BrokerError::MissingPath { key: "peer_key" })?;
    let ca = settings
        .ca
        .as_ref()
        .ok_or(BrokerError::MissingPath { key: "ca" })?;
    let pem = |path: &std::path::Path, e: &dyn std::fmt::Display| BrokerError::Pem {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| pem(ca, &e))? {
        roots
            .add(c.map_err(|e| pem(ca, &e))?)
            .map_err(|e| pem(ca, &e))?;
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem(cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem(cert, &e))?;
    let client_id = match chain.first().map(|c| kumo_certs::identity_from_der(c)) {
        Some(Ok(kumo_contract::Identity::Service { name })) => name,
        _ => return Err(pem(cert, &"not a Kumo service certificate")),
    };
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem(key, &e))?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| pem(cert, &e))?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .map_err(|e| pem(cert, &e))?;
    let shared = Arc::new(Shared {
        tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        client_id,
        fabric,
        pressure,
        metrics,
    });
    for peer in &settings.peers {
        tokio::spawn(keep_linked(
            peer.clone(),
            shared.clone(),
            interest.watch(),
            shutdown.clone(),
        ));
    }
    Ok(())
}

/// Keeps the link to `peer` up until `shutdown`, reconnecting with backoff.
async fn keep_linked(
    peer: String,
    shared: Arc<Shared>,
    mut interest: watch::Receiver<usize>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let started = tokio::time::Instant::now();
        let error = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = link(&peer, &shared, &mut interest) => e,
        };
        tracing::warn!(peer = %peer, error = %error, "peer link down");
        // A link that held for a while starts its retries from the beginning.
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(200);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// One connection to `peer`: CONNECT, subscriptions, then imports until it
/// fails; returns why.
async fn link(peer: &str, shared: &Shared, interest: &mut watch::Receiver<usize>) -> String {
    match run_link(peer, shared, interest).await {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

async fn run_link(
    peer: &str,
    shared: &Shared,
    interest: &mut watch::Receiver<usize>,
) -> Result<std::convert::Infallible, String> {
    let host = peer.rsplit_once(':').map_or(peer, |(h, _)| h);
    let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(peer).await.map_err(|e| e.to_string())?;
    let mut io = shared
        .tls
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let mut inbuf = BytesMut::with_capacity(4096);
    connect(&mut io, &mut inbuf, &shared.client_id).await?;
    tracing::info!(peer = %peer, "peer link up");
    let mut pkid = 0u16;
    let mut next_pkid = || {
        pkid = pkid.wrapping_add(1).max(1);
        pkid
    };
    send(&mut io, subscribe(next_pkid(), &DEVICE_BOUND)).await?;
    let mut importing = false;
    let mut ping = tokio::time::interval(KEEPALIVE);
    loop {
        let wanted = *interest.borrow_and_update() > 0;
        if wanted != importing {
            let packet = if wanted {
                subscribe(next_pkid(), &INTEGRATION_FILTERS)
            } else {
                Packet::Unsubscribe(
                    Unsubscribe {
                        pkid: next_pkid(),
                        filters: INTEGRATION_FILTERS.iter().map(|f| f.to_string()).collect(),
                    },
                    None,
                )
            };
            send(&mut io, packet).await?;
            importing = wanted;
        }
        tokio::select! {
            changed = interest.changed() => if changed.is_err() {
                return Err("node stopping".into());
            },
            _ = ping.tick() => send(&mut io, Packet::PingReq(PingReq)).await?,
            n = io.read_buf(&mut inbuf) => match n {
                Ok(0) | Err(_) => return Err("connection closed".into()),
                Ok(_) => {
                    while let Some(frame) = next_frame(&mut inbuf)? {
                        if let Some(reply) = import(shared, frame).await {
                            send(&mut io, reply).await?;
                        }
                    }
                }
            },
        }
    }
}

async fn send(io: &mut Tls, packet: Packet) -> Result<(), String> {
    let mut out = BytesMut::new();
    crate::codec::write(crate::codec::Version::V5, packet, &mut out).map_err(|e| e.to_string())?;
    io.write_all(&out).await.map_err(|e| e.to_string())?;
    io.flush().await.map_err(|e| e.to_string())
}

fn subscribe(pkid: u16, filters: &[&str]) -> Packet {
    let filters = filters
        .iter()
        .map(|f| Filter {
            path: f.to_string(),
            qos: QoS::AtLeastOnce,
            nolocal: false,
            preserve_retain: true,
            retain_forward_rule: RetainForwardRule::OnEverySubscribe,
        })
        .collect();
    Packet::Subscribe(Subscribe { pkid, filters }, None)
}

/// CONNECT (clean start, no session: a link that drops subscribes anew) and
/// its CONNACK, which rumqttd's v5 decoder cannot read: checked by hand.
async fn connect(io: &mut Tls, inbuf: &mut BytesMut, client_id: &str) -> Result<(), String> {
    let connect = Connect {
        keep_alive: (KEEPALIVE.as_secs() * 3 / 2) as u16,
        client_id: client_id.to_string(),
        clean_session: true,
    };
    let mut props = crate::codec::no_connect_properties();
    let (name, value) = PEER_LINK_PROPERTY;
    props.user_properties.push((name.into(), value.into()));
    send(io, Packet::Connect(connect, Some(props), None, None, None)).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(h) = v4::check(inbuf.iter(), MAX_PACKET) {
            let frame = inbuf.split_to(h.frame_length());
            let body = &frame[h.fixed_header_len..];
            return match (h.byte1, body.get(1)) {
                (0x20, Some(0)) => Ok(()),
                (0x20, Some(code)) => Err(format!("peer refused the link: CONNACK {code:#04x}")),
                _ => Err("no CONNACK".into()),
            };
        }
        match tokio::time::timeout_at(deadline, io.read_buf(inbuf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Err("no CONNACK".into()),
        }
    }
}

/// A packet from the peer: a PUBLISH with its QoS (rumqttd keeps it private),
/// or something that needs nothing.
enum Frame {
    Publish(Box<Packet>, u8, u16),
    Other,
}

fn next_frame(inbuf: &mut BytesMut) -> Result<Option<Frame>, String> {
    let h = match v4::check(inbuf.iter(), MAX_PACKET) {
        Ok(h) => h,
        Err(rumqttd::protocol::Error::InsufficientBytes(_)) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    match h.byte1 >> 4 {
        3 => {
            let (qos, pkid) = crate::codec::publish_qos_pkid(
                h.byte1,
                &inbuf[h.fixed_header_len..h.frame_length()],
            );
            let packet = v5::V5
                .read_mut(inbuf, MAX_PACKET)
                .map_err(|e| e.to_string())?;
            Ok(Some(Frame::Publish(Box::new(packet), qos, pkid)))
        }
        14 => Err("peer sent DISCONNECT".into()),
        // SUBACK, UNSUBACK, PINGRESP, PUBREL: nothing to do (QoS 2 is never granted here).
        _ => {
            let _ = inbuf.split_to(h.frame_length());
            Ok(Some(Frame::Other))
        }
    }
}

/// Publishes an imported message into this node; returns the PUBACK to send.
async fn import(shared: &Shared, frame: Frame) -> Option<Packet> {
    let Frame::Publish(packet, qos, pkid) = frame else {
        return None;
    };
    let Packet::Publish(p, properties) = *packet else {
        return None;
    };
    // In the router on its way to service links like a device's message.
    shared.pressure.routed_in(&p.topic);
    shared.metrics.peer_imported.fetch_add(1, Relaxed);
    let message = Message {
        topic: p.topic,
        payload: p.payload,
        qos: if qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        },
        retain: p.retain,
        properties,
        imported: true,
        confirm: None,
    };
    shared
        .fabric
        .publish(&shared.client_id, message, None)
        .await;
    (qos == 1).then(|| {
        Packet::PubAck(
            PubAck {
                pkid,
                reason: PubAckReason::Success,
            },
            None,
        )
    })
}
