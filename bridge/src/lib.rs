//! Kumo bridge: the Nature Remo–compatible REST API and the system of record.
//!
//! [`start`] binds the REST listener and serves until the shutdown token is
//! cancelled. The library owns everything; `kumo bridge` and `kumo up` only
//! wire settings and a database pool into it.

pub mod accounts;
pub mod api;
pub mod appliance;
pub mod auth;
pub mod catalog;
pub mod commands;
pub mod console;
pub mod db;
pub mod demand;
pub mod device_state;
pub mod docs;
pub mod energy;
pub mod error;
pub mod events;
pub mod form;
pub mod homes;
pub mod ingest;
pub mod json;
pub mod linger;
pub mod live;
pub mod metrics;
pub mod mqtt;
pub mod presence;
pub mod provision;
pub mod ratelimit;
pub mod reference;
pub mod renewal;
pub mod revocations;
pub mod rules;
pub mod server;
pub mod settings;
pub mod state;
pub mod text;
pub mod views;
pub mod webhooks;

pub use accounts::{create_token, create_user, register_device, AccountError, DeviceKind, User};
pub use commands::{Ack, CommandLog, CommandSink, NoDelivery, QueuedCommand};
pub use mqtt::{MqttSink, MqttStatus};
pub use server::{start, start_with_sink, BridgeError, Pools, RunningBridge};
pub use settings::{MqttSettings, RateLimitSettings, Settings};
