//! What an event may do to one home's air conditioner: the command clamped
//! to the user's consent, the hours it excludes, and the staggered instant
//! each appliance is commanded at. Pure functions, no I/O.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// What an event asks of every enrolled unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Move the setpoint this many °C towards using less energy (up when
    /// cooling, down when heating).
    Setpoint(f64),
    /// Turn the unit off.
    Off,
}

/// The limits a user enrolled an appliance with.
#[derive(Debug, Clone, PartialEq)]
pub struct Consent {
    /// The largest setpoint change allowed, °C (0: none).
    pub max_setpoint_change: f64,
    /// Whether the unit may be turned off.
    pub allow_off: bool,
    /// Local hours (0–23) in which nothing may be done.
    pub excluded_hours: Vec<i16>,
    /// The UTC offset the hours are on, minutes.
    pub utc_offset_minutes: i32,
}

/// A unit's confirmed settings in the one form consent is decided on,
/// whatever kind of unit it is (an IR `AC` or an ECHONET Lite `EL_AIRCON`):
/// each kind translates its own state into this (`super::unit`).
#[derive(Debug, Clone, PartialEq)]
pub struct UnitSettings {
    /// Whether the unit is running.
    pub on: bool,
    pub mode: Heading,
    /// The set temperature, °C; `None` when the unit has none now.
    pub setpoint: Option<f64>,
    /// The set temperatures the unit accepts in this mode, °C.
    pub setpoints: Vec<f64>,
}

/// Which way a unit moves heat, which decides which way its setpoint
/// moves to use less energy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heading {
    Cool,
    Heat,
    /// A mode with no setpoint to move (dry, fan, auto, …), by its name.
    Other(String),
}

/// The settings change to command, or why the unit is left alone.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Set this temperature, °C (same mode, still on): one of the unit's
    /// `setpoints`.
    Setpoint(f64),
    /// Turn the unit off.
    PowerOff,
    /// Nothing is commanded, for this reason.
    Skip(String),
}

/// The local hour of the consent's clock at which a window `[start, end)`
/// touches an excluded hour, if any.
pub fn excluded_hour_in(c: &Consent, start: OffsetDateTime, end: OffsetDateTime) -> Option<i16> {
    let offset = time::Duration::minutes(i64::from(c.utc_offset_minutes));
    let (start, end) = (start + offset, end + offset);
    // Every local hour the window overlaps, at most one day's worth to check.
    let mut t = start.replace_minute(0).ok()?.replace_second(0).ok()?;
    t = t.replace_nanosecond(0).ok()?;
    for _ in 0..25 {
        if t >= end {
            break;
        }
        let hour = i16::from(t.hour());
        if c.excluded_hours.contains(&hour) {
            return Some(hour);
        }
        t += time::Duration::hours(1);
    }
    None
}

/// The command for a unit in `current` settings, clamped to the consent.
/// Turning off when the user does not allow it becomes the largest
/// setpoint change they do allow; a setpoint change is capped at their
/// limit and lands on a temperature the unit accepts, never beyond.
pub fn decide(target: Target, c: &Consent, current: &UnitSettings) -> Decision {
    if !current.on {
        return Decision::Skip("the unit is off already".into());
    }
    let change = match target {
        Target::Off if c.allow_off => return Decision::PowerOff,
        Target::Off => c.max_setpoint_change,
        Target::Setpoint(d) => d.min(c.max_setpoint_change),
    };
    if change <= 0.0 {
        return Decision::Skip("the consent allows no setpoint change and no turning off".into());
    }
    let direction = match &current.mode {
        Heading::Cool => 1.0,
        Heading::Heat => -1.0,
        Heading::Other(name) => {
            return Decision::Skip(format!("mode {name:?} has no setpoint to move"))
        }
    };
    let Some(now) = current.setpoint else {
        return Decision::Skip("the unit reports no setpoint".into());
    };
    let best = current
        .setpoints
        .iter()
        .map(|&v| (v, (v - now) * direction))
        .filter(|(_, step)| *step > 0.0 && *step <= change + 1e-9)
        .max_by(|a, b| a.1.total_cmp(&b.1));
    match best {
        Some((v, _)) => Decision::Setpoint(v),
        None => Decision::Skip(format!(
            "no setpoint within {change} °C of {now} °C in its mode"
        )),
    }
}

/// What one enrolled unit can give a kW target: a setpoint change of at
/// most `max_change` °C (its user's limit; 0 when the consent keeps it out
/// of the window), each kelvin worth `kw_per_kelvin` less draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    pub max_change: f64,
    pub kw_per_kelvin: f64,
}

/// A kW target turned into the one setpoint change every unit is asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KwPlan {
    /// °C, more than 0 and at most 10.
    pub setpoint_change: f64,
    /// kW the units are expected to give at that change, each clamped to
    /// its limit: the target, or less when even the largest change any
    /// consent allows falls short of it.
    pub expected_kw: f64,
}

/// The smallest setpoint change Δ (at most 10 °C) at which the units, each
/// moving `min(Δ, its limit)`, are expected to give `reduction_kw` in total.
/// A unit whose user allows less moves less, so the others move further
/// than an even share would ask of them, up to their own limits. When even
/// the largest change falls short, that change and what it is expected to
/// give. `None` when no unit may move at all.
pub fn kw_plan(reduction_kw: f64, units: &[Capacity]) -> Option<KwPlan> {
    let mut able: Vec<(f64, f64)> = units
        .iter()
        .filter(|u| u.max_change > 0.0 && u.kw_per_kelvin > 0.0)
        .map(|u| (u.max_change.min(10.0), u.kw_per_kelvin))
        .collect();
    if able.is_empty() {
        return None;
    }
    able.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Walk the limits upwards: between two of them the reduction grows by
    // the sensitivity of every unit not yet at its limit.
    let mut rate: f64 = able.iter().map(|u| u.1).sum();
    let (mut at, mut given) = (0.0_f64, 0.0_f64);
    for &(limit, k) in &able {
        let reach = given + rate * (limit - at);
        if reach >= reduction_kw {
            let change = at + (reduction_kw - given) / rate;
            return Some(KwPlan {
                setpoint_change: change,
                expected_kw: reduction_kw,
            });
        }
        (at, given) = (limit, reach);
        rate -= k;
    }
    Some(KwPlan {
        setpoint_change: at,
        expected_kw: given,
    })
}

/// How far after an instant appliance `appliance` is commanded in event
/// `event`: a fixed pseudo-random offset in `[0, spread]`, the same every
/// time it is computed, so a fleet's commands spread evenly over the
/// stagger window instead of arriving at once.
pub fn stagger(event: &str, appliance: &str, spread: time::Duration) -> time::Duration {
    let ms = u64::try_from(spread.whole_milliseconds()).unwrap_or(0);
    if ms == 0 {
        return time::Duration::ZERO;
    }
    let digest = Sha256::new()
        .chain_update(event.as_bytes())
        .chain_update([0])
        .chain_update(appliance.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let offset = u64::from_be_bytes(first) % (ms + 1);
    time::Duration::milliseconds(i64::try_from(offset).unwrap_or(0))
}

/// The spread for a window: the configured stagger, but at most half the
/// window, so every unit is commanded well before its restore.
pub fn spread_for(window: time::Duration, stagger_secs: u64) -> time::Duration {
    let configured = time::Duration::seconds(i64::try_from(stagger_secs).unwrap_or(i64::MAX));
    configured.min(window / 2)
}

#[cfg(test)]
#[path = "consent_tests.rs"]
mod tests;
