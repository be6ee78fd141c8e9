//! Announces device ownership to every broker node on the service-only
//! `kumo/ownership/…` feed (`kumo_contract::ownership`), so a node can scope
//! third-party integrations with an in-memory lookup instead of a database
//! round trip per message.
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
//! reconnect. This module must not write anything but the log's pruning.

use crate::db::DbError;
use std::time::Duration;

use deadpool_postgres::Pool;
use kumo_contract::ownership as feed;
use kumo_contract::{AccountId, DeviceId};
use rumqttc::{AsyncClient, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the change log is read.
const POLL: Duration = Duration::from_millis(200);
/// Rows per query, for the log and for snapshots.
const PAGE: i64 = 1_000;
/// How long one announcement may wait for room in a node's request queue.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How often old log rows are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Log rows older than this are deleted; a bridge that could not read the
/// log for half of it starts over with snapshots.
const RETENTION_SECS: f64 = 3_600.0;

/// What the node connections tell the announcer: node `idx` is connected
/// through this client.
#[derive(Debug, Clone)]
pub(crate) struct OwnershipHook {
    tx: mpsc::Sender<(usize, AsyncClient)>,
}

impl OwnershipHook {
    /// Node `idx` accepted the connection (CONNACK): it gets a snapshot.
    pub(crate) fn connected(&self, idx: usize, client: &AsyncClient) {
        if self.tx.try_send((idx, client.clone())).is_err() {
            tracing::warn!(node_idx = idx, "ownership announcer is not keeping up");
        }
    }
}

/// Starts the announcer for `nodes` broker nodes.
pub(crate) fn start(
    pool: Pool,
    nodes: usize,
    shutdown: CancellationToken,
) -> (OwnershipHook, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(nodes.max(1) * 4);
    let announcer = Announcer {
        pool,
        clients: vec![None; nodes],
        stale: vec![false; nodes],
        cursor: None,
        last_read: Instant::now(),
        last_prune: Instant::now(),
    };
    (
        OwnershipHook { tx },
        tokio::spawn(announcer.run(rx, shutdown)),
    )
}

struct Announcer {
    pool: Pool,
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
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(POLL);
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
                    "SELECT id, user_id FROM devices
                     WHERE user_id IS NOT NULL AND id > $1 ORDER BY id LIMIT $2",
                    &[&after, &PAGE],
                )
                .await?;
            for row in &rows {
                let (id, owner): (String, Option<String>) = (row.get(0), row.get(1));
                self.announce(Some(idx), &id, owner.as_deref()).await;
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
                self.announce(None, &change.device_id, change.owner.as_deref())
                    .await;
                self.cursor = Some(change.seq);
            }
            if changes.len() < PAGE as usize {
                return Ok(());
            }
        }
    }

    /// Announces `device`'s owner to node `only`, or to every node.
    async fn announce(&mut self, only: Option<usize>, device: &str, owner: Option<&str>) {
        let Ok(device) = DeviceId::parse(device) else {
            return;
        };
        let account = owner.and_then(|o| AccountId::parse(o).ok());
        let topic = feed::device_topic(&device);
        let payload = feed::owner_payload(account.as_ref());
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
