//! Counts the readings the broker nodes accepted, for the fleet benchmark's
//! "published vs stored": a service identity (like the bridge, which reads
//! every node itself) subscribes to every node's sensor and meter topics and
//! counts what arrives, as the bridge would turn it into `readings` rows — one
//! per sensor message, one per meter property the bridge stores (power, EPC
//! 0xE7; energy, EPC 0xE0).
//!
//! Service sessions receive only the messages of devices connected to that
//! node (never peer-imported ones), so the sum over nodes counts every reading
//! once. A node that dies keeps the count it had; its link retries every
//! second. The cumulative counts of every node go to a CSV file each second.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kumo_certs::files::PkiDir;
use kumo_certs::IssueOptions;
use rumqttc::{Event, Packet, QoS};

use crate::BenchError;

/// The service identity (certificate name and MQTT client id) of the tap.
pub const SERVICE: &str = "bench-tap";

/// Where to listen and what to write.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Every node, `host:port` (the host is checked against its certificate).
    pub nodes: Vec<(String, u16)>,
    /// CSV file: `unix_s,node,connected,sensor_readings,meter_readings`, cumulative.
    pub out: PathBuf,
    /// Stop after this long.
    pub duration: Duration,
}

/// Counts of one node.
#[derive(Debug, Default)]
struct Counts {
    sensors: AtomicU64,
    meter: AtomicU64,
    connected: AtomicU64,
}

/// Runs until `plan.duration` passes or `stop` resolves; returns the totals
/// (sensor messages, meter readings) over all nodes.
pub async fn run(
    pki: &Path,
    plan: Plan,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(u64, u64), BenchError> {
    let dir = PkiDir::open(pki).map_err(|source| BenchError::Certs {
        what: format!("opening {}", pki.display()),
        source,
    })?;
    let ca = std::fs::read(dir.ca_path()).map_err(|e| BenchError::Pem {
        path: dir.ca_path(),
        message: e.to_string(),
    })?;
    let issued = dir
        .ca()
        .issue_service(SERVICE, &IssueOptions::default())
        .map_err(|source| BenchError::Certs {
            what: "issuing the tap's service certificate".into(),
            source,
        })?;
    let tls = crate::peer_hop::client_config(&ca, issued)?;
    let counts: Vec<Arc<Counts>> = plan.nodes.iter().map(|_| Arc::default()).collect();
    for (node, c) in plan.nodes.iter().zip(&counts) {
        tokio::spawn(listen(node.clone(), tls.clone(), c.clone()));
    }
    let mut out = std::fs::File::create(&plan.out).map_err(|e| io(&plan.out, e))?;
    writeln!(out, "unix_s,node,connected,sensor_readings,meter_readings")
        .map_err(|e| io(&plan.out, e))?;
    let write = |out: &mut std::fs::File| -> std::io::Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let mut lines = String::new();
        for (node, c) in plan.nodes.iter().zip(&counts) {
            lines.push_str(&format!(
                "{now:.3},{}:{},{},{},{}\n",
                node.0,
                node.1,
                c.connected.load(Relaxed),
                c.sensors.load(Relaxed),
                c.meter.load(Relaxed)
            ));
        }
        out.write_all(lines.as_bytes())
    };
    let deadline = tokio::time::sleep(plan.duration);
    tokio::pin!(deadline, stop);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = &mut stop => break,
            _ = tick.tick() => write(&mut out).map_err(|e| io(&plan.out, e))?,
        }
    }
    write(&mut out).map_err(|e| io(&plan.out, e))?;
    Ok(counts.iter().fold((0, 0), |(s, m), c| {
        (s + c.sensors.load(Relaxed), m + c.meter.load(Relaxed))
    }))
}

fn io(path: &Path, e: std::io::Error) -> BenchError {
    BenchError::Pem {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// One node's subscription, re-established after every connection loss.
async fn listen(node: (String, u16), tls: Arc<rustls::ClientConfig>, counts: Arc<Counts>) {
    let (client, mut events) = crate::peer_hop::client(SERVICE, &node, tls);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                counts.connected.store(1, Relaxed);
                for filter in ["devices/+/sensors/#", "devices/+/meter"] {
                    let _ = client.try_subscribe(filter, QoS::AtMostOnce);
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if p.topic.ends_with("/meter") {
                    counts.meter.fetch_add(meter_readings(&p.payload), Relaxed);
                } else if p.topic.ends_with("/sensors") {
                    counts
                        .sensors
                        .fetch_add(report_readings(&p.payload), Relaxed);
                } else {
                    counts.sensors.fetch_add(1, Relaxed);
                }
            }
            Ok(_) => {}
            Err(_) => {
                counts.connected.store(0, Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The `readings` rows the bridge makes of one sensor report
/// (`devices/{id}/sensors`): one per sensor value; none if it is refused.
fn report_readings(payload: &[u8]) -> u64 {
    kumo_contract::payload::decode::<kumo_contract::payload::SensorReport>(payload)
        .map_or(0, |r| r.readings().count() as u64)
}

/// The `readings` rows the bridge makes of one meter report: one per
/// smart-meter property that makes a history reading
/// ([`meter_reading_sensor`]) with a numeric value; none for another
/// ECHONET Lite object's report.
fn meter_readings(payload: &[u8]) -> u64 {
    use kumo_contract::appliance::echonet::{meter_reading_sensor, Eoj};
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return 0;
    };
    let other_object = doc
        .get("eoj")
        .and_then(|e| e.as_str())
        .and_then(Eoj::parse)
        .is_some_and(|e| e.class_properties() != Eoj::SMART_METER.class_properties());
    if other_object {
        return 0;
    }
    let Some(props) = doc.get("echonetlite_properties").and_then(|p| p.as_array()) else {
        return 0;
    };
    props
        .iter()
        .filter(|p| {
            p.get("epc")
                .and_then(|e| e.as_u64())
                .and_then(|e| u8::try_from(e).ok())
                .and_then(meter_reading_sensor)
                .is_some()
        })
        .filter(|p| {
            p.get("val")
                .and_then(|v| v.as_str())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .is_some_and(f64::is_finite)
        })
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_report_counts_its_power_and_energy_properties() {
        let body = br#"{"echonetlite_properties": [
            {"name": "measured_instantaneous", "epc": 231, "val": "452"},
            {"name": "normal_direction_cumulative_electric_energy", "epc": 224, "val": "10234"},
            {"name": "coefficient", "epc": 211, "val": "1"}], "ts": 1700000000000}"#;
        assert_eq!(meter_readings(body), 2);
        assert_eq!(meter_readings(b"not json"), 0);
        // The reverse counter is stored too (`energy_sold`).
        let sold = br#"{"echonetlite_properties": [
            {"epc": 231, "val": "452"}, {"epc": 224, "val": "10234"},
            {"epc": 227, "val": "12"}], "ts": 1700000000000}"#;
        assert_eq!(meter_readings(sold), 3);
        // Another object's properties make no readings.
        let aircon = br#"{"eoj": "013001", "echonetlite_properties": [
            {"epc": 224, "val": "5"}], "ts": 1700000000000}"#;
        assert_eq!(meter_readings(aircon), 0);
    }
}
