//! Persistent sessions of service and integration identities (MQTT 3.1.1
//! CleanSession=0, MQTT 5 Session Expiry Interval > 0): while the client is away its router link stays open and
//! a drainer task keeps what the link's filters match — plus the QoS 1
//! messages the client had not acknowledged — in a bounded queue. When the
//! client connects again it gets the link, its filters and the queue back,
//! with session_present=1. Over `session_queue`, the oldest message is dropped
//! and counted; after the session's expiry interval (the client's, capped by
//! `session_expiry_secs`) away, the session is discarded. A
//! parked service session's queue counts towards the node's ingress
//! [`crate::pressure`], so devices are held long before that cap is reached.
//!
//! Devices never get a persistent session: they hold no router link and their
//! commands are kept durably by the bridge.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kumo_contract::Identity;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::{Disconnect, DisconnectReasonCode, Packet};
use rumqttd::Notification;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::subscriptions::Subscriptions;
use crate::acl::{self, AccountLookup};
use crate::fabric;
use crate::metrics::Metrics;
use crate::peering::InterestGuard;
use crate::pressure::Gauge;
use crate::registry::Outbound;

/// A parked session's queue, shared with its drainer.
type Queue = Arc<Mutex<VecDeque<Box<Outbound>>>>;

struct Parked {
    link: Arc<Mutex<LinkTx>>,
    filters: Subscriptions,
    released: Vec<u16>,
    queue: Queue,
    stop: CancellationToken,
    /// Gives the link's receiver (and the interest) back when stopped; `None` once expired.
    drainer: JoinHandle<Option<(LinkRx, Option<InterestGuard>)>>,
}

/// What a resumed session takes over.
pub(crate) struct Resumed {
    pub link: Arc<Mutex<LinkTx>>,
    pub rx: LinkRx,
    pub filters: Subscriptions,
    /// QoS 2 packet ids whose PUBREL the client had not completed.
    pub released: Vec<u16>,
    /// Messages to deliver first, oldest first.
    pub queue: VecDeque<Box<Outbound>>,
    /// An integration session's share of the peer links' interest, kept
    /// while it is parked and given up when it expires.
    pub interest: Option<InterestGuard>,
}

/// Every parked session of the node, by client id.
#[derive(Default)]
pub(crate) struct Parking {
    map: Mutex<HashMap<String, Parked>>,
}

/// What bounds and filters a parked session's queue.
pub(crate) struct Limits {
    pub cap: usize,
    pub expiry: Duration,
    /// Whose session it is: an integration queues only what it may receive
    /// now (its account's devices), so the fleet's traffic cannot push its
    /// own messages out of the queue.
    pub identity: Identity,
    pub accounts: AccountLookup,
    /// Reports the queue's length to the node's ingress pressure (service
    /// sessions only).
    pub gauge: Option<Gauge>,
    /// How long after parking the gauge holds device publishes
    /// (`broker.park_hold_secs`).
    pub hold: Duration,
    /// The parked integration session's share of the peer links' interest.
    pub interest: Option<InterestGuard>,
}

impl Parking {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Parked>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `client_id` has a live parked session.
    pub(crate) fn contains(&self, client_id: &str) -> bool {
        self.lock()
            .get(client_id)
            .is_some_and(|p| !p.drainer.is_finished())
    }

    /// Keeps a disconnected session's link open and its messages queued.
    pub(crate) fn park(
        &self,
        client_id: &str,
        resumed: Resumed,
        limits: Limits,
        metrics: Arc<Metrics>,
    ) {
        let mut queue = resumed.queue;
        while queue.len() > limits.cap {
            queue.pop_front();
            metrics.dropped_session.fetch_add(1, Relaxed);
        }
        let queue: Queue = Arc::new(Mutex::new(queue));
        let stop = CancellationToken::new();
        let mut limits = limits;
        limits.interest = resumed.interest;
        let drainer = tokio::spawn(drain(
            resumed.rx,
            resumed.link.clone(),
            resumed.filters.clone(),
            queue.clone(),
            limits,
            metrics,
            stop.clone(),
        ));
        let parked = Parked {
            link: resumed.link,
            filters: resumed.filters,
            released: resumed.released,
            queue,
            stop,
            drainer,
        };
        if let Some(old) = self.lock().insert(client_id.to_string(), parked) {
            old.stop.cancel();
        }
    }

    /// Takes `client_id`'s parked session back, if it is still alive.
    pub(crate) async fn resume(&self, client_id: &str) -> Option<Resumed> {
        let parked = self.lock().remove(client_id)?;
        parked.stop.cancel();
        let (rx, interest) = parked.drainer.await.ok().flatten()?;
        let queue = std::mem::take(&mut *parked.queue.lock().unwrap_or_else(|e| e.into_inner()));
        Some(Resumed {
            link: parked.link,
            rx,
            filters: parked.filters,
            released: parked.released,
            queue,
            interest,
        })
    }

    /// Ends `client_id`'s parked session, if any (a clean_session=1 connect).
    pub(crate) async fn discard(&self, client_id: &str) {
        if let Some(r) = self.resume(client_id).await {
            close_link(r.link).await;
        }
    }
}

/// Tells the router the link is gone.
pub(crate) async fn close_link(link: Arc<Mutex<LinkTx>>) {
    let bye = Packet::Disconnect(
        Disconnect {
            reason_code: DisconnectReasonCode::NormalDisconnection,
        },
        None,
    );
    fabric::send_on_link(link, bye).await;
}

/// Reads the parked link into the queue until resumed (returns the
/// receiver) or expired (closes the link, returns `None`).
async fn drain(
    mut rx: LinkRx,
    link: Arc<Mutex<LinkTx>>,
    filters: Subscriptions,
    queue: Queue,
    mut limits: Limits,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Option<(LinkRx, Option<InterestGuard>)> {
    let mut gauge = limits.gauge.take();
    let interest = limits.interest.take();
    let count = |gauge: &mut Option<Gauge>, n: usize| {
        if let Some(g) = gauge.as_mut() {
            g.set(n);
        }
    };
    count(
        &mut gauge,
        queue.lock().unwrap_or_else(|e| e.into_inner()).len(),
    );
    let expiry = tokio::time::sleep(limits.expiry);
    tokio::pin!(expiry);
    if let Some(g) = gauge.as_mut() {
        g.set_parked(!limits.hold.is_zero());
        g.set_lapsed(limits.hold.is_zero());
    }
    let hold = tokio::time::sleep(limits.hold);
    tokio::pin!(hold);
    let mut holding = !limits.hold.is_zero();
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => return Some((rx, interest)),
            () = &mut hold, if holding => {
                holding = false;
                if let Some(g) = gauge.as_mut() {
                    g.set_parked(false);
                    g.set_lapsed(true);
                }
                continue;
            }
            () = &mut expiry => {
                close_link(link).await;
                return None;
            }
            n = rx.next() => n,
        };
        match next {
            Ok(Some(Notification::Forward(f))) => {
                if let Some(g) = gauge.as_ref() {
                    g.routed_out(&f.publish.topic);
                }
                let Ok(topic) = std::str::from_utf8(&f.publish.topic) else {
                    continue;
                };
                if !filters.matches(topic) {
                    continue;
                }
                if !acl::may_receive(&limits.identity, topic, limits.accounts.as_ref()) {
                    metrics.integration_filtered.fetch_add(1, Relaxed);
                    continue;
                }
                let msg = Box::new(Outbound {
                    publish: f.publish,
                    properties: f.properties,
                    at: Instant::now(),
                    redelivery: None,
                    decided: None,
                });
                let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
                q.push_back(msg);
                if q.len() > limits.cap {
                    q.pop_front();
                    metrics.dropped_session.fetch_add(1, Relaxed);
                }
                count(&mut gauge, q.len());
            }
            Ok(Some(Notification::Unschedule)) => {
                if rx.wake().await.is_err() {
                    return None;
                }
            }
            // A wake-up with nothing new in the buffer.
            Ok(Some(_)) | Ok(None) => {}
            Err(_) => return None,
        }
    }
}
