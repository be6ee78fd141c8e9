//! Per-rule trigger state machines.
//!
//! Each trigger kind keeps the least state that makes it fire exactly once per
//! occurrence: level triggers (threshold, meter power, presence) arm, hold and
//! disarm until cleared; motion keeps the last sighting; schedules remember the
//! last occurrence they consumed. This module decides "the trigger wants to
//! fire"; conditions and the firing itself belong to [`crate::engine`].

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::clock::latest_occurrence;
use crate::event::{Cause, Event};
use crate::model::{Comparison, HomeEdge, Trigger, Who};

/// Where a level reading sits relative to the threshold and its hysteresis band.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// On the firing side.
    Active,
    /// Back across the value but not yet past the band: neither holds nor re-arms.
    Band,
    /// Past the band: re-arms.
    Clear,
}

fn phase(op: Comparison, val: f64, limit: f64, hysteresis: f64) -> Phase {
    if op.holds(val, limit) {
        Phase::Active
    } else if op.cleared(val, limit, hysteresis) {
        Phase::Clear
    } else {
        Phase::Band
    }
}

/// Arm / hold / disarm for level triggers.
#[derive(Debug, Clone)]
pub(crate) struct Hold {
    armed: bool,
    since: Option<OffsetDateTime>,
    hold: Duration,
}

impl Hold {
    fn new(secs: u32) -> Self {
        Self {
            armed: true,
            since: None,
            hold: Duration::seconds(i64::from(secs)),
        }
    }

    fn observe(&mut self, phase: Phase, at: OffsetDateTime) {
        match phase {
            Phase::Active if self.armed && self.since.is_none() => self.since = Some(at),
            Phase::Active => {}
            // The condition stopped holding: a hold in progress starts over.
            Phase::Band => self.since = None,
            Phase::Clear => {
                self.since = None;
                self.armed = true;
            }
        }
    }

    fn due(&self, at: OffsetDateTime) -> bool {
        self.armed && self.since.is_some_and(|s| at - s >= self.hold)
    }
}

/// How to update the state once the engine knows whether the rule fired.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Settle {
    /// Level triggers: disarm only if it fired; a gated firing stays pending and
    /// is retried on the next event or tick.
    DisarmIfFired,
    /// Schedules: the occurrence is used up either way.
    Consume(OffsetDateTime),
    /// Motion seen: nothing to record.
    Nothing,
}

/// A trigger that wants to fire.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub cause: Cause,
    pub settle: Settle,
}

/// The mutable half of a loaded rule.
#[derive(Debug, Clone)]
pub(crate) enum TriggerState {
    Level {
        hold: Hold,
        last: f64,
        online: bool,
    },
    MotionSeen {
        last: Option<OffsetDateTime>,
    },
    MotionNotSeen {
        baseline: Option<OffsetDateTime>,
        last_seen: Option<OffsetDateTime>,
        fired: bool,
    },
    Schedule {
        consumed: Option<OffsetDateTime>,
    },
    /// Home triggers fire on each matching arrival or departure: no state.
    Home,
}

impl TriggerState {
    /// Fresh state for `trigger`: armed, nothing seen.
    pub fn new(trigger: &Trigger) -> Self {
        let level = |secs| Self::Level {
            hold: Hold::new(secs),
            last: 0.0,
            online: false,
        };
        match trigger {
            Trigger::Threshold(t) => level(t.for_secs),
            Trigger::MeterPower(t) => level(t.for_secs),
            Trigger::Presence(t) => level(t.for_secs),
            Trigger::MotionSeen(_) => Self::MotionSeen { last: None },
            Trigger::MotionNotSeen(_) => Self::MotionNotSeen {
                baseline: None,
                last_seen: None,
                fired: false,
            },
            Trigger::Schedule(_) => Self::Schedule { consumed: None },
            Trigger::Home(_) => Self::Home,
        }
    }

    /// Feeds one event; returns a candidate when the trigger wants to fire now.
    /// Events about other devices are ignored.
    pub fn poll(&mut self, trigger: &Trigger, event: &Event, grace: Duration) -> Option<Candidate> {
        let at = event.at();
        if let (Some(mine), Some(theirs)) = (trigger.device(), event.device()) {
            if mine != theirs {
                return None;
            }
        }
        match (self, trigger) {
            (Self::Level { hold, last, .. }, Trigger::Threshold(t)) => {
                if let Event::Reading { sensor, val, .. } = event {
                    if *sensor != t.sensor {
                        return None;
                    }
                    hold.observe(phase(t.op, *val, t.value, t.hysteresis), at);
                    *last = *val;
                }
                hold.due(at).then(|| Candidate {
                    cause: Cause::Threshold {
                        device: t.device.clone(),
                        sensor: t.sensor,
                        val: *last,
                    },
                    settle: Settle::DisarmIfFired,
                })
            }
            (Self::Level { hold, last, .. }, Trigger::MeterPower(t)) => {
                if let Event::MeterPower { watts, .. } = event {
                    hold.observe(phase(t.op, *watts, t.watts, t.hysteresis), at);
                    *last = *watts;
                }
                hold.due(at).then(|| Candidate {
                    cause: Cause::MeterPower {
                        device: t.device.clone(),
                        watts: *last,
                    },
                    settle: Settle::DisarmIfFired,
                })
            }
            (Self::Level { hold, online, .. }, Trigger::Presence(t)) => {
                if let Event::Presence { online: now, .. } = event {
                    let phase = if *now == t.online {
                        Phase::Active
                    } else {
                        Phase::Clear
                    };
                    hold.observe(phase, at);
                    *online = *now;
                }
                hold.due(at).then(|| Candidate {
                    cause: Cause::Presence {
                        device: t.device.clone(),
                        online: *online,
                    },
                    settle: Settle::DisarmIfFired,
                })
            }
            (Self::MotionSeen { last }, Trigger::MotionSeen(t)) => {
                let Event::Motion { .. } = event else {
                    return None;
                };
                let quiet = Duration::minutes(i64::from(t.quiet_minutes));
                let fire = last.map_or(true, |l| at - l >= quiet);
                *last = Some(at);
                fire.then(|| Candidate {
                    cause: Cause::MotionSeen {
                        device: t.device.clone(),
                    },
                    settle: Settle::Nothing,
                })
            }
            (
                Self::MotionNotSeen {
                    baseline,
                    last_seen,
                    fired,
                },
                Trigger::MotionNotSeen(t),
            ) => {
                if let Event::Motion { .. } = event {
                    *baseline = Some(at);
                    *last_seen = Some(at);
                    *fired = false;
                    return None;
                }
                // Absence is counted from the last motion, or from when the rule
                // first saw time pass.
                let since = *baseline.get_or_insert(at);
                let due = !*fired && at - since >= Duration::minutes(i64::from(t.minutes));
                due.then(|| Candidate {
                    cause: Cause::MotionNotSeen {
                        device: t.device.clone(),
                        last_seen: *last_seen,
                    },
                    settle: Settle::DisarmIfFired,
                })
            }
            (Self::Schedule { consumed }, Trigger::Schedule(s)) => {
                let Event::Tick { .. } = event else {
                    return None;
                };
                let occurrence = latest_occurrence(at, &s.time_zone, &s.days, s.at)?;
                let fresh = at - occurrence < grace && *consumed != Some(occurrence);
                fresh.then_some(Candidate {
                    cause: Cause::Schedule {
                        scheduled_for: occurrence,
                    },
                    settle: Settle::Consume(occurrence),
                })
            }
            (Self::Home, Trigger::Home(t)) => {
                let Event::Home {
                    home,
                    user,
                    arrived,
                    at_home,
                    ..
                } = event
                else {
                    return None;
                };
                let edge = if *arrived {
                    HomeEdge::Arrive
                } else {
                    HomeEdge::Leave
                };
                let who = match t.who {
                    Who::Anyone => true,
                    Who::First => *arrived && *at_home == 1,
                    Who::Last => !*arrived && *at_home == 0,
                };
                (*home == t.home && edge == t.on && who).then(|| Candidate {
                    cause: Cause::Home {
                        home: home.clone(),
                        user: user.clone(),
                        arrived: *arrived,
                        at_home: *at_home,
                    },
                    settle: Settle::Nothing,
                })
            }
            // State built for another trigger kind: the engine rebuilds state
            // whenever a rule is replaced, so this cannot happen.
            _ => None,
        }
    }

    /// Records the outcome of a candidate.
    pub fn settle(&mut self, settle: Settle, fired: bool) {
        match (self, settle) {
            (Self::Level { hold, .. }, Settle::DisarmIfFired) if fired => {
                hold.armed = false;
                hold.since = None;
            }
            (Self::MotionNotSeen { fired: done, .. }, Settle::DisarmIfFired) if fired => {
                *done = true;
            }
            (Self::Schedule { consumed }, Settle::Consume(o)) => *consumed = Some(o),
            _ => {}
        }
    }
}

/// What of a trigger's state must survive a restart for it to keep firing
/// once per occurrence: armed or not and a hold in progress, the last motion,
/// the absence being counted, the schedule occurrence used up. Times are Unix
/// milliseconds. Values seen only to describe a firing are not kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SavedState {
    Level {
        armed: bool,
        since: Option<i64>,
    },
    MotionSeen {
        last: Option<i64>,
    },
    MotionNotSeen {
        baseline: Option<i64>,
        last_seen: Option<i64>,
        fired: bool,
    },
    Schedule {
        consumed: Option<i64>,
    },
    Home,
}

fn to_ms(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn from_ms(ms: Option<i64>) -> Option<Option<OffsetDateTime>> {
    match ms {
        None => Some(None),
        Some(ms) => OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .ok()
            .map(Some),
    }
}

impl TriggerState {
    /// The part of this state worth keeping across a restart.
    pub fn saved(&self) -> SavedState {
        match self {
            Self::Level { hold, .. } => SavedState::Level {
                armed: hold.armed,
                since: to_ms(hold.since),
            },
            Self::MotionSeen { last } => SavedState::MotionSeen { last: to_ms(*last) },
            Self::MotionNotSeen {
                baseline,
                last_seen,
                fired,
            } => SavedState::MotionNotSeen {
                baseline: to_ms(*baseline),
                last_seen: to_ms(*last_seen),
                fired: *fired,
            },
            Self::Schedule { consumed } => SavedState::Schedule {
                consumed: to_ms(*consumed),
            },
            Self::Home => SavedState::Home,
        }
    }

    /// State for `trigger` continuing from `saved`; `None` when `saved` was
    /// kept for another kind of trigger or holds an impossible time.
    pub fn restore(trigger: &Trigger, saved: &SavedState) -> Option<Self> {
        let mut state = Self::new(trigger);
        match (&mut state, saved) {
            (Self::Level { hold, .. }, SavedState::Level { armed, since }) => {
                hold.armed = *armed;
                hold.since = from_ms(*since)?;
            }
            (Self::MotionSeen { last }, SavedState::MotionSeen { last: saved }) => {
                *last = from_ms(*saved)?;
            }
            (
                Self::MotionNotSeen {
                    baseline,
                    last_seen,
                    fired,
                },
                SavedState::MotionNotSeen {
                    baseline: b,
                    last_seen: l,
                    fired: f,
                },
            ) => {
                *baseline = from_ms(*b)?;
                *last_seen = from_ms(*l)?;
                *fired = *f;
            }
            (Self::Schedule { consumed }, SavedState::Schedule { consumed: c }) => {
                *consumed = from_ms(*c)?;
            }
            (Self::Home, SavedState::Home) => {}
            _ => return None,
        }
        Some(state)
    }
}
