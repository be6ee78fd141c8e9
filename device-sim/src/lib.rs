//! Kumo's device simulator: a fleet of simulated IR hubs and smart-meter gateways
//! that behave like the real ones, from one device to many thousands per process.
//!
//! - [`model`]: pure behaviour (room sensors, AC/TV/light state machines, the
//!   smart meter), deterministic given a seed;
//! - [`payload`]: the JSON devices publish and the commands they accept;
//! - [`runtime`] + [`link`]: one device on the network (MQTT 3.1.1 or 5 over mutual
//!   TLS, last will, reconnect with backoff and jitter, chaos faults);
//! - [`fleet`]: many devices in one process with ramp control and progress;
//! - [`outbox`]: QoS 1 telemetry not acknowledged yet, sent again after a
//!   reconnect;
//! - [`ledger`]: what the cloud confirmed (acknowledged readings, sessions),
//!   for the chaos benchmark's ledger check;
//! - [`stats`]: counters and the JSON [`Summary`];
//! - [`tls`] and [`provision`]: certificates (issued, CSR-enrolled or pre-provisioned),
//!   renewed over the live session (`renew`);
//! - [`backfill`]: past days of meter reports, simulated fast, before a
//!   fleet goes live;
//! - [`worker`]: the protocol `kumo sim` uses to spread a fleet over processes.
//!
//! This crate runs one process's share and never spawns processes itself.

pub mod backfill;
pub mod claim;
pub mod error;
pub mod fleet;
mod lean_aead;
pub mod ledger;
pub mod link;
pub mod model;
pub mod outbox;
pub mod progress;
pub mod provision;
pub mod renew;
pub mod runtime;
pub mod settings;
pub mod stats;
pub mod sysinfo;
mod telemetry;
pub mod tls;
pub mod worker;

pub use error::SimError;
pub use fleet::{run_fleet, run_fleet_with};
pub use settings::{ChaosSettings, Protocol, Provisioning, SensorTopics, Settings};
pub use stats::Summary;
