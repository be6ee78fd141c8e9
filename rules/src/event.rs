//! What the evaluator consumes ([`Event`]) and produces ([`Firing`]).
//!
//! Events carry their own time: the evaluator never reads a clock, so the
//! bridge decides what "now" is (message receipt time for telemetry, a periodic
//! [`Event::Tick`] for schedules, holds and absences).

use kumo_contract::DeviceId;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::{Action, RuleId, Sensor};

/// One thing that happened, at a time the caller chose.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A temperature, humidity or illuminance reading.
    Reading {
        device: DeviceId,
        sensor: Sensor,
        val: f64,
        at: OffsetDateTime,
    },
    /// The device connected (`online: true`) or went away.
    Presence {
        device: DeviceId,
        online: bool,
        at: OffsetDateTime,
    },
    /// The device's motion sensor saw movement.
    Motion {
        device: DeviceId,
        at: OffsetDateTime,
    },
    /// A smart meter's instantaneous power.
    MeterPower {
        device: DeviceId,
        watts: f64,
        at: OffsetDateTime,
    },
    /// A member of `home` arrived (`arrived: true`) or left; `at_home` members
    /// are at home now, this one included.
    Home {
        home: String,
        user: String,
        arrived: bool,
        at_home: u32,
        at: OffsetDateTime,
    },
    /// Time passed. Drives schedules, `for_secs` holds and motion absences;
    /// send one at least every few seconds.
    Tick { at: OffsetDateTime },
}

impl Event {
    /// When it happened.
    pub fn at(&self) -> OffsetDateTime {
        match self {
            Self::Reading { at, .. }
            | Self::Presence { at, .. }
            | Self::Motion { at, .. }
            | Self::MeterPower { at, .. }
            | Self::Home { at, .. }
            | Self::Tick { at } => *at,
        }
    }

    /// The device it is about (none for ticks).
    pub fn device(&self) -> Option<&DeviceId> {
        match self {
            Self::Reading { device, .. }
            | Self::Presence { device, .. }
            | Self::Motion { device, .. }
            | Self::MeterPower { device, .. } => Some(device),
            Self::Tick { .. } | Self::Home { .. } => None,
        }
    }
}

/// Why a rule fired, for the execution log and the live event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Cause {
    Threshold {
        device: DeviceId,
        sensor: Sensor,
        val: f64,
    },
    MotionSeen {
        device: DeviceId,
    },
    MotionNotSeen {
        device: DeviceId,
        /// Last motion seen, if any was seen since the rule was loaded.
        #[serde(with = "time::serde::rfc3339::option")]
        last_seen: Option<OffsetDateTime>,
    },
    Presence {
        device: DeviceId,
        online: bool,
    },
    Schedule {
        #[serde(with = "time::serde::rfc3339")]
        scheduled_for: OffsetDateTime,
    },
    MeterPower {
        device: DeviceId,
        watts: f64,
    },
    Home {
        home: String,
        user: String,
        arrived: bool,
        at_home: u32,
    },
}

/// A rule whose trigger fired and whose conditions held: run its actions.
/// Serializes as the execution record the bridge logs, streams and posts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Firing {
    pub rule: RuleId,
    /// The time of the event that caused it.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub cause: Cause,
    pub actions: Vec<Action>,
}
