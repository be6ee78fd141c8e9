//! Live sessions on this node, keyed by client id: the O(1) lookup that routes a
//! device-bound message to its session, detects takeovers and finds sessions to
//! close when their certificate is revoked.
//!
//! Holds only handles (a queue sender and a kick switch); sessions own their state.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use bytes::Bytes;
use rumqttd::protocol::{Publish, PublishProperties};
use tokio_util::sync::CancellationToken;

use crate::mailbox;

/// Why a session ended; `as_str` is the presence reason and metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent DISCONNECT.
    Clean,
    /// The client vanished (EOF, reset, TLS error).
    ConnectionLost,
    /// Nothing received for 1.5 × keepalive.
    KeepaliveTimeout,
    /// The same client id connected again.
    Takeover,
    /// Its certificate was revoked.
    Revoked,
    /// The node is shutting down.
    Shutdown,
    /// A protocol violation or malformed packet.
    ProtocolError,
    /// A PUBLISH it was not allowed to send (MQTT 3.1.1 has no reason code for it).
    NotAuthorized,
    /// A packet above the size limit.
    PacketTooLarge,
    /// More unanswered QoS 1/2 publishes than the node's Receive Maximum (MQTT 5).
    ReceiveMaximumExceeded,
    /// A topic alias, which the node does not offer (MQTT 5 Topic Alias Maximum 0).
    TopicAliasInvalid,
    /// A subscription identifier, which CONNACK said is unavailable (MQTT 5).
    SubscriptionIdsUnsupported,
    /// A retained message beyond the device's quota that could not be refused
    /// in an acknowledgement (QoS 0, or MQTT 3.1.1).
    QuotaExceeded,
}

impl CloseReason {
    /// Label used in presence messages and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Clean => "disconnect",
            CloseReason::ConnectionLost => "connection_lost",
            CloseReason::KeepaliveTimeout => "keepalive_timeout",
            CloseReason::Takeover => "takeover",
            CloseReason::Revoked => "revoked",
            CloseReason::Shutdown => "node_shutdown",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::NotAuthorized => "not_authorized",
            CloseReason::PacketTooLarge => "packet_too_large",
            CloseReason::ReceiveMaximumExceeded => "receive_maximum_exceeded",
            CloseReason::TopicAliasInvalid => "topic_alias_invalid",
            CloseReason::SubscriptionIdsUnsupported => "subscription_ids_unsupported",
            CloseReason::QuotaExceeded => "quota_exceeded",
        }
    }

    /// Whether the client's last will must be published: for every end but a
    /// normal DISCONNECT (MQTT-3.1.2-8, -10) — a takeover included (the old
    /// connection closed without one) — and a node shutdown, where the session
    /// is not lost to the client but to the node.
    pub fn fires_will(self) -> bool {
        !matches!(self, CloseReason::Clean | CloseReason::Shutdown)
    }
}

/// A message routed to a session. Queues hold it boxed, so a queue slot stays
/// one pointer wide.
#[derive(Debug)]
pub struct Outbound {
    pub publish: Publish,
    pub properties: Option<PublishProperties>,
    /// When the node received it from the router.
    pub at: Instant,
    /// Sent before with this packet id and left unacknowledged: sent again with
    /// DUP set and, when free, the same packet id (MQTT-3.3.1-1, MQTT-4.4.0-1).
    pub redelivery: Option<u16>,
    /// How it goes out when that was settled before it reached the session (a
    /// retained message for a new subscription, a message sent before and
    /// unacknowledged); otherwise the session's subscriptions decide.
    pub decided: Option<Decided>,
}

/// The QoS and RETAIN flag a message is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decided {
    pub qos: rumqttd::protocol::QoS,
    pub retain: bool,
}

impl Outbound {
    /// Topic bytes of the message.
    pub fn topic(&self) -> &Bytes {
        &self.publish.topic
    }
}

/// What the registry keeps about one live session.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    /// Unique per connection, so a late cleanup never removes a successor.
    pub conn_id: u64,
    /// Certificate serial (lowercase hex).
    pub serial: String,
    /// Whether the session outlives its connection (a successor resumes it).
    pub persistent: bool,
    pub tx: mailbox::Sender,
    kick: CancellationToken,
    reason: Arc<OnceLock<CloseReason>>,
    /// Cancelled once the session has published its will and presence.
    pub finished: CancellationToken,
}

impl SessionHandle {
    /// A handle plus the kick token the session itself watches.
    pub fn new(conn_id: u64, serial: String, persistent: bool, tx: mailbox::Sender) -> Self {
        Self {
            conn_id,
            serial,
            persistent,
            tx,
            kick: CancellationToken::new(),
            reason: Arc::new(OnceLock::new()),
            finished: CancellationToken::new(),
        }
    }

    /// Asks the session to close for `reason` (the first reason wins).
    pub fn kick(&self, reason: CloseReason) {
        let _ = self.reason.set(reason);
        self.kick.cancel();
    }

    /// Resolves when the session has been kicked; yields the reason.
    pub async fn kicked(&self) -> CloseReason {
        self.kick.cancelled().await;
        self.reason.get().copied().unwrap_or(CloseReason::Shutdown)
    }
}

/// All sessions of this node.
#[derive(Debug, Default)]
pub struct Registry {
    sessions: RwLock<HashMap<String, SessionHandle>>,
    next_conn: Mutex<u64>,
}

impl Registry {
    /// A fresh connection id.
    pub fn next_conn_id(&self) -> u64 {
        let mut n = self.next_conn.lock().unwrap_or_else(|p| p.into_inner());
        *n += 1;
        *n
    }

    /// Registers a session; returns the one it replaces, which the caller kicks.
    pub fn insert(&self, client_id: &str, handle: SessionHandle) -> Option<SessionHandle> {
        self.write().insert(client_id.to_string(), handle)
    }

    /// Removes the entry only if it still belongs to `conn_id`.
    pub fn remove(&self, client_id: &str, conn_id: u64) {
        let mut map = self.write();
        if map.get(client_id).is_some_and(|h| h.conn_id == conn_id) {
            map.remove(client_id);
        }
    }

    /// Whether a live session with this client id will outlive its connection.
    pub fn persistent(&self, client_id: &str) -> bool {
        self.read().get(client_id).is_some_and(|h| h.persistent)
    }

    /// The queue of the session with this client id.
    pub fn sender(&self, client_id: &str) -> Option<mailbox::Sender> {
        self.read().get(client_id).map(|h| h.tx.clone())
    }

    /// Kicks every session whose certificate serial is in `revoked`; returns how many.
    pub fn kick_revoked(&self, revoked: &HashSet<String>) -> usize {
        let map = self.read();
        let mut n = 0;
        for h in map.values().filter(|h| revoked.contains(&h.serial)) {
            h.kick(CloseReason::Revoked);
            n += 1;
        }
        n
    }

    /// Whether a session of `client_id` is open (a CONNECT would take it over).
    pub fn contains(&self, client_id: &str) -> bool {
        self.read().contains_key(client_id)
    }

    /// Kicks every session; returns their `finished` tokens to wait on.
    pub fn kick_all(&self, reason: CloseReason) -> Vec<CancellationToken> {
        let map = self.read();
        map.values()
            .map(|h| {
                h.kick(reason);
                h.finished.clone()
            })
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, SessionHandle>> {
        // The map stays consistent under panics (single inserts/removes), so poisoning is ignored.
        self.sessions.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, SessionHandle>> {
        self.sessions.write().unwrap_or_else(|p| p.into_inner())
    }
}
