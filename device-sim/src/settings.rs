//! `[sim]`: the simulated fleet's configuration, with documented defaults.
//!
//! Validated before anything connects; errors name the key as `sim.<key>`.

use std::path::PathBuf;

use kumo_contract::DeviceId;
use serde::{Deserialize, Serialize};

/// How the fleet behaves. Every field has a default, so `[sim]` may be empty.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Broker nodes as `host:port`; device *i* starts at node *i mod n* and, after a
    /// failed connection attempt, tries the next one (failover). Default `["127.0.0.1:8883"]`.
    pub nodes: Vec<String>,
    /// Devices to simulate. Default 10.
    pub devices: u64,
    /// Index of the first device, so several processes can share one id space. Default 0.
    pub first_index: u64,
    /// Device ids are `{id_prefix}-{index:06}`. Default `sim`.
    pub id_prefix: String,
    /// MQTT protocol version. Default `v4` (3.1.1).
    pub protocol: Protocol,
    /// Seed of every behaviour model, so runs are reproducible. Default 1.
    pub seed: u64,
    /// Fraction of devices that are smart-meter gateways rather than IR hubs. Default 0.1.
    pub meter_fraction: f64,
    /// Fraction of gateways whose household runs its air conditioner as it
    /// usually does from the start (cooling at 25–28 °C on warm days, heating
    /// at 20–23 °C on cool ones) instead of leaving it off until commanded;
    /// its draw is part of the meter's load either way. Default 0.
    pub aircon_in_use_fraction: f64,
    /// Telemetry period per device, ms. Default 60,000.
    pub report_interval_ms: u64,
    /// How an IR hub publishes its readings: `combined` (default), one
    /// `devices/{id}/sensors` message per interval; `separate`, one message
    /// per sensor on `devices/{id}/sensors/{te|hu|il|mo}`.
    pub sensor_topics: SensorTopics,
    /// MQTT QoS of telemetry (sensor and meter reports): 0 (default) or 1,
    /// acknowledged by the node with a PUBACK.
    pub telemetry_qos: u8,
    /// Where each process writes its ledger — the QoS 1 sensor reports a
    /// node acknowledged and every session's start and end
    /// (`readings-{first_index}.csv`, `sessions-{first_index}.csv`) — for the
    /// chaos benchmark's ledger check; unset (default) = none.
    pub ledger_dir: Option<PathBuf>,
    /// New connections started per second during the ramp; 0 = no limit. Default 500.
    pub ramp_per_sec: f64,
    /// Most connection attempts in flight per process, first ones and
    /// retries alike: a device waits for a place before it dials (the wait is
    /// not part of its connect timeout). A saturated broker slows the ramp
    /// instead of timing devices out, and a storm of retries cannot starve
    /// the process's connected devices, which share its thread; 0 = no
    /// limit. Default 100 (fleet run 35: no connected device dropped in a
    /// 250,000-device ramp; 500 lost ~3,000, unlimited retries ~50,000).
    pub max_connecting: u64,
    /// MQTT keepalive, seconds. Default 60.
    pub keep_alive_secs: u16,
    /// Each device keeps the session ticket its node hands it and resumes
    /// with it on reconnect (any node of a cloud sharing a ticket secret
    /// accepts it). Default true.
    pub tls_resumption: bool,
    /// Deadline for TCP + TLS + CONNACK, ms. Default 10,000.
    pub connect_timeout_ms: u64,
    /// Reconnect backoff floor and ceiling, ms (exponential, full jitter). Defaults 500 / 30,000.
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// Before going live, each gateway reports this many past days of its
    /// meter (`kumo sim --backfill-days`), simulated in accelerated time and
    /// stamped in the past, ending where its live meter starts. Default 0.
    pub backfill_days: u32,
    /// Simulated seconds between two backfilled meter reports (10 to 600:
    /// at most the bridge's `bridge.energy.max_sample_gap_secs`, so the
    /// slots are complete). Default 300.
    pub backfill_step_secs: u64,
    /// Fraction of valid commands acked as failed. Default 0.
    pub command_failure_rate: f64,
    /// Fraction of commands dropped without an ack. Default 0.
    pub command_ignore_rate: f64,
    /// The simulated homes' time zone, hours east of UTC (daily curves). Default 9 (JST).
    pub utc_offset_hours: f64,
    /// Live progress period, ms; 0 = none. Default 1,000.
    pub progress_interval_ms: u64,
    /// Stop after this many seconds; 0 = run until shut down. Default 0.
    pub duration_secs: u64,
    /// Time allowed for clean DISCONNECTs on shutdown, ms. Default 5,000.
    pub shutdown_timeout_ms: u64,
    /// PKI directory to take device certificates from, issuing missing ones.
    pub pki_dir: Option<PathBuf>,
    /// Pre-provisioned certificates `{dir}/{id}.crt` + `{dir}/{id}.key`; wins over `pki_dir`.
    pub device_cert_dir: Option<PathBuf>,
    /// How `kumo sim` provisions missing device certificates from `pki_dir`:
    /// `issue` (the CA generates key and certificate) or `csr` (each device
    /// generates its key in `device_cert_dir` and has a CSR signed); or
    /// `claim`: each device enrols itself with `claim_code` at
    /// `provision_addr`, keeping its key in `device_cert_dir`, and gets its
    /// identity from Kumo. Default `issue`.
    pub provisioning: Provisioning,
    /// The claim code devices enrol with (`provisioning = "claim"`).
    pub claim_code: Option<String>,
    /// The provisioning listener, `host:port` (TLS; the host is checked
    /// against its certificate). Default `localhost:8443`.
    pub provision_addr: String,
    /// A device renews its certificate over its live session once this share
    /// of the certificate's lifetime has passed, percent; 0 = never. Default 67.
    pub renew_at_percent: u8,
    /// A renewal request unanswered after this many ms is sent again. Default 30,000.
    pub renew_retry_ms: u64,
    /// Fault injection.
    pub chaos: ChaosSettings,
}

/// `[sim.chaos]`: faults to inject. All off by default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChaosSettings {
    /// Clean disconnects (MQTT DISCONNECT) per device per hour, each followed by a pause offline.
    pub disconnects_per_hour: f64,
    /// Abrupt connection drops (socket closed, no DISCONNECT: last will fires) per device per hour.
    pub kills_per_hour: f64,
    /// Every this many seconds, `burst_fraction` of devices drop at once and reconnect
    /// immediately; 0 = never.
    pub burst_every_secs: u64,
    pub burst_fraction: f64,
    /// Fraction of telemetry payloads replaced by malformed ones (bad JSON, wrong types).
    pub malformed_fraction: f64,
    /// Longest pause offline after a chaos disconnect, ms (uniform from 0). Default 0 = 5,000.
    pub offline_max_ms: u64,
}

/// How device certificates are obtained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provisioning {
    /// The CA issues key and certificate into the PKI directory.
    #[default]
    Issue,
    /// The device generates its own key and sends a CSR; only the certificate
    /// comes back (the CSR flow real devices use).
    Csr,
    /// The device enrols itself with a claim code through the provisioning
    /// listener; Kumo assigns its identity and registers it to the code's account.
    Claim,
}

/// How sensor readings are published (see [`Settings::sensor_topics`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SensorTopics {
    /// One `sensors` message with every value read.
    #[default]
    Combined,
    /// One message per sensor.
    Separate,
}

/// MQTT protocol version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// MQTT 3.1.1.
    #[default]
    V4,
    /// MQTT 5.
    V5,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            nodes: vec!["127.0.0.1:8883".into()],
            devices: 10,
            first_index: 0,
            id_prefix: "sim".into(),
            protocol: Protocol::V4,
            seed: 1,
            meter_fraction: 0.1,
            aircon_in_use_fraction: 0.0,
            backfill_days: 0,
            backfill_step_secs: 300,
            report_interval_ms: 60_000,
            sensor_topics: SensorTopics::Combined,
            telemetry_qos: 0,
            ledger_dir: None,
            ramp_per_sec: 500.0,
            max_connecting: 100,
            keep_alive_secs: 60,
            tls_resumption: true,
            connect_timeout_ms: 10_000,
            reconnect_min_ms: 500,
            reconnect_max_ms: 30_000,
            command_failure_rate: 0.0,
            command_ignore_rate: 0.0,
            utc_offset_hours: 9.0,
            progress_interval_ms: 1_000,
            duration_secs: 0,
            shutdown_timeout_ms: 5_000,
            pki_dir: None,
            device_cert_dir: None,
            provisioning: Provisioning::Issue,
            claim_code: None,
            provision_addr: "localhost:8443".into(),
            renew_at_percent: 67,
            renew_retry_ms: 30_000,
            chaos: ChaosSettings::default(),
        }
    }
}

impl Settings {
    /// Checks every value; the error names the offending key as `sim.<key>`.
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes.is_empty() {
            return Err("sim.nodes must list at least one host:port".into());
        }
        for node in &self.nodes {
            split_host_port(node).map_err(|e| format!("sim.nodes: {e}"))?;
        }
        if self.devices == 0 {
            return Err("sim.devices must be at least 1".into());
        }
        let last = self.first_index.checked_add(self.devices - 1);
        let last = last.ok_or("sim.first_index + sim.devices overflows")?;
        DeviceId::parse(device_id_string(&self.id_prefix, last)).map_err(|e| {
            format!(
                "sim.id_prefix {:?} makes invalid device ids: {e}",
                self.id_prefix
            )
        })?;
        if self.backfill_days > 366 {
            return Err("sim.backfill_days must be at most 366".into());
        }
        if !(10..=600).contains(&self.backfill_step_secs) {
            return Err("sim.backfill_step_secs must be between 10 and 600".into());
        }
        for (key, v) in [
            ("meter_fraction", self.meter_fraction),
            ("aircon_in_use_fraction", self.aircon_in_use_fraction),
            ("command_failure_rate", self.command_failure_rate),
            ("command_ignore_rate", self.command_ignore_rate),
            ("chaos.burst_fraction", self.chaos.burst_fraction),
            ("chaos.malformed_fraction", self.chaos.malformed_fraction),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("sim.{key} must be between 0 and 1, not {v}"));
            }
        }
        for (key, v) in [
            ("ramp_per_sec", self.ramp_per_sec),
            (
                "chaos.disconnects_per_hour",
                self.chaos.disconnects_per_hour,
            ),
            ("chaos.kills_per_hour", self.chaos.kills_per_hour),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("sim.{key} must be a non-negative number, not {v}"));
            }
        }
        if self.telemetry_qos > 1 {
            return Err(format!(
                "sim.telemetry_qos must be 0 or 1, not {}",
                self.telemetry_qos
            ));
        }
        if self.renew_at_percent > 99 {
            return Err("sim.renew_at_percent must be between 0 (never) and 99".into());
        }
        if self.renew_retry_ms < 100 {
            return Err("sim.renew_retry_ms must be at least 100".into());
        }
        if self.report_interval_ms < 100 {
            return Err("sim.report_interval_ms must be at least 100".into());
        }
        if self.keep_alive_secs < 5 {
            return Err("sim.keep_alive_secs must be at least 5".into());
        }
        if self.connect_timeout_ms == 0 {
            return Err("sim.connect_timeout_ms must be positive".into());
        }
        if self.reconnect_min_ms == 0 || self.reconnect_min_ms > self.reconnect_max_ms {
            return Err(
                "sim.reconnect_min_ms must be positive and at most sim.reconnect_max_ms".into(),
            );
        }
        if self.provisioning == Provisioning::Claim {
            if self.claim_code.as_deref().map_or(true, str::is_empty) {
                return Err("sim.provisioning = \"claim\" needs sim.claim_code".into());
            }
            if self.device_cert_dir.is_none() {
                return Err(
                    "sim.provisioning = \"claim\" needs sim.device_cert_dir for the device-held keys"
                        .into(),
                );
            }
            split_host_port(&self.provision_addr)
                .map_err(|e| format!("sim.provision_addr: {e}"))?;
        }
        if self.provisioning == Provisioning::Csr && self.device_cert_dir.is_none() {
            return Err(
                "sim.provisioning = \"csr\" needs sim.device_cert_dir for the device-held keys"
                    .into(),
            );
        }
        if !(-12.0..=14.0).contains(&self.utc_offset_hours) {
            return Err("sim.utc_offset_hours must be between -12 and 14".into());
        }
        Ok(())
    }

    /// The device id of fleet index `index`.
    pub fn device_id(&self, index: u64) -> Result<DeviceId, kumo_contract::IdError> {
        DeviceId::parse(device_id_string(&self.id_prefix, index))
    }

    /// The node device `index` connects to.
    pub fn node_for(&self, index: u64) -> &str {
        let n = self.nodes.len().max(1) as u64;
        self.nodes
            .get((index % n) as usize)
            .map_or("127.0.0.1:8883", String::as_str)
    }
}

fn device_id_string(prefix: &str, index: u64) -> String {
    format!("{prefix}-{index:06}")
}

/// Splits `host:port` (IPv6 as `[::1]:8883`).
pub fn split_host_port(node: &str) -> Result<(String, u16), String> {
    let (host, port) = node
        .rsplit_once(':')
        .ok_or_else(|| format!("{node:?} is not host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{node:?} has no host"));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{node:?} has no valid port"))?;
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().expect("defaults");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: Vec<(Settings, &str)> = vec![
            (
                Settings {
                    nodes: vec![],
                    ..Default::default()
                },
                "sim.nodes",
            ),
            (
                Settings {
                    nodes: vec!["nohost".into()],
                    ..Default::default()
                },
                "sim.nodes",
            ),
            (
                Settings {
                    devices: 0,
                    ..Default::default()
                },
                "sim.devices",
            ),
            (
                Settings {
                    id_prefix: "a/b".into(),
                    ..Default::default()
                },
                "sim.id_prefix",
            ),
            (
                Settings {
                    command_failure_rate: 1.5,
                    ..Default::default()
                },
                "sim.command_failure_rate",
            ),
            (
                Settings {
                    chaos: ChaosSettings {
                        burst_fraction: -0.1,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "sim.chaos.burst_fraction",
            ),
            (
                Settings {
                    telemetry_qos: 2,
                    ..Default::default()
                },
                "sim.telemetry_qos",
            ),
            (
                Settings {
                    reconnect_min_ms: 0,
                    ..Default::default()
                },
                "sim.reconnect_min_ms",
            ),
        ];
        for (s, key) in cases {
            let err = s.validate().expect_err(key);
            assert!(err.contains(key), "{err} should name {key}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = serde_json::from_str::<Settings>(r#"{"devics": 3}"#).expect_err("typo");
        assert!(err.to_string().contains("devics"));
    }

    #[test]
    fn devices_get_stable_ids_and_round_robin_nodes() {
        let s = Settings {
            nodes: vec!["a:1".into(), "b:2".into()],
            ..Default::default()
        };
        assert_eq!(s.device_id(7).expect("valid").as_str(), "sim-000007");
        assert_eq!(s.node_for(0), "a:1");
        assert_eq!(s.node_for(3), "b:2");
        assert_eq!(split_host_port("[::1]:8883"), Ok(("::1".into(), 8883)));
    }
}
