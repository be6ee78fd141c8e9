//! Command delivery: the MQTT [`CommandSink`], routing each command to the
//! node that holds its device, and the sweep that resends what no device has
//! acknowledged yet.
//!
//! A command for a device known to be offline is not published (the node
//! would have no session to hand it to); it stays `queued` and goes out when
//! the device's presence turns online: the router reads what waits for it,
//! sends it oldest first, and holds commands made meanwhile behind it, so a
//! device gets its commands in the order they were made (short of a resend).
//! Devices see a command at least once and recognise repeats by its id. The node's PUBACKs are recorded as sends
//! in batches ([`SentLog`]), one statement for whatever arrived meanwhile.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

use uuid::Uuid;

use super::affinity::{Affinity, Whereabouts};
use super::MqttStatus;
use crate::commands::{CommandLog, CommandSink, QueuedCommand};

/// Commands waiting to be routed; beyond this, announcements are left to the sweep.
const OUTBOX: usize = 16_384;
/// Most commands one sweep resends.
const SWEEP_LIMIT: i64 = 2_000;
/// PUBACKed command ids waiting to be recorded as sent, per node.
const SENT_QUEUE: usize = 16_384;
/// Most sends recorded in one statement.
const SENT_BATCH: usize = 512;
/// Most devices remembered as having a command left queued; beyond this a
/// command that arrives for one of the others as it comes online may go out
/// before the older ones its presence then delivers.
const PARKED_LIMIT: usize = 100_000;

/// Work for the router.
#[derive(Debug)]
pub(crate) enum Routed {
    /// A new command to deliver.
    Command(QueuedCommand),
    /// A device came online at `since` (when routing learned it): deliver
    /// what was handled before, once it has had time to subscribe.
    DeviceOnline {
        device_id: String,
        since: OffsetDateTime,
    },
}

/// The [`CommandSink`] of a bridge with MQTT: hands commands to the router.
#[derive(Debug, Clone)]
pub struct MqttSink {
    tx: mpsc::Sender<Routed>,
}

/// The router's end of the [`MqttSink`]'s queue.
#[derive(Debug)]
pub struct Outbox {
    rx: mpsc::Receiver<Routed>,
    pub(crate) tx: mpsc::Sender<Routed>,
}

impl MqttSink {
    /// A sink and the outbox the MQTT side reads it from.
    pub fn channel() -> (MqttSink, Outbox) {
        let (tx, rx) = mpsc::channel(OUTBOX);
        (MqttSink { tx: tx.clone() }, Outbox { rx, tx })
    }
}

impl CommandSink for MqttSink {
    fn announce(&self, command: &QueuedCommand) {
        if self.tx.try_send(Routed::Command(command.clone())).is_err() {
            // Still in the table as queued: the sweep delivers it.
            tracing::warn!(command_id = %command.id, device_id = %command.device_id,
                "delivery queue full; the resend sweep will deliver this command");
        }
    }
}

/// What became of a command handed to [`Router::dispatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dispatched {
    /// Given to a node's publisher (or dropped there as busy: the sweep resends it).
    Routed,
    /// Left queued in its row: the device is offline (or not known online).
    Kept,
    /// Past its expiry.
    Expired,
}

/// A device's commands go out in the order they were made. The router keeps
/// it where a device comes online with commands waiting: they are read from
/// the table and sent first; new ones wait behind them.
#[derive(Debug, Default)]
struct Order {
    /// Devices a command was left queued for since their waiting commands were last read.
    parked: std::collections::HashSet<String>,
    /// Devices whose waiting commands are being read.
    settling: std::collections::HashMap<String, Settling>,
}

/// A device whose waiting commands are being read.
#[derive(Debug, Default)]
struct Settling {
    /// Commands that arrived meanwhile, in order.
    behind: Vec<QueuedCommand>,
    /// The device came online again meanwhile (at): read once more.
    again: Option<OffsetDateTime>,
    /// Commands the reads so far sent: a later read may find them not yet
    /// recorded as sent.
    sent: std::collections::HashSet<Uuid>,
}

/// The outcome of reading a device's waiting commands.
struct WaitingRead {
    device_id: String,
    waiting: Result<Vec<QueuedCommand>, crate::db::DbError>,
}

/// Routes commands to node publishers.
#[derive(Clone)]
pub(crate) struct Router {
    publishers: Arc<[mpsc::Sender<QueuedCommand>]>,
    /// Which node connections are up.
    status: Arc<MqttStatus>,
    affinity: Arc<Affinity>,
    pool: Pool,
    commands: Arc<CommandLog>,
    resend_after: Duration,
    /// Pause before reading what waits for a device that came online: the
    /// node announces presence before the device has subscribed.
    settle: Duration,
}

impl Router {
    pub(crate) fn new(
        publishers: Vec<mpsc::Sender<QueuedCommand>>,
        status: Arc<MqttStatus>,
        affinity: Arc<Affinity>,
        pool: Pool,
        commands: Arc<CommandLog>,
        resend_after: Duration,
        settle: Duration,
    ) -> Self {
        Self {
            publishers: publishers.into(),
            status,
            affinity,
            pool,
            commands,
            resend_after,
            settle,
        }
    }

    /// Routes announced commands and online devices until shutdown.
    pub(crate) async fn run(self, mut outbox: Outbox, shutdown: CancellationToken) {
        drop(outbox.tx);
        let (read_tx, mut read_rx) = mpsc::unbounded_channel();
        let mut order = Order::default();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                Some(read) = read_rx.recv() => self.settled(read, &mut order, &read_tx).await,
                work = outbox.rx.recv() => match work {
                    Some(Routed::Command(cmd)) => self.route(cmd, &mut order, &read_tx).await,
                    Some(Routed::DeviceOnline { device_id, since }) => {
                        self.online(device_id, since, &mut order, &read_tx);
                    }
                    None => return,
                },
            }
        }
    }

    /// A device with commands waiting came online at `since`.
    fn online(
        &self,
        device_id: String,
        since: OffsetDateTime,
        order: &mut Order,
        read_tx: &mpsc::UnboundedSender<WaitingRead>,
    ) {
        order.parked.remove(device_id.as_str());
        match order.settling.get_mut(device_id.as_str()) {
            // Read again once the read under way is sent: the device may
            // have connected anew since.
            Some(settling) => settling.again = Some(since),
            None => {
                self.start_reading(device_id, Some(since), order, read_tx);
            }
        }
    }

    /// Routes a new command in order behind its device's waiting ones: while
    /// they are being read it waits with them; a device that had a command
    /// left queued and is now online has them read first.
    async fn route(
        &self,
        cmd: QueuedCommand,
        order: &mut Order,
        read_tx: &mpsc::UnboundedSender<WaitingRead>,
    ) {
        let device = cmd.device_id.as_str();
        if let Some(settling) = order.settling.get_mut(device) {
            settling.behind.push(cmd);
            return;
        }
        if order.parked.contains(device)
            && matches!(self.affinity.find(device), Whereabouts::Online(_))
        {
            // Online, but the announcement that would deliver what waits has
            // not reached the router yet (it follows the presence's commit).
            order.parked.remove(device);
            let device_id = device.to_string();
            self.start_reading(device_id, None, order, read_tx)
                .behind
                .push(cmd);
            return;
        }
        if self.dispatch(cmd.clone(), true).await == Dispatched::Kept
            && order.parked.len() < PARKED_LIMIT
        {
            order.parked.insert(cmd.device_id.as_str().to_string());
        }
    }

    /// Reads `device_id`'s waiting commands after the settle pause: those
    /// last handled before `before`, or all of them. Commands for the device
    /// wait behind the read (in the returned entry) until [`Router::settled`].
    fn start_reading<'o>(
        &self,
        device_id: String,
        before: Option<OffsetDateTime>,
        order: &'o mut Order,
        read_tx: &mpsc::UnboundedSender<WaitingRead>,
    ) -> &'o mut Settling {
        let commands = self.commands.clone();
        let read_tx = read_tx.clone();
        let settle = self.settle;
        let device = device_id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(settle).await;
            let before = before.unwrap_or_else(OffsetDateTime::now_utc);
            let waiting = commands.outstanding_for_device(&device, before).await;
            let _ = read_tx.send(WaitingRead {
                device_id: device,
                waiting,
            });
        });
        order.settling.entry(device_id).or_default()
    }

    /// Sends what a read found waiting, oldest first, then what arrived for
    /// the device meanwhile — or, if the device came online again meanwhile,
    /// reads once more first. A command goes out once per series of reads.
    async fn settled(
        &self,
        read: WaitingRead,
        order: &mut Order,
        read_tx: &mpsc::UnboundedSender<WaitingRead>,
    ) {
        let device_id = read.device_id;
        let Some(mut settling) = order.settling.remove(device_id.as_str()) else {
            return;
        };
        match read.waiting {
            Ok(waiting) => {
                let waiting: Vec<_> = waiting
                    .into_iter()
                    .filter(|c| !settling.sent.contains(&c.id))
                    .collect();
                if !waiting.is_empty() {
                    tracing::info!(
                        device_id,
                        count = waiting.len(),
                        "device online; delivering its waiting commands"
                    );
                }
                for cmd in waiting {
                    settling.sent.insert(cmd.id);
                    self.dispatch(cmd, false).await;
                }
            }
            Err(e) => tracing::warn!(device_id, error = %e,
                "reading waiting commands failed; the resend sweep will deliver them"),
        }
        let sent = &settling.sent;
        settling.behind.retain(|c| !sent.contains(&c.id));
        if let Some(since) = settling.again.take() {
            *self.start_reading(device_id, Some(since), order, read_tx) = settling;
            return;
        }
        for cmd in settling.behind {
            self.route(cmd, order, read_tx).await;
        }
    }

    /// Hands `cmd` to the publisher of the node holding its device. Unknown
    /// devices go to the default node when the database says they are online
    /// (`ask_db`); devices known to be offline keep their command queued.
    async fn dispatch(&self, cmd: QueuedCommand, ask_db: bool) -> Dispatched {
        if cmd.expires_at <= OffsetDateTime::now_utc() {
            return Dispatched::Expired;
        }
        let node = match self.affinity.find(cmd.device_id.as_str()) {
            Whereabouts::Online(node) => node,
            Whereabouts::Offline => {
                tracing::debug!(command_id = %cmd.id, device_id = %cmd.device_id,
                    "device offline; command stays queued");
                return Dispatched::Kept;
            }
            Whereabouts::Unknown if ask_db && self.online_in_db(cmd.device_id.as_str()).await => 0,
            Whereabouts::Unknown => return Dispatched::Kept,
        };
        let node = self.live_node(node);
        let Some(publisher) = self.publishers.get(node) else {
            return Dispatched::Kept;
        };
        // Never wait for a node: its publisher waits for the node's event
        // loop, which may be waiting for the report shards, which wait for
        // this router (device online → deliver its queue). Waiting here closed
        // that circle and froze the whole MQTT side under load (fleet run,
        // 250,000 devices). A command that does not fit stays queued in its
        // row; the resend sweep delivers it.
        match publisher.try_send(cmd) {
            Ok(()) => {}
            Err(TrySendError::Full(cmd)) => {
                tracing::debug!(command_id = %cmd.id, device_id = %cmd.device_id, node,
                    "node publisher busy; the resend sweep delivers the command");
            }
            Err(TrySendError::Closed(_)) => tracing::debug!("node publisher gone (shutting down)"),
        }
        Dispatched::Routed
    }

    /// `preferred` if the bridge's connection to it is up, else the first
    /// node whose connection is: a node that died still holds its devices in
    /// the affinity map until they show up elsewhere, and a command published
    /// on any node reaches its device wherever it connects (nodes forward
    /// commands to their peers). Sent into a dead connection, it would wait
    /// for the resend sweep. With no connection up, `preferred`.
    fn live_node(&self, preferred: usize) -> usize {
        let nodes = &self.status.nodes;
        if nodes.get(preferred).is_some_and(|n| n.connected()) {
            return preferred;
        }
        nodes
            .iter()
            .position(|n| n.connected())
            .unwrap_or(preferred)
    }

    async fn online_in_db(&self, device_id: &str) -> bool {
        let Ok(client) = self.pool.get().await else {
            return false;
        };
        client
            .query_opt("SELECT online FROM devices WHERE id = $1", &[&device_id])
            .await
            .ok()
            .flatten()
            .is_some_and(|r| r.get::<_, bool>(0))
    }

    /// Every `resend_after / 2`: resends unacknowledged commands of online
    /// devices whose last send is older than `resend_after`.
    pub(crate) async fn sweep(self, shutdown: CancellationToken) {
        let period = (self.resend_after / 2).max(Duration::from_millis(500));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self
                .commands
                .unacknowledged(self.resend_after, SWEEP_LIMIT)
                .await
            {
                Ok(due) => {
                    for cmd in due {
                        if let Whereabouts::Online(_) = self.affinity.find(cmd.device_id.as_str()) {
                            tracing::debug!(command_id = %cmd.id, device_id = %cmd.device_id,
                                "resending an unacknowledged command");
                            let _ = self.dispatch(cmd, false).await;
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "resend sweep failed; will retry"),
            }
        }
    }
}

/// Records a node's PUBACKed commands as `sent`, many per statement.
#[derive(Debug, Clone)]
pub(crate) struct SentLog {
    tx: mpsc::Sender<Uuid>,
}

impl SentLog {
    /// Starts the recorder of node `idx`; it ends when every handle is dropped.
    pub(crate) fn start(commands: Arc<CommandLog>, status: Arc<MqttStatus>, idx: usize) -> Self {
        let (tx, rx) = mpsc::channel(SENT_QUEUE);
        tokio::spawn(record_sent(rx, commands, status, idx));
        Self { tx }
    }

    /// Queues `id` to be recorded. Never waits: if the queue is full the row
    /// stays `queued` and the resend sweep delivers the command again.
    pub(crate) fn record(&self, id: Uuid) {
        if self.tx.try_send(id).is_err() {
            tracing::warn!(command_id = %id, "send not recorded (queue full or closed)");
        }
    }
}

/// Pause before retrying sends whose rows an ack was holding.
const SENT_RETRY: Duration = Duration::from_millis(20);

async fn record_sent(
    mut rx: mpsc::Receiver<Uuid>,
    commands: Arc<CommandLog>,
    status: Arc<MqttStatus>,
    idx: usize,
) {
    let mut ids = Vec::with_capacity(SENT_BATCH);
    // Ids skipped last round (their row was locked): retried once.
    let mut retry: Vec<Uuid> = Vec::new();
    loop {
        if retry.is_empty() {
            if rx.recv_many(&mut ids, SENT_BATCH).await == 0 {
                return;
            }
        } else {
            tokio::time::sleep(SENT_RETRY).await;
            while ids.len() < SENT_BATCH {
                match rx.try_recv() {
                    Ok(id) => ids.push(id),
                    Err(_) => break,
                }
            }
        }
        let fresh = ids.len();
        ids.append(&mut retry);
        let node = status
            .nodes
            .get(idx)
            .map(|n| n.node_id().unwrap_or_else(|| n.addr.clone()));
        match commands.mark_sent_many(&ids, node.as_deref()).await {
            Ok(marked) => {
                let touched: std::collections::HashSet<Uuid> = marked.touched.into_iter().collect();
                retry.extend(ids[..fresh].iter().filter(|id| !touched.contains(id)));
            }
            Err(e) => tracing::warn!(error = ?e, commands = ids.len(), "recording sends failed"),
        }
        ids.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::{CommandKind, NoDelivery};
    use crate::live::LiveFeed;
    use kumo_contract::DeviceId;

    fn command(device: &str) -> QueuedCommand {
        QueuedCommand {
            id: Uuid::new_v4(),
            device_id: DeviceId::parse(device).expect("a valid id"),
            kind: CommandKind::Ir,
            payload: serde_json::json!({}),
            expires_at: OffsetDateTime::now_utc() + time::Duration::minutes(5),
        }
    }

    /// A pool that never connects and a command log over it: routing by a
    /// known affinity must not reach the database.
    fn unreachable_database() -> (Pool, Arc<CommandLog>) {
        let pool = kumo_schema::connect_pool(
            "postgres://nobody@127.0.0.1:1/none",
            1,
            Duration::from_millis(100),
        )
        .expect("a lazy pool");
        let commands = Arc::new(CommandLog::new(
            pool.clone(),
            Duration::from_secs(60),
            Arc::new(NoDelivery),
            LiveFeed::default(),
            CancellationToken::new(),
        ));
        (pool, commands)
    }

    #[tokio::test]
    async fn routing_never_waits_for_a_node_whose_publisher_is_stuck() {
        // No database is reached: the device's node is known from presence.
        let (pool, commands) = unreachable_database();
        let affinity = Arc::new(Affinity::default());
        affinity.record("remo-1", 0, true, OffsetDateTime::now_utc());
        // A publisher whose event loop never takes anything.
        let (tx, mut rx) = mpsc::channel(1);
        let status = Arc::new(super::super::MqttStatus::new(&["node-a:8883".to_string()]));
        let router = Router::new(
            vec![tx],
            status,
            affinity,
            pool,
            commands,
            Duration::from_secs(10),
            Duration::from_millis(300),
        );
        let first = command("remo-1");
        let routed = async {
            router.dispatch(first.clone(), false).await;
            router.dispatch(command("remo-1"), false).await;
            router.dispatch(command("remo-1"), false).await;
        };
        tokio::time::timeout(Duration::from_secs(5), routed)
            .await
            .expect("dispatch returned although the publisher is full");
        // What fitted went out; the rest waits in its row for the sweep.
        assert_eq!(rx.try_recv().map(|c| c.id).ok(), Some(first.id));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_command_for_a_device_on_a_node_whose_connection_is_down_goes_through_a_node_that_is_up(
    ) {
        let (pool, commands) = unreachable_database();
        let affinity = Arc::new(Affinity::default());
        // The device was last seen on node 0, whose connection then broke.
        affinity.record("remo-1", 0, true, OffsetDateTime::now_utc());
        affinity.record("remo-2", 1, true, OffsetDateTime::now_utc());
        let status = Arc::new(super::super::MqttStatus::new(&[
            "node-a:8883".to_string(),
            "node-b:8883".to_string(),
            "node-c:8883".to_string(),
        ]));
        status.nodes[2]
            .connected
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let (senders, mut receivers): (Vec<_>, Vec<_>) = (0..3).map(|_| mpsc::channel(4)).unzip();
        let router = Router::new(
            senders,
            status.clone(),
            affinity,
            pool,
            commands,
            Duration::from_secs(10),
            Duration::from_millis(300),
        );
        let to_a = command("remo-1");
        router.dispatch(to_a.clone(), false).await;
        assert!(
            receivers[0].try_recv().is_err(),
            "nothing into the broken connection"
        );
        assert_eq!(receivers[2].try_recv().map(|c| c.id).ok(), Some(to_a.id));
        // A node whose connection is up keeps its devices' commands.
        status.nodes[1]
            .connected
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let to_b = command("remo-2");
        router.dispatch(to_b.clone(), false).await;
        assert_eq!(receivers[1].try_recv().map(|c| c.id).ok(), Some(to_b.id));
    }

    #[tokio::test]
    async fn a_command_for_a_device_back_online_with_one_left_queued_waits_for_the_waiting_to_be_read(
    ) {
        let (pool, commands) = unreachable_database();
        let affinity = Arc::new(Affinity::default());
        let then = OffsetDateTime::now_utc();
        affinity.record("remo-1", 0, false, then);
        let status = Arc::new(super::super::MqttStatus::new(&["node-a:8883".to_string()]));
        status.nodes[0]
            .connected
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let (tx, mut rx) = mpsc::channel(4);
        let router = Router::new(
            vec![tx],
            status,
            affinity.clone(),
            pool,
            commands,
            Duration::from_secs(10),
            Duration::from_secs(1),
        );
        let (sink, outbox) = MqttSink::channel();
        let stop = CancellationToken::new();
        let running = tokio::spawn(router.run(outbox, stop.clone()));
        sink.announce(&command("remo-1"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(rx.try_recv().is_err(), "offline: left queued");
        // Online now; the announcement that delivers what waits has not come.
        affinity.record("remo-1", 0, true, then + time::Duration::seconds(1));
        let newer = command("remo-1");
        sink.announce(&newer);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            rx.try_recv().is_err(),
            "the newer command waits behind the read of the older"
        );
        // The read fails (no database): the newer one goes, the older is the sweep's.
        let sent = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("sent after the read")
            .expect("an open publisher");
        assert_eq!(sent.id, newer.id);
        stop.cancel();
        running.await.expect("the router ends");
    }
}
