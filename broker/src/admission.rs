//! Admission control for TLS handshakes: during a connect storm, refuse —
//! once the ClientHello is in, before any TLS work — the connections whose
//! handshake could not finish before its deadline anyway.
//!
//! Without it a storm feeds itself: the node spends its CPU on handshakes that
//! time out, the devices retry at once, and the connected devices' keepalives
//! starve. The node keeps a moving average of how long a handshake holds its
//! slot — done, failed or timed out, since that is how fast the queue moves,
//! whether CPU contention or clients stalling mid-handshake hold it up — and
//! turns away a new handshake when those ahead of it would take longer than
//! `budget` to get through the slots. The device sees its connection closed
//! at once and backs off; established sessions keep the CPU. Owns the
//! estimate and the decision; the listener does the counting and the closing.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Weight of the newest sample in the moving average.
const ALPHA: f64 = 0.2;

/// Handshake admission for one listener.
#[derive(Debug)]
pub(crate) struct Admission {
    /// Handshakes running at once (the handshake semaphore's size).
    concurrency: usize,
    /// Longest predicted wait a new handshake is admitted with.
    budget: Duration,
    /// Handshake steps admitted (waiting for or holding a slot) and not ended.
    pending: AtomicUsize,
    /// Moving average of a slot's hold time, s; 0 until the first sample.
    hold: Mutex<f64>,
}

/// An admitted handshake's place in the count; dropping it ends it.
#[derive(Debug)]
pub(crate) struct Ticket(Arc<Admission>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Relaxed);
    }
}

impl Admission {
    /// `budget`: the handshake deadline minus a margin for the client's own
    /// round trips.
    pub fn new(concurrency: usize, budget: Duration) -> Admission {
        Admission {
            concurrency,
            budget,
            pending: AtomicUsize::new(0),
            hold: Mutex::new(0.0),
        }
    }

    /// Admits a new handshake, or `None` to refuse it now.
    pub fn admit(self: &Arc<Self>) -> Option<Ticket> {
        let ahead = self.pending.load(Relaxed);
        if self.predicted_wait(ahead) > self.budget {
            return None;
        }
        self.pending.fetch_add(1, Relaxed);
        Some(Ticket(self.clone()))
    }

    /// Counts a handshake already under way (admitted earlier) that waits
    /// for a slot again for its next step; never refused.
    pub fn resume(self: &Arc<Self>) -> Ticket {
        self.pending.fetch_add(1, Relaxed);
        Ticket(self.clone())
    }

    /// A handshake gave its slot back after holding it for `held`.
    pub fn finished(&self, held: Duration) {
        let mut hold = self.hold.lock().unwrap_or_else(|p| p.into_inner());
        let s = held.as_secs_f64();
        *hold = if *hold == 0.0 {
            s
        } else {
            (1.0 - ALPHA) * *hold + ALPHA * s
        };
    }

    /// How long a handshake arriving behind `ahead` others waits for its
    /// slot and holds it: rounds of `concurrency` at the average hold time.
    fn predicted_wait(&self, ahead: usize) -> Duration {
        if ahead < self.concurrency {
            return Duration::ZERO;
        }
        let hold = *self.hold.lock().unwrap_or_else(|p| p.into_inner());
        let rounds = (ahead + 1).div_ceil(self.concurrency);
        Duration::from_secs_f64(rounds as f64 * hold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(concurrency: usize) -> Arc<Admission> {
        Arc::new(Admission::new(concurrency, Duration::from_secs(1)))
    }

    #[test]
    fn nothing_is_refused_while_the_handshakes_fit_their_slots() {
        let a = admission(4);
        a.finished(Duration::from_secs(5));
        let t: Vec<_> = (0..4).map(|_| a.admit().expect("fits")).collect();
        assert_eq!(a.pending.load(Relaxed), 4);
        drop(t);
        assert_eq!(a.pending.load(Relaxed), 0);
    }

    #[test]
    fn nothing_is_refused_before_the_first_handshake_was_measured() {
        let a = admission(1);
        let held: Vec<_> = (0..100).map(|_| a.admit().expect("unmeasured")).collect();
        assert_eq!(held.len(), 100);
    }

    #[test]
    fn a_queue_longer_than_the_budget_at_the_measured_hold_time_is_refused() {
        let a = admission(2);
        a.finished(Duration::from_millis(95));
        // In rounds of 2 at 95 ms: 19 ahead wait 10 rounds (0.95 s), 20 ahead 11 (1.045 s).
        let mut held: Vec<_> = (0..20).map(|_| a.admit().expect("fits")).collect();
        assert!(a.admit().is_none(), "20 ahead: 1.045 s");
        held.truncate(5);
        assert!(a.admit().is_some(), "the queue moved on");
    }

    #[test]
    fn the_hold_time_follows_the_recent_handshakes() {
        let a = admission(1);
        a.finished(Duration::from_millis(10));
        for _ in 0..30 {
            a.finished(Duration::from_millis(200));
        }
        let hold = *a.hold.lock().unwrap_or_else(|p| p.into_inner());
        assert!((0.19..=0.2).contains(&hold), "{hold}");
    }
}
