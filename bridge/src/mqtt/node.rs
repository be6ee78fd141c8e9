//! One broker node: two connections with persistent sessions, kept up until
//! shutdown. The control connection (rumqttc, client id `bridge`) publishes
//! commands and takes acks, presence, state and node epochs; the data
//! connection (`bridge.data`, [`super::data_lane`]) takes readings. One
//! connection for everything put every PUBACK of a command and every device
//! ack behind the node's backlog of readings: under load, commands took
//! seconds to minutes.
//!
//! The control connection's event loop subscribes after every CONNACK (resumed or not),
//! hands incoming messages to [`super::inbound`], and turns PUBACKs of
//! command publishes into `mark_sent` (batched by [`SentLog`]). rumqttc does
//! not say which request a packet id went to, so command ids are queued in
//! publish order and paired with packet ids as rumqttc emits
//! `Outgoing::Publish`; a retransmission reuses a packet id already paired and
//! takes nothing from the queue.
//!
//! A connection is alive while the node sends anything at all: a packet
//! received since the last PINGREQ stands for its PINGRESP (see [`drive`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;
use kumo_contract::topic::{device_topic, Leaf};
use kumo_contract::DeviceId;
use rumqttc::{
    AsyncClient, Event, EventLoop, Incoming, MqttOptions, Outgoing, QoS, TlsConfiguration,
    Transport,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::delivery::SentLog;
use super::inbound::{Acker, Inbound};
use super::{MqttStatus, CONTROL_SUBSCRIPTIONS, DATA_SUBSCRIPTIONS, PRESENCE};
use crate::commands::{CommandLog, QueuedCommand};
use crate::ingest::ReadingWriter;
use crate::settings::MqttSettings;

/// Longest a connection stays up after shutdown to send remaining acks.
const DRAIN: Duration = Duration::from_secs(5);

/// Everything one node's tasks need.
pub(crate) struct NodeContext {
    pub idx: usize,
    pub host: String,
    pub port: u16,
    pub settings: MqttSettings,
    pub tls: Arc<rustls::ClientConfig>,
    pub pool: Pool,
    pub commands: Arc<CommandLog>,
    pub writer: ReadingWriter,
    pub status: Arc<MqttStatus>,
    /// The report shards, shared by all nodes.
    pub reports: super::reports::ReportShards,
    pub ownership: super::ownership::OwnershipHook,
    pub shutdown: CancellationToken,
}

/// Command ids published and not yet acknowledged by the node.
#[derive(Default)]
struct Pairing {
    /// Ids handed to rumqttc, in order, not yet given a packet id.
    queued: VecDeque<Uuid>,
    /// Packet id → command id, until PUBACK.
    inflight: HashMap<u16, Uuid>,
}

/// Ends [`DRAIN`] after shutdown: how long a connection may stay up to send
/// the acknowledgements of what became durable.
pub(super) async fn drained(shutdown: CancellationToken) {
    shutdown.cancelled().await;
    tokio::time::sleep(DRAIN).await;
}

/// Starts the node's tasks; returns its command publisher and their handles.
pub(crate) fn spawn(ctx: NodeContext) -> (mpsc::Sender<QueuedCommand>, Vec<JoinHandle<()>>) {
    let ctx = Arc::new(ctx);
    let mut handles = Vec::new();
    handles.extend(super::data_lane::spawn(&ctx));
    let (client, eventloop) = connection(&ctx);
    let pairing = Arc::new(Mutex::new(Pairing::default()));
    let (publish_tx, publish_rx) = mpsc::channel(1024);
    handles.push(tokio::spawn(publish(
        publish_rx,
        client.clone(),
        pairing.clone(),
        ctx.shutdown.clone(),
    )));
    handles.extend(run_control(&ctx, client, eventloop, pairing));
    (publish_tx, handles)
}

/// The control connection to the node (not yet polled).
fn connection(ctx: &NodeContext) -> (AsyncClient, EventLoop) {
    let s = &ctx.settings;
    let mut options = MqttOptions::new(s.client_id.clone(), ctx.host.clone(), ctx.port);
    options
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(s.keepalive_secs))
        .set_inflight(s.inflight)
        .set_max_packet_size(1024 * 1024, 1024 * 1024)
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            ctx.tls.clone(),
        )));
    let (client, mut eventloop) = AsyncClient::new(options, 1024);
    // Commands and acks are small writes; Nagle would hold them for the node's
    // delayed ACK (~40 ms on Linux).
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);
    (client, eventloop)
}

/// Starts the control connection's inbound pipeline and event loop task.
fn run_control(
    ctx: &Arc<NodeContext>,
    client: AsyncClient,
    eventloop: EventLoop,
    pairing: Arc<Mutex<Pairing>>,
) -> Vec<JoinHandle<()>> {
    let generation = Arc::new(AtomicU64::new(0));
    let acker = Acker::Client(client.clone());
    let (inbound, acks_done, mut handles) = Inbound::start(ctx, acker, generation.clone(), true);
    handles.push(tokio::spawn(drive(
        ctx.clone(),
        client,
        eventloop,
        inbound,
        acks_done,
        pairing,
        generation,
    )));
    handles
}

/// Publishes commands routed to this node, in order.
async fn publish(
    mut rx: mpsc::Receiver<QueuedCommand>,
    client: AsyncClient,
    pairing: Arc<Mutex<Pairing>>,
    shutdown: CancellationToken,
) {
    loop {
        let cmd = tokio::select! {
            () = shutdown.cancelled() => return,
            c = rx.recv() => match c { Some(c) => c, None => return },
        };
        let Ok(device) = DeviceId::parse(cmd.device_id.as_str()) else {
            continue;
        };
        let topic = device_topic(&device, Leaf::Commands);
        let body = super::payload::command(&cmd, time::OffsetDateTime::now_utc());
        lock(&pairing).queued.push_back(cmd.id);
        if client
            .publish(topic, QoS::AtLeastOnce, false, body)
            .await
            .is_err()
        {
            return;
        }
        tracing::debug!(command_id = %cmd.id, device_id = %cmd.device_id, "command published");
    }
}

/// The node has been unreachable for `node_lost_after_secs`: shows the devices
/// it held offline. `true` once done (or nothing to do: the node's id was
/// never learned); `false` to try again on the next failed attempt.
async fn declare_lost(ctx: &NodeContext) -> bool {
    let status = &ctx.status.nodes[ctx.idx];
    let Some(node_id) = status.node_id() else {
        tracing::warn!(node = %status.addr, "broker node lost before its id was learned");
        return true;
    };
    match crate::presence::node_lost(&ctx.pool, &node_id).await {
        Ok(devices) => {
            tracing::warn!(node = %status.addr, node_id, devices = devices.len(),
                "broker node unreachable for long; its devices are shown offline");
            let at = time::OffsetDateTime::now_utc();
            for device in devices {
                ctx.commands
                    .live()
                    .publish(crate::live::LiveEvent::Presence {
                        device,
                        online: false,
                        node: Some(node_id.clone()),
                        at,
                    });
            }
            true
        }
        Err(e) => {
            tracing::warn!(node = %status.addr, error = %e,
                "marking a lost node's devices offline failed; will retry");
            false
        }
    }
}

/// The node's TLS configuration rebuilt from the certificate files; `None`
/// (keep the current one) if they cannot be read.
pub(super) fn fresh_tls(ctx: &NodeContext) -> Option<Arc<rustls::ClientConfig>> {
    let s = &ctx.settings;
    let (Some(ca), Some(cert), Some(key)) = (&s.ca, &s.cert, &s.key) else {
        return None;
    };
    let config = super::tls::client_config(ca, cert, key)
        .and_then(|base| super::tls::for_node(&base, ca, ctx.status.clone(), ctx.idx));
    match config {
        Ok(config) => Some(config),
        Err(e) => {
            tracing::warn!(error = %e, "TLS files unreadable; reconnecting with the previous ones");
            None
        }
    }
}

/// Points the connection at the TLS configuration the files hold now.
fn reload_tls(ctx: &NodeContext, eventloop: &mut EventLoop) {
    if let Some(config) = fresh_tls(ctx) {
        eventloop
            .mqtt_options
            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
    }
}

fn lock(p: &Mutex<Pairing>) -> std::sync::MutexGuard<'_, Pairing> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Polls the control connection until shutdown, reconnecting after errors.
async fn drive(
    ctx: Arc<NodeContext>,
    client: AsyncClient,
    mut eventloop: EventLoop,
    inbound: Inbound,
    acks_done: CancellationToken,
    pairing: Arc<Mutex<Pairing>>,
    generation: Arc<AtomicU64>,
) {
    let node = &ctx.status.nodes[ctx.idx];
    let addr = node.addr.clone();
    let mut inbound = Some(inbound);
    let sent = SentLog::start(ctx.commands.clone(), ctx.status.clone(), ctx.idx);
    let mut failures = 0u32;
    // Connected since the last CONNACK (a failed attempt is not a lost connection).
    let mut up = false;
    let mut disconnecting = false;
    let lost_after = Duration::from_secs(ctx.settings.node_lost_after_secs);
    let mut down_since: Option<std::time::Instant> = None;
    let mut declared_lost = false;
    let drained = drained(ctx.shutdown.clone());
    tokio::pin!(drained);
    loop {
        let event = tokio::select! {
            e = eventloop.poll() => e,
            () = ctx.shutdown.cancelled(), if inbound.is_some() => {
                // Closing the queues lets the ack task finish what is durable;
                // new messages stay unacknowledged in the node's session.
                if let Some(i) = inbound.take() {
                    i.close();
                }
                continue;
            }
            () = acks_done.cancelled(), if !disconnecting => {
                // Everything durable is acknowledged: leave; the session keeps the rest.
                disconnecting = true;
                let _ = client.try_disconnect();
                continue;
            }
            () = &mut drained => break,
        };
        if let Ok(Event::Incoming(_)) = &event {
            // Whatever the node sends proves it alive. rumqttc drops a
            // connection whose PINGRESP is missing at the next keepalive tick,
            // but under a backlog the PINGRESP waits behind megabytes of
            // readings still arriving; dropped, the connection loses the QoS 0
            // readings in flight. A connection that stays silent for a whole
            // keepalive after a PINGREQ still fails as before.
            eventloop.state.await_pingresp = false;
        }
        match event {
            Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                failures = 0;
                up = true;
                down_since = None;
                generation.fetch_add(1, Relaxed);
                tracing::info!(node = %addr, lane = "control", session_present = ack.session_present,
                    "connected to broker node");
                node.connected.store(true, Relaxed);
                // Subscribing anew to a filter hands over its retained messages again:
                // - the node's id (its epoch), if this process has not learned it
                //   (a resumed session gets no retained messages by itself);
                // - the presence of the devices a node that was lost still holds.
                let mut renew = Vec::new();
                if node.node_id().is_none() && ack.session_present {
                    renew.push(kumo_contract::nodes::EPOCH_FILTER);
                }
                if std::mem::take(&mut declared_lost) && ack.session_present {
                    renew.push(PRESENCE);
                }
                for filter in renew {
                    if let Err(e) = client.try_unsubscribe(filter) {
                        tracing::error!(node = %addr, filter, error = %e, "cannot renew a subscription");
                    }
                }
                // A session from a bridge that took readings on this connection
                // too would deliver them twice.
                for filter in DATA_SUBSCRIPTIONS {
                    if let Err(e) = client.try_unsubscribe(filter) {
                        tracing::error!(node = %addr, filter, error = %e, "cannot unsubscribe");
                    }
                }
                subscribe(&client, &addr);
                // The node may have restarted with an empty ownership map.
                ctx.ownership.connected(ctx.idx, &client);
            }
            Ok(Event::Incoming(Incoming::Publish(p)))
                if kumo_contract::ownership::parse_applied_topic(&p.topic).is_some() =>
            {
                // The node's echo of an ownership sync marker (QoS 0).
                ctx.ownership.echoed(ctx.idx, &p.payload);
            }
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                ctx.status.received.fetch_add(1, Relaxed);
                if let Some(i) = &inbound {
                    i.handle(p).await;
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) if pkid != 0 => {
                let mut p = lock(&pairing);
                if !p.inflight.contains_key(&pkid) {
                    if let Some(id) = p.queued.pop_front() {
                        p.inflight.insert(pkid, id);
                    }
                }
            }
            Ok(Event::Incoming(Incoming::PubAck(ack))) => {
                let id = lock(&pairing).inflight.remove(&ack.pkid);
                if let Some(id) = id {
                    ctx.status.commands_sent.fetch_add(1, Relaxed);
                    sent.record(id);
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(e) => {
                node.connected.store(false, Relaxed);
                if ctx.shutdown.is_cancelled() {
                    break;
                }
                failures += 1;
                if std::mem::take(&mut up) {
                    ctx.status.connections_lost.fetch_add(1, Relaxed);
                }
                let since = *down_since.get_or_insert_with(std::time::Instant::now);
                if !declared_lost && !lost_after.is_zero() && since.elapsed() >= lost_after {
                    declared_lost = declare_lost(&ctx).await;
                }
                // The PKI may have changed (a CA rollover re-issues the
                // bridge's certificate and the node's): reconnect with what
                // the files say now.
                reload_tls(&ctx, &mut eventloop);
                if failures == 1 {
                    tracing::warn!(node = %addr, lane = "control", error = %e,
                        "broker node connection lost; reconnecting");
                } else {
                    tracing::debug!(node = %addr, lane = "control", error = %e,
                        "reconnecting to broker node");
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(ctx.settings.reconnect_secs)) => {}
                    () = ctx.shutdown.cancelled() => {}
                }
            }
        }
    }
    node.connected.store(false, Relaxed);
    tracing::info!(node = %addr, lane = "control", "disconnected from broker node");
}

/// Subscribes the control filters. Subscribing again to a resumed session is
/// harmless (the filters are the same) and covers a node that lost it.
fn subscribe(client: &AsyncClient, addr: &str) {
    let filters = CONTROL_SUBSCRIPTIONS
        .iter()
        .map(|f| rumqttc::SubscribeFilter::new(f.to_string(), QoS::AtLeastOnce));
    if let Err(e) = client.try_subscribe_many(filters) {
        tracing::error!(node = %addr, lane = "control", error = %e, "cannot subscribe");
    }
}
