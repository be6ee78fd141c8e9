//! The bridge's in-process stream of what devices just did: readings,
//! presence, reported state, command status changes.
//!
//! Producers: the MQTT inbound side (readings as they are accepted, so rules
//! react without waiting for the batch commit; presence and appliance state once
//! stored) and the command log (each status change once committed). Consumers
//! (the rules worker, the live-event hub behind `GET /v1/events`, webhooks)
//! subscribe. It is a bounded broadcast: a consumer that falls behind loses
//! the oldest events and is told how many (`RecvError::Lagged`); it never
//! slows ingest down. Nothing here touches the database or decides which
//! account an event belongs to.

use std::sync::Arc;

use kumo_contract::DeviceId;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::broadcast;
use uuid::Uuid;

/// Events held for the slowest subscriber before it starts losing them.
pub const DEFAULT_CAPACITY: usize = 65_536;

/// One thing a device did.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    /// A sensor reading: `te`, `hu`, `il`, `mo` (motion, `val` 1), or a meter's
    /// `power` (W) / `energy` (kWh).
    Reading {
        /// Shared by the message's values (a clone is a reference count).
        device: DeviceId,
        /// One of the contract's names, never allocated per reading.
        sensor: &'static str,
        val: f64,
        at: OffsetDateTime,
    },
    /// The device connected or went away (as the bridge accepted it: stale
    /// reports from a node the device already left are not repeated here).
    Presence {
        device: String,
        online: bool,
        node: Option<String>,
        at: OffsetDateTime,
    },
    /// Appliance state the device reported (`aircon`, `tv`, `light` objects).
    ApplianceState {
        device: String,
        /// `{"aircon": {...}, "tv": {...}, "light": {...}}`, present keys only.
        appliances: Value,
        at: OffsetDateTime,
    },
    /// A command changed status: `queued`, `sent`, `acked`, `failed`, `expired`.
    Command {
        device: String,
        /// The account that sent it (none for commands whose user was deleted).
        user: Option<String>,
        command_id: Uuid,
        appliance: Option<String>,
        status: &'static str,
        at: OffsetDateTime,
    },
}

impl LiveEvent {
    /// The device the event is about.
    pub fn device(&self) -> &str {
        match self {
            Self::Reading { device, .. } => device.as_str(),
            Self::Presence { device, .. }
            | Self::ApplianceState { device, .. }
            | Self::Command { device, .. } => device,
        }
    }
}

/// Cheap to clone; every clone publishes into the same stream.
#[derive(Debug, Clone)]
pub struct LiveFeed {
    tx: broadcast::Sender<Arc<LiveEvent>>,
}

impl Default for LiveFeed {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl LiveFeed {
    /// A stream that keeps `capacity` events for its slowest subscriber.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }

    /// Publishes `event` to every current subscriber (none is fine).
    pub fn publish(&self, event: LiveEvent) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(Arc::new(event));
        }
    }

    /// Events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn reading(device: &str) -> LiveEvent {
        LiveEvent::Reading {
            device: DeviceId::parse(device).unwrap(),
            sensor: "te",
            val: 21.5,
            at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[tokio::test]
    async fn every_subscriber_sees_events_in_order() {
        let feed = LiveFeed::new(8);
        let mut a = feed.subscribe();
        let mut b = feed.subscribe();
        feed.publish(reading("d1"));
        feed.publish(reading("d2"));
        for rx in [&mut a, &mut b] {
            assert_eq!(rx.recv().await.unwrap().device(), "d1");
            assert_eq!(rx.recv().await.unwrap().device(), "d2");
        }
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_how_many_it_lost() {
        let feed = LiveFeed::new(2);
        let mut rx = feed.subscribe();
        for d in ["d1", "d2", "d3"] {
            feed.publish(reading(d));
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(1))
        ));
        assert_eq!(rx.recv().await.unwrap().device(), "d2");
    }
}
