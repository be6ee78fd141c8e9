//! Announces device ownership to every broker node on the service-only
//! `kumo/ownership/…` feed (`kumo_contract::ownership`), so a node can scope
//! third-party integrations with an in-memory lookup instead of a database
//! round trip per message. A device is announced with its owner and the other
//! members of its home: their integrations see it too, as REST does.
//!
//! - Every time a node's connection comes up (the node may have restarted
//!   and lost its map) the node gets a full snapshot: begin, every owned
//!   device, end; the node then forgets devices the snapshot did not name.
//! - Changes come from `device_ownership_log` (migration 0005), which a
//!   deferred trigger fills in commit order whenever a device is added,
//!   deleted or changes owner. This task follows it with a cursor from the
//!   pool — no dedicated connection, no notification that can be missed — and
//!   announces each changed device's *current* owner to every node.
//!
//! One task does both, so what a node hears about a device is always in the
//! order it was read. Announcements are QoS 0 on the node's existing
//! connection: a node that misses one (connection lost) gets a snapshot on
//! reconnect. After announcing, the task sends a sync marker (its log
//! position); the node echoes it once everything before is applied, and
//! [`OwnershipSync`] lets a request wait for that on every connected node — a
//! removed home member is told they are out only when no node still lets
//! their integrations read the home's devices. This module must not write
//! anything but the log's pruning.

use crate::db::DbError;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use kumo_contract::ownership as feed;
use kumo_contract::{AccountId, DeviceId};
use rumqttc::{AsyncClient, QoS};
use tokio::sync::mpsc;

use super::ownership_sync::OwnershipSync;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Rows per query, for the log and for snapshots.
const PAGE: i64 = 1_000;
/// How long one announcement may wait for room in a node's request queue.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How often old log rows are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Log rows older than this are deleted; a bridge that could not read the
/// log for half of it starts over with snapshots.
const RETENTION_SECS: f64 = 3_600.0;
/// How often a sync marker is sent again to a node that has not echoed it.
const RESYNC: Duration = Duration::from_secs(1);

/// What the node connections tell the announcer: node `idx` is connected
/// through this client, or echoed a sync marker.
#[derive(Debug, Clone)]
pub(crate) struct OwnershipHook {
    tx: mpsc::Sender<(usize, AsyncClient)>,
    sync: Arc<OwnershipSync>,
}

impl OwnershipHook {
    /// Node `idx` echoed a sync marker.
    pub(crate) fn echoed(&self, idx: usize, payload: &[u8]) {
        self.sync.echoed(idx, payload);
    }

    /// Where the nodes stand.
    pub(crate) fn sync(&self) -> Arc<OwnershipSync> {
        self.sync.clone()
    }

    /// Node `idx` accepted the connection (CONNACK): it gets a snapshot.
    pub(crate) fn connected(&self, idx: usize, client: &AsyncClient) {
        if self.tx.try_send((idx, client.clone())).is_err() {
            tracing::warn!(node_idx = idx, "ownership announcer is not keeping up");
        }
    }
}

/// Starts the announcer for the broker nodes of `status`, reading the log
/// every `poll`.
pub(crate) fn start(
    pool: Pool,
    status: Arc<super::MqttStatus>,
    poll: Duration,
    shutdown: CancellationToken,
) -> (OwnershipHook, JoinHandle<()>) {
    let nodes = status.nodes.len();
    let (tx, rx) = mpsc::channel(nodes.max(1) * 4);
    let sync = Arc::new(OwnershipSync::new(status));
    let announcer = Announcer {
        pool,
        sync: sync.clone(),
        synced: vec![None; nodes],
        clients: vec![None; nodes],
        stale: vec![false; nodes],
        cursor: None,
        last_read: Instant::now(),
        last_prune: Instant::now(),
    };
    (
        OwnershipHook { tx, sync },
        tokio::spawn(announcer.run(rx, poll, shutdown)),
    )
}

struct Announcer {
    pool: Pool,
    sync: Arc<OwnershipSync>,
    /// The marker last sent to each node, and when.
    synced: Vec<Option<(i64, Instant)>>,
    /// The connection of each node, once it has connected.
    clients: Vec<Option<AsyncClient>>,
    /// Nodes owed a snapshot.
    stale: Vec<bool>,
    /// Last log row announced; `None` until first read.
    cursor: Option<i64>,
    /// Last time the log was read successfully.
    last_read: Instant,
    last_prune: Instant,
}

impl Announcer {
    async fn run(
        mut self,
        mut connected: mpsc::Receiver<(usize, AsyncClient)>,
        poll: Duration,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(poll);
        let sync = self.sync.clone();
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                c = connected.recv() => match c {
                    Some((idx, client)) => self.connected(idx, client),
                    None => return,
                },
                _ = tick.tick() => {}
                () = sync.nudged() => {}
            }
            match self.round().await {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "announcing device ownership failed; retrying");
                }
                Err(e) => tracing::debug!(error = %e, "announcing device ownership still failing"),
            }
        }
    }

    fn connected(&mut self, idx: usize, client: AsyncClient) {
        if let (Some(slot), Some(stale)) = (self.clients.get_mut(idx), self.stale.get_mut(idx)) {
            *slot = Some(client);
            *stale = true;
        }
        if let Some(synced) = self.synced.get_mut(idx) {
            *synced = None;
        }
    }

    /// Owed snapshots, then the log since the cursor, then pruning.
    async fn round(&mut self) -> Result<(), DbError> {
        let client = self.pool.get().await?;
        if self.cursor.is_none() || self.last_read.elapsed().as_secs_f64() > RETENTION_SECS / 2.0 {
            // Read the log's end before any snapshot: what commits after it is
            // announced from the log, after the snapshot.
            // Rows become visible in sequence order (see the migration), so
            // nothing committed later can have a smaller number.
            self.cursor = Some(crate::accounts::ownership_log_end(&client).await?);
            self.stale.iter_mut().for_each(|s| *s = true);
        }
        for idx in 0..self.clients.len() {
            if self.stale[idx] && self.clients[idx].is_some() {
                self.stale[idx] = false;
                if let Err(e) = self.snapshot(&client, idx).await {
                    self.stale[idx] = true;
                    return Err(e);
                }
            }
        }
        self.follow(&client).await?;
        self.last_read = Instant::now();
        self.send_syncs().await;
        if self.last_prune.elapsed() >= PRUNE_EVERY {
            self.last_prune = Instant::now();
            client
                .execute(
                    "DELETE FROM device_ownership_log
                     WHERE logged_at < now() - make_interval(secs => $1)",
                    &[&RETENTION_SECS],
                )
                .await?;
        }
        Ok(())
    }

    /// Sends the log position to each node that has not echoed it: when it
    /// moved, and again every [`RESYNC`] until the node answers.
    async fn send_syncs(&mut self) {
        let Some(cursor) = self.cursor else { return };
        for idx in 0..self.clients.len() {
            let due = match self.synced[idx] {
                _ if self.sync.applied(idx) >= cursor => false,
                Some((sent, at)) => sent != cursor || at.elapsed() >= RESYNC,
                None => true,
            };
            if due && self.clients[idx].is_some() && !self.stale[idx] {
                self.synced[idx] = Some((cursor, Instant::now()));
                self.send(idx, feed::SYNC.to_string(), cursor.to_string().into_bytes())
                    .await;
            }
        }
    }

    /// Announces every owned device to node `idx`, between begin and end.
    async fn snapshot(
        &mut self,
        db: &deadpool_postgres::Client,
        idx: usize,
    ) -> Result<(), DbError> {
        let started = Instant::now();
        let token = uuid::Uuid::new_v4().to_string().into_bytes();
        self.send(idx, feed::SNAPSHOT_BEGIN.to_string(), token.clone())
            .await;
        let mut after = String::new();
        let mut devices = 0usize;
        loop {
            let rows = db
                .query(
                    "SELECT d.id, d.user_id,
                            array(SELECT a.user_id FROM device_access a
                                  WHERE a.device_id = d.id AND a.user_id <> d.user_id
                                  ORDER BY a.user_id)
                     FROM devices d
                     WHERE d.user_id IS NOT NULL AND d.id > $1 ORDER BY d.id LIMIT $2",
                    &[&after, &PAGE],
                )
                .await?;
            for row in &rows {
                let (id, owner): (String, Option<String>) = (row.get(0), row.get(1));
                let members: Vec<String> = row.get(2);
                self.announce(Some(idx), &id, owner.as_deref(), &members)
                    .await;
                after = id;
            }
            devices += rows.len();
            if self.stale[idx] {
                // The node stopped taking announcements; it gets a new snapshot later.
                return Ok(());
            }
            if rows.len() < PAGE as usize {
                break;
            }
        }
        self.send(idx, feed::SNAPSHOT_END.to_string(), token).await;
        tracing::info!(
            node_idx = idx,
            devices,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "device ownership snapshot announced"
        );
        Ok(())
    }

    /// Announces the current owner of every device the log names past the cursor.
    async fn follow(&mut self, db: &deadpool_postgres::Client) -> Result<(), DbError> {
        loop {
            let cursor = self.cursor.unwrap_or(0);
            let changes = crate::accounts::ownership_changes(db, cursor, PAGE).await?;
            for change in &changes {
                self.announce(
                    None,
                    &change.device_id,
                    change.owner.as_deref(),
                    &change.members,
                )
                .await;
                self.cursor = Some(change.seq);
            }
            if changes.len() < PAGE as usize {
                return Ok(());
            }
        }
    }

    /// Announces `device`'s owner and the other members of its home to
    /// node `only`, or to every node. Without an owner nobody sees it.
    async fn announce(
        &mut self,
        only: Option<usize>,
        device: &str,
        owner: Option<&str>,
        members: &[String],
    ) {
        let Ok(device) = DeviceId::parse(device) else {
            return;
        };
        let accounts: Vec<AccountId> = match owner.and_then(|o| AccountId::parse(o).ok()) {
            Some(owner) => std::iter::once(owner)
                .chain(
                    members
                        .iter()
                        .filter_map(|m| AccountId::parse(m.as_str()).ok()),
                )
                .collect(),
            None => Vec::new(),
        };
        let topic = feed::device_topic(&device);
        let payload = feed::owner_payload(&accounts);
        match only {
            Some(idx) => self.send(idx, topic, payload).await,
            None => {
                for idx in 0..self.clients.len() {
                    self.send(idx, topic.clone(), payload.clone()).await;
                }
            }
        }
    }

    /// Queues one QoS 0 publish on node `idx`'s connection. A node whose
    /// queue stays full is owed a snapshot instead.
    async fn send(&mut self, idx: usize, topic: String, payload: Vec<u8>) {
        let Some(Some(client)) = self.clients.get(idx) else {
            return;
        };
        if self.stale[idx] {
            return;
        }
        let sent = client.publish(topic, QoS::AtMostOnce, false, payload);
        if !matches!(tokio::time::timeout(SEND_TIMEOUT, sent).await, Ok(Ok(()))) {
            tracing::warn!(
                node_idx = idx,
                "ownership announcement not queued; node owed a snapshot"
            );
            self.stale[idx] = true;
        }
    }
}
