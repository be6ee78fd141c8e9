//! The evaluation loop: rule changes, the live stream and ticks in, firings
//! out to the execution queue.
//!
//! Owns the [`Engine`] and which account each rule belongs to. It must not
//! await anything slow per event: firings are handed over with `try_send`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use deadpool_postgres::Pool;
use kumo_contract::DeviceId;
use kumo_rules::{Engine, Event, RuleId, SavedState, Sensor};
use time::OffsetDateTime;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::execute::Job;
use super::{store, Change, RulesInbox, TICK};
use crate::live::LiveEvent;

/// Pause between attempts to load the rules when the database is down.
const LOAD_RETRY: std::time::Duration = std::time::Duration::from_secs(2);
/// How often changed trigger states are saved. A restart loses at most this
/// much of them (a level trigger then fires at most once more).
const SAVE_STATES_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// Longest the worker waits at shutdown for its last states to be saved.
const FINAL_SAVE: std::time::Duration = std::time::Duration::from_secs(3);

struct Meta {
    account: String,
    version: OffsetDateTime,
}

pub(super) struct Worker {
    pool: Pool,
    inbox: RulesInbox,
    jobs: mpsc::Sender<Job>,
    engine: Engine,
    /// Every rule known (enabled or not), for account lookup and stale changes.
    meta: HashMap<RuleId, Meta>,
    /// Rules deleted since start: a late upsert must not bring one back.
    removed: HashSet<RuleId>,
    /// Trigger states to save (a failed save comes back here), by rule id.
    unsaved: HashMap<String, store::SavedTriggerState>,
    /// The save in progress: the states it failed to store, if it failed.
    saving: Option<JoinHandle<Vec<store::SavedTriggerState>>>,
}

impl Worker {
    pub(super) fn new(pool: Pool, inbox: RulesInbox, jobs: mpsc::Sender<Job>) -> Self {
        Self {
            pool,
            inbox,
            jobs,
            engine: Engine::new(),
            meta: HashMap::new(),
            removed: HashSet::new(),
            unsaved: HashMap::new(),
            saving: None,
        }
    }

    pub(super) async fn run(
        mut self,
        mut live: broadcast::Receiver<Arc<LiveEvent>>,
        shutdown: CancellationToken,
    ) {
        if !self.load(&shutdown).await {
            return;
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut save = tokio::time::interval(SAVE_STATES_EVERY);
        save.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                // Changes first: a rule saved before a reading arrived applies to it.
                biased;
                () = shutdown.cancelled() => {
                    // A save still running first, then whatever changed since.
                    self.finish_saving().await;
                    self.save_states().await;
                    self.finish_saving().await;
                    return;
                }
                Some(change) = self.inbox.rx.recv() => self.apply(change),
                event = live.recv() => match event {
                    Ok(e) => {
                        if let Some(event) = engine_event(&e, OffsetDateTime::now_utc()) {
                            self.evaluate(&event);
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        self.inbox.stats.lagged.fetch_add(n, Ordering::Relaxed);
                        tracing::warn!(lost = n, "rules worker fell behind the live stream");
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    self.evaluate(&Event::Tick { at: OffsetDateTime::now_utc() });
                }
                _ = save.tick() => self.save_states().await,
            }
        }
    }

    /// Loads every enabled rule, retrying while the database is unavailable.
    /// `false` if shutdown came first.
    async fn load(&mut self, shutdown: &CancellationToken) -> bool {
        loop {
            match store::load_enabled(&self.pool).await {
                Ok(rules) => {
                    for (r, state) in rules {
                        self.load_stored(r, state);
                    }
                    tracing::info!(rules = self.engine.len(), "rules loaded");
                    return true;
                }
                Err(e) => tracing::warn!(error = %e, "loading rules failed; will retry"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(LOAD_RETRY) => {}
            }
        }
    }

    fn load_stored(&mut self, r: store::StoredRule, state: Option<serde_json::Value>) {
        // A state that no longer parses is dropped: the rule starts fresh.
        let saved = state.and_then(|v| serde_json::from_value::<SavedState>(v).ok());
        match kumo_rules::parse_rule_value(r.definition) {
            Ok(rule) => self.upsert(
                Change::Upsert {
                    id: RuleId(r.id),
                    account: r.user_id,
                    version: r.updated_at,
                    rule: Box::new(rule),
                },
                saved.as_ref(),
            ),
            // E.g. a time zone a newer tz database dropped: keep the rest running.
            Err(e) => tracing::error!(rule_id = %r.id, error = %e,
                "a stored rule no longer validates; it is not loaded"),
        }
    }

    fn apply(&mut self, change: Change) {
        self.upsert(change, None);
    }

    /// Applies `change`; an upserted rule continues from `saved` if given.
    fn upsert(&mut self, change: Change, saved: Option<&SavedState>) {
        match change {
            Change::Upsert {
                id,
                account,
                version,
                rule,
            } => {
                let stale = self.meta.get(&id).is_some_and(|m| m.version > version);
                if stale || self.removed.contains(&id) {
                    return;
                }
                self.engine.remove(&id);
                if rule.enabled {
                    if let Err(e) = self.engine.insert_with_state(id.clone(), *rule, saved) {
                        tracing::error!(rule_id = %id, error = %e, "rule rejected by the engine");
                    }
                }
                self.meta.insert(id, Meta { account, version });
            }
            Change::Remove { id } => {
                self.engine.remove(&id);
                self.meta.remove(&id);
                self.removed.insert(id);
            }
            Change::Home(event) => self.evaluate(&event),
        }
    }

    /// Waits (bounded) for the save in progress; what it failed to store is
    /// kept for the next one.
    async fn finish_saving(&mut self) {
        let Some(running) = self.saving.take() else {
            return;
        };
        match tokio::time::timeout(FINAL_SAVE, running).await {
            Ok(failed) => {
                for s in failed.unwrap_or_default() {
                    self.unsaved.entry(s.rule_id.clone()).or_insert(s);
                }
            }
            Err(_) => tracing::warn!("trigger states not saved at shutdown"),
        }
    }

    /// Starts saving the trigger states that changed (and any a failed save
    /// left), unless a save is still running: then they wait for the next round.
    async fn save_states(&mut self) {
        if self.saving.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        if let Some(done) = self.saving.take() {
            for s in done.await.unwrap_or_default() {
                self.unsaved.entry(s.rule_id.clone()).or_insert(s);
            }
        }
        for (id, saved) in self.engine.take_saved_states() {
            let (Some(meta), Ok(state)) = (self.meta.get(&id), serde_json::to_value(&saved)) else {
                continue;
            };
            let s = store::SavedTriggerState {
                rule_id: id.0.clone(),
                version: meta.version,
                state,
            };
            self.unsaved.insert(id.0, s);
        }
        if self.unsaved.is_empty() {
            return;
        }
        let batch: Vec<_> = self.unsaved.drain().map(|(_, s)| s).collect();
        let pool = self.pool.clone();
        self.saving = Some(tokio::spawn(async move {
            match store::save_trigger_states(&pool, &batch).await {
                Ok(()) => Vec::new(),
                Err(e) => {
                    tracing::warn!(error = %e, states = batch.len(),
                        "saving rule trigger states failed; will retry");
                    batch
                }
            }
        }));
    }

    fn evaluate(&mut self, event: &Event) {
        for firing in self.engine.handle(event) {
            let (Some(meta), Some(rule)) =
                (self.meta.get(&firing.rule), self.engine.rule(&firing.rule))
            else {
                continue;
            };
            let rule_id = firing.rule.0.clone();
            let job = Job {
                account: meta.account.clone(),
                rule_name: rule.name.clone(),
                devices: rule.devices().iter().map(|d| d.to_string()).collect(),
                homes: rule
                    .trigger
                    .home()
                    .map(str::to_string)
                    .into_iter()
                    .collect(),
                firing,
            };
            let stats = &self.inbox.stats;
            match self.jobs.try_send(job) {
                Ok(()) => {
                    stats.fired.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(rule_id = %rule_id, "rule fired");
                }
                Err(_) => {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(rule_id = %rule_id,
                        "rule execution queue full; this firing is dropped");
                }
            }
        }
    }
}

/// What a live event means to the engine, stamped with receipt time `now`.
fn engine_event(e: &LiveEvent, now: OffsetDateTime) -> Option<Event> {
    match e {
        LiveEvent::Reading {
            device,
            sensor,
            val,
            ..
        } => {
            let device = device.clone();
            let at = now;
            let sensor = match *sensor {
                "te" => Sensor::Te,
                "hu" => Sensor::Hu,
                "il" => Sensor::Il,
                "mo" if *val > 0.0 => return Some(Event::Motion { device, at }),
                "power" => {
                    return Some(Event::MeterPower {
                        device,
                        watts: *val,
                        at,
                    })
                }
                _ => return None,
            };
            Some(Event::Reading {
                device,
                sensor,
                val: *val,
                at,
            })
        }
        LiveEvent::Presence { device, online, .. } => Some(Event::Presence {
            device: DeviceId::parse(device.as_str()).ok()?,
            online: *online,
            at: now,
        }),
        LiveEvent::ApplianceState { .. } | LiveEvent::Command { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(sensor: &'static str, val: f64) -> LiveEvent {
        LiveEvent::Reading {
            device: DeviceId::parse("remo-1").expect("valid"),
            sensor,
            val,
            at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn live_events_map_to_engine_events_at_receipt_time() {
        let now = OffsetDateTime::now_utc();
        let Some(Event::Reading {
            sensor, val, at, ..
        }) = engine_event(&reading("hu", 55.0), now)
        else {
            panic!("a humidity reading is a reading");
        };
        assert_eq!((sensor, val, at), (Sensor::Hu, 55.0, now));
        assert!(matches!(
            engine_event(&reading("mo", 1.0), now),
            Some(Event::Motion { .. })
        ));
        assert!(matches!(
            engine_event(&reading("power", 900.0), now),
            Some(Event::MeterPower { watts, .. }) if watts == 900.0
        ));
        assert_eq!(engine_event(&reading("energy", 12.0), now), None);
        let presence = LiveEvent::Presence {
            device: "remo-1".into(),
            online: false,
            node: None,
            at: OffsetDateTime::UNIX_EPOCH,
        };
        assert!(matches!(
            engine_event(&presence, now),
            Some(Event::Presence { online: false, .. })
        ));
    }
}
