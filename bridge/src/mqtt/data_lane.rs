//! A node's data lane: the connection that takes readings (client id
//! `{client_id}.data`, persistent session), MQTT 3.1.1 of the bridge's own on
//! tokio-rustls with rumqttc's packet codecs.
//!
//! The lane only subscribes and acknowledges, and it does both at once: one
//! half reads and hands messages to [`Inbound`] (waiting when the reading
//! writer's buffer is full), the other writes the PUBACKs the ack task
//! releases — every one due in a single flush — and the PINGREQs. Through
//! rumqttc's event loop each turn either read up to ten packets or sent one
//! queued PUBACK, picked at random: a busy lane sent about one PUBACK per ten
//! messages until the node's window for the bridge (16,384) was full, then
//! the node sent only as fast as single PUBACKs came back (fleet run 43:
//! PUBACKs 140–240 s after their message arrived, the writer idle 85 % of the
//! time).
//!
//! A PUBACK carries the connection (generation) its message came on; one left
//! from a connection that has ended is dropped, never sent on the next one,
//! where its packet id names another message.
//!
//! Alive: anything received within two keepalives (the PINGRESP may wait
//! behind readings in the node's send buffer; a reading stands for it). The
//! clock runs only while the lane is reading, not while it waits for the
//! writer.
//!
//! Must not publish, nor acknowledge what the ack task has not released.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Disconnect, Packet, PingReq, PubAck, Subscribe,
    SubscribeFilter, SubscribeReasonCode,
};
use rumqttc::QoS;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

use super::inbound::{Acker, Inbound};
use super::node::{drained, fresh_tls, NodeContext};
use super::DATA_SUBSCRIPTIONS;

/// A PUBACK the ack task has released: the connection its message came on
/// and its packet id.
pub(crate) type Release = (u64, u16);

/// Largest packet taken from the node.
const MAX_PACKET: usize = 1024 * 1024;

/// PUBACKs released but not yet written, per node (the node's window for
/// the bridge is 16,384).
const RELEASED: usize = 16_384;

/// Most PUBACKs encoded into one write.
const BATCH: usize = 4096;

/// TCP connect, TLS handshake and CONNACK together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Room kept free in the read buffer before each read.
const READ_CHUNK: usize = 64 * 1024;

/// Why a data connection ended or could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LaneError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no CONNACK within {0:?}")]
    ConnectTimeout(Duration),
    #[error("the node refused the connection: {0:?}")]
    Refused(ConnectReturnCode),
    #[error("malformed packet from the node: {0}")]
    Malformed(rumqttc::mqttbytes::Error),
    #[error("unexpected packet from the node: {0}")]
    Unexpected(&'static str),
    #[error("nothing from the node for {0:?}")]
    Silent(Duration),
    #[error("the node closed the connection")]
    Closed,
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
}

/// Starts the node's data lane: its ack task and its connection task.
pub(crate) fn spawn(ctx: &Arc<NodeContext>) -> Vec<JoinHandle<()>> {
    let generation = Arc::new(AtomicU64::new(0));
    let (release_tx, release_rx) = mpsc::channel(RELEASED);
    let (inbound, _acks_done, mut handles) =
        Inbound::start(ctx, Acker::Lane(release_tx), generation.clone(), false);
    handles.push(tokio::spawn(run(
        ctx.clone(),
        inbound,
        release_rx,
        generation,
    )));
    handles
}

/// Keeps the lane connected until shutdown. After shutdown it stops handing
/// messages on, writes the PUBACKs of what became durable (for a while:
/// [`drained`]), and leaves with DISCONNECT; the rest waits in the session.
async fn run(
    ctx: Arc<NodeContext>,
    inbound: Inbound,
    mut releases: mpsc::Receiver<Release>,
    generation: Arc<AtomicU64>,
) {
    let addr = ctx.status.nodes[ctx.idx].addr.clone();
    let mut inbound = Some(inbound);
    let mut tls = ctx.tls.clone();
    let mut failures = 0u32;
    let drained = drained(ctx.shutdown.clone());
    tokio::pin!(drained);
    loop {
        let mut connected = false;
        let outcome = tokio::select! {
            r = session(&ctx, &tls, &generation, &mut inbound, &mut releases, &mut connected) => r,
            () = &mut drained => break,
        };
        let e = match outcome {
            Ok(()) => break,
            Err(e) => e,
        };
        if connected {
            failures = 0;
            ctx.status.connections_lost.fetch_add(1, Relaxed);
        }
        if ctx.shutdown.is_cancelled() {
            break;
        }
        failures += 1;
        if failures == 1 {
            tracing::warn!(node = %addr, lane = "data", error = %e,
                "broker node connection lost; reconnecting");
        } else {
            tracing::debug!(node = %addr, lane = "data", error = %e,
                "reconnecting to broker node");
        }
        // The PKI may have changed (a CA rollover): reconnect with what the files say now.
        if let Some(fresh) = fresh_tls(&ctx) {
            tls = fresh;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(ctx.settings.reconnect_secs)) => {}
            () = ctx.shutdown.cancelled() => {}
        }
    }
    tracing::info!(node = %addr, lane = "data", "disconnected from broker node");
}

/// One connection, from TCP connect to its end. `Ok` only when it left after
/// shutdown with every released PUBACK written.
async fn session(
    ctx: &NodeContext,
    tls: &Arc<rustls::ClientConfig>,
    generation: &AtomicU64,
    inbound: &mut Option<Inbound>,
    releases: &mut mpsc::Receiver<Release>,
    connected: &mut bool,
) -> Result<(), LaneError> {
    let s = &ctx.settings;
    let keepalive = Duration::from_secs(s.data_keepalive_secs);
    let client_id = format!("{}.data", s.client_id);
    let (stream, mut buf, ack) = timeout(CONNECT_TIMEOUT, async {
        let tcp = dial(&ctx.host, ctx.port, s.data_recv_buffer).await?;
        let name = ServerName::try_from(ctx.host.clone())
            .map_err(|_| LaneError::ServerName(ctx.host.clone()))?;
        let mut stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await?;
        let (ack, buf) = handshake(&mut stream, &client_id, keepalive).await?;
        Ok::<_, LaneError>((stream, buf, ack))
    })
    .await
    .map_err(|_| LaneError::ConnectTimeout(CONNECT_TIMEOUT))??;
    *connected = true;
    let current = generation.fetch_add(1, Relaxed) + 1;
    tracing::info!(node = %ctx.status.nodes[ctx.idx].addr, lane = "data",
        session_present = ack.session_present, "connected to broker node");
    let (mut rd, mut wr) = tokio::io::split(stream);
    // Subscribing again to a resumed session is harmless (the filters are the
    // same) and covers a node that lost it.
    let mut out = BytesMut::new();
    subscribe(&mut out);
    wr.write_all(&out).await?;
    wr.flush().await?;
    let from = Source {
        addr: &ctx.status.nodes[ctx.idx].addr,
        received: &ctx.status.received,
        shutdown: &ctx.shutdown,
        silence: keepalive * 2,
    };
    let reading = read(&mut rd, &mut buf, &from, inbound);
    let writing = write(&mut wr, releases, current, keepalive);
    tokio::select! {
        r = reading => r,
        r = writing => r,
    }
}

/// A TCP connection to `host:port` with Nagle off (PUBACKs are small writes)
/// and a receive buffer of `recv_buffer` bytes (0: the kernel's autotuning).
async fn dial(host: &str, port: u16, recv_buffer: u32) -> Result<TcpStream, LaneError> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if recv_buffer > 0 {
            socket.set_recv_buffer_size(recv_buffer)?;
        }
        match socket.connect(addr).await {
            Ok(tcp) => {
                tcp.set_nodelay(true)?;
                return Ok(tcp);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))
        .into())
}

/// CONNECT (persistent session) and its CONNACK; returns the CONNACK and
/// whatever arrived after it.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    client_id: &str,
    keepalive: Duration,
) -> Result<(ConnAck, BytesMut), LaneError> {
    let mut connect = Connect::new(client_id);
    connect.clean_session = false;
    connect.keep_alive = u16::try_from(keepalive.as_secs()).unwrap_or(u16::MAX);
    let mut out = BytesMut::new();
    connect.write(&mut out).map_err(LaneError::Malformed)?;
    stream.write_all(&out).await?;
    stream.flush().await?;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        match next_packet(&mut buf)? {
            Some(Packet::ConnAck(ack)) if ack.code == ConnectReturnCode::Success => {
                return Ok((ack, buf))
            }
            Some(Packet::ConnAck(ack)) => return Err(LaneError::Refused(ack.code)),
            Some(_) => return Err(LaneError::Unexpected("a packet before CONNACK")),
            None => {
                buf.reserve(READ_CHUNK);
                if stream.read_buf(&mut buf).await? == 0 {
                    return Err(LaneError::Closed);
                }
            }
        }
    }
}

/// Encodes the SUBSCRIBE of [`DATA_SUBSCRIPTIONS`] at QoS 1.
fn subscribe(out: &mut BytesMut) {
    let filters = DATA_SUBSCRIPTIONS
        .iter()
        .map(|f| SubscribeFilter::new((*f).to_string(), QoS::AtLeastOnce));
    let mut packet = Subscribe::new_many(filters);
    packet.pkid = 1;
    // Infallible: the filters are short constants.
    let _ = packet.write(out);
}

/// The next complete packet in `buf`, if there is one.
fn next_packet(buf: &mut BytesMut) -> Result<Option<Packet>, LaneError> {
    match Packet::read(buf, MAX_PACKET) {
        Ok(packet) => Ok(Some(packet)),
        Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
        Err(e) => Err(LaneError::Malformed(e)),
    }
}

/// Where the lane hands the messages it reads: the node's [`Inbound`] (a
/// recorder in tests).
pub(crate) trait Handler {
    fn take(&self, p: rumqttc::Publish) -> impl std::future::Future<Output = ()> + Send;
}

impl Handler for Inbound {
    fn take(&self, p: rumqttc::Publish) -> impl std::future::Future<Output = ()> + Send {
        self.handle(p)
    }
}

/// What the reading half needs of its node.
struct Source<'a> {
    addr: &'a str,
    received: &'a AtomicU64,
    shutdown: &'a tokio_util::sync::CancellationToken,
    /// Longest the node may stay silent while the lane reads.
    silence: Duration,
}

/// Reads until the connection fails; hands every message to `inbound`
/// (after shutdown, when it has been taken, messages stay unacknowledged in
/// the session).
async fn read<R: AsyncRead + Unpin, H: Handler>(
    rd: &mut R,
    buf: &mut BytesMut,
    from: &Source<'_>,
    inbound: &mut Option<H>,
) -> Result<(), LaneError> {
    let silence = from.silence;
    loop {
        while let Some(packet) = next_packet(buf)? {
            match packet {
                Packet::Publish(p) => {
                    from.received.fetch_add(1, Relaxed);
                    if p.qos == QoS::ExactlyOnce {
                        return Err(LaneError::Unexpected("a QoS 2 message"));
                    }
                    if let Some(i) = inbound {
                        i.take(p).await;
                    }
                }
                Packet::SubAck(ack) => {
                    if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                        tracing::error!(node = %from.addr, lane = "data",
                            codes = ?ack.return_codes, "the node refused a readings subscription");
                    }
                }
                Packet::PingResp => {}
                _ => return Err(LaneError::Unexpected("a packet a subscriber never gets")),
            }
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let n = tokio::select! {
            biased;
            () = from.shutdown.cancelled(), if inbound.is_some() => {
                // Dropping the lane's handle lets the ack task finish with
                // what is durable; then the writer leaves.
                inbound.take();
                continue;
            }
            r = timeout(silence, rd.read_buf(buf)) => {
                r.map_err(|_| LaneError::Silent(silence))??
            }
        };
        if n == 0 {
            return Err(LaneError::Closed);
        }
    }
}

/// Writes released PUBACKs of connection `current`, all that are due in one
/// flush, and a PINGREQ every `keepalive`; `Ok` once the ack task has ended
/// (after shutdown), with a DISCONNECT.
async fn write<W: AsyncWrite + Unpin>(
    wr: &mut W,
    releases: &mut mpsc::Receiver<Release>,
    current: u64,
    keepalive: Duration,
) -> Result<(), LaneError> {
    let mut out = BytesMut::with_capacity(BATCH * 4);
    let mut due = Vec::with_capacity(BATCH);
    let mut ping = tokio::time::interval_at(Instant::now() + keepalive, keepalive);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let done = tokio::select! {
            n = releases.recv_many(&mut due, BATCH) => n == 0,
            _ = ping.tick() => {
                // Infallible: a fixed two-byte packet.
                let _ = PingReq.write(&mut out);
                false
            }
        };
        for (generation, pkid) in due.drain(..) {
            if generation == current {
                // Infallible: a fixed four-byte packet.
                let _ = PubAck::new(pkid).write(&mut out);
            }
        }
        if done {
            let _ = Disconnect.write(&mut out);
        }
        if !out.is_empty() {
            wr.write_all(&out).await?;
            wr.flush().await?;
            out.clear();
        }
        if done {
            return Ok(());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::pin::Pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll};

    use rumqttc::mqttbytes::v4::Publish;
    use tokio::io::duplex;
    use tokio_util::sync::CancellationToken;

    use super::*;

    /// Records the packet ids of the messages handed on.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<u16>>);

    impl Handler for Recorder {
        fn take(&self, p: rumqttc::Publish) -> impl std::future::Future<Output = ()> + Send {
            self.0.lock().unwrap().push(p.pkid);
            std::future::ready(())
        }
    }

    /// Keeps what is written, as one chunk per flush.
    #[derive(Default)]
    struct Flushes {
        pending: Vec<u8>,
        flushed: Vec<Vec<u8>>,
    }

    impl AsyncWrite for Flushes {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.pending.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            let chunk = std::mem::take(&mut self.pending);
            self.flushed.push(chunk);
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Every packet in `bytes`.
    fn packets(bytes: &[u8]) -> Vec<Packet> {
        let mut buf = BytesMut::from(bytes);
        let mut all = Vec::new();
        while let Some(p) = next_packet(&mut buf).unwrap() {
            all.push(p);
        }
        assert!(buf.is_empty(), "a partial packet was written");
        all
    }

    fn publish(pkid: u16, qos: QoS) -> Vec<u8> {
        let mut p = Publish::new("devices/dev-a/sensors/te", qos, &b"{\"val\":21.5}"[..]);
        p.pkid = pkid;
        let mut out = BytesMut::new();
        p.write(&mut out).unwrap();
        out.to_vec()
    }

    #[tokio::test]
    async fn every_due_puback_goes_out_in_one_flush_and_none_of_an_ended_connection() {
        let (tx, mut rx) = mpsc::channel(RELEASED);
        for pkid in 1..=1000u16 {
            tx.send((2, pkid)).await.unwrap();
            if pkid % 10 == 0 {
                // Released after its connection ended: the id means nothing now.
                tx.send((1, pkid)).await.unwrap();
            }
        }
        drop(tx);
        let mut out = Flushes::default();
        write(&mut out, &mut rx, 2, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(out.flushed.len(), 2, "all PUBACKs, then the DISCONNECT");
        let acks: Vec<u16> = packets(&out.flushed[0])
            .into_iter()
            .map(|p| match p {
                Packet::PubAck(a) => a.pkid,
                other => panic!("{other:?} among the PUBACKs"),
            })
            .collect();
        assert_eq!(
            acks,
            (1..=1000).collect::<Vec<_>>(),
            "in release order, once each"
        );
        assert_eq!(packets(&out.flushed[1]), vec![Packet::Disconnect]);
    }

    #[tokio::test]
    async fn a_pingreq_goes_out_every_keepalive() {
        let (tx, mut rx) = mpsc::channel(RELEASED);
        let (mut lane, mut node) = duplex(1024);
        let writer = tokio::spawn(async move {
            let r = write(&mut lane, &mut rx, 1, Duration::from_millis(200)).await;
            (r, lane)
        });
        tokio::time::sleep(Duration::from_millis(700)).await;
        drop(tx);
        let (r, lane) = writer.await.unwrap();
        r.unwrap();
        drop(lane);
        let mut bytes = Vec::new();
        node.read_to_end(&mut bytes).await.unwrap();
        let mut sent = packets(&bytes);
        assert_eq!(sent.pop(), Some(Packet::Disconnect));
        // 200, 400 and 600 ms; a late scheduler may add one more.
        assert!((3..=4).contains(&sent.len()), "{sent:?}");
        assert!(sent.iter().all(|p| *p == Packet::PingReq), "{sent:?}");
    }

    /// Reads what the node's end sent (then closed or left open) into a
    /// recorder, after shutdown if `shut_down`; the node silent for 300 ms
    /// counts as gone.
    async fn read_all(
        lane: &mut tokio::io::DuplexStream,
        shut_down: bool,
    ) -> (Result<(), LaneError>, Option<Recorder>, u64) {
        let (received, shutdown) = (AtomicU64::new(0), CancellationToken::new());
        if shut_down {
            shutdown.cancel();
        }
        let mut inbound = Some(Recorder::default());
        let mut buf = BytesMut::new();
        let from = Source {
            addr: "127.0.0.1:8883",
            received: &received,
            shutdown: &shutdown,
            silence: Duration::from_millis(300),
        };
        let end = read(lane, &mut buf, &from, &mut inbound).await;
        (end, inbound, received.load(Relaxed))
    }

    #[tokio::test]
    async fn messages_are_handed_on_in_arrival_order_whatever_the_read_boundaries() {
        let (mut lane, mut node) = duplex(64 * 1024);
        let mut bytes = Vec::new();
        for pkid in 1..=3 {
            bytes.extend(publish(pkid, QoS::AtLeastOnce));
        }
        bytes.extend([0xD0, 0x00]); // PINGRESP
        bytes.extend(publish(0, QoS::AtMostOnce));
        // Split across writes in the middle of packets.
        for chunk in bytes.chunks(7) {
            node.write_all(chunk).await.unwrap();
        }
        drop(node);
        let (end, inbound, received) = read_all(&mut lane, false).await;
        assert!(matches!(end, Err(LaneError::Closed)), "{end:?}");
        assert_eq!(*inbound.unwrap().0.lock().unwrap(), vec![1, 2, 3, 0]);
        assert_eq!(received, 4);
    }

    #[tokio::test]
    async fn a_qos2_message_or_a_packet_a_subscriber_never_gets_ends_the_connection() {
        for bytes in [publish(9, QoS::ExactlyOnce), vec![0x40, 0x02, 0x00, 0x07]] {
            let (mut lane, mut node) = duplex(1024);
            node.write_all(&bytes).await.unwrap();
            let (end, inbound, _) = read_all(&mut lane, false).await;
            assert!(matches!(end, Err(LaneError::Unexpected(_))), "{end:?}");
            assert!(inbound.unwrap().0.lock().unwrap().is_empty());
        }
    }

    #[tokio::test]
    async fn a_node_silent_for_two_keepalives_is_taken_as_gone() {
        let (mut lane, _node) = duplex(1024);
        let (end, _, _) = read_all(&mut lane, false).await;
        assert!(matches!(end, Err(LaneError::Silent(_))), "{end:?}");
    }

    #[tokio::test]
    async fn after_shutdown_nothing_more_is_handed_on() {
        let (mut lane, mut node) = duplex(1024);
        node.write_all(&publish(1, QoS::AtLeastOnce)).await.unwrap();
        drop(node);
        let (end, inbound, received) = read_all(&mut lane, true).await;
        assert!(matches!(end, Err(LaneError::Closed)), "{end:?}");
        assert!(inbound.is_none(), "the lane let go of its handle");
        assert_eq!(received, 1, "read, left in the session");
    }

    /// Plays the node's side of CONNECT: answers `code`; returns the CONNECT.
    async fn node_answers(node: &mut tokio::io::DuplexStream, code: ConnectReturnCode) -> Connect {
        let mut buf = BytesMut::new();
        let connect = loop {
            if let Some(Packet::Connect(c)) = next_packet(&mut buf).unwrap() {
                break c;
            }
            assert!(node.read_buf(&mut buf).await.unwrap() > 0);
        };
        let mut out = BytesMut::new();
        ConnAck::new(code, true).write(&mut out).unwrap();
        node.write_all(&out).await.unwrap();
        connect
    }

    #[tokio::test]
    async fn the_lane_asks_to_resume_its_session_and_a_refusal_is_an_error() {
        let (mut lane, mut node) = duplex(1024);
        let node_side = tokio::spawn(async move {
            let c = node_answers(&mut node, ConnectReturnCode::Success).await;
            (c, node)
        });
        let (ack, _) = handshake(&mut lane, "bridge.data", Duration::from_secs(120))
            .await
            .unwrap();
        let (connect, _node) = node_side.await.unwrap();
        assert!(!connect.clean_session);
        assert_eq!(connect.client_id, "bridge.data");
        assert_eq!(connect.keep_alive, 120);
        assert!(ack.session_present);

        let (mut lane, mut node) = duplex(1024);
        let node_side = tokio::spawn(async move {
            node_answers(&mut node, ConnectReturnCode::NotAuthorized).await;
            node
        });
        let refused = handshake(&mut lane, "bridge.data", Duration::from_secs(120)).await;
        assert!(matches!(
            refused,
            Err(LaneError::Refused(ConnectReturnCode::NotAuthorized))
        ));
        drop(node_side.await.unwrap());
    }

    #[test]
    fn the_subscription_asks_for_every_reading_filter_at_qos1() {
        let mut out = BytesMut::new();
        subscribe(&mut out);
        let Some(Packet::Subscribe(s)) = next_packet(&mut out).unwrap() else {
            panic!("not a SUBSCRIBE");
        };
        assert_ne!(s.pkid, 0);
        let filters: Vec<_> = s.filters.iter().map(|f| (f.path.as_str(), f.qos)).collect();
        let want: Vec<_> = DATA_SUBSCRIPTIONS
            .iter()
            .map(|f| (*f, QoS::AtLeastOnce))
            .collect();
        assert_eq!(filters, want);
    }
}
