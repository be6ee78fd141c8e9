//! The rule document: what `/v1/rules` accepts and returns, as serde types.
//!
//! Owns the JSON shape only. Structural checks come from serde (unknown fields,
//! types, `HH:MM`, time zone names); semantic checks live in [`crate::validate::validate`].
//! Ownership of the devices and appliances a rule names is the bridge's business:
//! [`Rule::devices`] and [`Rule::appliances`] list them for that check.
//!
//! ```json
//! {
//!   "name": "cool the bedroom at night",
//!   "enabled": true,
//!   "trigger": {"threshold": {"device": "remo-1", "sensor": "te", "op": "above",
//!                             "value": 28, "hysteresis": 0.5, "for_secs": 300}},
//!   "conditions": [
//!     {"time_window": {"from": "22:00", "to": "06:00", "time_zone": "Asia/Tokyo"}},
//!     {"sensor": {"device": "remo-2", "sensor": "hu", "op": "above", "value": 60}}
//!   ],
//!   "actions": [
//!     {"command": {"appliance": "ac-1", "kind": "aircon_settings",
//!                  "params": {"operation_mode": "cool", "temperature": "26"}}},
//!     {"webhook": {"url": "https://example.com/hooks/kumo"}},
//!     {"event": {"name": "bedroom.cooling", "data": {"why": "hot"}}}
//!   ]
//! }
//! ```
//!
//! Other triggers: `{"motion_seen": {"device", "quiet_minutes"?}}`,
//! `{"motion_not_seen": {"device", "minutes"}}`, `{"presence": {"device", "online",
//! "for_secs"?}}`, `{"schedule": {"days"?: ["mon", …], "at": "07:30", "time_zone"}}`,
//! `{"meter_power": {"device", "op", "watts", "hysteresis"?, "for_secs"?}}`,
//! `{"home": {"home", "on": "arrive"|"leave", "who"?: "anyone"|"first"|"last"}}`.

use kumo_contract::DeviceId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::{LocalTime, Weekday, Zone};
pub use crate::command::{
    AirconParams, ApplianceCommand, ButtonParams, CommandAction, SignalParams,
};

/// The identifier the bridge gave a rule (its primary key, as text).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RuleId(pub String);

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One automation rule: when `trigger` fires and every condition holds, run `actions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Display name, 1–100 characters.
    pub name: String,
    /// Disabled rules are stored but never evaluated.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    pub trigger: Trigger,
    /// All must hold at the moment the trigger fires.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Run in order; at least one, at most [`crate::validate::MAX_ACTIONS`].
    pub actions: Vec<Action>,
}

fn enabled_by_default() -> bool {
    true
}

/// A sensor a threshold can watch (motion has its own triggers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sensor {
    /// Temperature, °C.
    Te,
    /// Relative humidity, %.
    Hu,
    /// Illuminance.
    Il,
}

/// Which side of the value counts as "the condition holds".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Comparison {
    /// Strictly greater than the value.
    Above,
    /// Strictly less than the value.
    Below,
}

impl Comparison {
    /// Whether `val` is on the firing side of `limit`.
    pub fn holds(self, val: f64, limit: f64) -> bool {
        match self {
            Self::Above => val > limit,
            Self::Below => val < limit,
        }
    }

    /// Whether `val` has moved back past `limit` by at least `hysteresis`, which
    /// re-arms a trigger that fired.
    pub fn cleared(self, val: f64, limit: f64, hysteresis: f64) -> bool {
        match self {
            Self::Above => val <= limit - hysteresis,
            Self::Below => val >= limit + hysteresis,
        }
    }
}

/// What starts a rule. JSON: an object with exactly one key naming the kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Threshold(ThresholdTrigger),
    MotionSeen(MotionSeenTrigger),
    MotionNotSeen(MotionNotSeenTrigger),
    Presence(PresenceTrigger),
    Schedule(ScheduleTrigger),
    MeterPower(MeterPowerTrigger),
    Home(HomeTrigger),
}

/// A member of a home arriving or leaving (geofencing, the bridge's
/// `location_state`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeTrigger {
    /// The home's id.
    pub home: String,
    pub on: HomeEdge,
    /// Whose arrival or departure counts; default anyone's.
    #[serde(default)]
    pub who: Who,
}

/// Arriving at home or leaving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HomeEdge {
    Arrive,
    Leave,
}

/// Which members' arrivals or departures fire a [`HomeTrigger`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Who {
    /// Every one.
    #[default]
    Anyone,
    /// Arriving at an empty home.
    First,
    /// Leaving the home empty.
    Last,
}

/// A sensor crossing a value, optionally held for `for_secs`; re-arms once the
/// reading is back past the value by `hysteresis`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdTrigger {
    pub device: DeviceId,
    pub sensor: Sensor,
    pub op: Comparison,
    pub value: f64,
    #[serde(default)]
    pub hysteresis: f64,
    #[serde(default)]
    pub for_secs: u32,
}

/// Motion detected after at least `quiet_minutes` without motion (0: every event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MotionSeenTrigger {
    pub device: DeviceId,
    #[serde(default)]
    pub quiet_minutes: u32,
}

/// No motion for `minutes`; fires once per absence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MotionNotSeenTrigger {
    pub device: DeviceId,
    pub minutes: u32,
}

/// The device went online (`online: true`) or offline, and stayed so `for_secs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceTrigger {
    pub device: DeviceId,
    pub online: bool,
    #[serde(default)]
    pub for_secs: u32,
}

/// A wall-clock minute on some weekdays in a time zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleTrigger {
    /// Omitted: every day.
    #[serde(default = "every_day")]
    pub days: Vec<Weekday>,
    pub at: LocalTime,
    pub time_zone: Zone,
}

fn every_day() -> Vec<Weekday> {
    Weekday::ALL.to_vec()
}

/// Instantaneous smart-meter power crossing a value, in watts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterPowerTrigger {
    pub device: DeviceId,
    pub op: Comparison,
    pub watts: f64,
    #[serde(default)]
    pub hysteresis: f64,
    #[serde(default)]
    pub for_secs: u32,
}

/// A gate checked when the trigger fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    TimeWindow(TimeWindowCondition),
    Sensor(SensorCondition),
}

/// Local time within `[from, to)` (wrapping past midnight when `to < from`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeWindowCondition {
    pub from: LocalTime,
    pub to: LocalTime,
    pub time_zone: Zone,
    /// Days the window opens on; empty or omitted: every day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<Weekday>,
}

/// Another (or the same) device's latest reading compared to a value. Holds
/// false while no reading is known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorCondition {
    pub device: DeviceId,
    pub sensor: Sensor,
    pub op: Comparison,
    pub value: f64,
}

/// What a rule does when it fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Command(CommandAction),
    Webhook(WebhookAction),
    Event(EventAction),
}

/// POST the firing to a URL, signed with the account's webhook secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookAction {
    pub url: String,
    /// Extra JSON included in the delivered body as `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// Publish a named event on the account's live event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventAction {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl Trigger {
    /// The device whose own events drive this trigger (none for schedules).
    pub fn device(&self) -> Option<&DeviceId> {
        match self {
            Self::Threshold(t) => Some(&t.device),
            Self::MotionSeen(t) => Some(&t.device),
            Self::MotionNotSeen(t) => Some(&t.device),
            Self::Presence(t) => Some(&t.device),
            Self::MeterPower(t) => Some(&t.device),
            Self::Schedule(_) | Self::Home(_) => None,
        }
    }

    /// The home whose members drive this trigger, if it is a home trigger.
    pub fn home(&self) -> Option<&str> {
        match self {
            Self::Home(t) => Some(&t.home),
            _ => None,
        }
    }
}

impl Rule {
    /// Every device the rule reads: the trigger's and the sensor conditions'.
    pub fn devices(&self) -> Vec<&DeviceId> {
        let mut out: Vec<&DeviceId> = self.trigger.device().into_iter().collect();
        for c in &self.conditions {
            if let Condition::Sensor(s) = c {
                if !out.contains(&&s.device) {
                    out.push(&s.device);
                }
            }
        }
        out
    }

    /// Every appliance the rule commands.
    pub fn appliances(&self) -> Vec<&str> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Command(c) => Some(c.appliance.as_str()),
                _ => None,
            })
            .collect()
    }
}
