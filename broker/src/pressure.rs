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
//! Only service sessions count: a slow third-party integration must not stall
//! the fleet (its queue keeps the drop-oldest bound). This module owns the
//! accounting and the wake-up; the session decides what to hold.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Node-wide count of messages waiting for service sessions.
#[derive(Debug)]
pub(crate) struct Pressure {
    queued: AtomicUsize,
    high: usize,
    low: usize,
    throttled: AtomicBool,
    relieved: Notify,
}

impl Pressure {
    /// Throttles at `high` queued messages and releases at `low`.
    pub(crate) fn new(high: usize, low: usize) -> Arc<Self> {
        let high = high.max(1);
        Arc::new(Self {
            queued: AtomicUsize::new(0),
            high,
            low: low.min(high - 1),
            throttled: AtomicBool::new(false),
            relieved: Notify::new(),
        })
    }

    /// Thresholds for a node whose service sessions hold `session_queue`
    /// messages: throttle at half, release at a quarter, so the hard cap
    /// (and its drop-oldest) is never reached by ordinary overload.
    pub(crate) fn for_session_queue(session_queue: usize) -> Arc<Self> {
        Self::new(session_queue / 2, session_queue / 4)
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
        }
    }

    fn adjust(&self, old: usize, new: usize) {
        let total = if new >= old {
            self.queued.fetch_add(new - old, Ordering::AcqRel) + (new - old)
        } else {
            self.queued.fetch_sub(old - new, Ordering::AcqRel) - (old - new)
        };
        if total >= self.high {
            if !self.throttled.swap(true, Ordering::AcqRel) {
                tracing::warn!(
                    queued = total,
                    "service sessions are behind; holding device publishes"
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
}

impl Gauge {
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
        self.set(0);
    }
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
