//! Ingress flow control: device publishes wait while the cloud is behind.
//!
//! A device's QoS 1 reading is acknowledged (PUBACK) only once it has entered the
//! router, and the router never pushes back on a publisher: when the bridge (the
//! service identity) reads slower than devices publish, messages pile up in its
//! session queue, and past `session_queue` the oldest would be dropped — readings
//! the devices were already told are safe. So the node measures how much is
//! waiting for service sessions (connected or parked) and, above a high-water
//! mark, device sessions stop forwarding and acknowledging publishes until the
//! backlog falls below a low-water mark. Devices keep their unacknowledged
//! messages and resend them if they reconnect; nothing acknowledged is lost.
//!
//! Two things are counted: what waits in service sessions' queues (each
//! session reports its length through a [`Gauge`]), and what is still inside
//! the router on its way to them — device publishes on the leaves the bridge
//! consumes (sensors, meter, state, acks) counted in as they are forwarded and
//! out as a service session takes them from its link. Counting only the
//! queues reacts too late: the router's log holds hundreds of thousands of
//! messages, which keep arriving after the gate closes. The in-router count
//! covers only publishes some service session's filters match (nothing waits
//! for a bridge that never came or does not subscribe to that leaf) and never
//! goes below zero (a retained state delivered on subscribe leaves without
//! having been counted in; two bridges both receiving a message count it out
//! twice). Both errors only weaken the gate; neither can hold devices forever.
//!
//! A service session that is away with its session kept (parked: the bridge
//! restarting, or cut from the node) holds device publishes too, from the
//! moment it is parked, for at most `broker.park_hold_secs`: what the node
//! acknowledged while nobody read it would live only in the node's memory,
//! and a node crash before the bridge came back would lose it (the chaos
//! benchmark lost 1,248 acknowledged reports that way). Devices keep what is
//! unacknowledged; past the hold the node acknowledges again, so a bridge
//! that never comes back cannot stall the fleet for the whole session expiry.
//!
//! Only service sessions count: a slow third-party integration must not stall
//! the fleet (its queue keeps the drop-oldest bound). This module owns the
//! accounting and the wake-up; the session decides what to hold.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use kumo_contract::topic::Leaf;
use tokio::sync::Notify;

/// Node-wide count of messages waiting for service sessions.
#[derive(Debug)]
pub(crate) struct Pressure {
    queued: AtomicUsize,
    /// Device publishes in the router on their way to service sessions.
    routed: AtomicUsize,
    /// Filters of every service session (connected or parked), by gauge.
    members: Mutex<HashMap<u64, Vec<String>>>,
    /// Their union, read on every device publish.
    filters: RwLock<Vec<String>>,
    next_gauge: AtomicU64,
    high: usize,
    low: usize,
    throttled: AtomicBool,
    relieved: Notify,
    /// Service sessions parked and still within their hold.
    parked: AtomicUsize,
}

impl Pressure {
    /// Throttles at `high` queued messages and releases at `low`.
    pub(crate) fn new(high: usize, low: usize) -> Arc<Self> {
        let high = high.max(1);
        Arc::new(Self {
            queued: AtomicUsize::new(0),
            routed: AtomicUsize::new(0),
            members: Mutex::default(),
            filters: RwLock::new(Vec::new()),
            next_gauge: AtomicU64::new(0),
            high,
            low: low.min(high - 1),
            throttled: AtomicBool::new(false),
            relieved: Notify::new(),
            parked: AtomicUsize::new(0),
        })
    }

    /// Thresholds for a node whose service sessions hold `session_queue`
    /// messages: throttle at a quarter, release at an eighth. What is already
    /// in the router and the ingress queues when the gate closes still
    /// arrives, so the gate sits well below the hard cap (and its drop-oldest).
    pub(crate) fn for_session_queue(session_queue: usize) -> Arc<Self> {
        Self::new(session_queue / 4, session_queue / 8)
    }

    /// Whether device publishes should be held now.
    pub(crate) fn throttled(&self) -> bool {
        self.throttled.load(Ordering::Acquire)
    }

    /// Messages currently counted.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Resolves once device publishes may flow again (at once if they may).
    pub(crate) async fn relieved(&self) {
        loop {
            let notified = self.relieved.notified();
            tokio::pin!(notified);
            // Registered before the check, so a release in between is not missed.
            notified.as_mut().enable();
            if !self.throttled() {
                return;
            }
            notified.await;
        }
    }

    /// A gauge for one service session's queue.
    pub(crate) fn gauge(self: &Arc<Self>) -> Gauge {
        Gauge {
            pressure: self.clone(),
            own: 0,
            id: self.next_gauge.fetch_add(1, Ordering::Relaxed),
            parked: false,
        }
    }

    /// A device publish on `topic` entered the router.
    pub(crate) fn routed_in(&self, topic: &[u8]) {
        let filters = self.filters.read().unwrap_or_else(|e| e.into_inner());
        if filters.is_empty() {
            return;
        }
        let matched = counted(topic)
            .is_some_and(|t| filters.iter().any(|f| rumqttd::protocol::matches(t, f)));
        drop(filters);
        if matched {
            self.routed.fetch_add(1, Ordering::AcqRel);
            self.check();
        }
    }

    fn set_member(&self, id: u64, filters: Option<Vec<String>>) {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        match filters {
            Some(f) if !f.is_empty() => members.insert(id, f),
            _ => members.remove(&id),
        };
        let mut union: Vec<String> = members.values().flatten().cloned().collect();
        union.sort();
        union.dedup();
        if union.is_empty() {
            // Nobody left to wait for.
            self.routed.store(0, Ordering::Release);
        }
        *self.filters.write().unwrap_or_else(|e| e.into_inner()) = union;
        drop(members);
        self.check();
    }

    /// A service session took a message on `topic` from its router link.
    pub(crate) fn routed_out(&self, topic: &[u8]) {
        if counted(topic).is_some() {
            let _ = self
                .routed
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            self.check();
        }
    }

    fn adjust(&self, old: usize, new: usize) {
        if new >= old {
            self.queued.fetch_add(new - old, Ordering::AcqRel);
        } else {
            self.queued.fetch_sub(old - new, Ordering::AcqRel);
        }
        self.check();
    }

    fn check(&self) {
        let total = self.queued.load(Ordering::Acquire) + self.routed.load(Ordering::Acquire);
        let parked = self.parked.load(Ordering::Acquire);
        if total >= self.high || parked > 0 {
            if !self.throttled.swap(true, Ordering::AcqRel) {
                tracing::warn!(
                    queued = total,
                    parked,
                    "service sessions are behind or away; holding device publishes"
                );
            }
        } else if total <= self.low && self.throttled.swap(false, Ordering::AcqRel) {
            tracing::info!(
                queued = total,
                "service sessions caught up; releasing device publishes"
            );
            self.relieved.notify_waiters();
        }
    }
}

/// One service session's share of the count; moves with the session between
/// connected and parked, and gives its share back when dropped.
#[derive(Debug)]
pub(crate) struct Gauge {
    pressure: Arc<Pressure>,
    own: usize,
    id: u64,
    /// Whether this gauge's session is parked within its hold.
    parked: bool,
}

impl Gauge {
    /// See [`Pressure::routed_out`].
    pub(crate) fn routed_out(&self, topic: &[u8]) {
        self.pressure.routed_out(topic);
    }

    /// The session's granted filters (shared-subscription prefix stripped):
    /// device publishes they match are counted while in the router.
    pub(crate) fn set_filters<'a>(&self, filters: impl IntoIterator<Item = &'a str>) {
        let filters = filters.into_iter().map(str::to_string).collect();
        self.pressure.set_member(self.id, Some(filters));
    }

    /// Marks this session as parked and within its hold (device publishes
    /// are held meanwhile), or no longer.
    pub(crate) fn set_parked(&mut self, parked: bool) {
        if parked == self.parked {
            return;
        }
        self.parked = parked;
        if parked {
            self.pressure.parked.fetch_add(1, Ordering::AcqRel);
        } else {
            self.pressure.parked.fetch_sub(1, Ordering::AcqRel);
        }
        self.pressure.check();
    }

    /// Records that this session now has `n` messages waiting.
    pub(crate) fn set(&mut self, n: usize) {
        if n != self.own {
            self.pressure.adjust(self.own, n);
            self.own = n;
        }
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        self.set_parked(false);
        self.set(0);
        self.pressure.set_member(self.id, None);
    }
}

/// `topic` if a message on it is a device publish the bridge consumes.
fn counted(topic: &[u8]) -> Option<&str> {
    let topic = std::str::from_utf8(topic).ok()?;
    matches!(
        kumo_contract::topic::parse_device_topic(topic),
        Some((
            _,
            Leaf::Sensor(_) | Leaf::Sensors | Leaf::Meter | Leaf::State | Leaf::Acks
        ))
    )
    .then_some(topic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn throttles_at_high_water_and_releases_at_low_water() {
        let p = Pressure::new(10, 4);
        let mut a = p.gauge();
        let mut b = p.gauge();
        a.set(6);
        b.set(3);
        assert!(!p.throttled());
        b.set(4);
        assert!(p.throttled(), "6 + 4 reaches high water");
        a.set(1);
        assert!(
            p.throttled(),
            "5 is above low water: still held (hysteresis)"
        );
        b.set(3);
        assert!(!p.throttled());
        assert_eq!(p.queued(), 4);
    }

    #[test]
    fn a_dropped_gauge_gives_its_share_back() {
        let p = Pressure::new(10, 4);
        let mut a = p.gauge();
        a.set(12);
        assert!(p.throttled());
        drop(a);
        assert_eq!(p.queued(), 0);
        assert!(!p.throttled());
    }

    #[test]
    fn messages_on_their_way_to_a_service_session_count() {
        let p = Pressure::new(3, 1);
        let reading = b"devices/remo-1/sensors/te";
        let g = p.gauge();
        p.routed_in(reading);
        p.routed_in(reading);
        p.routed_in(reading);
        assert!(
            !p.throttled(),
            "no service filter yet: nothing waits for them"
        );
        g.set_filters(["devices/+/sensors/+", "devices/+/presence"]);
        p.routed_in(reading);
        p.routed_in(b"devices/remo-1/presence");
        p.routed_in(b"devices/remo-1/meter");
        p.routed_in(b"devices/remo-1/custom");
        p.routed_in(reading);
        assert!(
            !p.throttled(),
            "only what the filters match and the bridge consumes"
        );
        p.routed_in(reading);
        assert!(p.throttled(), "three readings on their way to the bridge");
        p.routed_out(reading);
        assert!(p.throttled(), "hysteresis");
        p.routed_out(reading);
        assert!(!p.throttled());
        p.routed_out(reading);
        p.routed_out(b"devices/remo-1/state");
        assert_eq!(p.routed.load(Ordering::Relaxed), 0, "never below zero");
        for _ in 0..3 {
            p.routed_in(reading);
        }
        assert!(p.throttled());
        drop(g);
        assert!(!p.throttled(), "the last service session gone: count reset");
    }

    #[test]
    fn device_publishes_are_held_while_a_service_session_is_parked_within_its_hold() {
        let p = Pressure::new(10, 4);
        let mut away = p.gauge();
        away.set_filters(["devices/+/sensors"]);
        assert!(!p.throttled());
        away.set_parked(true);
        assert!(p.throttled(), "the bridge is away: nothing is acknowledged");
        let mut other = p.gauge();
        other.set_parked(true);
        away.set_parked(false);
        assert!(p.throttled(), "another service session is still away");
        drop(other);
        assert!(!p.throttled(), "the hold ended or the session came back");
        away.set_parked(true);
        drop(away);
        assert!(!p.throttled(), "a resumed (dropped) parked gauge releases");
        assert_eq!(p.parked.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_parked_session_past_its_hold_still_counts_its_backlog() {
        let p = Pressure::new(10, 4);
        let mut away = p.gauge();
        away.set_parked(true);
        away.set(12);
        away.set_parked(false);
        assert!(p.throttled(), "12 queued is above high water");
        away.set(3);
        assert!(!p.throttled());
    }

    #[tokio::test]
    async fn waiters_wake_when_the_backlog_drains() {
        let p = Pressure::new(10, 4);
        let mut g = p.gauge();
        g.set(10);
        let waiter = tokio::spawn({
            let p = p.clone();
            async move { p.relieved().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        g.set(2);
        let woken = tokio::time::timeout(Duration::from_secs(2), waiter).await;
        assert!(matches!(woken, Ok(Ok(()))));
    }
}
