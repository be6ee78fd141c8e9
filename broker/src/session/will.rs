//! Last wills: the message a CONNECT leaves with the node, published when the
//! connection ends without a normal DISCONNECT (MQTT-3.1.2-8, -10), either at
//! once or, with an MQTT 5 Will Delay Interval, when the delay or the session
//! ends, whichever comes first — unless the client connects to its session
//! again before that (MQTT 5 §3.1.3.2.2). A reconnect with Clean Start=1 ends
//! the old session, so its pending will is published then.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttd::protocol::{LastWill, LastWillProperties, PublishProperties};
use tokio_util::sync::CancellationToken;

use crate::fabric::Fabric;
use crate::message::Message;

/// A will as the CONNECT gave it.
#[derive(Debug)]
pub(crate) struct Will {
    pub message: Message,
    /// The Will Delay Interval (0 for MQTT 3.1.1).
    pub delay: Duration,
}

impl Will {
    pub fn from_connect(will: LastWill, props: Option<LastWillProperties>) -> Will {
        let delay = props
            .as_ref()
            .and_then(|p| p.delay_interval)
            .map_or(Duration::ZERO, |s| Duration::from_secs(s.into()));
        let properties = props.map(|p| PublishProperties {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data,
            user_properties: p.user_properties,
            content_type: p.content_type,
            ..Default::default()
        });
        let mut message = Message {
            topic: will.topic,
            payload: will.message,
            qos: will.qos,
            retain: will.retain,
            properties,
            imported: false,
            confirm: None,
        };
        crate::message::sanitize(&mut message.properties);
        Will { message, delay }
    }
}

struct Pending {
    id: u64,
    cancel: CancellationToken,
    now: CancellationToken,
}

/// Wills waiting for their delay, by client id.
#[derive(Default)]
pub(crate) struct DelayedWills {
    map: Mutex<HashMap<String, Pending>>,
    next: AtomicU64,
}

impl DelayedWills {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes `will` of `client_id` after `after` (the will delay or the
    /// session's expiry, whichever is shorter; at once when zero).
    pub async fn publish(
        self: &Arc<Self>,
        fabric: &Fabric,
        client_id: &str,
        origin: Option<&str>,
        will: Will,
        after: Duration,
    ) {
        if after.is_zero() {
            fabric.publish(client_id, will.message, origin).await;
            return;
        }
        let id = self.next.fetch_add(1, Relaxed);
        let cancel = CancellationToken::new();
        let now = CancellationToken::new();
        let pending = Pending {
            id,
            cancel: cancel.clone(),
            now: now.clone(),
        };
        if let Some(old) = self.lock().insert(client_id.to_string(), pending) {
            old.now.cancel();
        }
        let (wills, fabric) = (self.clone(), fabric.clone());
        let (client_id, origin) = (client_id.to_string(), origin.map(str::to_string));
        tracing::info!(client_id = %client_id, delay_ms = after.as_millis() as u64, "will delayed");
        tokio::spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {
                    tracing::info!(client_id = %client_id, "delayed will cancelled by a reconnect");
                    return;
                }
                () = now.cancelled() => {}
                () = tokio::time::sleep(after) => {}
            }
            {
                let mut map = wills.lock();
                if map.get(&client_id).is_some_and(|p| p.id == id) {
                    map.remove(&client_id);
                }
            }
            fabric
                .publish(&client_id, will.message, origin.as_deref())
                .await;
        });
    }

    /// `client_id` connected again: a Clean Start=0 connection resumes the
    /// session and cancels its delayed will; Clean Start=1 ends the session,
    /// which publishes it now.
    pub fn reconnected(&self, client_id: &str, clean_start: bool) {
        if let Some(p) = self.lock().remove(client_id) {
            if clean_start {
                p.now.cancel();
            } else {
                p.cancel.cancel();
            }
        }
    }
}
