//! The report side of the inbound pipeline: presence, state reports, device
//! acks and meter properties from every node, stored by a few shard tasks.
//!
//! A device always maps to the same shard, whichever node its reports come
//! from, so they are applied in arrival order, while different devices
//! proceed in parallel. The shards are shared by all nodes and there are at
//! most half as many as database connections: with 15 nodes, per-node shards
//! held every connection of the pool in report transactions, and the reading
//! writer and REST calls waited for one (readings fell minutes behind). A shard
//! keeps taking messages into its queue while it applies a batch; device acks
//! go ahead of other devices' reports there, each device's order kept
//! ([`ShardQueue`]). It takes what queued up (up to [`MAX_BATCH`]) and applies it
//! in order in **one** transaction (a lone message runs without one: each of
//! its statements is atomic on its own), writing presence, state and meter reports of
//! many devices per statement ([`Rounds`]); only after the commit does it announce
//! what changed (live stream, waiting requests, delivery of queued commands)
//! and release the messages for acknowledgement. If a batch fails, its
//! messages are retried one per transaction, so one bad report cannot hold
//! the others back; a message that still fails stays unacknowledged and the
//! node delivers it again. This module must not decide command states itself:
//! acks go through [`CommandLog`].

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use deadpool_postgres::{GenericClient, Object, Pool};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::affinity::Affinity;
use super::delivery::Routed;
use super::payload::{Presence as PresenceReport, StateReport};
use super::queue::{Queued, ShardQueue};
use super::rounds::Rounds;
use super::MqttStatus;
use crate::commands::{Ack, CommandLog, Finished};
use kumo_contract::appliance::echonet::Eoj;
use kumo_contract::DeviceId;

use crate::db::{DbError, Held};
use crate::device_state;
use crate::live::LiveEvent;
use crate::presence::{self, Presence};

/// Most shard tasks (each holds at most one database connection at a time).
const MAX_SHARDS: usize = 8;
/// Reports handed to a shard and not yet in its queue.
const SHARD_QUEUE: usize = 1_024;
/// Reports a shard's queue holds before the nodes' pipelines wait. The nodes
/// bound what a bridge holds unacknowledged (their receive window for it), so
/// this is reached only by devices sending QoS 0 state or acks in bulk.
const MAX_QUEUED: usize = 32_768;
/// Most messages applied in one transaction.
const MAX_BATCH: usize = 256;

/// What the control side applies, per device.
pub(crate) enum Report {
    Presence(DeviceId, PresenceReport),
    State(DeviceId, Box<StateReport>),
    Ack(DeviceId, Uuid, Ack),
    /// A gateway's report of its smart meter (no object) or of another
    /// ECHONET Lite object it reaches.
    Meter(DeviceId, Option<Eoj>, Vec<(u8, String)>, OffsetDateTime),
    /// A node (named) started at this time: devices it announced earlier are gone.
    NodeStarted(String, OffsetDateTime),
}

impl Report {
    /// What picks the shard: the device, or the node for a node's epoch.
    fn device(&self) -> &str {
        match self {
            Self::Presence(d, _)
            | Self::State(d, _)
            | Self::Ack(d, _, _)
            | Self::Meter(d, _, _, _) => d.as_str(),
            Self::NodeStarted(node, _) => node,
        }
    }
}

/// A message, the index of the node it came from, and who to tell once it
/// is committed.
type Job = (usize, Report, oneshot::Sender<()>);

/// A device's ack goes ahead of other devices' reports (see [`ShardQueue`]),
/// and so does a meter report: it comes on a node's data lane, whose messages
/// are acknowledged in arrival order, so while it waits behind a storm of
/// presence and state reports, up to a receive window of readings behind it
/// (stored already) wait for their acknowledgement too, and the node sends
/// no more readings.
impl Queued for Job {
    fn key(&self) -> &str {
        self.1.device()
    }

    fn urgent(&self) -> bool {
        matches!(self.1, Report::Ack(..) | Report::Meter(..))
    }
}

/// The nodes' handle on the shards; the shard tasks end when every clone is
/// dropped.
#[derive(Clone)]
pub(crate) struct ReportShards {
    shards: Vec<mpsc::Sender<Job>>,
}

/// What the shards share with the rest of the MQTT side.
pub(crate) struct ShardContext {
    pub pool: Pool,
    pub commands: Arc<CommandLog>,
    pub affinity: Arc<Affinity>,
    pub status: Arc<MqttStatus>,
    pub routed: mpsc::Sender<Routed>,
}

impl ReportShards {
    /// Starts the shard tasks: half as many as the pool has connections
    /// (at least one, at most [`MAX_SHARDS`]).
    pub(crate) fn start(ctx: ShardContext) -> (Self, Vec<JoinHandle<()>>) {
        let count = shard_count(ctx.pool.status().max_size);
        let shard = Arc::new(Shard {
            pool: ctx.pool,
            commands: ctx.commands,
            affinity: ctx.affinity,
            status: ctx.status,
            routed: ctx.routed,
        });
        let (mut shards, mut handles) = (Vec::new(), Vec::new());
        for _ in 0..count {
            let (tx, rx) = mpsc::channel(SHARD_QUEUE);
            shards.push(tx);
            handles.push(tokio::spawn(shard.clone().run(rx)));
        }
        (Self { shards }, handles)
    }

    /// Queues `control` from node `node` on its device's shard; `done` fires
    /// after it is committed. `false` once the shards have stopped.
    pub(crate) async fn send(
        &self,
        node: usize,
        control: Report,
        done: oneshot::Sender<()>,
    ) -> bool {
        let shard = shard_of(control.device(), self.shards.len());
        self.shards[shard].send((node, control, done)).await.is_ok()
    }
}

/// Half the pool's connections, so the reading writer and REST calls always
/// find one free; at least one shard, at most [`MAX_SHARDS`].
fn shard_count(pool_size: usize) -> usize {
    (pool_size / 2).clamp(1, MAX_SHARDS)
}

/// FNV-1a: stable across runs and cheap for short ids.
fn shard_of(device: &str, shards: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in device.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // The remainder is below `shards`, a usize.
    (h % shards.max(1) as u64) as usize
}

/// What a shard works with (shared by all shards).
struct Shard {
    pool: Pool,
    commands: Arc<CommandLog>,
    affinity: Arc<Affinity>,
    status: Arc<MqttStatus>,
    routed: mpsc::Sender<Routed>,
}

/// What to announce once a batch has committed.
enum Effect {
    Live(LiveEvent),
    Finished(Box<Finished>),
    /// An ack that changed nothing here.
    Unchanged(Uuid),
    Online(Routed),
}

impl Shard {
    /// Takes jobs into its [`ShardQueue`] while it applies a batch, so the
    /// nodes' messages never wait for a transaction to reach the queue, and
    /// an ack that arrives during a storm of reports is taken next.
    ///
    /// Like the reading writer, a shard keeps its database connection while
    /// work is queued: under load hundreds of REST calls may wait for one from
    /// the shared pool (fleet run 26: up to 569), and a shard taking a fresh one
    /// per batch waited behind all of them, acks included. It gives the
    /// connection back once its queue has been empty for [`Held::IDLE`], and
    /// drops it after a failure.
    async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<Job>) {
        let mut queue = ShardQueue::default();
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut conn = Held::default();
        let mut open = true;
        loop {
            while queue.len() < MAX_QUEUED {
                match rx.try_recv() {
                    Ok(job) => queue.push(job),
                    Err(_) => break,
                }
            }
            if queue.is_empty() {
                if !open {
                    return;
                }
                match conn.next(&mut rx).await {
                    Some(job) => queue.push(job),
                    None => return,
                }
                continue;
            }
            queue.take(&mut batch, MAX_BATCH);
            let apply = self.apply_batch(&mut conn, &mut batch);
            tokio::pin!(apply);
            loop {
                tokio::select! {
                    biased;
                    () = &mut apply => break,
                    job = rx.recv(), if open && queue.len() < MAX_QUEUED => match job {
                        Some(job) => queue.push(job),
                        None => open = false,
                    },
                }
            }
        }
    }

    /// Applies and empties `batch`, falling back to one transaction per
    /// message if the batch fails.
    async fn apply_batch(&self, conn: &mut Held, batch: &mut Vec<Job>) {
        let items: Vec<(usize, &Report)> = batch.iter().map(|(n, c, _)| (*n, c)).collect();
        let started = std::time::Instant::now();
        let outcome = self.apply_all(conn, &items).await;
        drop(items);
        match outcome {
            Ok(effects) => {
                self.stored(batch.len(), started);
                self.announce(effects).await;
                for (_, _, done) in batch.drain(..) {
                    let _ = done.send(());
                }
            }
            Err(e) if batch.len() > 1 => {
                tracing::warn!(error = ?e, reports = batch.len(),
                    "storing a batch of device reports failed; retrying them one by one");
                for (node, control, done) in batch.drain(..) {
                    let started = std::time::Instant::now();
                    match self.apply_all(conn, &[(node, &control)]).await {
                        Ok(effects) => {
                            self.stored(1, started);
                            self.announce(effects).await;
                            let _ = done.send(());
                        }
                        // Unacknowledged: the node delivers it again on the next connection.
                        Err(e) => tracing::warn!(device_id = control.device(), error = %e,
                            "storing a device report failed"),
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "storing a device report failed");
                batch.clear();
            }
        }
    }

    /// Counts `reports` committed in one go that began at `started`.
    fn stored(&self, reports: usize, started: std::time::Instant) {
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.status
            .reports_stored
            .fetch_add(reports as u64, Relaxed);
        self.status.report_batches.fetch_add(1, Relaxed);
        self.status.report_batch_micros.fetch_add(micros, Relaxed);
    }

    /// Applies `items` in order in one transaction. A single message needs
    /// none: each of its statements is atomic, and applying one again after
    /// a partial failure changes nothing more — this saves the BEGIN and
    /// COMMIT round trips when messages arrive one at a time.
    async fn apply_all(
        &self,
        conn: &mut Held,
        items: &[(usize, &Report)],
    ) -> Result<Vec<Effect>, DbError> {
        conn.run(&self.pool, async |client| {
            self.apply_on(client, items).await
        })
        .await
    }

    async fn apply_on(
        &self,
        client: &mut Object,
        items: &[(usize, &Report)],
    ) -> Result<Vec<Effect>, DbError> {
        let mut effects = Vec::new();
        if items.len() == 1 {
            self.apply(&*client, items, &mut effects).await?;
            return Ok(effects);
        }
        let tx = client.transaction().await?;
        self.apply(&tx, items, &mut effects).await?;
        tx.commit().await?;
        Ok(effects)
    }

    /// Applies `items` in order. Presence, state and ECHONET Lite reports
    /// are gathered and written many devices per statement (see
    /// [`Rounds`]), acks after the reports before them; what must see them
    /// first (a node's restart; an ECHONET Lite object's report of a
    /// device whose presence or state is still gathered, and those after
    /// it) writes them out before it runs.
    async fn apply(
        &self,
        tx: &impl GenericClient,
        items: &[(usize, &Report)],
        effects: &mut Vec<Effect>,
    ) -> Result<(), DbError> {
        let mut gathered = Gathered::default();
        let mut acks = Vec::new();
        for &(node, report) in items {
            // A flush (and a node's restart) comes after the acks before it;
            // gathered reports are written after them anyway.
            match report {
                Report::Presence(device, p) => {
                    self.status.nodes[node].learn_node_id(&p.node);
                    if self.affinity.record(device.as_str(), node, p.online, p.ts) {
                        if gathered.echonet.holds(device.as_str()) {
                            self.flush(tx, &mut acks, &mut gathered, effects).await?;
                        }
                        gathered.presence.push(device.as_str(), (device, p));
                    }
                }
                Report::State(device, s) => {
                    if gathered.echonet.holds(device.as_str()) {
                        self.flush(tx, &mut acks, &mut gathered, effects).await?;
                    }
                    gathered.state.push(device.as_str(), (device, &**s));
                }
                Report::Ack(device, id, ack) => acks.push((device, *id, ack)),
                // The meter's own properties touch no other report's rows:
                // gathered like presence, many meters per statement.
                Report::Meter(device, None, properties, at) => {
                    gathered
                        .meter
                        .push(device.as_str(), (device, properties.as_slice(), *at));
                }
                // An object behind a gateway: gathered too, but after the
                // gateway's presence and state before it and before those
                // after it (its first report creates an appliance).
                Report::Meter(device, Some(object), properties, at) => {
                    if gathered.holds(device.as_str()) {
                        self.flush(tx, &mut acks, &mut gathered, effects).await?;
                    }
                    gathered.echonet.push(
                        device.as_str(),
                        (device, *object, properties.as_slice(), *at),
                    );
                }
                Report::NodeStarted(name, started) => {
                    self.flush(tx, &mut acks, &mut gathered, effects).await?;
                    self.node_started(tx, node, name, *started, effects).await?;
                }
            }
        }
        self.flush(tx, &mut acks, &mut gathered, effects).await
    }

    /// Writes what is waiting, in the order the reports came in: the acks
    /// (each completion its own statement, none gathered with another
    /// report), then the gathered reports.
    async fn flush<'a>(
        &self,
        tx: &impl GenericClient,
        acks: &mut Vec<(&'a DeviceId, Uuid, &'a Ack)>,
        gathered: &mut Gathered<'a>,
        effects: &mut Vec<Effect>,
    ) -> Result<(), DbError> {
        self.complete_acks(tx, acks, effects).await?;
        self.write_gathered(tx, gathered, effects).await
    }

    /// Completes the commands of the acks gathered so far with their
    /// statements pipelined, so a batch of acks waits for one round trip, not
    /// one each (a storm's ack batches were that many round trips on a busy
    /// box). The server runs them in the order they are sent: with the
    /// statement prepared first, each completion sends its query when first
    /// polled, and `try_join_all` polls them first in the order given.
    async fn complete_acks(
        &self,
        tx: &impl GenericClient,
        acks: &mut Vec<(&DeviceId, Uuid, &Ack)>,
        effects: &mut Vec<Effect>,
    ) -> Result<(), DbError> {
        if acks.is_empty() {
            return Ok(());
        }
        self.commands.prepare_complete(tx).await?;
        let outcomes = futures_util::future::try_join_all(
            acks.iter()
                .map(|&(device, id, ack)| self.commands.complete_in(tx, device, id, ack)),
        )
        .await?;
        for ((_, id, _), outcome) in acks.drain(..).zip(outcomes) {
            effects.push(match outcome {
                Some(finished) => Effect::Finished(Box::new(finished)),
                None => Effect::Unchanged(id),
            });
        }
        Ok(())
    }

    /// Writes the gathered presence and state reports, a round at a time.
    async fn write_gathered(
        &self,
        tx: &impl GenericClient,
        gathered: &mut Gathered<'_>,
        effects: &mut Vec<Effect>,
    ) -> Result<(), DbError> {
        let mut presence = gathered.presence.take().into_iter();
        let mut state = gathered.state.take().into_iter();
        let mut meter = gathered.meter.take().into_iter();
        let mut echonet = gathered.echonet.take().into_iter();
        loop {
            let (p, s, m, e) = (presence.next(), state.next(), meter.next(), echonet.next());
            if p.is_none() && s.is_none() && m.is_none() && e.is_none() {
                return Ok(());
            }
            if let Some(round) = p {
                self.presence_round(tx, &round, effects).await?;
            }
            if let Some(round) = s {
                state_round(tx, &round, effects).await?;
            }
            if let Some(round) = m {
                device_state::record_meters_in(tx, &round).await?;
            }
            if let Some(round) = e {
                device_state::record_echonets_in(tx, &round).await?;
            }
        }
    }

    async fn presence_round(
        &self,
        tx: &impl GenericClient,
        round: &[(&DeviceId, &PresenceReport)],
        effects: &mut Vec<Effect>,
    ) -> Result<(), DbError> {
        let since = OffsetDateTime::now_utc();
        let records: Vec<Presence> = round
            .iter()
            .map(|(device, p)| Presence {
                device_id: device,
                online: p.online,
                node: Some(&p.node),
                at: p.ts,
            })
            .collect();
        let arrivals = presence::record_presences_in(tx, &records).await?;
        for ((device, p), arrival) in round.iter().zip(arrivals) {
            effects.push(Effect::Live(LiveEvent::Presence {
                device: device.to_string(),
                online: p.online,
                node: Some(p.node.clone()),
                at: p.ts,
            }));
            if arrival.arrived && arrival.commands_waiting {
                effects.push(Effect::Online(Routed::DeviceOnline {
                    device_id: device.to_string(),
                    since,
                }));
            }
        }
        Ok(())
    }

    /// A node started: the devices it announced online before that are not
    /// connected to it any more (it crashed without saying goodbye for them).
    async fn node_started(
        &self,
        tx: &impl GenericClient,
        idx: usize,
        node: &str,
        started: OffsetDateTime,
        effects: &mut Vec<Effect>,
    ) -> Result<(), DbError> {
        self.status.nodes[idx].learn_node_id(node);
        let lost = presence::node_started_in(tx, node, started).await?;
        if !lost.is_empty() {
            tracing::info!(node, devices = lost.len(), %started,
                "broker node restarted; its earlier devices are offline");
        }
        for (device, last_seen) in lost {
            // Offline as of its last announcement on the old run: an online
            // from another node, even one older than `started` that reaches
            // this bridge after the epoch, still wins.
            self.affinity.record(&device, idx, false, last_seen);
            effects.push(Effect::Live(LiveEvent::Presence {
                device,
                online: false,
                node: Some(node.to_string()),
                at: started,
            }));
        }
        Ok(())
    }

    /// Announces what a committed batch changed, in order.
    async fn announce(&self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Live(event) => self.commands.live().publish(event),
                Effect::Finished(f) => self.commands.finish(&f),
                Effect::Unchanged(id) => {
                    tracing::debug!(command_id = %id,
                        "ack changed nothing (unknown, foreign or already final)");
                    self.commands.unchanged_by_ack(id);
                }
                Effect::Online(online) => {
                    let _ = self.routed.send(online).await;
                }
            }
        }
    }
}

/// Presence, state, smart-meter and other ECHONET Lite reports waiting to be
/// written, by round.
#[derive(Default)]
struct Gathered<'a> {
    presence: Rounds<'a, (&'a DeviceId, &'a PresenceReport)>,
    state: Rounds<'a, (&'a DeviceId, &'a StateReport)>,
    meter: Rounds<'a, device_state::MeterProperties<'a>>,
    echonet: Rounds<'a, device_state::EchonetProperties<'a>>,
}

impl Gathered<'_> {
    /// Whether `device` has presence or state waiting (what an ECHONET Lite
    /// object's report, which may create an appliance, must come after).
    fn holds(&self, device: &str) -> bool {
        self.presence.holds(device) || self.state.holds(device)
    }
}

/// Devices' retained states: their facts and their appliances' states.
async fn state_round(
    tx: &impl GenericClient,
    round: &[(&DeviceId, &StateReport)],
    effects: &mut Vec<Effect>,
) -> Result<(), DbError> {
    let records: Vec<device_state::StateRecord> = round
        .iter()
        .map(|(device, s)| {
            let apps = s.appliances.as_ref().filter(|a| !a.is_empty());

            device_state::StateRecord {
                device_id: device,
                facts: device_state::DeviceFacts {
                    firmware_version: Some(&s.firmware_version),
                    mac_address: s.mac_address.as_deref(),
                    serial_number: s.serial_number.as_deref(),
                },
                appliances: apps.and_then(|a| serde_json::to_value(a).ok()),
            }
        })
        .collect();
    device_state::record_states_in(tx, &records).await?;
    let now = OffsetDateTime::now_utc();
    for (device, s) in round {
        if let Some(apps) = s.appliances.as_ref().filter(|a| !a.is_empty()) {
            effects.push(Effect::Live(LiveEvent::ApplianceState {
                device: device.to_string(),
                appliances: serde_json::to_value(apps).unwrap_or_default(),
                at: now,
            }));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn job(report: Report) -> Job {
        (0, report, oneshot::channel().0)
    }

    #[test]
    fn acks_and_meter_reports_go_ahead_and_presence_and_state_keep_their_turn() {
        let dev = |id: &str| DeviceId::parse(id).unwrap();
        let at = OffsetDateTime::UNIX_EPOCH;
        let mut queue = ShardQueue::default();
        let offline = || {
            super::super::payload::presence(
                br#"{"online":false,"node":"node-1","ts":"2026-12-07T10:00:00Z","reason":"disconnect"}"#,
            )
            .unwrap()
        };
        let presence = |id: &str| job(Report::Presence(dev(id), offline()));
        let id = Uuid::new_v4();
        let (_, ack) = super::super::payload::ack(
            format!(r#"{{"id":"{id}","result":"ok","ts":1}}"#).as_bytes(),
        )
        .unwrap();
        for i in 0..3 {
            queue.push(presence(&format!("remo-{i}")));
        }
        queue.push(job(Report::Meter(
            dev("meter-1"),
            None,
            vec![(0xe7, "0100".into())],
            at,
        )));
        queue.push(job(Report::Ack(dev("remo-9"), id, ack)));
        // The meter's own later presence stays behind it.
        queue.push(presence("meter-1"));
        let mut batch = Vec::new();
        queue.take(&mut batch, 10);
        let first: Vec<&str> = batch.iter().map(|j| j.1.device()).collect();
        assert_eq!(first, ["meter-1", "remo-9"]);
        batch.clear();
        queue.take(&mut batch, 10);
        let then: Vec<&str> = batch.iter().map(|j| j.1.device()).collect();
        assert_eq!(then, ["remo-0", "remo-1", "remo-2", "meter-1"]);
    }

    #[test]
    fn report_shards_leave_half_the_pool_to_readings_and_requests() {
        assert_eq!(shard_count(1), 1);
        assert_eq!(shard_count(4), 2);
        assert_eq!(shard_count(16), 8);
        assert_eq!(shard_count(64), MAX_SHARDS);
    }

    #[test]
    fn a_device_always_maps_to_the_same_shard_and_devices_spread() {
        assert_eq!(shard_of("remo-1", 4), shard_of("remo-1", 4));
        let used: std::collections::HashSet<usize> = (0..64)
            .map(|i| shard_of(&format!("sim-{i:06}"), 4))
            .collect();
        assert_eq!(used.len(), 4);
        assert_eq!(shard_of("anything", 1), 0);
    }
}
