//! Messages from one node: validated, stored, and only then acknowledged.
//!
//! Readings go to the shared [`ReadingWriter`] straight from the event loop
//! (its bounded buffer is the back-pressure). Presence, state, device acks and
//! meter properties go to this node's control shards ([`super::reports`]),
//! in arrival order per device. Every
//! QoS 1 message then waits in the ack queue until what it carried is
//! committed; a message that could not be stored is never acknowledged, so the
//! node keeps it in the bridge's session and delivers it again. A malformed
//! message is counted, logged and acknowledged (it would never get better).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use kumo_contract::topic::{parse_device_topic, Leaf};
use kumo_contract::DeviceId;
use rumqttc::{AsyncClient, QoS};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::node::NodeContext;
use super::payload::{self, PayloadError};
use super::reports::{Report, ReportShards};
use super::MqttStatus;
use crate::ingest::{Reading, ReadingWriter};
use crate::live::{LiveEvent, LiveFeed};

/// QoS 1 messages waiting for their acknowledgement per node.
const ACK_QUEUE: usize = 65_536;

/// Control-lane messages waiting for the report shards per node: twice the
/// node's receive window for a service session (16,384).
const QUEUED: usize = 32_768;

/// A QoS 1 message and what must be durable before it is acknowledged.
struct Pending {
    publish: rumqttc::Publish,
    waits: Vec<oneshot::Receiver<()>>,
    /// The connection it arrived on; a packet id means nothing on another.
    generation: u64,
    arrived: Instant,
}

/// Who sends a lane's PUBACKs.
pub(crate) enum Acker {
    /// The control connection's rumqttc client.
    Client(AsyncClient),
    /// The data lane's writer ([`super::data_lane`]): a packet id with the
    /// connection it came on, which the writer drops if that connection has
    /// ended (on the next one the id names another message).
    Lane(mpsc::Sender<super::data_lane::Release>),
}

impl Acker {
    /// Sends the PUBACK of `p`, which arrived on connection `generation`;
    /// `false` once the connection's side has stopped.
    async fn ack(&self, generation: u64, p: &rumqttc::Publish) -> bool {
        match self {
            Acker::Client(client) => client.ack(p).await.is_ok(),
            Acker::Lane(tx) => tx.send((generation, p.pkid)).await.is_ok(),
        }
    }
}

/// The event loop's side of the pipeline.
#[derive(Clone)]
pub(crate) struct Inbound {
    /// Index of the node these messages come from.
    node: usize,
    writer: ReadingWriter,
    control: ReportShards,
    acks: mpsc::Sender<Pending>,
    status: Arc<MqttStatus>,
    generation: Arc<AtomicU64>,
    live: LiveFeed,
    /// Set on the control lane: its messages are queued here and handled by a
    /// task of their own, so the event loop does not wait for the report
    /// shards and keeps answering keepalive while the database is slow. They
    /// are QoS 1, and the node sends no more than the bridge's receive window
    /// unacknowledged, so [`QUEUED`] is not reached unless devices send QoS 0
    /// state or acks in bulk; then the event loop waits, as on the data lane.
    queue: Option<mpsc::Sender<(u64, rumqttc::Publish)>>,
    /// On the control lane (its figures are counted apart from the data lane's).
    on_control: bool,
}

impl Inbound {
    /// Starts the ack task. The token is cancelled
    /// once the ack task has finished after [`Inbound::close`].
    pub(crate) fn start(
        ctx: &NodeContext,
        acker: Acker,
        generation: Arc<AtomicU64>,
        queued: bool,
    ) -> (Inbound, CancellationToken, Vec<JoinHandle<()>>) {
        let (ack_tx, ack_rx) = mpsc::channel(ACK_QUEUE);
        let done = CancellationToken::new();
        let mut handles = vec![tokio::spawn(acknowledge(
            ack_rx,
            acker,
            generation.clone(),
            ctx.status.clone(),
            queued,
            done.clone(),
        ))];
        let mut inbound = Inbound {
            node: ctx.idx,
            writer: ctx.writer.clone(),
            control: ctx.reports.clone(),
            acks: ack_tx,
            status: ctx.status.clone(),
            generation,
            live: ctx.commands.live().clone(),
            queue: None,
            on_control: queued,
        };
        if queued {
            let (tx, mut rx) = mpsc::channel(QUEUED);
            let worker = inbound.clone();
            handles.push(tokio::spawn(async move {
                while let Some((generation, p)) = rx.recv().await {
                    worker.handle_from(generation, p).await;
                }
            }));
            inbound.queue = Some(tx);
        }
        (inbound, done, handles)
    }

    /// Stops taking messages; queued ones finish and are acknowledged.
    pub(crate) fn close(self) {}

    /// Handles one message from the node (queues it, on a queued connection).
    pub(crate) async fn handle(&self, p: rumqttc::Publish) {
        let generation = self.generation.load(Relaxed);
        match &self.queue {
            // Fails only once the worker has stopped (shutdown): the message
            // stays unacknowledged in the node's session.
            Some(queue) => {
                let _ = queue.send((generation, p)).await;
            }
            None => self.handle_from(generation, p).await,
        }
    }

    /// Handles a message that arrived on connection `generation`.
    async fn handle_from(&self, generation: u64, p: rumqttc::Publish) {
        let waits = match self.dispatch(&p).await {
            Ok(Some(waits)) => waits,
            // The writer or control task has stopped: leave it unacknowledged.
            Ok(None) => return,
            Err(e) => {
                self.status.malformed.fetch_add(1, Relaxed);
                tracing::warn!(topic = %p.topic, error = %e, "dropping a malformed message");
                Vec::new()
            }
        };
        if p.qos != QoS::AtMostOnce {
            let pending = Pending {
                publish: p,
                waits,
                generation,
                arrived: Instant::now(),
            };
            let lane = self.status.lane(self.on_control);
            lane.unacknowledged.fetch_add(1, Relaxed);
            if self.acks.send(pending).await.is_err() {
                lane.unacknowledged.fetch_sub(1, Relaxed);
            }
        }
    }

    /// Stores or queues what `p` carries; returns what to wait for before
    /// acknowledging it, or `None` if the pipeline has stopped.
    async fn dispatch(
        &self,
        p: &rumqttc::Publish,
    ) -> Result<Option<Vec<oneshot::Receiver<()>>>, PayloadError> {
        let now = OffsetDateTime::now_utc();
        if let Some(node) = kumo_contract::nodes::parse_epoch_topic(&p.topic) {
            let started = payload::epoch(&p.payload, node)?;
            let control = Report::NodeStarted(node.to_string(), started);
            let (tx, rx) = oneshot::channel();
            if !self.control.send(self.node, control, tx).await {
                return Ok(None);
            }
            return Ok(Some(vec![rx]));
        }
        let Some((device, leaf)) = parse_device_topic(&p.topic) else {
            return Err(PayloadError::Range("not a device topic".into()));
        };
        let body = &p.payload[..];
        let mut waits = Vec::new();
        let acked = p.qos != QoS::AtMostOnce;
        let control = match leaf {
            Leaf::Sensor(sensor) => {
                let (val, at) = payload::sensor(body, now)?;
                let values = [(sensor.code(), val)].into_iter();
                let pushed = self.push(&device, values, at, acked.then_some(&mut waits));
                return Ok(pushed.await.then_some(waits));
            }
            Leaf::Sensors => {
                let (readings, at) = payload::sensors(body, now)?;
                let values = readings.into_iter().map(|(s, val)| (s.code(), val));
                let pushed = self.push(&device, values, at, acked.then_some(&mut waits));
                return Ok(pushed.await.then_some(waits));
            }
            Leaf::Meter => {
                let m = payload::meter(body, now)?;
                let values = m.readings.iter().copied();
                if !self
                    .push(&device, values, m.at, acked.then_some(&mut waits))
                    .await
                {
                    return Ok(None);
                }
                Report::Meter(device, m.object, m.properties, m.at)
            }
            Leaf::Presence => Report::Presence(device, payload::presence(body)?),
            Leaf::State => Report::State(device, Box::new(payload::state(body)?)),
            Leaf::Acks => {
                let (id, ack) = payload::ack(body)?;
                Report::Ack(device, id, ack)
            }
            // Not subscribed here: commands are the bridge's own, and
            // certificate renewal has its own MQTT 5 link (`crate::renewal`).
            Leaf::Commands | Leaf::CertRequest | Leaf::CertResponse => return Ok(Some(waits)),
        };
        let (tx, rx) = oneshot::channel();
        if !self.control.send(self.node, control, tx).await {
            return Ok(None);
        }
        waits.push(rx);
        Ok(Some(waits))
    }

    /// Passes a message's `values` (sensor, value) to the live stream and
    /// queues them for the writer together; with `waits` (a QoS 1 message),
    /// also what fires once all are committed. QoS 0 readings need no
    /// completion: nothing acknowledges them. `false` if the writer has stopped.
    async fn push(
        &self,
        device: &DeviceId,
        values: impl Iterator<Item = (&'static str, f64)>,
        at: OffsetDateTime,
        waits: Option<&mut Vec<oneshot::Receiver<()>>>,
    ) -> bool {
        let readings: Vec<Reading> = values
            .map(|(sensor, val)| {
                self.live.publish(LiveEvent::Reading {
                    device: device.clone(),
                    sensor,
                    val,
                    at,
                });
                Reading {
                    device_id: device.clone(),
                    sensor,
                    val,
                    at,
                }
            })
            .collect();
        if readings.is_empty() {
            return true;
        }
        let durable = waits.map(|waits| {
            let (tx, rx) = oneshot::channel();
            waits.push(rx);
            tx
        });
        self.writer.push(readings, durable).await.is_ok()
    }
}

/// Acknowledges messages in arrival order once each is durable.
async fn acknowledge(
    mut rx: mpsc::Receiver<Pending>,
    acker: Acker,
    generation: Arc<AtomicU64>,
    status: Arc<MqttStatus>,
    control: bool,
    done: CancellationToken,
) {
    let lane = status.lane(control);
    while let Some(p) = rx.recv().await {
        let mut durable = true;
        for w in p.waits {
            durable &= w.await.is_ok();
        }
        lane.unacknowledged.fetch_sub(1, Relaxed);
        let current = p.generation == generation.load(Relaxed);
        if durable && current {
            if !acker.ack(p.generation, &p.publish).await {
                break;
            }
            let waited = u64::try_from(p.arrived.elapsed().as_micros()).unwrap_or(u64::MAX);
            lane.ack_wait_micros.fetch_add(waited, Relaxed);
            lane.acknowledged.fetch_add(1, Relaxed);
        }
    }
    // Whatever is left stays unacknowledged in the node's session.
    rx.close();
    while rx.try_recv().is_ok() {
        lane.unacknowledged.fetch_sub(1, Relaxed);
    }
    done.cancel();
}
