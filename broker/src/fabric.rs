//! The node's side of the embedded rumqttd router.
//!
//! Owns: the router thread and its configuration; the ingress threads that feed
//! device publishes (and presence) into the router with rumqttd's blocking
//! `LinkTx::send`, so no tokio worker ever blocks; the single device-bound link
//! (`devices/+/commands`, `devices/+/cert/response/#`) whose messages are
//! demultiplexed to device sessions through the
//! [`Registry`]; the `kumo/ownership/#` link that keeps the node's [`Ownership`]
//! map current; and on-demand links for service and integration sessions. No
//! per-device link or filter ever exists in the router, and no catch-all one:
//! a filter's log holds up to `broker.router_log_mib` of what it matched, so a
//! `#` filter nobody reads would keep a copy of all traffic for nothing. A
//! publish no filter matches is dropped by the router and the link stays open
//! (test `a_publish_no_filter_matches_leaves_the_ingress_open`).
//! Every application message passes [`Fabric::publish`], which keeps retained
//! messages in the node's [`RetainedStore`] and stamps what the router would
//! forget (see [`crate::message`]).

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use rumqttd::local::{LinkBuilder, LinkError, LinkRx, LinkTx};
use rumqttd::protocol::Packet;
use rumqttd::{Notification, Router, RouterConfig};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::message::Message;
use crate::metrics::Metrics;
use crate::ownership::Ownership;
use crate::registry::{Outbound, Registry};
use crate::retained::RetainedStore;
use crate::BrokerError;

/// The filter carrying every command to this node.
pub const COMMANDS_FILTER: &str = "devices/+/commands";
/// The filter carrying every certificate renewal response to this node
/// (`devices/{id}/cert/response` and the MQTT 5 response topics below it).
pub const CERT_RESPONSE_FILTER: &str = "devices/+/cert/response/#";
/// Every device-bound message reaches the node through these.
pub const DEVICE_BOUND_FILTERS: [&str; 2] = [COMMANDS_FILTER, CERT_RESPONSE_FILTER];

type LinkFactory = dyn Fn(&str) -> Result<(LinkTx, LinkRx), BrokerError> + Send + Sync;

/// Handles to the router shared by all sessions.
#[derive(Clone)]
pub struct Fabric {
    ingress: Arc<[mpsc::Sender<Packet>]>,
    links: Arc<LinkFactory>,
    retained: Arc<RetainedStore>,
}

/// Segments of a filter's log (`broker.router_log_mib` is split among them).
const LOG_SEGMENTS: usize = 8;

fn router_config(log_mib: usize) -> RouterConfig {
    // rumqttd's Config::default() is all zeros; these are sized for a handful of
    // fleet-level links, not one link per device. A link gets at most
    // `max_outgoing_packet_count` messages per router turn while the ingress
    // links append whole batches: at fleet rates a reader moving a few hundred
    // per turn falls behind and its cursor is overrun (readings lost after the
    // device's PUBACK). Large turns keep the bridge's link at the head of the
    // log; the segments give it a few seconds of slack on top, and the node's
    // ingress pressure (see `pressure`) holds devices long before that.
    RouterConfig {
        max_connections: 4096,
        max_outgoing_packet_count: 8192,
        max_segment_size: (log_mib * 1024 * 1024 / LOG_SEGMENTS).max(1),
        max_segment_count: LOG_SEGMENTS,
        ..RouterConfig::default()
    }
}

impl Fabric {
    /// Spawns the router, the ingress threads, the command demultiplexer and
    /// the ownership feed reader.
    pub async fn start(
        node_id: &str,
        ingress_threads: usize,
        router_log_mib: usize,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        ownership: Arc<Ownership>,
        shutdown: CancellationToken,
    ) -> Result<Fabric, BrokerError> {
        let router_tx = Router::new(0, router_config(router_log_mib)).spawn();
        let links: Arc<LinkFactory> = Arc::new(move |client_id: &str| {
            // LinkError is large; keep only its message.
            let (tx, rx, _ack) = LinkBuilder::new(client_id, router_tx.clone())
                .build()
                .map_err(|e| BrokerError::Router(format!("opening link {client_id}: {e}")))?;
            Ok((tx, rx))
        });
        let node = node_id.to_string();
        let factory = links.clone();
        let (ingress, command_rx, ownership_rx) = tokio::task::spawn_blocking(move || {
            let mut senders = Vec::with_capacity(ingress_threads);
            for i in 0..ingress_threads {
                let (tx, _rx) = factory(&format!("kumo-{node}-ingress-{i}"))?;
                let (send, recv) = mpsc::channel::<Packet>(4096);
                std::thread::Builder::new()
                    .name(format!("kumo-ingress-{i}"))
                    .spawn(move || ingress_loop(tx, recv))
                    .map_err(|e| BrokerError::Router(format!("spawning an ingress thread: {e}")))?;
                senders.push(send);
            }
            let (mut cmd_tx, cmd_rx) = factory(&format!("kumo-{node}-commands"))?;
            for filter in DEVICE_BOUND_FILTERS {
                cmd_tx.subscribe(filter)?;
            }
            // Subscribed before any client can connect, so no announcement is missed.
            let (mut own_tx, own_rx) = factory(&format!("kumo-{node}-ownership"))?;
            own_tx.subscribe(kumo_contract::ownership::FILTER)?;
            Ok::<_, BrokerError>((senders, cmd_rx, own_rx))
        })
        .await
        .map_err(|e| BrokerError::Router(e.to_string()))??;
        tokio::spawn(demux_commands(
            command_rx,
            registry,
            metrics,
            shutdown.clone(),
        ));
        let fabric = Fabric {
            ingress: ingress.into(),
            links,
            retained: Arc::default(),
        };
        tokio::spawn(follow_ownership(
            ownership_rx,
            ownership,
            fabric.clone(),
            node_id.to_string(),
            shutdown,
        ));
        Ok(fabric)
    }

    /// Publishes `message`: a RETAIN=1 message updates the retained store at
    /// once, then the stamped message is queued for the router. Messages with
    /// the same `key` (a client id) take the same ingress thread, so one
    /// client's messages stay in order. `origin` is the publishing client id
    /// where No Local may need it.
    pub async fn publish(&self, key: &str, message: Message, origin: Option<&str>) -> bool {
        self.retained.apply(&message);
        let (publish, properties) = message.into_routed(origin);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let idx = (h.finish() % self.ingress.len() as u64) as usize;
        self.ingress[idx]
            .send(Packet::Publish(publish, properties))
            .await
            .is_ok()
    }

    /// The node's retained messages.
    pub fn retained(&self) -> &RetainedStore {
        &self.retained
    }

    /// Opens a router link for a service or integration session (blocking work on
    /// the blocking pool).
    pub async fn open_link(&self, client_id: String) -> Result<(LinkTx, LinkRx), BrokerError> {
        let links = self.links.clone();
        tokio::task::spawn_blocking(move || links(&client_id))
            .await
            .map_err(|e| BrokerError::Router(e.to_string()))?
    }
}

impl From<LinkError> for BrokerError {
    fn from(e: LinkError) -> Self {
        BrokerError::Router(e.to_string())
    }
}

/// Sends a packet on a router link from the blocking pool.
pub async fn send_on_link(tx: Arc<std::sync::Mutex<LinkTx>>, packet: Packet) {
    let _ = tokio::task::spawn_blocking(move || {
        let mut tx = tx.lock().unwrap_or_else(|p| p.into_inner());
        // `send` is an async fn without await points: one poll runs it to completion.
        tx.send(packet).now_or_never()
    })
    .await;
}

fn ingress_loop(mut tx: LinkTx, mut rx: mpsc::Receiver<Packet>) {
    while let Some(packet) = rx.blocking_recv() {
        // Blocks on the router's bounded channel: back-pressure reaches sessions
        // through the bounded ingress queue.
        if let Some(Err(e)) = tx.send(packet).now_or_never() {
            tracing::error!(error = %e, "router ingress link closed");
            return;
        }
    }
}

/// Reads a node-internal router link until it closes or `shutdown`, handing
/// every forwarded publish to `on_forward` (and waking the link when the
/// router asks).
async fn follow_link(
    mut rx: LinkRx,
    name: &'static str,
    shutdown: CancellationToken,
    mut on_forward: impl FnMut(rumqttd::protocol::Publish, Option<rumqttd::protocol::PublishProperties>),
) {
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            n = rx.next() => n,
        };
        match next {
            Ok(Some(Notification::Forward(f))) => on_forward(f.publish, f.properties),
            Ok(Some(Notification::Unschedule)) => {
                if rx.wake().await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, link = name, "router link closed");
                return;
            }
        }
    }
}

/// Demultiplexes device-bound messages (`devices/{id}/…`) to the device
/// sessions by id; each session's own subscriptions decide what it gets.
async fn demux_commands(
    rx: LinkRx,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    follow_link(rx, "commands", shutdown, |publish, properties| {
        let at = Instant::now();
        // devices/{id}/…: the id is the second level.
        let id = std::str::from_utf8(&publish.topic)
            .ok()
            .and_then(|t| t.split('/').nth(1));
        let Some(sender) = id.and_then(|id| registry.sender(id)) else {
            return;
        };
        let msg = Box::new(Outbound {
            publish,
            properties,
            at,
            redelivery: None,
            decided: None,
        });
        if sender.try_send(msg).is_err() {
            metrics
                .dropped_outbound
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    })
    .await;
}

/// Applies the bridge's ownership announcements to the node's map, in order,
/// and echoes each sync marker on `kumo/nodes/{node}/ownership` once what
/// came before it is applied (the bridge waits for that before a removed home
/// member is told they are out).
async fn follow_ownership(
    rx: LinkRx,
    ownership: Arc<Ownership>,
    fabric: Fabric,
    node: String,
    shutdown: CancellationToken,
) {
    let applied = kumo_contract::ownership::applied_topic(&node);
    follow_link(rx, "ownership", shutdown, |publish, _| {
        let topic = std::str::from_utf8(&publish.topic).unwrap_or_default();
        if !ownership.apply(topic, &publish.payload) {
            tracing::warn!(topic, "malformed ownership announcement ignored");
            return;
        }
        if topic == kumo_contract::ownership::SYNC {
            let echo = rumqttd::protocol::Publish::new(
                bytes::Bytes::from(applied.clone()),
                publish.payload.clone(),
                false,
            );
            let (fabric, key) = (fabric.clone(), format!("kumo-{node}-ownership"));
            let mut echo = Message::from_node(echo);
            // A marker lost with a connection is sent again: QoS 0 suffices.
            echo.qos = rumqttd::protocol::QoS::AtMostOnce;
            // The map is already updated; only the echo waits for the ingress.
            tokio::spawn(async move {
                fabric.publish(&key, echo, None).await;
            });
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use rumqttd::protocol::{Publish, QoS};

    use super::*;

    fn message(topic: &'static str) -> Message {
        let mut m = Message::from_node(Publish::new(topic, "x", false));
        m.qos = QoS::AtMostOnce;
        m
    }

    /// The node has no catch-all filter: a device publish nobody subscribes to
    /// (before the bridge's first subscription, or a topic no service reads)
    /// must not close the ingress link the node's other publishes share.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_publish_no_filter_matches_leaves_the_ingress_open() {
        let shutdown = CancellationToken::new();
        let fabric = Fabric::start(
            "t",
            1,
            1,
            Arc::default(),
            Arc::default(),
            Arc::default(),
            shutdown.clone(),
        )
        .await
        .unwrap();
        let (mut tx, mut rx) = fabric.open_link("reader".into()).await.unwrap();
        tokio::task::spawn_blocking(move || {
            tx.subscribe("devices/+/sensors")
                .map(|_| tx)
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap()
        .unwrap();
        // The subscription is in place before anything is published.
        tokio::time::timeout(Duration::from_secs(10), async {
            while !matches!(rx.next().await.unwrap(), Some(Notification::DeviceAck(_))) {}
        })
        .await
        .expect("SUBACK");
        for topic in ["devices/a/nobody", "devices/a/sensors"] {
            assert!(fabric.publish("a", message(topic), None).await, "{topic}");
        }
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match rx.next().await.unwrap() {
                    Some(Notification::Forward(f)) => return f.publish.topic,
                    Some(Notification::Unschedule) => rx.wake().await.unwrap(),
                    _ => {}
                }
            }
        })
        .await
        .expect("the publish after the unmatched one is delivered");
        assert_eq!(&got[..], b"devices/a/sensors");
        shutdown.cancel();
    }
}
