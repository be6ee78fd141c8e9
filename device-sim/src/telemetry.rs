//! Telemetry a connected device publishes on its interval: sensor readings
//! (IR hubs) or ECHONET Lite properties (meter gateways: the meter's, then the
//! air conditioner's), at `sim.telemetry_qos`, with the chaos option of
//! replacing a fraction of payloads by malformed ones. QoS 1 telemetry stays
//! in the device's outbox until its PUBACK ([`crate::outbox`]), and what
//! waits there goes first.

use std::sync::atomic::Ordering::Relaxed;

use kumo_contract::topic::{device_topic, Leaf};

use crate::link::Link;
use crate::model::{SimRng, Telemetry};
use crate::runtime::{count_publish, local_hour, now_ms, Device, Shared};
use crate::settings::SensorTopics;
use kumo_contract::payload::{SensorReading, SensorReport};

/// Steps the device model by `dt` seconds and publishes what it reports.
pub(crate) fn publish(dev: &mut Device, link: &mut Link, shared: &Shared, dt: f64) {
    let s = &shared.settings;
    let stats = &shared.stats;
    let ts = now_ms();
    // (topic leaf, payload, sensor codes for the ledger; empty for meter reports)
    let mut out: Vec<(Leaf, Vec<u8>, String)> = Vec::with_capacity(4);
    match dev.model.step(local_hour(s, ts), dt) {
        Telemetry::Sensors(r) => {
            let report = SensorReport {
                te: Some(r.temperature),
                hu: Some(r.humidity),
                il: Some(r.illuminance),
                mo: r.motion.then_some(1.0),
                ts: Some(ts),
            };
            match s.sensor_topics {
                SensorTopics::Combined => {
                    let codes: Vec<&str> = report.readings().map(|(s, _)| s.code()).collect();
                    out.push((
                        Leaf::Sensors,
                        serde_json::to_vec(&report).unwrap_or_default(),
                        codes.join(" "),
                    ));
                }
                SensorTopics::Separate => {
                    for (sensor, val) in report.readings() {
                        let code = sensor.code().to_owned();
                        out.push((Leaf::Sensor(sensor), sensor_json(val, ts), code));
                    }
                }
            }
        }
        Telemetry::Meter(r) => {
            let report = crate::model::meter_report(&r, ts);
            let meter = serde_json::to_vec(&report).unwrap_or_default();
            out.push((Leaf::Meter, meter, String::new()));
            if let Some(aircon) = dev.model.echonet_report(ts) {
                let aircon = serde_json::to_vec(&aircon).unwrap_or_default();
                out.push((Leaf::Meter, aircon, String::new()));
            }
        }
    }
    let qos1 = s.telemetry_qos == 1;
    let resent = dev.outbox.resend(&dev.id, link);
    stats.resent.fetch_add(resent, Relaxed);
    for (leaf, mut payload, mut sensors) in out {
        if dev.rng.chance(s.chaos.malformed_fraction) {
            payload = malformed(&mut dev.rng);
            stats.malformed_sent.fetch_add(1, Relaxed);
            sensors.clear(); // the cloud must refuse it: nothing to store
        }
        let kept = qos1.then(|| payload.clone());
        let pkid = link.publish_tracked(&device_topic(&dev.id, leaf), qos1, payload);
        count_publish(stats, pkid.is_some());
        if let (Some(pkid), Some(payload)) = (pkid, kept) {
            dev.outbox.sent(pkid, leaf, payload, ts, sensors);
        }
    }
}

fn sensor_json(val: f64, ts: u64) -> Vec<u8> {
    serde_json::to_vec(&SensorReading { val, ts: Some(ts) }).unwrap_or_default()
}

/// A payload the bridge must reject: broken JSON, wrong types, missing fields.
fn malformed(rng: &mut SimRng) -> Vec<u8> {
    const BAD: [&[u8]; 7] = [
        b"not json at all",
        b"{\"val\": 21.5, \"ts\":",
        b"{\"val\": \"warm\", \"ts\": 1}",
        b"{\"ts\": 1700000000000}",
        b"{\"val\": null, \"ts\": -5}",
        b"[1, 2, 3]",
        b"\xff\xfe\x00binary",
    ];
    BAD[rng.below(BAD.len() as u64) as usize].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_payloads_are_never_valid_sensor_json() {
        let mut rng = SimRng::new(1);
        for _ in 0..50 {
            let p = malformed(&mut rng);
            assert!(kumo_contract::payload::decode::<SensorReading>(&p).is_err());
        }
    }
}
