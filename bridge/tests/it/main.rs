//! Every integration test of this crate in one binary: one link of the whole
//! stack instead of one per file (a clean `cargo test` built 44 binaries).
//! Each module is one former test file; shared helpers are the modules
//! without tests.

mod common;
mod homes_support;
#[path = "common/proxy.rs"]
mod proxy;
mod rules_support;
#[path = "common/sim.rs"]
mod sim;
#[path = "common/stack.rs"]
mod stack;

mod api_contract;
mod appliance_kinds;
mod appliance_kinds_live;
mod appliances;
mod auth;
mod backpressure;
mod batching;
mod commands;
mod console;
mod control;
mod database_outage;
mod demand;
mod demand_changes;
mod demand_echonet;
mod demand_races;
mod demand_results;
mod devices;
mod docs;
mod echonet;
mod echonet_control;
mod end_to_end_ack;
mod energy;
mod energy_console;
mod events;
mod homes;
mod homes_integrations;
mod homes_live;
mod ingest;
mod integrations;
mod mqtt;
mod nature_clients;
mod provisioning;
mod renewal;
mod robustness;
mod rollover;
mod rules;
mod rules_worker;
mod server;
mod signals;
mod webhooks;
