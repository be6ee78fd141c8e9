//! Behaviour models: pure, deterministic given a seed, no I/O and no clock.
//!
//! [`sensors`] (a room seen by an IR hub), [`appliance`] (AC, TV, light state
//! machines), [`meter`] (a household behind a smart meter), [`echonet`] (the
//! gateway's ECHONET Lite air conditioner) and [`device`], which
//! combines them into one device that answers commands.

pub mod appliance;
pub mod device;
pub mod echonet;
pub mod meter;
pub mod rng;
pub mod sensors;

#[cfg(test)]
mod demand_response_tests;

pub use device::{
    meter_report, CommandOutcome, CommandPolicy, DeviceModel, Telemetry, FIRMWARE_VERSION,
};
pub use rng::SimRng;
