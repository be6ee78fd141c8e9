//! The per-account live event hub behind `GET /v1/events`.
//!
//! Owns event ids, the bounded replay backlog of each account and the fan-out
//! to that account's SSE subscribers. Producers are the [`router`] (device
//! events from the [`LiveFeed`](crate::live::LiveFeed), mapped to accounts) and
//! the rules worker ([`EventHub::publish`]). It must not block a producer: each
//! subscriber has a bounded channel, and a subscriber that falls behind is cut
//! off (its stream ends; the client reconnects with `Last-Event-ID` and resumes
//! from the backlog). It does no I/O.
//!
//! # Ids
//!
//! Ids are monotonic per account. An account's backlog is created with first id
//! `unix milliseconds × 1000` at creation, so ids keep growing across bridge
//! restarts and backlog evictions (unless one account produces more than 1000
//! events per millisecond for a long stretch). A client presenting an id the
//! backlog no longer covers (evicted, or from another process) gets an
//! `event: reset` first, then whatever the backlog still holds.
//!
//! # Memory
//!
//! Device events (readings, presence, ...) are only kept for accounts that have
//! a backlog: one is created when a client subscribes or the rules publish for
//! the account, and dropped after [`EventSettings::idle_backlog_secs`] without
//! subscribers. So the hub holds at most `backlog` events per recently watched
//! account, not per device of the fleet. (That eviction is why it keeps a
//! [`Backlog`] per account itself rather than an `AccountBacklogs`, which
//! never forgets an account.)

pub mod router;
mod viewers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kumo_rules::{Backlog, Since, Stamped};
use serde_json::Value;
use tokio::sync::{mpsc, Notify};

pub use crate::settings::EventSettings;

/// One event as subscribers get it: the SSE `event:` name and the JSON `data:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The SSE event name: `reading`, `presence`, `appliance_state`, `command`,
    /// or whatever the rules publish (`rule_execution`, `rule_event`, ...).
    pub kind: String,
    /// The JSON payload, serialized once.
    pub data: Arc<str>,
}

/// An event with its id.
pub type Event = Stamped<Arc<Message>>;

/// Something interested in every event of some accounts (account webhooks).
pub trait Tap: Send + Sync + 'static {
    /// Whether events of `kind` for `account` should be handed to [`Tap::take`].
    fn wants(&self, account: &str, kind: &str) -> bool;
    /// Receives an event; `id` is its SSE id when the account's stream kept
    /// it. Must not block.
    fn take(&self, account: &str, id: Option<u64>, kind: &str, data: &Value);
    /// Accounts it may want events of (their devices get routed).
    fn accounts(&self) -> Vec<String>;
}

/// What a new subscriber gets.
#[derive(Debug)]
pub struct Subscription {
    /// `true` when the requested `Last-Event-ID` is no longer covered: events
    /// were lost and the client should refetch state.
    pub gap: bool,
    /// Events to replay first, oldest first.
    pub replay: Vec<Event>,
    /// Live events after the replay. Ends when the subscriber falls behind or
    /// the bridge shuts down.
    pub live: mpsc::Receiver<Event>,
}

struct Stream {
    backlog: Backlog<Arc<Message>>,
    subscribers: Vec<mpsc::Sender<Event>>,
    idle_since: Instant,
}

struct Inner {
    settings: EventSettings,
    accounts: Mutex<HashMap<String, Stream>>,
    tap: Mutex<Option<Arc<dyn Tap>>>,
    /// Device → the watched accounts that see it (see [`router`]).
    viewers: viewers::Viewers,
    interest: Notify,
}

/// Cheap to clone: every clone is the same hub.
#[derive(Clone)]
pub struct EventHub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub").finish_non_exhaustive()
    }
}

fn first_id_now() -> u64 {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 1000)
    });
    ms.saturating_mul(1000).max(1)
}

impl EventHub {
    /// An empty hub.
    pub fn new(settings: EventSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                accounts: Mutex::new(HashMap::new()),
                tap: Mutex::new(None),
                viewers: viewers::Viewers::default(),
                interest: Notify::new(),
            }),
        }
    }

    /// The interval between SSE keep-alive comments.
    pub fn keepalive(&self) -> Duration {
        Duration::from_secs(self.inner.settings.keepalive_secs)
    }

    /// Hands every later event wanted by `tap` to it (account webhooks).
    pub fn set_tap(&self, tap: Arc<dyn Tap>) {
        *self.inner.tap.lock().unwrap_or_else(|p| p.into_inner()) = Some(tap);
    }

    /// The tap, cloned out so no lock is held while calling it.
    fn tap(&self) -> Option<Arc<dyn Tap>> {
        self.inner
            .tap
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn accounts(&self) -> MutexGuard<'_, HashMap<String, Stream>> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.inner
            .accounts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn new_stream(&self) -> Stream {
        Stream {
            backlog: Backlog::starting_at(self.inner.settings.backlog, first_id_now()),
            subscribers: Vec::new(),
            idle_since: Instant::now(),
        }
    }

    /// Publishes an event to the account's stream (creating its backlog if
    /// needed) and to account webhooks; returns the event id.
    pub fn publish(&self, account: &str, kind: &str, data: Value) -> u64 {
        self.offer(account, kind, data, true).unwrap_or_default()
    }

    /// Publishes a device event: kept only when the account has a backlog
    /// (someone watches or watched recently). Returns the id if it was kept.
    pub fn offer_device_event(&self, account: &str, kind: &str, data: Value) -> Option<u64> {
        self.offer(account, kind, data, false)
    }

    fn offer(&self, account: &str, kind: &str, data: Value, create: bool) -> Option<u64> {
        let tap = self.tap().filter(|t| t.wants(account, kind));
        let message = Arc::new(Message {
            kind: kind.to_string(),
            data: Arc::from(data.to_string()),
        });
        let id = {
            let mut accounts = self.accounts();
            if create && !accounts.contains_key(account) {
                accounts.insert(account.to_string(), self.new_stream());
                self.inner.interest.notify_one();
            }
            accounts
                .get_mut(account)
                .map(|stream| push(stream, message))
        };
        if let Some(tap) = tap {
            tap.take(account, id, kind, &data);
        }
        id
    }

    /// Whether device events for `account` are kept now (it has a backlog) or
    /// wanted by the tap.
    pub fn watches(&self, account: &str, kind: &str) -> bool {
        if self.accounts().contains_key(account) {
            return true;
        }
        self.tap().is_some_and(|t| t.wants(account, kind))
    }

    /// Accounts that currently have a backlog.
    pub fn watched_accounts(&self) -> Vec<String> {
        self.accounts().keys().cloned().collect()
    }

    /// Subscribes to the account's events, or `None` when the account already
    /// has `max_streams_per_account` streams. With `last_event_id`, the
    /// events after it are replayed first (or a gap is reported). Replay and
    /// live registration happen under one lock, so nothing is lost or doubled.
    pub fn subscribe(&self, account: &str, last_event_id: Option<u64>) -> Option<Subscription> {
        let (tx, live) = mpsc::channel(self.inner.settings.subscriber_buffer.max(1));
        let mut accounts = self.accounts();
        let stream = accounts.entry(account.to_string()).or_insert_with(|| {
            self.inner.interest.notify_one();
            self.new_stream()
        });
        stream.subscribers.retain(|s| !s.is_closed());
        if stream.subscribers.len() >= self.inner.settings.max_streams_per_account {
            return None;
        }
        let (gap, replay) = match last_event_id.map(|id| stream.backlog.since(id)) {
            None => (false, Vec::new()),
            Some(Since::Events(events)) => (false, events),
            Some(Since::Gap(events)) => (true, events),
        };
        stream.subscribers.push(tx);
        Some(Subscription { gap, replay, live })
    }

    /// Drops backlogs of accounts without subscribers for longer than the
    /// idle period; returns how many were dropped.
    pub fn evict_idle(&self) -> usize {
        let idle = Duration::from_secs(self.inner.settings.idle_backlog_secs);
        let mut accounts = self.accounts();
        let before = accounts.len();
        accounts.retain(|_, stream| {
            stream.subscribers.retain(|s| !s.is_closed());
            if !stream.subscribers.is_empty() {
                stream.idle_since = Instant::now();
                return true;
            }
            stream.idle_since.elapsed() < idle
        });
        before - accounts.len()
    }

    /// Accounts whose device events are routed: those with a backlog and
    /// those the tap wants.
    pub fn interested_accounts(&self) -> Vec<String> {
        let mut accounts = self.watched_accounts();
        if let Some(tap) = self.tap() {
            accounts.extend(tap.accounts());
        }
        accounts.sort_unstable();
        accounts.dedup();
        accounts
    }

    /// Says the set of interested accounts changed (a webhook was added).
    pub fn notify_interest(&self) {
        self.inner.interest.notify_one();
    }

    /// Resolves when the set of interested accounts may have changed.
    pub async fn interest_changed(&self) {
        self.inner.interest.notified().await;
    }

    /// The watched accounts that see `device` (the members of its home).
    pub fn viewers_of(&self, device: &str) -> Vec<Arc<str>> {
        self.inner.viewers.of(device)
    }

    /// Records that `account` sees `devices`.
    pub fn add_viewers(&self, account: &str, devices: impl IntoIterator<Item = String>) {
        self.inner.viewers.add(account, devices);
    }

    /// Applies changes (device, every account that sees it now; none when it
    /// belongs to nobody): the device is routed to the interested ones only.
    pub fn update_viewers(&self, changes: &[(String, Vec<String>)]) {
        if changes.is_empty() {
            return;
        }
        self.inner
            .viewers
            .update(&self.interested_accounts(), changes);
    }

    /// Replaces the device → accounts map for the accounts in `loaded` with
    /// `map`. Entries of accounts that became interested meanwhile (loaded by
    /// [`router::load_account`]) are kept; those no longer interested dropped.
    pub fn replace_viewers(&self, loaded: &[String], map: HashMap<String, Vec<Arc<str>>>) {
        self.inner
            .viewers
            .replace(&self.interested_accounts(), loaded, map);
    }

    /// Marks `device_ownership_log` applied up to `seq` (the router).
    pub fn followed_to(&self, seq: i64) {
        self.inner.viewers.followed_to(seq);
    }

    /// Waits until the router has applied `device_ownership_log` up to `seq`:
    /// from then on no event is routed by what the log said before.
    pub async fn wait_followed(&self, seq: i64) {
        self.inner.viewers.wait_followed(seq).await;
    }

    /// Ends every subscriber's stream (shutdown).
    pub fn close_all(&self) {
        for stream in self.accounts().values_mut() {
            stream.subscribers.clear();
        }
    }

    /// Number of live subscribers, over all accounts.
    pub fn subscriber_count(&self) -> usize {
        self.accounts()
            .values()
            .map(|s| s.subscribers.iter().filter(|t| !t.is_closed()).count())
            .sum()
    }
}

/// Appends to the backlog and fans out; a full subscriber is cut off.
fn push(stream: &mut Stream, message: Arc<Message>) -> u64 {
    let id = stream.backlog.push(message.clone());
    let event = Stamped { id, event: message };
    stream
        .subscribers
        .retain(|tx| match tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::info!(
                    event_id = id,
                    "SSE subscriber fell behind; closing its stream"
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    // An account without subscribers keeps the moment it became idle.
    if !stream.subscribers.is_empty() {
        stream.idle_since = Instant::now();
    }
    id
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
