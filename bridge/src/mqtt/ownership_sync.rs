//! How far each broker node has applied the device-ownership feed, from the
//! nodes' echoes of the announcer's sync markers (`mqtt/ownership.rs`,
//! `kumo_contract::ownership`), so a request can wait until a change is in
//! force on every node the bridge is connected to. Holds no connection and
//! sends nothing itself.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

/// How often a waiter looks again at which nodes are connected.
const RECHECK: Duration = Duration::from_millis(200);

/// How far each node has applied the ownership feed: the newest sync marker
/// (a position in `device_ownership_log`) it echoed.
#[derive(Debug)]
pub struct OwnershipSync {
    applied: watch::Sender<Vec<i64>>,
    status: Arc<super::MqttStatus>,
    /// Wakes the announcer for a waiter, instead of its next poll.
    nudge: Notify,
}

impl OwnershipSync {
    pub(super) fn new(status: Arc<super::MqttStatus>) -> Self {
        let (applied, _) = watch::channel(vec![0; status.nodes.len()]);
        Self {
            applied,
            status,
            nudge: Notify::new(),
        }
    }

    /// Node `idx` echoed a marker; a malformed one is ignored.
    pub(super) fn echoed(&self, idx: usize, payload: &[u8]) {
        let Some(seq) = std::str::from_utf8(payload)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
        else {
            return;
        };
        self.applied.send_if_modified(|all| match all.get_mut(idx) {
            Some(a) if *a < seq => {
                *a = seq;
                true
            }
            _ => false,
        });
    }

    /// What node `idx` has applied.
    pub(super) fn applied(&self, idx: usize) -> i64 {
        self.applied.borrow().get(idx).copied().unwrap_or(0)
    }

    /// Waits until every node the bridge is connected to has applied the
    /// log up to `seq`, waking the announcer to read the log now. A node the
    /// bridge cannot reach gets a fresh snapshot when it is back.
    pub async fn wait_applied(&self, seq: i64) {
        self.nudge.notify_one();
        let mut rx = self.applied.subscribe();
        let status = self.status.clone();
        let done = move |all: &Vec<i64>| {
            all.iter()
                .zip(&status.nodes)
                .all(|(a, n)| *a >= seq || !n.connected())
        };
        loop {
            if done(&rx.borrow_and_update()) {
                return;
            }
            // Connection changes are not signalled here: look again soon.
            let _ = tokio::time::timeout(RECHECK, rx.changed()).await;
        }
    }
}

impl OwnershipSync {
    /// Resolves when a waiter wants the log read now.
    pub(super) async fn nudged(&self) {
        self.nudge.notified().await;
    }
}
