//! One client connection after its TLS handshake: the MQTT CONNECT exchange, the
//! packet loop and the goodbye (last will, presence, registry cleanup).
//!
//! The identity is fixed by the certificate before this runs; everything a client
//! sends is checked against it with [`crate::acl`]. Packet handling lives in
//! [`packets`], a device's publishes waiting for the cloud in [`held`]; this
//! module owns the lifecycle.

mod connect;
mod held;
mod packets;
mod persist;
mod subscriptions;
mod will;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::FutureExt;
use kumo_contract::payload::from_device;
use kumo_contract::Identity;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::{QoS, SubscribeReasonCode};
use rumqttd::Notification;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::held::Held;
use crate::acl::AccountLookup;
use crate::codec::Version;
use crate::fabric::Fabric;
use crate::mailbox;
use crate::message::Message;
use crate::metrics::Metrics;
use crate::registry::{CloseReason, Registry, SessionHandle};
use crate::Settings;

/// How long a client may leave written data unread before it is dropped (a
/// service, at least its keepalive window: see [`Session::write_timeout`]).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Buffers above this size are released once empty.
const IDLE_BUFFER_LIMIT: usize = 8 * 1024;

/// Publishes a device may have waiting (see [`crate::pressure`]) before the
/// session stops reading from it; until then PINGREQs are still answered.
const HELD_MAX: usize = 64;

/// A SUBACK's reason codes and the filters (with their grant) whose retained
/// messages follow it.
type PendingSubAck = (Vec<SubscribeReasonCode>, Vec<(String, QoS)>);

/// Where an outgoing QoS 1 or 2 message stands.
#[derive(Debug)]
enum Inflight {
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2); with a copy
    /// of the message for a persistent session (sent again on resume) and the
    /// token its acknowledgement confirms to a device (service sessions).
    Sent(Option<Box<crate::registry::Outbound>>, Option<u64>),
    /// QoS 2: PUBREC received and PUBREL sent, waiting for PUBCOMP.
    Released,
}

/// What every session shares.
pub(crate) struct Node {
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub fabric: Fabric,
    pub accounts: AccountLookup,
    /// Persistent service sessions whose client is away.
    pub parking: persist::Parking,
    /// Wills waiting for their delay.
    pub wills: Arc<will::DelayedWills>,
    /// Integration sessions held, for the peer links.
    pub interest: Arc<crate::peering::Interest>,
    /// How far behind service sessions are; holds device publishes when too far.
    pub pressure: Arc<crate::pressure::Pressure>,
    /// Device publishes waiting for a service's acknowledgement.
    pub confirms: Arc<crate::confirm::Confirmations>,
    pub shutdown: CancellationToken,
}

impl Node {
    /// What the device protocol says of `identity`'s message on `topic` (see
    /// `broker.check_payloads`): only a device's messages on the protocol's
    /// topics are judged, and only while the check is on.
    pub(crate) fn judge(
        &self,
        identity: &Identity,
        topic: &str,
        payload: &[u8],
    ) -> Result<(), from_device::Refusal> {
        let Identity::Device { id } = identity else {
            return Ok(());
        };
        match kumo_contract::topic::strip_device_prefix(topic, id) {
            Some(rest) if self.settings.check_payloads => from_device::check(rest, payload),
            _ => Ok(()),
        }
    }

    /// Whether `identity` may set a retained message on `topic` now: a device
    /// only within `broker.retained_per_device` of its own topics (replacing
    /// one always works; the presence the node retains for it does not
    /// count); anyone else always.
    pub(crate) fn admits_retained(&self, identity: &Identity, topic: &str) -> bool {
        let Identity::Device { id } = identity else {
            return true;
        };
        let own = |t: &str| crate::acl::may_publish(identity, t, &crate::acl::NoAccounts).is_ok();
        self.fabric
            .retained()
            .admits(id.as_str(), topic, self.settings.retained_per_device, own)
    }
}

/// Per-connection state after a successful CONNECT.
pub(crate) struct Session {
    node: Arc<Node>,
    identity: Identity,
    client_id: String,
    version: Version,
    handle: SessionHandle,
    will: Option<will::Will>,
    filters: subscriptions::Subscriptions,
    /// Router link of a service or integration session.
    link: Option<Arc<std::sync::Mutex<LinkTx>>>,
    /// SUBACKs waiting for the router to confirm the filters, with the
    /// filters whose retained messages go out after them.
    pending_subacks: HashMap<u16, PendingSubAck>,
    /// QoS 2 packet ids received and not yet released.
    qos2_in: HashSet<u16>,
    /// Packet ids of QoS 1 and 2 messages sent and not yet acknowledged.
    inflight: HashMap<u16, Inflight>,
    /// CONNECT's clean_session (MQTT 5: clean start).
    clean_session: bool,
    /// How long the session outlives the connection, in s (0: it ends with it).
    session_expiry: u32,
    /// What the CONNECT asked for (a DISCONNECT may not raise 0).
    asked_expiry: u32,
    next_pkid: u16,
    /// The client's Receive Maximum: QoS 1 messages sent and unacknowledged.
    receive_max: usize,
    /// The node's Receive Maximum: QoS 1/2 publishes from the client unanswered.
    receive_max_in: usize,
    backlog: VecDeque<Box<crate::registry::Outbound>>,
    /// Largest packet the client accepts.
    client_max_packet: usize,
    /// 1.5 × the negotiated keepalive; `None`: no keepalive (3.1.1 keepalive 0).
    keepalive: Option<Duration>,
    out: BytesMut,
    /// Device publishes waiting for the cloud, oldest first (devices only).
    #[allow(clippy::box_collection)] // 8 bytes in every idle session instead of 32
    held: Option<Box<VecDeque<Held>>>,
    /// Where confirmations of held answers arrive (devices, while any wait).
    waiter: Option<Arc<crate::confirm::Waiter>>,
    /// This session's share of the node's pressure (service sessions only).
    gauge: Option<crate::pressure::Gauge>,
    /// An integration session's share of the peer links' interest.
    interest: Option<crate::peering::InterestGuard>,
    /// Another node's peer link (see `peering::PEER_LINK_PROPERTY`).
    peer_link: bool,
}

/// Runs a verified connection to completion.
///
/// An idle connection spends its life parked in the `select!` below, so this
/// future is kept small: the large, rarely-live steps (CONNECT, packet
/// handling, router notifications, flushing, goodbye) run as boxed futures
/// that exist only while they are being awaited. `stream` should be boxed by
/// the caller for the same reason.
pub(crate) async fn serve<S>(
    mut stream: S,
    identity: Identity,
    serial: String,
    node: Arc<Node>,
    deadline: Instant,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + Unread,
{
    let mut inbuf = BytesMut::with_capacity(512);
    let Some(mut session) = Box::pin(connect::accept(
        &mut stream,
        &mut inbuf,
        identity,
        serial,
        node.clone(),
        deadline,
    ))
    .await
    else {
        return;
    };
    let (tx, mut rx) = mailbox::channel(node.settings.outbound_queue);
    session.handle.tx = tx;
    let mut link_rx = Box::pin(session.attach(&node)).await;
    let keepalive = session.keepalive_window();
    let kick = session.handle.clone();
    // Packets the client sent right behind its CONNECT, without waiting for
    // the CONNACK (§3.1.4), came in with it: nothing else may arrive to make
    // the loop below look at them.
    if !inbuf.is_empty() {
        if let Err(reason) = take_input(&mut session, &mut stream, &kick, &mut inbuf).await {
            Box::pin(session.finish(&mut stream, reason, link_rx)).await;
            return;
        }
    }
    // A resumed session has queued messages to send before anything arrives.
    if let Err(reason) = guarded_flush(&mut session, &mut stream, &kick).await {
        Box::pin(session.finish(&mut stream, reason, link_rx)).await;
        return;
    }
    let mut last_rx = Instant::now();
    let reason = loop {
        let paused = session.reads_paused();
        let input = tokio::select! {
            r = kick.kicked() => break r,
            _ = node.shutdown.cancelled() => break CloseReason::Shutdown,
            () = keepalive_expired(last_rx, keepalive), if !paused => {
                // A session polled late (a busy node) can find its timer and its
                // client's packet ready together: what has arrived counts.
                match stream.read_buf(&mut inbuf).now_or_never() {
                    Some(n) => Some(n),
                    // Its bytes wait in the socket, not yet seen by this busy
                    // process: the client kept its keepalive (§3.1.2.10 is
                    // about what it sent, not when the node got round to it).
                    None if stream.has_unread() => {
                        node.metrics.keepalive_late_reads.fetch_add(1, Relaxed);
                        last_rx = Instant::now();
                        None
                    }
                    None => {
                        tracing::debug!(idle_ms = last_rx.elapsed().as_millis() as u64, "keepalive timeout");
                        break CloseReason::KeepaliveTimeout;
                    }
                }
            }
            () = wait_relieved(&node, session.held_for()) => {
                if let Err(r) = Box::pin(session.release_held()).await {
                    break r;
                }
                None
            }
            () = wait_confirmed(session.waiter.clone(), session.confirm_deadline()) => {
                if let Err(r) = Box::pin(session.on_confirmed()).await {
                    break r;
                }
                None
            }
            n = stream.read_buf(&mut inbuf), if !paused => Some(n),
            msg = rx.recv() => {
                session.deliver(msg);
                None
            }
            n = next_notification(&mut link_rx) => match n {
                Some(n) => {
                    Box::pin(session.on_router_batch(*n, &mut link_rx)).await;
                    None
                }
                None => break CloseReason::Shutdown,
            },
        };
        match input {
            None => {}
            Some(Ok(0) | Err(_)) => break CloseReason::ConnectionLost,
            Some(Ok(n)) => {
                node.metrics.bytes_in.fetch_add(n as u64, Relaxed);
                last_rx = Instant::now();
                if let Err(r) = take_input(&mut session, &mut stream, &kick, &mut inbuf).await {
                    break r;
                }
                // One large packet must not pin a large buffer to an idle connection.
                if inbuf.is_empty() && inbuf.capacity() > IDLE_BUFFER_LIMIT {
                    inbuf = BytesMut::with_capacity(512);
                }
            }
        }
        if paused || session.reads_paused() {
            // The node has stopped reading from this device (it holds too many
            // of its publishes): its PINGREQs wait unread, so its keepalive is
            // judged from when reading resumes.
            last_rx = Instant::now();
        }
        if let Some(g) = session.gauge.as_mut() {
            g.set(session.backlog.len() + session.inflight.len());
        }
        if let Err(r) = guarded_flush(&mut session, &mut stream, &kick).await {
            break r;
        }
    };
    Box::pin(session.finish(&mut stream, reason, link_rx)).await;
}

/// Handles every complete packet in `inbuf`. On a packet that ends the
/// session, what was answered before it (e.g. PUBACKs) is flushed first.
async fn take_input<S: AsyncWrite + Unpin>(
    session: &mut Session,
    stream: &mut S,
    kick: &SessionHandle,
    inbuf: &mut BytesMut,
) -> Result<(), CloseReason> {
    let Err(reason) = Box::pin(session.process_input(inbuf)).await else {
        return Ok(());
    };
    Err(match guarded_flush(session, stream, kick).await {
        Ok(()) => reason,
        Err(e) => e,
    })
}

/// Router notifications handled before the session writes to its client: one
/// TLS record and one write for a batch instead of one per message, which is
/// what lets a service session keep up with the router at fleet rates.
const ROUTER_BATCH: usize = 256;

/// Writes pending output unless the client stops reading for [`WRITE_TIMEOUT`]
/// or the session is kicked meanwhile (a stuck reader must not delay a revocation).
///
/// Nothing is allocated when there is nothing to write; otherwise the write
/// runs boxed, so its timer and wake-ups are not part of the idle connection.
async fn guarded_flush<S: AsyncWrite + Unpin>(
    session: &mut Session,
    stream: &mut S,
    kick: &SessionHandle,
) -> Result<(), CloseReason> {
    if session.out.is_empty() {
        return Ok(());
    }
    Box::pin(write_guarded(session, stream, kick)).await
}

async fn write_guarded<S: AsyncWrite + Unpin>(
    session: &mut Session,
    stream: &mut S,
    kick: &SessionHandle,
) -> Result<(), CloseReason> {
    let shutdown = session.node.shutdown.clone();
    tokio::select! {
        r = tokio::time::timeout(session.write_timeout(), session.flush(stream)) => match r {
            Ok(Ok(())) => Ok(()),
            _ => Err(CloseReason::ConnectionLost),
        },
        r = kick.kicked() => Err(r),
        _ = shutdown.cancelled() => Err(CloseReason::Shutdown),
    }
}

/// A connection that can tell whether its peer sent bytes not read yet.
pub(crate) trait Unread {
    fn has_unread(&self) -> bool;
}

impl Unread for Box<kumo_tls_io::ServerTls> {
    fn has_unread(&self) -> bool {
        kumo_tls_io::ServerTls::has_unread(self)
    }
}

/// Resolves when nothing was received for the keepalive window (never without keepalive).
async fn keepalive_expired(last_rx: Instant, window: Option<Duration>) {
    match window {
        Some(w) => tokio::time::sleep_until(last_rx + w).await,
        None => std::future::pending().await,
    }
}

/// Resolves when the oldest held publish may go (never when none is held).
/// Boxed so an idle device's future does not carry the wait.
async fn wait_relieved(node: &Node, held_for: Option<crate::pressure::Class>) {
    if let Some(class) = held_for {
        Box::pin(node.pressure.relieved(class)).await
    } else {
        std::future::pending().await
    }
}

/// Resolves when a held answer was confirmed or the first of them gives up
/// (never when none waits). Boxed so an idle device's future does not carry it.
async fn wait_confirmed(waiter: Option<Arc<crate::confirm::Waiter>>, deadline: Option<Instant>) {
    let Some(waiter) = waiter else {
        return std::future::pending().await;
    };
    Box::pin(async move {
        match deadline {
            Some(at) => tokio::select! {
                () = waiter.ready() => {}
                () = tokio::time::sleep_until(at) => {}
            },
            None => waiter.ready().await,
        }
    })
    .await
}

/// The next notification on the session's router link; `None` only when the
/// router dropped the link. Devices have no link and wait forever here, so the
/// wait on a link is boxed (and the notification with it) to keep an idle
/// device's future small.
async fn next_notification(rx: &mut Option<LinkRx>) -> Option<Box<Notification>> {
    match rx {
        Some(rx) => Box::pin(next_on_link(rx)).await.map(Box::new),
        None => std::future::pending().await,
    }
}

/// rumqttd's `next` yields `Ok(None)` when a wake-up finds its buffer already
/// drained; that is not the end of the link.
async fn next_on_link(rx: &mut LinkRx) -> Option<Notification> {
    loop {
        match rx.next().await {
            Ok(Some(n)) => return Some(n),
            Ok(None) => continue,
            Err(_) => return None,
        }
    }
}

impl Session {
    /// Registers the session (closing a predecessor), announces presence and, for
    /// service and integration identities, opens their router link.
    async fn attach(&mut self, node: &Arc<Node>) -> Option<LinkRx> {
        if let Some(old) = node.registry.insert(&self.client_id, self.handle.clone()) {
            old.kick(CloseReason::Takeover);
            // Wait for its offline presence to be queued before ours goes online.
            let _ = tokio::time::timeout(Duration::from_secs(2), old.finished.cancelled()).await;
        }
        node.wills.reconnected(&self.client_id, self.clean_session);
        node.metrics.sessions_open.fetch_add(1, Relaxed);
        if let Identity::Device { id } = &self.identity {
            let p = crate::presence::publish(id, &node.settings.node_id, true, "connected");
            node.fabric
                .publish(&self.client_id, Message::from_node(p), None)
                .await;
            return None;
        }
        if matches!(self.identity, Identity::Service { .. }) {
            self.gauge = Some(node.pressure.gauge());
        }
        if self.clean_session {
            node.parking.discard(&self.client_id).await;
        } else if let Some(resumed) = node.parking.resume(&self.client_id).await {
            node.metrics.sessions_resumed.fetch_add(1, Relaxed);
            tracing::info!(client_id = %self.client_id, queued = resumed.queue.len(),
                "persistent session resumed");
            self.link = Some(resumed.link);
            self.filters = resumed.filters;
            self.interest = resumed.interest;
            self.report_filters();
            // MQTT-4.4.0-1: unacknowledged PUBRELs and PUBLISHes go again, same ids.
            for pkid in resumed.released {
                self.inflight.insert(pkid, Inflight::Released);
                self.send_pubrel(pkid, true);
            }
            for msg in resumed.queue {
                self.deliver(msg);
            }
            return Some(resumed.rx);
        }
        let name: String = self
            .client_id
            .chars()
            .map(|c| if "+$#/".contains(c) { '_' } else { c })
            .collect();
        match node
            .fabric
            .open_link(format!(
                "{}-{name}-{}",
                self.identity.role(),
                self.handle.conn_id
            ))
            .await
        {
            Ok((tx, rx)) => {
                self.link = Some(Arc::new(std::sync::Mutex::new(tx)));
                if matches!(self.identity, Identity::Integration { .. }) {
                    self.interest = Some(node.interest.hold());
                }
                Some(rx)
            }
            Err(e) => {
                tracing::error!(error = %e, client_id = %self.client_id, "cannot open a router link");
                self.handle.kick(CloseReason::Shutdown);
                None
            }
        }
    }

    /// 1.5 × the negotiated keepalive; `None` without keepalive.
    fn keepalive_window(&self) -> Option<Duration> {
        self.keepalive
    }

    /// How long the client may leave written data unread. A service (the
    /// bridge) stops reading while its database catches up; with its socket
    /// buffer kept small (`broker.service_send_buffer`) that is no sign of a
    /// dead client until its keepalive window has passed as well.
    fn write_timeout(&self) -> Duration {
        match (&self.identity, self.keepalive) {
            (Identity::Service { .. }, Some(window)) => window.max(WRITE_TIMEOUT),
            _ => WRITE_TIMEOUT,
        }
    }

    /// The client id sessions compare for No Local: devices never receive
    /// what they publish, so their messages carry none.
    fn origin(&self) -> Option<&str> {
        (!matches!(self.identity, Identity::Device { .. })).then_some(self.client_id.as_str())
    }

    async fn flush<S: AsyncWrite + Unpin>(&mut self, stream: &mut S) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.node
            .metrics
            .bytes_out
            .fetch_add(self.out.len() as u64, Relaxed);
        let r = stream.write_all(&self.out).await;
        if self.out.capacity() > IDLE_BUFFER_LIMIT {
            self.out = BytesMut::new();
        } else {
            self.out.clear();
        }
        r?;
        stream.flush().await
    }

    /// Says goodbye: v5 DISCONNECT for server-side reasons, last will, presence,
    /// registry and router cleanup.
    async fn finish<S: AsyncWrite + Unpin>(
        mut self: Box<Self>,
        stream: &mut S,
        reason: CloseReason,
        link_rx: Option<LinkRx>,
    ) {
        let node = self.node.clone();
        // Answers still waiting are never sent: the client keeps those publishes.
        node.confirms.forget(self.awaited_tokens());
        self.held = None;
        // Leftover output means a write was cut short mid-packet: send nothing more.
        let interrupted = !self.out.is_empty();
        self.out.clear();
        if self.version == Version::V5 && !interrupted {
            if let Some(code) = disconnect_code(reason) {
                // Hand-encoded: rumqttd's v5 DISCONNECT writer mis-sizes reason codes.
                self.out.extend_from_slice(&[0xE0, 0x02, code, 0x00]);
            }
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            let _ = self.flush(stream).await;
            let _ = stream.shutdown().await;
        })
        .await;
        // A session that outlives the connection is parked; a node shutdown ends it.
        let keeps_session = self.session_expiry > 0 && reason != CloseReason::Shutdown;
        if reason.fires_will() {
            if let Some(will) = self.will.take() {
                let session_end = if keeps_session {
                    Duration::from_secs(self.session_expiry.into())
                } else {
                    Duration::ZERO
                };
                let after = will.delay.min(session_end);
                let origin = self.origin();
                node.wills
                    .publish(&node.fabric, &self.client_id, origin, will, after)
                    .await;
            }
        }
        if let Identity::Device { id } = &self.identity {
            let p = crate::presence::publish(id, &node.settings.node_id, false, reason.as_str());
            node.fabric
                .publish(&self.client_id, Message::from_node(p), None)
                .await;
        }
        node.registry.remove(&self.client_id, self.handle.conn_id);
        if let Some(link) = self.link.take() {
            match link_rx {
                Some(rx) if keeps_session => self.park(link, rx),
                _ => persist::close_link(link).await,
            }
        }
        node.metrics.sessions_open.fetch_sub(1, Relaxed);
        node.metrics.disconnect(reason.as_str());
        tracing::info!(client_id = %self.client_id, role = self.identity.role(), reason = reason.as_str(), "session closed");
        self.handle.finished.cancel();
    }
}

impl Session {
    /// Keeps the router link, filters and unacknowledged messages for the
    /// client's return.
    fn park(&mut self, link: Arc<std::sync::Mutex<LinkTx>>, rx: LinkRx) {
        let mut unacked = Vec::new();
        let mut released = Vec::new();
        for (pkid, state) in self.inflight.drain() {
            match state {
                Inflight::Sent(Some(mut m), _) => {
                    m.redelivery = Some(pkid);
                    unacked.push(m);
                }
                Inflight::Sent(None, _) => {}
                Inflight::Released => released.push(pkid),
            }
        }
        unacked.sort_by_key(|m| m.at);
        let mut queue: VecDeque<_> = unacked.into();
        queue.extend(self.backlog.drain(..));
        tracing::info!(client_id = %self.client_id, queued = queue.len(), "persistent session parked");
        let gauge = self.gauge.is_some().then(|| {
            let mut g = self.node.pressure.gauge();
            g.set_subscriptions(self.filters.granted());
            g
        });
        let limits = persist::Limits {
            cap: self.node.settings.session_queue,
            expiry: Duration::from_secs(self.session_expiry.into()),
            gauge,
            hold: Duration::from_secs(self.node.settings.park_hold_secs),
            identity: self.identity.clone(),
            accounts: self.node.accounts.clone(),
            interest: None,
        };
        let resumed = persist::Resumed {
            link,
            rx,
            filters: std::mem::take(&mut self.filters),
            released,
            queue,
            interest: self.interest.take(),
        };
        self.node
            .parking
            .park(&self.client_id, resumed, limits, self.node.metrics.clone());
    }
}

/// The MQTT 5 DISCONNECT reason code for a server-initiated close.
fn disconnect_code(reason: CloseReason) -> Option<u8> {
    Some(match reason {
        CloseReason::Clean | CloseReason::ConnectionLost => return None,
        CloseReason::ProtocolError => 0x82,
        CloseReason::NotAuthorized => 0x87,
        CloseReason::Shutdown => 0x8B,
        CloseReason::KeepaliveTimeout => 0x8D,
        CloseReason::Takeover => 0x8E,
        CloseReason::PacketTooLarge => 0x95,
        CloseReason::Revoked => 0x98,
        CloseReason::ReceiveMaximumExceeded => 0x93,
        CloseReason::TopicAliasInvalid => 0x94,
        CloseReason::SubscriptionIdsUnsupported => 0xA1,
        CloseReason::QuotaExceeded => 0x97,
    })
}
