//! The evaluator: loaded rules, their trigger states and the latest readings.
//!
//! Owns "given this event, which rules fire now". It is synchronous and
//! deterministic: time comes only from events, nothing is persisted, nothing is
//! sent. The bridge feeds it the live stream and [`Event::Tick`]s, and executes
//! the returned [`Firing`]s (commands, webhooks, events, execution log).
//!
//! Trigger state lives in memory; the host keeps it across restarts by saving
//! what [`Engine::take_saved_states`] reports and passing it back to
//! [`Engine::insert_with_state`] (otherwise a level trigger whose condition
//! already holds would fire once more after a restart).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kumo_contract::DeviceId;
use time::{Duration, OffsetDateTime};

use crate::clock::in_window;
use crate::event::{Event, Firing};
use crate::model::{Condition, Rule, RuleId, Sensor};
use crate::state::{SavedState, TriggerState};
use crate::validate::{validate, RuleError};

/// How late a schedule may still fire after its minute, by default: the rest of
/// the minute. Ticks must come more often than this.
pub const DEFAULT_SCHEDULE_GRACE: Duration = Duration::seconds(60);

/// The latest value of each sensor of one device.
type Latest = [Option<f64>; 3];

/// Where a sensor's value sits in [`Latest`].
fn slot(sensor: Sensor) -> usize {
    match sensor {
        Sensor::Te => 0,
        Sensor::Hu => 1,
        Sensor::Il => 2,
    }
}

struct Slot {
    rule: Rule,
    state: TriggerState,
    /// `state.saved()` as last reported or restored.
    saved: SavedState,
}

/// Evaluates many rules (of any number of accounts) against one event stream.
pub struct Engine {
    rules: BTreeMap<RuleId, Slot>,
    /// Rules whose trigger watches a device, so device events skip the rest.
    by_device: HashMap<DeviceId, BTreeSet<RuleId>>,
    /// Per device, the latest value of each [`Sensor`] (by [`slot`]): a reading
    /// of a known device updates in place, without cloning its id (this runs
    /// for every reading of the fleet).
    latest: HashMap<DeviceId, Latest>,
    schedule_grace: Duration,
    /// Rules whose saved state changed since the last `take_saved_states`.
    changed: BTreeSet<RuleId>,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    /// An engine with no rules.
    pub fn new() -> Self {
        Self {
            rules: BTreeMap::new(),
            by_device: HashMap::new(),
            latest: HashMap::new(),
            schedule_grace: DEFAULT_SCHEDULE_GRACE,
            changed: BTreeSet::new(),
        }
    }

    /// Lets schedules fire up to `grace` after their minute (for coarse ticks).
    pub fn with_schedule_grace(mut self, grace: Duration) -> Self {
        self.schedule_grace = grace;
        self
    }

    /// Loads or replaces a rule. Replacing resets its trigger state (armed,
    /// nothing seen). Invalid rules are rejected and the old one stays.
    pub fn insert(&mut self, id: RuleId, rule: Rule) -> Result<(), RuleError> {
        self.insert_with_state(id, rule, None)
    }

    /// Loads a rule continuing from `saved` (a state [`Engine::take_saved_states`]
    /// reported for this same rule). A state of another trigger kind is
    /// ignored: the rule starts fresh.
    pub fn insert_with_state(
        &mut self,
        id: RuleId,
        rule: Rule,
        saved: Option<&SavedState>,
    ) -> Result<(), RuleError> {
        validate(&rule)?;
        self.remove(&id);
        if let Some(device) = rule.trigger.device() {
            self.by_device
                .entry(device.clone())
                .or_default()
                .insert(id.clone());
        }
        let state = saved
            .and_then(|s| TriggerState::restore(&rule.trigger, s))
            .unwrap_or_else(|| TriggerState::new(&rule.trigger));
        let saved = state.saved();
        self.rules.insert(id, Slot { rule, state, saved });
        Ok(())
    }

    /// Unloads a rule, returning it.
    pub fn remove(&mut self, id: &RuleId) -> Option<Rule> {
        self.changed.remove(id);
        let slot = self.rules.remove(id)?;
        if let Some(device) = slot.rule.trigger.device() {
            if let Some(ids) = self.by_device.get_mut(device) {
                ids.remove(id);
                if ids.is_empty() {
                    self.by_device.remove(device);
                }
            }
        }
        Some(slot.rule)
    }

    /// A loaded rule.
    pub fn rule(&self, id: &RuleId) -> Option<&Rule> {
        self.rules.get(id).map(|s| &s.rule)
    }

    /// How many rules are loaded.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether no rule is loaded.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The latest reading seen for a device's sensor.
    pub fn latest(&self, device: &DeviceId, sensor: Sensor) -> Option<f64> {
        self.latest.get(device).and_then(|v| v[slot(sensor)])
    }

    /// Feeds one event and returns the rules that fire because of it, in rule
    /// id order. Disabled rules are skipped and keep no state.
    pub fn handle(&mut self, event: &Event) -> Vec<Firing> {
        if let Event::Reading {
            device,
            sensor,
            val,
            ..
        } = event
        {
            match self.latest.get_mut(device) {
                Some(values) => values[slot(*sensor)] = Some(*val),
                None => {
                    let mut values = Latest::default();
                    values[slot(*sensor)] = Some(*val);
                    self.latest.insert(device.clone(), values);
                }
            }
        }
        let ids: Vec<RuleId> = match event.device() {
            Some(device) => self
                .by_device
                .get(device)
                .map(|ids| ids.iter().cloned().collect())
                .unwrap_or_default(),
            None => self.rules.keys().cloned().collect(),
        };
        let mut firings = Vec::new();
        for id in ids {
            let Some(slot) = self.rules.get_mut(&id) else {
                continue;
            };
            if !slot.rule.enabled {
                continue;
            }
            let candidate = slot
                .state
                .poll(&slot.rule.trigger, event, self.schedule_grace);
            let pass = candidate.as_ref().is_some_and(|c| {
                let pass = conditions_hold(&slot.rule.conditions, event.at(), &self.latest);
                slot.state.settle(c.settle, pass);
                pass
            });
            let saved = slot.state.saved();
            if saved != slot.saved {
                slot.saved = saved;
                self.changed.insert(id.clone());
            }
            let Some(candidate) = candidate else {
                continue;
            };
            if pass {
                firings.push(Firing {
                    rule: id,
                    at: event.at(),
                    cause: candidate.cause,
                    actions: slot.rule.actions.clone(),
                });
            }
        }
        firings
    }

    /// The saved state of every rule whose state changed since the last call,
    /// in rule id order. Level triggers change only when they arm, start a
    /// hold or fire; motion triggers on each motion; schedules when they fire.
    pub fn take_saved_states(&mut self) -> Vec<(RuleId, SavedState)> {
        let changed = std::mem::take(&mut self.changed);
        changed
            .into_iter()
            .filter_map(|id| {
                let saved = self.rules.get(&id)?.saved.clone();
                Some((id, saved))
            })
            .collect()
    }
}

fn conditions_hold(
    conditions: &[Condition],
    at: OffsetDateTime,
    latest: &HashMap<DeviceId, Latest>,
) -> bool {
    conditions.iter().all(|c| match c {
        Condition::TimeWindow(w) => in_window(at, &w.time_zone, &w.days, w.from, w.to),
        Condition::Sensor(s) => latest
            .get(&s.device)
            .and_then(|v| v[slot(s.sensor)])
            .is_some_and(|v| s.op.holds(v, s.value)),
    })
}
