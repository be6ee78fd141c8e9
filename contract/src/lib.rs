//! Kumo's wire contract: the names and shapes every component agrees on.
//!
//! Owns the device id syntax, the identities a certificate can carry, the MQTT
//! topic layout, every payload that crosses MQTT (`payload`) and the appliance
//! catalogue with its behaviour (`appliance`). It must not depend on any
//! service crate and does no I/O.

pub mod appliance;
pub mod id;
pub mod identity;
pub mod nodes;
pub mod ownership;
pub mod payload;
pub mod topic;

pub use id::{AccountId, DeviceId, IdError};
pub use identity::Identity;
