//! Every integration test of this crate in one binary: one link of the whole
//! stack instead of one per file (a clean `cargo test` built 44 binaries).
//! Each module is one former test file; shared helpers are the modules
//! without tests.

mod common;
mod conformance;

mod admission;
mod attacks;
mod confirmations;
mod device_protocol;
mod flow_control;
mod integrations;
mod load_balancer;
mod many_nodes;
mod persistent_sessions;
mod protocol;
mod real_peers;
mod service_links;
mod sessions;
mod slow_clients;
mod tls_transport;
