//! Demand response (#15, part 2): aggregators run programs that users enrol
//! their air conditioners in (IR `AC` units and gateways' ECHONET Lite
//! `EL_AIRCON` units), with comfort limits; an event commands every
//! enrolled unit at its window's start (staggered, clamped to the consent)
//! and restores it at the end or when the user opts out.
//!
//! This module owns the programs, enrolments, events and dispatch rows and
//! the worker that moves them. It does not deliver commands: those go through
//! the ordinary durable command path (`crate::commands`) — an AC's planned
//! by the aircon planner (`crate::appliance`), an EL_AIRCON's as an
//! `echonet_set` — so each outcome is recorded as for any other command. Nothing here knows HTTP.

pub mod baseline;
pub mod consent;
pub mod el_aircon;
pub mod enrolment;
pub mod holidays;
pub mod principal;
pub mod results;
pub mod store;
pub mod unit;
pub mod worker;

use crate::db::{db_error_from, DbError};

/// Why a demand-response request cannot be carried out.
#[derive(Debug, thiserror::Error)]
pub enum DemandError {
    /// No such program, event, appliance or enrolment — or not the caller's.
    #[error("{0} not found")]
    NotFound(String),
    /// The request itself is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The request contradicts what exists (an overlapping event, …).
    #[error("{0}")]
    Conflict(String),
    /// The caller's token lacks the scope this needs (named).
    #[error("the token lacks the {0} scope")]
    Scope(&'static str),
    #[error(transparent)]
    Db(#[from] DbError),
}

db_error_from!(DemandError);
