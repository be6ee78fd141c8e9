//! Kumo's benchmark load tool: many device connections over mutual TLS, each a
//! TCP connect, a TLS handshake with the device's own certificate and an MQTT
//! 3.1.1 CONNECT/CONNACK, written by hand so the client stays lean.
//!
//! The tool measures what the broker comparison needs (connect rates, TLS
//! resumption, the broker's CPU time from `/proc`) and holds idle connections
//! for memory measurements. It must stay broker-agnostic: it speaks only
//! standard MQTT and TLS, so Kumo, Mosquitto and rumqttd get the same client.
//! It also drives the bridge benchmark (`bench/bridge/run.sh`): QoS 1 sensor
//! readings at a target rate (`publish`) and REST command round trips
//! (`commands`), and times what peering between nodes adds to a message's
//! way (`peer-hop`, `bench/peering/run.sh`). For the fleet benchmark
//! (`bench/fleet/run.sh`), `tap` counts the readings every node accepted and
//! `commands --samples` records each request. `fuzz` sends mutated MQTT
//! streams from valid devices (`bench/fuzz-live/run.sh`). `proxy` carries the
//! bridge's connection to a node and cuts it on demand (`bench/chaos/run.sh`).
//! Results go to `BENCHMARKS.md`.

pub mod commands;
pub mod devices;
pub mod error;
pub mod fuzz;
pub mod load;
pub mod mqtt;
pub mod peer_hop;
pub mod procstat;
pub mod proxy;
pub mod publish;
pub mod tap;
pub mod tls_cost;

pub use error::BenchError;
