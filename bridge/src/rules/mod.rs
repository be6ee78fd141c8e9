//! The rules worker: hosts `kumo_rules::Engine` inside the bridge.
//!
//! At start it loads every enabled rule from PostgreSQL; afterwards the
//! `/v1/rules` handlers tell it about every change through a [`RulesHandle`]
//! (bounded channel), so it never polls the database. It evaluates the live
//! stream ([`crate::live::LiveFeed`]) plus a tick every [`TICK`], and hands
//! each firing to a bounded execution queue (`execute`) so that slow actions
//! never hold up evaluation. Trigger states that changed are saved every few
//! seconds and restored at start (`rule_trigger_state`). It must not serve HTTP or talk to devices other
//! than through the command log.
//!
//! Event time is the worker's receipt time, not the device's `ts`: holds,
//! absences and schedules then all run on the bridge's one clock, whatever a
//! device's clock says.

pub mod check;
mod execute;
pub mod store;
mod worker;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kumo_rules::{Rule, RuleId};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use deadpool_postgres::Pool;

use crate::commands::CommandLog;
use crate::events::EventHub;
use crate::webhooks::Webhooks;

pub use check::{check_rule, plan_command, PlannedCommand};

/// How often the engine is told that time passed (schedules, `for_secs`
/// holds, motion absences). Schedules fire within this of their minute.
pub const TICK: Duration = Duration::from_secs(1);
/// Rule changes waiting for the worker before API handlers wait for room.
const CHANGE_QUEUE: usize = 256;
/// Firings waiting for execution before new ones are dropped (and counted).
const EXECUTION_QUEUE: usize = 1024;
/// Firings executed at the same time.
const MAX_CONCURRENT_EXECUTIONS: usize = 32;

/// A change to the set of loaded rules.
#[derive(Debug)]
enum Change {
    /// Load (or reload, resetting its state) a rule; disabled rules unload.
    Upsert {
        id: RuleId,
        account: String,
        version: OffsetDateTime,
        rule: Box<Rule>,
    },
    /// Unload a deleted rule for good.
    Remove { id: RuleId },
    /// A member of a home arrived or left (`/1/homes/{id}/location_state/update`).
    Home(kumo_rules::Event),
}

/// Counters of the worker, for logs and tests.
#[derive(Debug, Default)]
pub struct RulesStats {
    /// Live events lost because the worker fell behind the stream.
    pub lagged: AtomicU64,
    /// Firings handed to execution.
    pub fired: AtomicU64,
    /// Firings dropped because the execution queue was full.
    pub dropped: AtomicU64,
}

/// The API's way to reach the running worker. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RulesHandle {
    tx: mpsc::Sender<Change>,
    stats: Arc<RulesStats>,
}

/// The worker's end of a [`RulesHandle`]; give it to [`start`].
#[derive(Debug)]
pub struct RulesInbox {
    rx: mpsc::Receiver<Change>,
    stats: Arc<RulesStats>,
}

/// A handle for the API and the inbox the worker will read.
pub fn channel() -> (RulesHandle, RulesInbox) {
    let (tx, rx) = mpsc::channel(CHANGE_QUEUE);
    let stats = Arc::new(RulesStats::default());
    (
        RulesHandle {
            tx,
            stats: stats.clone(),
        },
        RulesInbox { rx, stats },
    )
}

impl RulesHandle {
    /// Loads or reloads rule `id` of `account` as stored at `version` (its
    /// `updated_at`); an older version than the loaded one is ignored.
    pub async fn upsert(&self, id: &str, account: &str, version: OffsetDateTime, rule: Rule) {
        self.send(Change::Upsert {
            id: RuleId(id.to_string()),
            account: account.to_string(),
            version,
            rule: Box::new(rule),
        })
        .await;
    }

    /// Unloads deleted rule `id`.
    pub async fn remove(&self, id: &str) {
        self.send(Change::Remove {
            id: RuleId(id.to_string()),
        })
        .await;
    }

    /// Tells the rules that `user` arrived at (or left) `home`, leaving
    /// `at_home` members there.
    pub async fn home_presence(&self, home: &str, user: &str, arrived: bool, at_home: u32) {
        self.send(Change::Home(kumo_rules::Event::Home {
            home: home.to_string(),
            user: user.to_string(),
            arrived,
            at_home,
            at: OffsetDateTime::now_utc(),
        }))
        .await;
    }

    async fn send(&self, change: Change) {
        if self.tx.send(change).await.is_err() {
            // Only after shutdown: the next start loads the rule from the table.
            tracing::debug!("rules worker stopped; change applies at next start");
        }
    }

    /// The worker's counters.
    pub fn stats(&self) -> &RulesStats {
        &self.stats
    }

    /// Live events the worker lost so far by falling behind.
    pub fn lagged(&self) -> u64 {
        self.stats.lagged.load(Ordering::Relaxed)
    }
}

/// What a firing may act on: the database, commands, live events, webhooks.
#[derive(Clone)]
pub struct Effects {
    pub pool: Pool,
    pub commands: Arc<CommandLog>,
    pub events: EventHub,
    pub webhooks: Webhooks,
}

/// Starts the worker and its executor; they stop when `shutdown` is
/// cancelled. Subscribes to the live stream before returning, so nothing
/// published after this call is missed.
pub fn start(inbox: RulesInbox, effects: Effects, shutdown: CancellationToken) -> JoinHandle<()> {
    let live = effects.commands.live().subscribe();
    let (jobs, queue) = mpsc::channel(EXECUTION_QUEUE);
    let pool = effects.pool.clone();
    let executor = tokio::spawn(execute::run(queue, effects, MAX_CONCURRENT_EXECUTIONS));
    let worker = worker::Worker::new(pool, inbox, jobs);
    tokio::spawn(async move {
        worker.run(live, shutdown).await;
        // The worker dropped its sender: the executor drains and ends.
        if let Err(e) = executor.await {
            tracing::warn!(error = %e, "rules executor ended abnormally");
        }
    })
}
