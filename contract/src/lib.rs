//! Kumo's wire contract: the names and shapes every component agrees on.
//!
//! Owns the device id syntax, the identities a certificate can carry and the MQTT
//! topic layout. It must not depend on any service crate and does no I/O.

pub mod id;
pub mod identity;
pub mod nodes;
pub mod ownership;
pub mod topic;

pub use id::{AccountId, DeviceId, IdError};
pub use identity::Identity;
