//! Live events → deliveries for the account webhooks whose filter matches.
//!
//! Owns the in-memory copy of enabled webhooks' filters (reloaded after every
//! change made here and every 30 s, for changes made by other bridges) and a
//! bounded queue to the task that inserts delivery rows. It must not block
//! the event hub: a full queue drops the event for webhooks, with a warning.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use deadpool_postgres::Pool;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{store, Inner};
use crate::events::Tap;
use crate::json::rfc3339;

/// Events waiting to become delivery rows.
pub const QUEUE: usize = 4096;
const RELOAD: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
struct Filter {
    id: Uuid,
    url: String,
    events: Vec<String>,
}

impl Filter {
    /// Empty filter: everything but readings, which must be asked for.
    fn matches(&self, kind: &str) -> bool {
        if self.events.is_empty() {
            kind != "reading"
        } else {
            self.events.iter().any(|k| k == kind)
        }
    }
}

#[derive(Debug)]
struct Item {
    account: String,
    event_id: Option<u64>,
    kind: String,
    data: Value,
}

type Filters = Arc<RwLock<HashMap<String, Vec<Filter>>>>;

/// The hub's [`Tap`] for account webhooks. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Fanout {
    filters: Filters,
    tx: mpsc::Sender<Item>,
    pool: Pool,
}

impl Fanout {
    pub(crate) fn start(inner: Arc<Inner>, shutdown: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let fanout = Self {
            filters: Arc::default(),
            tx,
            pool: inner.pool.clone(),
        };
        tokio::spawn(fanout.clone().run(inner, rx, shutdown));
        fanout
    }

    /// Reloads the filters from the database.
    pub async fn reload(&self) -> Result<(), super::WebhookError> {
        let client = self.pool.get().await?;
        let mut map: HashMap<String, Vec<Filter>> = HashMap::new();
        for (user, id, url, events) in store::enabled_filters(&client).await? {
            map.entry(user)
                .or_default()
                .push(Filter { id, url, events });
        }
        *self.filters.write().unwrap_or_else(|p| p.into_inner()) = map;
        Ok(())
    }

    fn matching(&self, account: &str, kind: &str) -> Vec<Filter> {
        let filters = self.filters.read().unwrap_or_else(|p| p.into_inner());
        filters
            .get(account)
            .map(|fs| fs.iter().filter(|f| f.matches(kind)).cloned().collect())
            .unwrap_or_default()
    }

    async fn run(
        self,
        inner: Arc<Inner>,
        mut rx: mpsc::Receiver<Item>,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(RELOAD);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = self.reload().await {
                        tracing::warn!(error = %e, "reloading webhook filters failed");
                    }
                }
                () = inner.filters_changed.notified() => {
                    if let Err(e) = self.reload().await {
                        tracing::warn!(error = %e, "reloading webhook filters failed");
                    }
                }
                item = rx.recv() => match item {
                    Some(item) => {
                        if let Err(e) = self.enqueue(&item).await {
                            tracing::warn!(error = %e, kind = %item.kind,
                                "enqueuing webhook deliveries failed; event dropped for webhooks");
                        }
                        inner.wake.notify_one();
                    }
                    None => return,
                },
            }
        }
    }

    async fn enqueue(&self, item: &Item) -> Result<(), super::WebhookError> {
        let targets = self.matching(&item.account, &item.kind);
        if targets.is_empty() {
            return Ok(());
        }
        let client = self.pool.get().await?;
        for target in targets {
            let id = Uuid::new_v4();
            let body = json!({
                "id": id,
                "kind": item.kind,
                "event_id": item.event_id,
                "created_at": rfc3339(OffsetDateTime::now_utc()),
                "data": item.data,
            });
            store::enqueue(
                &client,
                &store::NewDelivery {
                    id,
                    webhook_id: Some(target.id),
                    user_id: &item.account,
                    rule_id: None,
                    url: &target.url,
                    kind: &item.kind,
                    body: &body,
                    held: false,
                },
            )
            .await?;
        }
        Ok(())
    }
}

impl Tap for Fanout {
    fn wants(&self, account: &str, kind: &str) -> bool {
        let filters = self.filters.read().unwrap_or_else(|p| p.into_inner());
        filters
            .get(account)
            .is_some_and(|fs| fs.iter().any(|f| f.matches(kind)))
    }

    fn take(&self, account: &str, id: Option<u64>, kind: &str, data: &Value) {
        let item = Item {
            account: account.to_string(),
            event_id: id,
            kind: kind.to_string(),
            data: data.clone(),
        };
        if self.tx.try_send(item).is_err() {
            tracing::warn!(
                kind,
                "webhook fan-out queue full; event dropped for webhooks"
            );
        }
    }

    fn accounts(&self) -> Vec<String> {
        let filters = self.filters.read().unwrap_or_else(|p| p.into_inner());
        filters.keys().cloned().collect()
    }
}
