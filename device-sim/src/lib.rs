//! Kumo's device simulator: a fleet of simulated IR hubs and smart-meter gateways
//! that behave like the real ones, from one device to many thousands per process.
//!
//! [`model`] holds the pure behaviour (sensors, appliances, meter), [`runtime`]
//! puts one device on the network, [`fleet`] runs many with ramp control, chaos
//! and progress, and [`stats`] produces the JSON [`Summary`]. Spreading a big
//! fleet over several processes is the CLI's job (`kumo sim`); this crate runs
//! one process's share and must not spawn processes.

pub mod error;
pub mod fleet;
pub mod link;
pub mod model;
pub mod payload;
pub mod progress;
pub mod provision;
pub mod runtime;
pub mod settings;
pub mod stats;
pub mod sysinfo;
mod telemetry;
pub mod tls;
pub mod worker;

pub use error::SimError;
pub use fleet::{run_fleet, run_fleet_with};
pub use settings::{ChaosSettings, Protocol, Settings};
pub use stats::Summary;
