//! The bridge's MQTT side: two persistent-session connections per broker
//! node, ingest of everything devices report, and delivery of commands.
//!
//! - [`node`] drives the control connection (rumqttc): subscribes, hands
//!   messages to [`inbound`], matches PUBACKs of command publishes to command
//!   ids.
//! - [`data_lane`] is the data connection (readings), a subscriber of the
//!   bridge's own that writes PUBACKs while it reads.
//! - [`inbound`] validates payloads, feeds the [`ReadingWriter`] and hands
//!   presence, state and acks to [`control`] (sharded by device, many reports
//!   per transaction); a QoS 1 message is acknowledged only once what it
//!   carried is committed.
//! - [`delivery`] is the [`CommandSink`](crate::CommandSink): it routes each
//!   command to the node holding its device (learned from presence), and
//!   resends unacknowledged ones while their device is online, until their
//!   TTL; it also records the node's PUBACKs as sends, in batches.
//!
//! This module must not decide command states itself: every transition goes
//! through [`CommandLog`](crate::CommandLog).

mod affinity;
mod data_lane;
mod delivery;
mod inbound;
mod node;
mod ownership;
mod ownership_sync;
mod queue;

pub use ownership_sync::OwnershipSync;
pub mod payload;
mod reports;
mod rounds;
pub mod tls;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::commands::CommandLog;
use crate::ingest::ReadingWriter;
use crate::settings::MqttSettings;

pub use delivery::{MqttSink, Outbox};

/// Device presence, as nodes announce it (retained).
pub const PRESENCE: &str = "devices/+/presence";

/// What the bridge's control connection subscribes to on every node (QoS 1):
/// the small, latency-sensitive messages. Commands go out on it too.
pub const CONTROL_SUBSCRIPTIONS: [&str; 5] = [
    "devices/+/state",
    PRESENCE,
    "devices/+/acks",
    kumo_contract::nodes::EPOCH_FILTER,
    kumo_contract::ownership::APPLIED_FILTER,
];

/// What the bridge's data connection (client id `{client_id}.data`, a lane of
/// the same service identity) subscribes to: the bulk of readings. A backlog
/// here never delays a command, an ack or a presence change.
pub const DATA_SUBSCRIPTIONS: [&str; 3] = [
    "devices/+/sensors/+",
    "devices/+/sensors",
    "devices/+/meter",
];

/// Why the MQTT side could not start.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("bridge.mqtt TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("bridge.mqtt.nodes entry {node:?} is not host:port")]
    Node { node: String },
    #[error("bridge.mqtt.ca, cert and key must all be set")]
    NotConfigured,
}

/// One node's connection state, for `/readyz` and `/metrics`.
#[derive(Debug)]
pub struct NodeStatus {
    /// `host:port` as configured.
    pub addr: String,
    connected: AtomicBool,
    /// The node's id, learned from the presence it publishes.
    node_id: Mutex<Option<String>>,
}

impl NodeStatus {
    /// Whether the connection is up (CONNACK received, no error since).
    pub fn connected(&self) -> bool {
        self.connected.load(Relaxed)
    }

    /// The node id its presence messages carry, once seen.
    pub fn node_id(&self) -> Option<String> {
        self.node_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn learn_node_id(&self, id: &str) {
        let mut slot = self.node_id.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_deref() != Some(id) {
            *slot = Some(id.to_string());
        }
    }
}

/// Live state and counters of the MQTT side.
#[derive(Debug)]
pub struct MqttStatus {
    /// One entry per configured node, in order (the first is the default).
    pub nodes: Vec<NodeStatus>,
    /// Messages received from all nodes.
    pub received: AtomicU64,
    /// Messages dropped because their payload or topic was invalid.
    pub malformed: AtomicU64,
    /// Command publishes acknowledged by a node.
    pub commands_sent: AtomicU64,
    /// Established connections to a node (either lane) that failed.
    pub connections_lost: AtomicU64,
    /// Device reports (state, presence, acks, meter properties) committed.
    pub reports_stored: AtomicU64,
    /// Transactions that committed them, and the microseconds they took.
    pub report_batches: AtomicU64,
    pub report_batch_micros: AtomicU64,
    /// The control connections' QoS 1 messages, over all nodes.
    pub control: LaneStatus,
    /// The data connections' (readings, meter reports).
    pub data: LaneStatus,
    /// The reading writer's counters.
    pub readings: Arc<crate::ingest::IngestStats>,
}

/// One lane's QoS 1 messages, over all nodes: acknowledged in arrival order
/// once durable, so one slow message holds back those behind it.
#[derive(Debug, Default)]
pub struct LaneStatus {
    /// Received and not yet acknowledged (waiting for the database, or for
    /// the messages before them).
    pub unacknowledged: AtomicU64,
    /// Acknowledged, and the microseconds from their arrival to their
    /// acknowledgement.
    pub acknowledged: AtomicU64,
    pub ack_wait_micros: AtomicU64,
}

impl MqttStatus {
    pub(crate) fn new(addrs: &[String]) -> Self {
        Self {
            nodes: addrs
                .iter()
                .map(|a| NodeStatus {
                    addr: a.clone(),
                    connected: AtomicBool::new(false),
                    node_id: Mutex::new(None),
                })
                .collect(),
            received: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            commands_sent: AtomicU64::new(0),
            connections_lost: AtomicU64::new(0),
            reports_stored: AtomicU64::new(0),
            report_batches: AtomicU64::new(0),
            report_batch_micros: AtomicU64::new(0),
            control: LaneStatus::default(),
            data: LaneStatus::default(),
            readings: Arc::default(),
        }
    }

    /// The control lane's figures, or the data lane's.
    pub(crate) fn lane(&self, control: bool) -> &LaneStatus {
        if control {
            &self.control
        } else {
            &self.data
        }
    }

    /// Whether every node is connected.
    pub fn all_connected(&self) -> bool {
        self.nodes.iter().all(NodeStatus::connected)
    }
}

/// The running MQTT side.
#[derive(Debug)]
pub struct RunningMqtt {
    /// Connection state and counters.
    pub status: Arc<MqttStatus>,
    /// How far each node has applied the ownership feed.
    pub ownership: Arc<OwnershipSync>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningMqtt {
    /// Waits (up to `limit`) for every MQTT task to end after shutdown.
    pub async fn wait(self, limit: Duration) {
        let all = futures_join(self.tasks);
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!("MQTT tasks still running after the shutdown deadline");
        }
    }
}

async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

/// Starts the MQTT side: connections to every node, the inbound pipeline and
/// command delivery. `outbox` is the receiving end of the [`MqttSink`] the
/// command log was built with.
pub fn start(
    settings: &MqttSettings,
    pool: Pool,
    commands: Arc<CommandLog>,
    writer: ReadingWriter,
    outbox: Outbox,
    shutdown: CancellationToken,
) -> Result<RunningMqtt, MqttError> {
    let (Some(ca), Some(cert), Some(key)) = (&settings.ca, &settings.cert, &settings.key) else {
        return Err(MqttError::NotConfigured);
    };
    let tls = tls::client_config(ca, cert, key)?;
    let status = Arc::new(MqttStatus {
        readings: writer.stats().clone(),
        ..MqttStatus::new(&settings.nodes)
    });
    let affinity = Arc::new(affinity::Affinity::default());
    let mut tasks = Vec::new();
    // Tells every node which account owns each device (integrations' scope).
    let (ownership, announcer) = ownership::start(
        pool.clone(),
        status.clone(),
        Duration::from_millis(settings.ownership_poll_ms),
        shutdown.clone(),
    );
    let sync = ownership.sync();
    tasks.push(announcer);
    let (reports, shard_tasks) = reports::ReportShards::start(reports::ShardContext {
        pool: pool.clone(),
        commands: commands.clone(),
        affinity: affinity.clone(),
        status: status.clone(),
        routed: outbox.tx.clone(),
    });
    tasks.extend(shard_tasks);
    let mut publishers = Vec::new();
    for (idx, addr) in settings.nodes.iter().enumerate() {
        let (host, port) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| MqttError::Node { node: addr.clone() })?;
        let ctx = node::NodeContext {
            idx,
            host,
            port,
            settings: settings.clone(),
            tls: tls::for_node(&tls, ca, status.clone(), idx)?,
            pool: pool.clone(),
            commands: commands.clone(),
            writer: writer.clone(),
            status: status.clone(),
            reports: reports.clone(),
            ownership: ownership.clone(),
            shutdown: shutdown.clone(),
        };
        let (publisher, handles) = node::spawn(ctx);
        publishers.push(publisher);
        tasks.extend(handles);
    }
    // The shards end once every node's pipeline has dropped its handle.
    drop(reports);
    let router = delivery::Router::new(
        publishers,
        status.clone(),
        affinity,
        pool,
        commands,
        Duration::from_secs(settings.resend_after_secs),
        Duration::from_millis(settings.online_settle_ms),
    );
    tasks.push(tokio::spawn(router.clone().run(outbox, shutdown.clone())));
    tasks.push(tokio::spawn(router.sweep(shutdown)));
    Ok(RunningMqtt {
        status,
        ownership: sync,
        tasks,
    })
}
