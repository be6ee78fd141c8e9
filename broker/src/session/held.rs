//! A device's publishes the session holds: those waiting for the cloud to
//! catch up on their class (see [`crate::pressure`]) and those routed whose
//! answer waits for a service session's acknowledgement (see
//! [`crate::confirm`]). It owns when each goes to the router, when its answer
//! goes to the device, and what happens when a confirmation does not come.
//!
//! A publish routed with a token is answered only once a service confirms
//! it, or when, past its deadline, no service session attends its topic any
//! more: none connected or parked within its hold takes it at QoS 1 (a bridge
//! away past `broker.park_hold_secs` no longer holds the fleet's answers; see
//! [`crate::pressure`]). The device is never told a publish is safe that no
//! service acknowledged.
//!
//! Past its deadline an unconfirmed copy is either slow or lost. It counts as
//! lost once a service has confirmed a copy of the same class routed after it
//! (it went past this one: a service session's queue cap, a router log a slow
//! reader fell behind on); the node then routes it again, with the same
//! token, as the device itself would resend it — the bridge stores a reading
//! once however often it comes — and waits twice as long before the next
//! try (up to [`RESEND_BACKOFF_MAX`] times the timeout). Otherwise (nothing
//! later confirmed, or the class's gate closed) the cloud is behind and the
//! deadline just moves on: a resend would only add to its backlog (fleet run
//! 41 resent 312,284 state reports and acks the bridge was merely slow on).

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;

use kumo_contract::Identity;
use rumqttd::protocol::QoS;
use tokio::time::Instant;

use super::{Session, HELD_MAX};
use crate::message::Message;
use crate::pressure::Class;
use crate::registry::CloseReason;

/// The longest wait between two resends of an unconfirmed publish, in
/// multiples of `broker.confirm_timeout_secs`.
const RESEND_BACKOFF_MAX: u32 = 8;

/// A device publish waiting for the cloud to catch up: what goes to the
/// router (none for a refused or repeated one) and the answer to the client.
pub(super) struct Held {
    /// Which gate the publish waits for.
    pub(super) class: Class,
    /// `None` once forwarded (its answer waits for the earlier ones).
    pub(super) forward: Option<Message>,
    pub(super) reply: Option<rumqttd::protocol::Packet>,
    /// Forwarded, its answer waiting for a service session's acknowledgement.
    pub(super) confirm: Option<Box<Awaited>>,
}

impl Held {
    /// Whether a publish of `class` must queue behind this one.
    pub(super) fn waits_as(&self, class: Class) -> bool {
        self.class == class && self.forward.is_some()
    }
}

/// A routed publish whose answer waits for a service's acknowledgement.
pub(super) struct Awaited {
    /// The confirmation token its copies carry.
    pub(super) token: u64,
    /// When it is routed again if still unconfirmed.
    at: Instant,
    /// How often it was routed again.
    resends: u32,
    /// The routed copy, kept to route again.
    message: Message,
}

/// What became of publishes whose deadline passed (see [`Session::on_confirmed`]).
#[derive(Default)]
struct Overdue {
    resent: u64,
    deferred: u64,
    abandoned: Vec<u64>,
}

impl Session {
    /// Forwards a publish to the router. A device's QoS 1 publish that a
    /// service session takes goes with a confirmation token; what its answer
    /// waits for is returned.
    pub(super) async fn route(
        &mut self,
        forward: Option<Message>,
    ) -> Result<Option<Box<Awaited>>, CloseReason> {
        let Some(mut message) = forward else {
            return Ok(None);
        };
        let mut awaited = None;
        if let Identity::Device { .. } = &self.identity {
            let taken = self.node.pressure.routed_in(&message.topic);
            let confirms = &self.node.confirms;
            if taken && message.qos == QoS::AtLeastOnce && confirms.enabled() {
                let waiter = self.waiter.get_or_insert_with(Default::default);
                let token = confirms.open(waiter, Class::of(&message.topic));
                message.confirm = Some(token);
                // Sent again without the flag: the retained store has this
                // message already, or a newer one the resend must not replace.
                let mut copy = message.clone();
                copy.retain = false;
                awaited = Some(Box::new(Awaited {
                    token,
                    at: Instant::now() + confirms.timeout(),
                    resends: 0,
                    message: copy,
                }));
            }
        }
        if !self.publish(message).await {
            self.node.confirms.forget(awaited.map(|a| a.token));
            return Err(CloseReason::Shutdown);
        }
        Ok(awaited)
    }

    async fn publish(&mut self, message: Message) -> bool {
        let origin = self.origin();
        self.node
            .fabric
            .publish(&self.client_id, message, origin)
            .await
    }

    /// Whether the session has stopped reading because too many publishes wait.
    pub(super) fn reads_paused(&self) -> bool {
        self.held.as_ref().is_some_and(|h| h.len() >= HELD_MAX)
    }

    /// The class whose gate the oldest held publish not yet forwarded waits
    /// for (none when there is none).
    pub(super) fn held_for(&self) -> Option<Class> {
        self.held
            .as_ref()?
            .iter()
            .find(|h| h.forward.is_some())
            .map(|h| h.class)
    }

    /// When the first routed publish is due to be sent again (none when none
    /// waits). Not simply the first waiting entry's: a later control publish
    /// may be routed (and get its deadline) before an earlier reading its
    /// gate still holds.
    pub(super) fn confirm_deadline(&self) -> Option<Instant> {
        self.held
            .as_ref()?
            .iter()
            .filter_map(|h| h.confirm.as_ref().map(|a| a.at))
            .min()
    }

    /// Takes the confirmations that arrived, routes again what is past its
    /// deadline (see the module's header), and sends what is now first in line.
    pub(super) async fn on_confirmed(&mut self) -> Result<(), CloseReason> {
        let done = self.waiter.as_ref().map(|w| w.take()).unwrap_or_default();
        let now = Instant::now();
        let mut overdue = Overdue::default();
        let mut confirmed = 0;
        let Some(mut held) = self.held.take() else {
            return Ok(());
        };
        let mut result = Ok(());
        for h in held.iter_mut() {
            let Some(a) = h.confirm.as_mut() else {
                continue;
            };
            if done.contains(&a.token) {
                h.confirm = None;
                confirmed += 1;
            } else if a.at <= now && result.is_ok() {
                result = self.overdue(h, now, &mut overdue).await;
            }
        }
        self.held = Some(held);
        let metrics = &self.node.metrics;
        metrics.publishes_confirmed.fetch_add(confirmed, Relaxed);
        metrics.confirm_resends.fetch_add(overdue.resent, Relaxed);
        metrics
            .confirm_deferrals
            .fetch_add(overdue.deferred, Relaxed);
        if !overdue.abandoned.is_empty() {
            let n = overdue.abandoned.len();
            metrics.confirm_timeouts.fetch_add(n as u64, Relaxed);
            self.node.confirms.gave_up(&self.client_id, n);
            self.node.confirms.forget(overdue.abandoned);
        }
        result?;
        self.release_held().await
    }

    /// A routed publish past its deadline: answered when no service session
    /// attends its topic any more; routed again when its copy looks lost; its
    /// deadline moved on while the cloud is behind (see the module's header).
    async fn overdue(
        &mut self,
        h: &mut Held,
        now: Instant,
        overdue: &mut Overdue,
    ) -> Result<(), CloseReason> {
        let Some(a) = h.confirm.as_mut() else {
            return Ok(());
        };
        let pressure = &self.node.pressure;
        if !pressure.attended(&a.message.topic) {
            overdue.abandoned.push(a.token);
            h.confirm = None;
            return Ok(());
        }
        let confirms = &self.node.confirms;
        let timeout = confirms.timeout();
        if pressure.throttled(h.class) || !confirms.overtaken(a.token, h.class) {
            overdue.deferred += 1;
            a.at = now + timeout;
            return Ok(());
        }
        a.resends += 1;
        a.at = now + timeout * 2u32.saturating_pow(a.resends).min(RESEND_BACKOFF_MAX);
        let message = a.message.clone();
        pressure.routed_in(&message.topic);
        overdue.resent += 1;
        if self.publish(message).await {
            Ok(())
        } else {
            Err(CloseReason::Shutdown)
        }
    }

    /// Forwards held publishes whose class's gate is open (in order within
    /// each class), then sends the answers first in line: an answer waits
    /// until its publish has gone and, if it went with a token, until that is
    /// confirmed, and every later answer waits behind it (MQTT 3.1.1 §4.6);
    /// a QoS 0 publish has no answer and holds none back.
    pub(super) async fn release_held(&mut self) -> Result<(), CloseReason> {
        let Some(mut held) = self.held.take() else {
            return Ok(());
        };
        let forwarded = self.forward_held(&mut held).await;
        for h in held.iter_mut() {
            if h.reply.is_none() {
                continue; // QoS 0 (or answered): nothing waits behind it
            }
            if h.forward.is_some() || h.confirm.is_some() {
                break;
            }
            if let Some(reply) = h.reply.take() {
                self.send(reply);
            }
        }
        held.retain(|h| h.forward.is_some() || h.reply.is_some());
        if held.is_empty() {
            // Nothing waits for a confirmation any more (see `on_confirmed`).
            self.waiter = None;
        } else {
            self.held = Some(held);
        }
        forwarded
    }

    async fn forward_held(&mut self, held: &mut VecDeque<Held>) -> Result<(), CloseReason> {
        let mut blocked: Vec<Class> = Vec::new();
        for h in held.iter_mut() {
            if h.forward.is_none() || blocked.contains(&h.class) {
                continue;
            }
            if self.node.pressure.throttled(h.class) {
                blocked.push(h.class);
                continue;
            }
            h.confirm = self.route(h.forward.take()).await?;
        }
        Ok(())
    }

    /// The tokens of the routed publishes still waiting, which nobody will
    /// wait for once the session ends.
    pub(super) fn awaited_tokens(&self) -> impl Iterator<Item = u64> + '_ {
        self.held
            .iter()
            .flat_map(|h| h.iter())
            .filter_map(|h| h.confirm.as_ref().map(|a| a.token))
    }
}
