//! Ingress flow control: device publishes wait while the cloud is behind.
//!
//! A device's publish enters the router as soon as the session has read it
//! (its QoS 1 PUBACK then waits for the bridge's, see [`crate::confirm`];
//! QoS 0 has none), and the router never pushes back on a publisher: when the bridge (the
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
//! Readings and the rest have a gate each ([`Class`]): the bridge takes
//! readings on a connection of their own, and a backlog there (the reading
//! writer behind) must not hold a device's command ack or state report, which
//! go to its other connection — a fleet run held every command for minutes
//! that way. A service session's queue counts towards the classes its filters
//! take; a device publish waits only for its own class's gate.
//!
//! Only service sessions count: a slow third-party integration must not stall
//! the fleet (its queue keeps the drop-oldest bound). This module owns the
//! accounting and the wake-up; the session decides what to hold.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use kumo_contract::topic::Leaf;
use tokio::sync::Notify;

/// What a device publish is, for the gates: readings (the bulk, on the
/// bridge's data connection) or everything else (state reports, command
/// acks: small, and what a command waits for). Each has a gate of its own, so
/// a backlog of readings never holds back a command's ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// `sensors/{s}`, `sensors`, `meter`.
    Bulk,
    /// Every other leaf a device publishes on (`state`, `acks`, …).
    Control,
}

impl Class {
    const ALL: [Class; 2] = [Class::Bulk, Class::Control];

    /// The class of a device publish on `topic` (by its leaf; no allocation:
    /// this runs on every publish).
    pub(crate) fn of(topic: &[u8]) -> Class {
        let mut parts = topic.split(|b| *b == b'/');
        let (Some(b"devices"), Some(_), Some(leaf)) = (parts.next(), parts.next(), parts.next())
        else {
            return Class::Control;
        };
        match (leaf, parts.next(), parts.next()) {
            (b"sensors", _, None) | (b"meter", None, None) => Class::Bulk,
            _ => Class::Control,
        }
    }

    pub(crate) fn idx(self) -> usize {
        match self {
            Class::Bulk => 0,
            Class::Control => 1,
        }
    }

    /// Topics of this class, to tell which classes a session's filters take.
    fn samples(self) -> &'static [&'static str] {
        match self {
            Class::Bulk => &[
                "devices/d/sensors/te",
                "devices/d/sensors",
                "devices/d/meter",
            ],
            Class::Control => &["devices/d/state", "devices/d/acks"],
        }
    }
}

/// One class's count and gate.
#[derive(Debug, Default)]
struct Gate {
    /// Messages in the queues of the service sessions that take this class.
    queued: AtomicUsize,
    /// Device publishes of this class in the router on their way to them.
    routed: AtomicUsize,
    /// Service sessions taking this class, parked and still within their hold.
    parked: AtomicUsize,
    throttled: AtomicBool,
    relieved: Notify,
}

/// Node-wide count of messages waiting for service sessions, per [`Class`].
#[derive(Debug)]
pub(crate) struct Pressure {
    gates: [Gate; 2],
    /// Filters of every service session (connected or parked), by gauge.
    members: Mutex<HashMap<u64, Member>>,
    /// Their union, read on every device publish, each filter with whether
    /// some session was granted it at QoS 1 or 2 (acknowledges, and so can
    /// confirm, what it takes: see [`Pressure::routed_in`]).
    filters: RwLock<Vec<(String, bool)>>,
    /// The filters granted QoS 1 or 2 to a connected service session, or one
    /// parked within its hold (see [`Pressure::attended`]).
    attended: RwLock<Vec<String>>,
    next_gauge: AtomicU64,
    high: usize,
    low: usize,
}

impl Pressure {
    /// Throttles a class at `high` queued messages and releases it at `low`.
    pub(crate) fn new(high: usize, low: usize) -> Arc<Self> {
        let high = high.max(1);
        Arc::new(Self {
            gates: Default::default(),
            members: Mutex::default(),
            filters: RwLock::new(Vec::new()),
            attended: RwLock::new(Vec::new()),
            next_gauge: AtomicU64::new(0),
            high,
            low: low.min(high - 1),
        })
    }

    /// Thresholds for a node whose service sessions hold `session_queue`
    /// messages: throttle at a quarter, release at an eighth. What is already
    /// in the router and the ingress queues when the gate closes still
    /// arrives, so the gate sits well below the hard cap (and its drop-oldest).
    pub(crate) fn for_session_queue(session_queue: usize) -> Arc<Self> {
        Self::new(session_queue / 4, session_queue / 8)
    }

    fn gate(&self, class: Class) -> &Gate {
        &self.gates[class.idx()]
    }

    /// Whether device publishes of `class` should be held now.
    pub(crate) fn throttled(&self, class: Class) -> bool {
        self.gate(class).throttled.load(Ordering::Acquire)
    }

    /// Messages of `class` currently counted.
    #[cfg(test)]
    pub(crate) fn queued(&self, class: Class) -> usize {
        self.gate(class).queued.load(Ordering::Relaxed)
    }

    /// Resolves once device publishes of `class` may flow again (at once if
    /// they may).
    pub(crate) async fn relieved(&self, class: Class) {
        let gate = self.gate(class);
        loop {
            let notified = gate.relieved.notified();
            tokio::pin!(notified);
            // Registered before the check, so a release in between is not missed.
            notified.as_mut().enable();
            if !self.throttled(class) {
                return;
            }
            notified.await;
        }
    }

    /// A gauge for one service session's queue. Until its filters are known
    /// it counts towards both classes.
    pub(crate) fn gauge(self: &Arc<Self>) -> Gauge {
        Gauge {
            pressure: self.clone(),
            own: 0,
            id: self.next_gauge.fetch_add(1, Ordering::Relaxed),
            parked: false,
            classes: [true, true],
        }
    }

    /// A device publish on `topic` entered the router; whether some service
    /// session (connected or parked) takes it at QoS 1 or 2, and so will
    /// acknowledge (confirm) it. A copy taken at QoS 0 is counted while it
    /// waits, but nothing acknowledges it: it confirms nothing.
    pub(crate) fn routed_in(&self, topic: &[u8]) -> bool {
        let (mut matched, mut confirmed) = (false, false);
        if let Some(t) = counted(topic) {
            let filters = self.filters.read().unwrap_or_else(|e| e.into_inner());
            for (f, acknowledged) in filters.iter() {
                if rumqttd::protocol::matches(t, f) {
                    matched = true;
                    confirmed |= acknowledged;
                    if confirmed {
                        break;
                    }
                }
            }
        }
        if matched {
            let class = Class::of(topic);
            self.gate(class).routed.fetch_add(1, Ordering::AcqRel);
            self.check(class);
        }
        confirmed
    }

    /// Whether some service session that is connected, or parked within
    /// its hold, takes a device publish on `topic`: one that can still be
    /// expected to confirm it. Past its hold a parked session's queue keeps
    /// what it takes, but the node no longer holds devices' answers for it
    /// (see the module's header).
    pub(crate) fn attended(&self, topic: &[u8]) -> bool {
        takes(&self.attended, topic)
    }

    fn set_member(&self, id: u64, filters: Option<(Vec<String>, Vec<String>)>) {
        self.update_members(|members| match filters {
            Some((filters, confirming)) if !filters.is_empty() => {
                let lapsed = members.get(&id).is_some_and(|m| m.lapsed);
                let member = Member {
                    filters,
                    confirming,
                    lapsed,
                };
                members.insert(id, member);
            }
            _ => {
                members.remove(&id);
            }
        });
    }

    fn set_lapsed(&self, id: u64, lapsed: bool) {
        self.update_members(|members| {
            if let Some(m) = members.get_mut(&id) {
                m.lapsed = lapsed;
            }
        });
    }

    /// Changes the members, then the unions read on device publishes.
    fn update_members(&self, change: impl FnOnce(&mut HashMap<u64, Member>)) {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut members);
        let mut union: Vec<(String, bool)> = members
            .values()
            .flat_map(|m| {
                let acknowledged = |f: &String| m.confirming.contains(f);
                m.filters.iter().map(move |f| (f.clone(), acknowledged(f)))
            })
            .collect();
        // One entry per filter, acknowledged if any session acknowledges it:
        // reversed, a filter's `true` entry comes first, which dedup keeps.
        union.sort();
        union.reverse();
        union.dedup_by(|a, b| a.0 == b.0);
        let mut attended: Vec<String> = members
            .values()
            .filter(|m| !m.lapsed)
            .flat_map(|m| m.confirming.iter().cloned())
            .collect();
        attended.sort();
        attended.dedup();
        *self.attended.write().unwrap_or_else(|e| e.into_inner()) = attended;
        if union.is_empty() {
            // Nobody left to wait for.
            for gate in &self.gates {
                gate.routed.store(0, Ordering::Release);
            }
        }
        *self.filters.write().unwrap_or_else(|e| e.into_inner()) = union;
        drop(members);
        for class in Class::ALL {
            self.check(class);
        }
    }

    /// A service session took a message on `topic` from its router link.
    pub(crate) fn routed_out(&self, topic: &[u8]) {
        if counted(topic).is_some() {
            let class = Class::of(topic);
            let _ =
                self.gate(class)
                    .routed
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            self.check(class);
        }
    }

    fn adjust(&self, class: Class, old: usize, new: usize) {
        let queued = &self.gate(class).queued;
        if new >= old {
            queued.fetch_add(new - old, Ordering::AcqRel);
        } else {
            queued.fetch_sub(old - new, Ordering::AcqRel);
        }
        self.check(class);
    }

    fn check(&self, class: Class) {
        let gate = self.gate(class);
        let total = gate.queued.load(Ordering::Acquire) + gate.routed.load(Ordering::Acquire);
        let parked = gate.parked.load(Ordering::Acquire);
        if total >= self.high || parked > 0 {
            if !gate.throttled.swap(true, Ordering::AcqRel) {
                tracing::warn!(
                    queued = total,
                    parked,
                    ?class,
                    "service sessions are behind or away; holding device publishes"
                );
            }
        } else if total <= self.low && gate.throttled.swap(false, Ordering::AcqRel) {
            tracing::info!(
                queued = total,
                ?class,
                "service sessions caught up; releasing device publishes"
            );
            gate.relieved.notify_waiters();
        }
    }
}

/// A service session's filters, those of them granted QoS 1 or 2, and
/// whether it is parked past its hold.
#[derive(Debug)]
struct Member {
    filters: Vec<String>,
    confirming: Vec<String>,
    lapsed: bool,
}

/// Whether `filters` take a device publish on `topic` the gates count.
fn takes(filters: &RwLock<Vec<String>>, topic: &[u8]) -> bool {
    let filters = filters.read().unwrap_or_else(|e| e.into_inner());
    !filters.is_empty()
        && counted(topic).is_some_and(|t| filters.iter().any(|f| rumqttd::protocol::matches(t, f)))
}

/// One service session's share of the count; moves with the session between
/// connected and parked, and gives its share back when dropped. It counts
/// towards the classes its session's filters take.
#[derive(Debug)]
pub(crate) struct Gauge {
    pressure: Arc<Pressure>,
    own: usize,
    id: u64,
    /// Whether this gauge's session is parked within its hold.
    parked: bool,
    /// The classes (by [`Class::idx`]) its session takes.
    classes: [bool; 2],
}

impl Gauge {
    /// See [`Pressure::routed_out`].
    pub(crate) fn routed_out(&self, topic: &[u8]) {
        self.pressure.routed_out(topic);
    }

    fn each(&self, mut f: impl FnMut(Class)) {
        for class in Class::ALL {
            if self.classes[class.idx()] {
                f(class);
            }
        }
    }

    /// [`Gauge::set_subscriptions`], every filter granted QoS 1.
    #[cfg(test)]
    pub(crate) fn set_filters<'a>(&mut self, filters: impl IntoIterator<Item = &'a str>) {
        self.set_subscriptions(filters.into_iter().map(|f| (f, true)));
    }

    /// The session's granted filters (shared-subscription prefix stripped),
    /// each with whether it was granted QoS 1 or 2: device publishes they
    /// match are counted while in the router, its queue counts towards the
    /// classes they take, and what it takes at QoS 1 or 2 it will confirm.
    pub(crate) fn set_subscriptions<'a>(
        &mut self,
        subscriptions: impl IntoIterator<Item = (&'a str, bool)>,
    ) {
        let (mut filters, mut confirming) = (Vec::new(), Vec::new());
        for (filter, acknowledged) in subscriptions {
            filters.push(filter.to_string());
            if acknowledged {
                confirming.push(filter.to_string());
            }
        }
        let takes = |class: Class| {
            class
                .samples()
                .iter()
                .any(|t| filters.iter().any(|f| rumqttd::protocol::matches(t, f)))
        };
        let mut classes = [takes(Class::Bulk), takes(Class::Control)];
        if classes == [false, false] {
            // Takes no device publish the gates count: its queue holds other
            // things; count it anyway, as before its filters were known.
            classes = [true, true];
        }
        if classes != self.classes {
            // Move this session's share (and its hold) to its new classes.
            let (own, parked) = (self.own, self.parked);
            self.set(0);
            self.set_parked(false);
            self.classes = classes;
            self.set(own);
            self.set_parked(parked);
        }
        self.pressure
            .set_member(self.id, Some((filters, confirming)));
    }

    /// Marks this session as parked and within its hold (device publishes
    /// of its classes are held meanwhile), or no longer.
    pub(crate) fn set_parked(&mut self, parked: bool) {
        if parked == self.parked {
            return;
        }
        self.parked = parked;
        let pressure = self.pressure.clone();
        self.each(|class| {
            let gate = pressure.gate(class);
            if parked {
                gate.parked.fetch_add(1, Ordering::AcqRel);
            } else {
                gate.parked.fetch_sub(1, Ordering::AcqRel);
            }
            pressure.check(class);
        });
    }

    /// Marks this session as parked past its hold (it no longer counts as
    /// attending what it takes: see [`Pressure::attended`]), or no longer.
    pub(crate) fn set_lapsed(&self, lapsed: bool) {
        self.pressure.set_lapsed(self.id, lapsed);
    }

    /// Records that this session now has `n` messages waiting.
    pub(crate) fn set(&mut self, n: usize) {
        if n != self.own {
            let (pressure, old) = (self.pressure.clone(), self.own);
            self.each(|class| pressure.adjust(class, old, n));
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
        assert!(!p.throttled(Class::Bulk));
        b.set(4);
        assert!(p.throttled(Class::Bulk), "6 + 4 reaches high water");
        a.set(1);
        assert!(
            p.throttled(Class::Bulk),
            "5 is above low water: still held (hysteresis)"
        );
        b.set(3);
        assert!(!p.throttled(Class::Bulk));
        assert_eq!(p.queued(Class::Bulk), 4);
    }

    #[test]
    fn a_dropped_gauge_gives_its_share_back() {
        let p = Pressure::new(10, 4);
        let mut a = p.gauge();
        a.set(12);
        assert!(p.throttled(Class::Bulk));
        drop(a);
        assert_eq!(p.queued(Class::Bulk), 0);
        assert!(!p.throttled(Class::Bulk));
    }

    #[test]
    fn messages_on_their_way_to_a_service_session_count() {
        let p = Pressure::new(3, 1);
        let reading = b"devices/remo-1/sensors/te";
        let mut g = p.gauge();
        p.routed_in(reading);
        p.routed_in(reading);
        p.routed_in(reading);
        assert!(
            !p.throttled(Class::Bulk),
            "no service filter yet: nothing waits for them"
        );
        g.set_filters(["devices/+/sensors/+", "devices/+/presence"]);
        p.routed_in(reading);
        p.routed_in(b"devices/remo-1/presence");
        p.routed_in(b"devices/remo-1/meter");
        p.routed_in(b"devices/remo-1/custom");
        p.routed_in(reading);
        assert!(
            !p.throttled(Class::Bulk),
            "only what the filters match and the bridge consumes"
        );
        p.routed_in(reading);
        assert!(
            p.throttled(Class::Bulk),
            "three readings on their way to the bridge"
        );
        p.routed_out(reading);
        assert!(p.throttled(Class::Bulk), "hysteresis");
        p.routed_out(reading);
        assert!(!p.throttled(Class::Bulk));
        p.routed_out(reading);
        p.routed_out(b"devices/remo-1/sensors/hu");
        assert_eq!(
            p.gate(Class::Bulk).routed.load(Ordering::Relaxed),
            0,
            "never below zero"
        );
        for _ in 0..3 {
            p.routed_in(reading);
        }
        assert!(p.throttled(Class::Bulk));
        drop(g);
        assert!(
            !p.throttled(Class::Bulk),
            "the last service session gone: count reset"
        );
    }

    #[test]
    fn only_a_qos_1_subscription_makes_a_device_publish_wait_for_a_confirmation() {
        let p = Pressure::new(10, 4);
        let te = b"devices/remo-1/sensors/te";
        let mut tap = p.gauge();
        tap.set_subscriptions([("devices/+/sensors/+", false)]);
        assert!(!p.routed_in(te), "a QoS 0 copy confirms nothing");
        let routed = p.gate(Class::Bulk).routed.load(Ordering::Relaxed);
        assert_eq!(routed, 1, "but it is counted while it waits");
        assert!(!p.attended(te));
        let mut bridge = p.gauge();
        bridge.set_subscriptions([("devices/+/sensors/+", true)]);
        assert!(p.routed_in(te) && p.attended(te));
    }

    #[test]
    fn a_service_session_parked_past_its_hold_no_longer_attends_what_it_takes() {
        let p = Pressure::new(10, 4);
        let te = b"devices/remo-1/sensors/te";
        let state = b"devices/remo-1/state";
        let mut data = p.gauge();
        data.set_filters(["devices/+/sensors/+"]);
        let mut control = p.gauge();
        control.set_filters(["devices/+/state", "devices/+/sensors/+"]);
        assert!(p.attended(te) && p.attended(state));
        control.set_lapsed(true);
        assert!(p.attended(te), "the data lane still takes readings");
        assert!(!p.attended(state), "nobody left to confirm a state report");
        assert!(
            p.routed_in(state),
            "a lapsed session's queue still takes (and counts) what it matches"
        );
        // Its filters changing keeps it lapsed; coming back (a new gauge) ends it.
        control.set_filters(["devices/+/state"]);
        assert!(!p.attended(state));
        drop(control);
        let mut back = p.gauge();
        back.set_filters(["devices/+/state"]);
        assert!(p.attended(state));
        drop(data);
        assert!(!p.attended(te));
    }

    #[test]
    fn device_publishes_are_held_while_a_service_session_is_parked_within_its_hold() {
        let p = Pressure::new(10, 4);
        let mut away = p.gauge();
        away.set_filters(["devices/+/sensors"]);
        assert!(!p.throttled(Class::Bulk));
        away.set_parked(true);
        assert!(
            p.throttled(Class::Bulk),
            "the bridge is away: nothing is acknowledged"
        );
        let mut other = p.gauge();
        other.set_parked(true);
        away.set_parked(false);
        assert!(
            p.throttled(Class::Bulk),
            "another service session is still away"
        );
        drop(other);
        assert!(
            !p.throttled(Class::Bulk),
            "the hold ended or the session came back"
        );
        away.set_parked(true);
        drop(away);
        assert!(
            !p.throttled(Class::Bulk),
            "a resumed (dropped) parked gauge releases"
        );
        assert_eq!(p.gate(Class::Bulk).parked.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_parked_session_past_its_hold_still_counts_its_backlog() {
        let p = Pressure::new(10, 4);
        let mut away = p.gauge();
        away.set_parked(true);
        away.set(12);
        away.set_parked(false);
        assert!(p.throttled(Class::Bulk), "12 queued is above high water");
        away.set(3);
        assert!(!p.throttled(Class::Bulk));
    }

    #[tokio::test]
    async fn waiters_wake_when_the_backlog_drains() {
        let p = Pressure::new(10, 4);
        let mut g = p.gauge();
        g.set(10);
        let waiter = tokio::spawn({
            let p = p.clone();
            async move { p.relieved(Class::Bulk).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        g.set(2);
        let woken = tokio::time::timeout(Duration::from_secs(2), waiter).await;
        assert!(matches!(woken, Ok(Ok(()))));
    }

    #[test]
    fn a_publish_s_class_is_its_leaf() {
        for bulk in [
            "devices/remo-1/sensors/te",
            "devices/remo-1/sensors",
            "devices/m-1/meter",
        ] {
            assert_eq!(Class::of(bulk.as_bytes()), Class::Bulk, "{bulk}");
        }
        for control in [
            "devices/remo-1/state",
            "devices/remo-1/acks",
            "devices/remo-1/cert/request",
            "devices/remo-1/meter/x",
            "devices/remo-1/sensors/te/x",
            "kumo/nodes/n/epoch",
            "devices",
        ] {
            assert_eq!(Class::of(control.as_bytes()), Class::Control, "{control}");
        }
    }

    #[test]
    fn a_backlog_of_readings_holds_readings_and_not_acks() {
        let p = Pressure::new(10, 4);
        let mut data = p.gauge();
        data.set_filters([
            "devices/+/sensors/+",
            "devices/+/sensors",
            "devices/+/meter",
        ]);
        let mut control = p.gauge();
        control.set_filters(["devices/+/state", "devices/+/acks", "devices/+/presence"]);
        data.set(12);
        assert!(p.throttled(Class::Bulk));
        assert!(!p.throttled(Class::Control), "the control lane keeps up");
        control.set(11);
        assert!(p.throttled(Class::Control));
        data.set(0);
        assert!(!p.throttled(Class::Bulk));
        assert!(p.throttled(Class::Control));
        for _ in 0..12 {
            p.routed_in(b"devices/remo-1/acks");
        }
        control.set(0);
        assert!(
            p.throttled(Class::Control),
            "acks on their way to the control lane count"
        );
        assert!(!p.throttled(Class::Bulk));
    }

    #[test]
    fn a_session_taking_both_classes_counts_for_both_and_an_away_lane_holds_its_own() {
        let p = Pressure::new(10, 4);
        let mut all = p.gauge();
        all.set(12);
        assert!(
            p.throttled(Class::Bulk) && p.throttled(Class::Control),
            "filters not known yet"
        );
        all.set_filters(["devices/+/sensors"]);
        assert!(p.throttled(Class::Bulk));
        assert!(!p.throttled(Class::Control), "its share moved to its class");
        all.set_filters(["devices/+/+"]);
        assert!(p.throttled(Class::Bulk) && p.throttled(Class::Control));
        drop(all);
        let mut data = p.gauge();
        data.set_filters(["devices/+/meter"]);
        data.set_parked(true);
        assert!(p.throttled(Class::Bulk), "the data lane is away");
        assert!(!p.throttled(Class::Control));
        drop(data);
        assert!(!p.throttled(Class::Bulk));
    }
}
