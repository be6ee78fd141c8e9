//! End-to-end acknowledgement: a device's QoS 1 publish is acknowledged
//! (PUBACK) only once a service session (the bridge) has acknowledged its copy,
//! which the bridge does after committing it to PostgreSQL.
//!
//! Acknowledging on entry to the router left a window in which a reading the
//! device had been told was safe lived only in this node's memory (in the
//! router, in a service session's queue, or in the bridge's TCP connection):
//! a node crash there lost it (the chaos benchmark's readings check caught
//! one). Now the device keeps its message until the cloud has it.
//!
//! How a confirmation travels: the device session registers a [`Waiter`] and
//! gets a token for the publish; the routed copy carries the token in a
//! reserved user property ([`PROPERTY`]) that every delivering session takes
//! out before anything reaches a client (clients cannot forge it: inbound
//! properties of that name are dropped). A service session that delivers the
//! copy at QoS 1 keeps the token with its packet id and confirms it on the
//! client's PUBACK. The first confirmation wins; later ones find nothing.
//!
//! Only publishes some service session takes at QoS 1 or 2 wait (see
//! `pressure::Pressure::routed_in`); the rest are acknowledged at once, as no
//! one will confirm them. A copy written at QoS 0 confirms nothing: nobody
//! acknowledges it, and a node killed before it left its buffers loses it
//! (a QoS 0 observer confirming on write let fleet run 41's killed node
//! acknowledge readings the bridge never stored). A copy a service session loses (its queue's cap, a
//! parked session that expired, a router log it fell behind on) is never
//! confirmed: past `broker.confirm_timeout_secs` the device session routes
//! it again with the same token, and acknowledges it unconfirmed only once
//! no service session attends its topic any more (none connected or parked
//! within its hold takes it; see `session::held`).
//!
//! This module owns the tokens and the wake-up; the sessions decide what waits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttd::protocol::PublishProperties;
use tokio::sync::Notify;

use crate::pressure::Class;

/// User property carrying a confirmation token; never leaves the node
/// (reserved in `message::sanitize`: clients cannot set it).
pub(crate) const PROPERTY: &str = "$kumo/confirm";

/// One device session's confirmations as they arrive.
#[derive(Debug, Default)]
pub(crate) struct Waiter {
    done: Mutex<Vec<u64>>,
    ready: Notify,
}

impl Waiter {
    /// The tokens confirmed since the last call.
    pub(crate) fn take(&self) -> Vec<u64> {
        std::mem::take(&mut *self.done.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Resolves once a confirmation has arrived since the last [`Waiter::take`]
    /// (a confirmation before the wait is not missed: `Notify` keeps a permit).
    pub(crate) async fn ready(&self) {
        self.ready.notified().await;
    }
}

/// The node warns about publishes acknowledged without a confirmation at
/// most this often: a cloud that falls behind gives up on thousands of
/// sessions' publishes at once (300,000 log lines in one fleet ramp), and one
/// line with the count says the same.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The node's open tokens.
#[derive(Debug)]
pub(crate) struct Confirmations {
    next: AtomicU64,
    open: Mutex<HashMap<u64, (Arc<Waiter>, Class)>>,
    /// The newest token confirmed, per [`Class`]: a service that confirmed
    /// a copy routed after another has gone past that one.
    newest: [AtomicU64; 2],
    timeout: Duration,
    /// When the last give-up warning was logged, and how many publishes
    /// were given up since.
    warned: Mutex<(Option<Instant>, u64)>,
}

impl Confirmations {
    /// Confirmations that give up after `timeout`; zero turns them off
    /// (devices are acknowledged when their publish enters the router).
    pub(crate) fn new(timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            next: AtomicU64::new(1),
            open: Mutex::default(),
            newest: Default::default(),
            timeout,
            warned: Mutex::default(),
        })
    }

    /// Notes that `client_id`'s session acknowledged `publishes` without a
    /// confirmation, no service attending them any more (counted in the metrics
    /// by the session); warns at most every [`WARN_EVERY`], with the count
    /// since the last warning.
    pub(crate) fn gave_up(&self, client_id: &str, publishes: usize) {
        let now = Instant::now();
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        warned.1 += publishes as u64;
        if warned.0.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
            return;
        }
        let count = std::mem::take(&mut warned.1);
        warned.0 = Some(now);
        drop(warned);
        tracing::warn!(publishes = count, last_client_id = %client_id,
            "device publishes unconfirmed past broker.confirm_timeout_secs that no service session \
             attends any more (gone, or parked past broker.park_hold_secs); acknowledged them unstored \
             (kumo_broker_confirm_timeouts_total; this warning at most every 10 s)");
    }

    /// Whether device publishes wait for a service's acknowledgement.
    pub(crate) fn enabled(&self) -> bool {
        !self.timeout.is_zero()
    }

    /// How long a routed device publish waits for its confirmation before
    /// it is routed again (see `session::held`).
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A token for a publish of `class` whose confirmation goes to `waiter`.
    pub(crate) fn open(&self, waiter: &Arc<Waiter>, class: Class) -> u64 {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(token, (waiter.clone(), class));
        token
    }

    /// Whether a copy of `class` routed after `token`'s has been confirmed:
    /// the service went past `token`'s copy, which is then likely lost (a
    /// queue's cap, a router log a slow reader fell behind on) rather than
    /// still on its way.
    pub(crate) fn overtaken(&self, token: u64, class: Class) -> bool {
        self.newest[class.idx()].load(Ordering::Acquire) > token
    }

    /// Confirms `token`; false when it is not open (confirmed already, given
    /// up, or its device session is gone).
    pub(crate) fn confirm(&self, token: u64) -> bool {
        let Some((waiter, class)) = self.lock().remove(&token) else {
            return false;
        };
        self.newest[class.idx()].fetch_max(token, Ordering::AcqRel);
        waiter
            .done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(token);
        waiter.ready.notify_one();
        true
    }

    /// Closes tokens nobody will wait for any more (given up, or their
    /// device session ended).
    pub(crate) fn forget(&self, tokens: impl IntoIterator<Item = u64>) {
        let mut open = self.lock();
        for t in tokens {
            open.remove(&t);
        }
    }

    /// Tokens open now.
    #[cfg(test)]
    pub(crate) fn open_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Arc<Waiter>, Class)>> {
        // Inserts and removes leave the map consistent under panics.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Adds `token` to a routed message's properties.
pub(crate) fn put(properties: &mut Option<PublishProperties>, token: u64) {
    properties
        .get_or_insert_with(PublishProperties::default)
        .user_properties
        .push((PROPERTY.to_string(), token.to_string()));
}

/// Takes the token out of a routed message's properties (every delivering
/// session does, whether it confirms or not).
pub(crate) fn take(properties: &mut Option<PublishProperties>) -> Option<u64> {
    crate::message::take_reserved(properties, PROPERTY)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_confirmation_reaches_the_waiter_once() {
        let c = Confirmations::new(Duration::from_secs(1));
        let w = Arc::new(Waiter::default());
        let a = c.open(&w, Class::Bulk);
        let b = c.open(&w, Class::Bulk);
        assert_ne!(a, b);
        assert!(c.confirm(b));
        assert!(!c.confirm(b), "a second confirmation finds nothing");
        // The permit stored before the wait is not lost.
        tokio::time::timeout(Duration::from_secs(1), w.ready())
            .await
            .unwrap();
        assert_eq!(w.take(), vec![b]);
        assert_eq!(c.open_count(), 1);
        c.forget([a]);
        assert!(!c.confirm(a), "a forgotten token cannot be confirmed");
        assert_eq!(c.open_count(), 0);
    }

    #[test]
    fn a_token_is_overtaken_once_a_later_one_of_its_class_is_confirmed() {
        let c = Confirmations::new(Duration::from_secs(1));
        let w = Arc::new(Waiter::default());
        let (reading, state) = (c.open(&w, Class::Bulk), c.open(&w, Class::Control));
        let later = c.open(&w, Class::Bulk);
        assert!(!c.overtaken(reading, Class::Bulk));
        c.confirm(state);
        assert!(
            !c.overtaken(reading, Class::Bulk),
            "the other lane's progress says nothing"
        );
        c.confirm(later);
        assert!(c.overtaken(reading, Class::Bulk));
        assert!(!c.overtaken(later, Class::Bulk));
    }

    #[test]
    fn the_token_travels_in_a_property_that_is_taken_out_again() {
        let mut props = Some(PublishProperties {
            user_properties: vec![("k".into(), "v".into())],
            ..Default::default()
        });
        put(&mut props, 42);
        assert_eq!(take(&mut props), Some(42));
        assert_eq!(take(&mut props), None);
        assert_eq!(
            props.unwrap().user_properties,
            vec![("k".into(), "v".into())]
        );
    }

    #[test]
    fn a_client_cannot_forge_a_token() {
        let mut props = Some(PublishProperties {
            user_properties: vec![(PROPERTY.into(), "7".into())],
            ..Default::default()
        });
        crate::message::sanitize(&mut props);
        assert_eq!(take(&mut props), None);
    }

    #[test]
    fn give_ups_are_warned_about_once_then_counted_until_the_next_warning() {
        let c = Confirmations::new(Duration::from_secs(30));
        c.gave_up("a", 3);
        assert_eq!(c.warned.lock().unwrap().1, 0, "the first is warned at once");
        c.gave_up("b", 2);
        c.gave_up("c", 5);
        assert_eq!(
            c.warned.lock().unwrap().1,
            7,
            "later ones wait for the next warning"
        );
        c.warned.lock().unwrap().0 = Some(Instant::now() - WARN_EVERY);
        c.gave_up("d", 1);
        assert_eq!(c.warned.lock().unwrap().1, 0, "warned with the 8 since");
    }

    #[test]
    fn zero_turns_confirmations_off() {
        assert!(!Confirmations::new(Duration::ZERO).enabled());
        assert!(Confirmations::new(Duration::from_secs(30)).enabled());
    }
}
