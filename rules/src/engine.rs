//! The evaluator: loaded rules, their trigger states and the latest readings.
//!
//! Owns "given this event, which rules fire now". It is synchronous and
//! deterministic: time comes only from events, nothing is persisted, nothing is
//! sent. The bridge feeds it the live stream and [`Event::Tick`]s, and executes
//! the returned [`Firing`]s (commands, webhooks, events, execution log).
//!
//! State is in memory: after a restart a level trigger whose condition already
//! holds fires once more on its next reading.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kumo_contract::DeviceId;
use time::{Duration, OffsetDateTime};

use crate::clock::in_window;
use crate::event::{Event, Firing};
use crate::model::{Condition, Rule, RuleId, Sensor};
use crate::state::TriggerState;
use crate::validate::{validate, RuleError};

/// How late a schedule may still fire after its minute, by default: the rest of
/// the minute. Ticks must come more often than this.
pub const DEFAULT_SCHEDULE_GRACE: Duration = Duration::seconds(60);

struct Slot {
    rule: Rule,
    state: TriggerState,
}

/// Evaluates many rules (of any number of accounts) against one event stream.
pub struct Engine {
    rules: BTreeMap<RuleId, Slot>,
    /// Rules whose trigger watches a device, so device events skip the rest.
    by_device: HashMap<DeviceId, BTreeSet<RuleId>>,
    latest: HashMap<(DeviceId, Sensor), f64>,
    schedule_grace: Duration,
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
        validate(&rule)?;
        self.remove(&id);
        if let Some(device) = rule.trigger.device() {
            self.by_device
                .entry(device.clone())
                .or_default()
                .insert(id.clone());
        }
        let state = TriggerState::new(&rule.trigger);
        self.rules.insert(id, Slot { rule, state });
        Ok(())
    }

    /// Unloads a rule, returning it.
    pub fn remove(&mut self, id: &RuleId) -> Option<Rule> {
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
        self.latest.get(&(device.clone(), sensor)).copied()
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
            self.latest.insert((device.clone(), *sensor), *val);
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
            let Some(candidate) = slot
                .state
                .poll(&slot.rule.trigger, event, self.schedule_grace)
            else {
                continue;
            };
            let pass = conditions_hold(&slot.rule.conditions, event.at(), &self.latest);
            slot.state.settle(candidate.settle, pass);
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
}

fn conditions_hold(
    conditions: &[Condition],
    at: OffsetDateTime,
    latest: &HashMap<(DeviceId, Sensor), f64>,
) -> bool {
    conditions.iter().all(|c| match c {
        Condition::TimeWindow(w) => in_window(at, &w.time_zone, &w.days, w.from, w.to),
        Condition::Sensor(s) => latest
            .get(&(s.device.clone(), s.sensor))
            .is_some_and(|v| s.op.holds(*v, s.value)),
    })
}
