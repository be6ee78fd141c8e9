//! Appliance behaviour, once: the catalogue of models Kumo knows and what each
//! button and setting does to an appliance's state.
//!
//! The bridge validates REST and rule commands with these functions and shows
//! the state they predict; the device simulator applies the very same
//! functions to its appliances and reports the result. A model refuses only
//! what it cannot do (an unknown button, a temperature outside a mode's range);
//! a button that makes no sense in the current state (volume up on a TV that is
//! off) is emitted and changes nothing, as an IR remote would. Pure functions:
//! no I/O, no clock.

pub mod aircon;
pub mod catalog;
pub mod echonet;
pub mod light;
pub mod projector;
pub mod sesame;
pub mod tv;

pub use aircon::{AirconPatch, AirconState};
pub use catalog::{AcMode, AirconCaps, Button, Capabilities, Model, MODELS};
pub use light::LightState;
pub use projector::LightProjectorState;
pub use sesame::SesameBotState;
pub use tv::TvState;

/// The kinds of appliance a model can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApplianceKind {
    Aircon,
    Tv,
    Light,
    FloorHeater,
    LightProjector,
    SesameBot,
}

impl ApplianceKind {
    /// Every kind.
    pub const ALL: [Self; 6] = [
        Self::Aircon,
        Self::Tv,
        Self::Light,
        Self::FloorHeater,
        Self::LightProjector,
        Self::SesameBot,
    ];
}

/// Why a model refused a setting or a button: the field (by its wire name),
/// the value and what the model would have accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message_for(self.field))]
pub struct Refusal {
    /// The wire name of the setting: `mode`, `temp`, `vol`, `dir`, `dirh`,
    /// `button`, `operation` or `model`.
    pub field: &'static str,
    /// What was asked for.
    pub value: String,
    /// Where it is not supported, e.g. `mode "cool" of this air conditioner`.
    pub scope: String,
    /// The values that would have been accepted.
    pub allowed: Vec<&'static str>,
}

impl Refusal {
    /// The message with the setting called `field` (APIs name settings their own way).
    pub fn message_for(&self, field: &str) -> String {
        format!(
            "{field} {:?} is not supported by {}; allowed: {}",
            self.value,
            self.scope,
            list(&self.allowed)
        )
    }

    pub(crate) fn new(
        field: &'static str,
        value: &str,
        scope: impl Into<String>,
        allowed: &[&'static str],
    ) -> Self {
        Self {
            field,
            value: value.to_string(),
            scope: scope.into(),
            allowed: allowed.to_vec(),
        }
    }
}

fn list(allowed: &[&str]) -> String {
    allowed
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `value` moved by `delta` within `lo..=hi` (a non-number counts as `lo`).
pub(crate) fn step(value: &str, delta: i32, lo: i32, hi: i32) -> String {
    let v: i32 = value.parse().unwrap_or(lo);
    (v + delta).clamp(lo, hi).to_string()
}

/// `Ok` if `v` is one of `allowed` (checking a reported state).
pub(crate) fn one_of(
    field: &'static str,
    v: &str,
    allowed: &[&'static str],
) -> Result<(), Refusal> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(Refusal::new(field, v, "a reported state", allowed))
    }
}

/// `Ok` if `v` is a canonical whole number in `lo..=hi` (checking a reported state).
pub(crate) fn within(field: &'static str, v: &str, lo: i32, hi: i32) -> Result<(), Refusal> {
    match v.parse::<i32>() {
        Ok(n) if (lo..=hi).contains(&n) && n.to_string() == v => Ok(()),
        _ => Err(Refusal {
            field,
            value: v.to_string(),
            scope: format!("a reported state (a whole number {lo}..{hi})"),
            allowed: Vec::new(),
        }),
    }
}
