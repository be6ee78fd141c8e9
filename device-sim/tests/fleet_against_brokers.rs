//! Simulated devices against real brokers — mosquitto with mutual TLS and a Kumo
//! broker node: they connect with their own certificates, publish telemetry and
//! retained state, obey commands and ack them; a killed device's last will
//! reaches subscribers.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::Broker;
use kumo_sim::{run_fleet_with, ChaosSettings, Protocol, SensorTopics, Settings, Summary};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn fleet_settings(broker: &Broker, prefix: &str, devices: u64, protocol: Protocol) -> Settings {
    Settings {
        nodes: vec![broker.node()],
        devices,
        id_prefix: prefix.into(),
        protocol,
        seed: 42,
        meter_fraction: 0.5,
        report_interval_ms: 300,
        ramp_per_sec: 0.0,
        progress_interval_ms: 0,
        reconnect_min_ms: 100,
        reconnect_max_ms: 1_000,
        shutdown_timeout_ms: 2_000,
        pki_dir: Some(broker.pki_dir.clone()),
        ..Settings::default()
    }
}

/// IR hubs reporting at QoS 1 every 200 ms, with a ledger in `dir`.
fn ledger_settings(broker: &Broker, prefix: &str, devices: u64, dir: &std::path::Path) -> Settings {
    Settings {
        telemetry_qos: 1,
        ledger_dir: Some(dir.to_owned()),
        meter_fraction: 0.0,
        report_interval_ms: 200,
        ..fleet_settings(broker, prefix, devices, Protocol::V4)
    }
}

fn start(
    settings: Settings,
    ca_pem: String,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<Result<Summary, kumo_sim::SimError>>,
) {
    let token = CancellationToken::new();
    let handle = tokio::spawn(run_fleet_with(settings, ca_pem, token.clone(), |_| {}));
    (token, handle)
}

fn now_ms() -> u64 {
    kumo_sim::runtime::now_ms()
}

/// A hub's temperature in a telemetry message, in either form: a sensor
/// report (`devices/{id}/sensors`) or one reading (`devices/{id}/sensors/te`).
fn hub_temperature(topic: &str, json: &serde_json::Value) -> Option<f64> {
    if topic.ends_with("/sensors") {
        json["te"].as_f64()
    } else if topic.ends_with("/sensors/te") {
        json["val"].as_f64()
    } else {
        None
    }
}

/// Waits until every device has published telemetry; returns id → is a hub.
async fn telemetry_from_all(
    sub: &mut common::Subscription,
    prefix: &str,
    devices: u64,
    topics: SensorTopics,
) -> BTreeMap<String, bool> {
    let hub_topic = match topics {
        SensorTopics::Combined => "/sensors",
        SensorTopics::Separate => "/sensors/te",
    };
    let mut kinds = BTreeMap::new();
    while (kinds.len() as u64) < devices {
        let (topic, json) = sub
            .wait_for("telemetry from every device", 30, |t, _| {
                t.ends_with(hub_topic) || t.ends_with("/meter")
            })
            .await;
        let id = topic.split('/').nth(1).unwrap().to_owned();
        assert!(id.starts_with(prefix), "{topic}");
        let hub = topic.ends_with(hub_topic);
        if hub {
            let val = hub_temperature(&topic, &json).expect("a numeric temperature");
            assert!((-10.0..=50.0).contains(&val), "{json}");
            assert!(json["ts"].as_u64().expect("ts") > 1_600_000_000_000);
            if topics == SensorTopics::Combined {
                assert!(json["hu"].is_number() && json["il"].is_number(), "{json}");
            }
        } else {
            let epcs: BTreeSet<u64> = json["echonetlite_properties"]
                .as_array()
                .expect("properties")
                .iter()
                .map(|p| p["epc"].as_u64().unwrap())
                .collect();
            if json["eoj"].is_string() {
                // The gateway's ECHONET Lite air conditioner; the meter's own
                // report must still arrive.
                assert_eq!(json["eoj"], "013001", "{json}");
                assert!(epcs.contains(&0x80) && epcs.contains(&0xB3), "{json}");
                continue;
            }
            assert!(epcs.contains(&0xE7) && epcs.contains(&0xE0), "{json}");
        }
        kinds.insert(id, hub);
    }
    kinds
}

async fn devices_publish_obey_commands_and_ack(
    broker: Broker,
    protocol: Protocol,
    prefix: &str,
    topics: SensorTopics,
) {
    let mut sub = broker
        .subscribe("devices/#", &format!("observer-{prefix}"))
        .await;
    let settings = Settings {
        sensor_topics: topics,
        ..fleet_settings(&broker, prefix, 4, protocol)
    };
    let (token, fleet) = start(settings, broker.ca_pem());

    let kinds = telemetry_from_all(&mut sub, prefix, 4, topics).await;
    let hub = kinds
        .iter()
        .find(|(_, hub)| **hub)
        .map(|(id, _)| id.clone());
    let hub = hub.expect("with meter_fraction 0.5 and seed 42 some device is a hub");

    // A valid command: applied, state republished, acked ok.
    let cmd = format!(
        r#"{{"id":"cmd-1","ts":{},"type":"light","button":"on"}}"#,
        now_ms()
    );
    broker
        .publish(&format!("devices/{hub}/commands"), &cmd, &[])
        .await;
    // The device publishes its new state before the ack, in order on one connection.
    let state_topic = format!("devices/{hub}/state");
    sub.wait_for("state with the light on", 10, |t, j| {
        t == state_topic && j["appliances"]["light"]["power"] == "on" && j["online"] == true
    })
    .await;
    let acks = format!("devices/{hub}/acks");
    let (_, ack) = sub
        .wait_for("ack of cmd-1", 10, |t, j| t == acks && j["id"] == "cmd-1")
        .await;
    assert_eq!(ack["result"], "ok", "{ack}");

    // An invalid command: acked as failed with a reason.
    let bad = r#"{"id":"cmd-2","type":"aircon","settings":{"temp":"99"}}"#;
    broker
        .publish(&format!("devices/{hub}/commands"), bad, &[])
        .await;
    let (_, ack) = sub
        .wait_for("ack of cmd-2", 10, |t, j| t == acks && j["id"] == "cmd-2")
        .await;
    assert_eq!(ack["result"], "failed", "{ack}");
    assert!(
        ack["reason"].as_str().unwrap().contains("temp \"99\""),
        "{ack}"
    );

    if protocol == Protocol::V5 {
        // MQTT 5 request/response: the ack goes to the requested response topic.
        let replies = format!("devices/{hub}/acks/replies");
        let cmd = r#"{"id":"cmd-3","type":"tv","button":"power"}"#;
        let extra = [
            "-V",
            "mqttv5",
            "-D",
            "publish",
            "response-topic",
            replies.as_str(),
        ];
        broker
            .publish(&format!("devices/{hub}/commands"), cmd, &extra)
            .await;
        let (_, ack) = sub
            .wait_for("ack on the response topic", 10, |t, j| {
                t == replies && j["id"] == "cmd-3"
            })
            .await;
        assert_eq!(ack["result"], "ok", "{ack}");
    }

    token.cancel();
    let summary = tokio::time::timeout(Duration::from_secs(10), fleet)
        .await
        .expect("fleet stops promptly")
        .expect("fleet task")
        .expect("fleet ran");
    assert_eq!(summary.devices, 4);
    assert_eq!(summary.connected, 4, "{summary:?}");
    assert_eq!(summary.failed_total(), 0, "{summary:?}");
    assert!(
        summary.commands_received >= 2 && summary.acks_sent >= 2,
        "{summary:?}"
    );
    assert_eq!(summary.commands_failed, 1, "{summary:?}");
    assert!(summary.command_latency.total() >= 1, "{summary:?}");
    assert!(summary.rss_per_device_bytes > 0);
}

#[tokio::test]
async fn devices_on_mqtt_3_publish_obey_commands_and_ack() {
    // One message per sensor here; a sensor report in the others.
    devices_publish_obey_commands_and_ack(
        Broker::start().await,
        Protocol::V4,
        "v4dev",
        SensorTopics::Separate,
    )
    .await;
}

#[tokio::test]
async fn devices_on_mqtt_5_publish_obey_commands_and_ack_on_the_response_topic() {
    devices_publish_obey_commands_and_ack(
        Broker::start().await,
        Protocol::V5,
        "v5dev",
        SensorTopics::Combined,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_on_a_kumo_node_publish_obey_commands_and_ack_in_mqtt_3() {
    devices_publish_obey_commands_and_ack(
        Broker::start_kumo().await,
        Protocol::V4,
        "k4dev",
        SensorTopics::Combined,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_on_a_kumo_node_publish_obey_commands_and_ack_in_mqtt_5() {
    devices_publish_obey_commands_and_ack(
        Broker::start_kumo().await,
        Protocol::V5,
        "k5dev",
        SensorTopics::Combined,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_device_on_a_kumo_node_obeys_a_command_as_soon_as_it_is_online() {
    // Its subscription and state leave with its CONNECT; nothing else comes
    // from it for an hour to make the node read on.
    for protocol in [Protocol::V4, Protocol::V5] {
        let broker = Broker::start_kumo().await;
        let mut sub = broker.subscribe("devices/#", "observer-quiet").await;
        let settings = Settings {
            meter_fraction: 0.0,
            report_interval_ms: 3_600_000,
            ..fleet_settings(&broker, "quiet", 1, protocol)
        };
        let (token, fleet) = start(settings, broker.ca_pem());
        sub.wait_for("the device online", 20, |t, j| {
            t == "devices/quiet-000000/state" && j["online"] == true
        })
        .await;
        let cmd = r#"{"id":"cmd-q","type":"light","button":"on"}"#;
        broker
            .publish("devices/quiet-000000/commands", cmd, &[])
            .await;
        let (_, ack) = sub
            .wait_for("the ack", 10, |t, j| {
                t == "devices/quiet-000000/acks" && j["id"] == "cmd-q"
            })
            .await;
        assert_eq!(ack["result"], "ok", "{protocol:?}: {ack}");
        token.cancel();
        let summary = fleet.await.expect("fleet task").expect("fleet ran");
        assert_eq!(summary.failed_total(), 0, "{summary:?}");
    }
}

#[tokio::test]
async fn a_killed_devices_last_will_is_seen_and_a_clean_shutdown_sends_none() {
    last_will_on_kill_only(Broker::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_kumo_node_a_killed_devices_last_will_is_seen_and_a_clean_shutdown_sends_none() {
    last_will_on_kill_only(Broker::start_kumo().await).await;
}

async fn last_will_on_kill_only(broker: Broker) {
    let mut sub = broker.subscribe("devices/+/state", "observer-will").await;

    let doomed = fleet_settings(&broker, "doomed", 1, Protocol::V4);
    let (_token, fleet) = start(doomed, broker.ca_pem());
    sub.wait_for("doomed device online", 20, |t, j| {
        t == "devices/doomed-000000/state" && j["online"] == true
    })
    .await;
    // Dropping the fleet's future drops every connection without DISCONNECT.
    fleet.abort();
    let (_, will) = sub
        .wait_for("last will", 20, |t, j| {
            t == "devices/doomed-000000/state" && j["online"] == false
        })
        .await;
    assert!(will["kind"] == "hub" || will["kind"] == "meter", "{will}");
    assert!(will["firmware_version"].is_string());

    let polite = fleet_settings(&broker, "polite", 1, Protocol::V4);
    let (token, fleet) = start(polite, broker.ca_pem());
    sub.wait_for("polite device online", 20, |t, j| {
        t == "devices/polite-000000/state" && j["online"] == true
    })
    .await;
    token.cancel();
    fleet.await.unwrap().unwrap();
    let quiet = sub
        .try_wait_for(2, |t, j| {
            t == "devices/polite-000000/state" && j["online"] == false
        })
        .await;
    assert_eq!(
        quiet, None,
        "a clean DISCONNECT must not fire the last will"
    );
}

#[tokio::test]
async fn chaos_kills_and_bursts_make_devices_reconnect() {
    let broker = Broker::start().await;
    let settings = Settings {
        chaos: ChaosSettings {
            kills_per_hour: 3600.0 * 2.0,
            burst_every_secs: 1,
            burst_fraction: 1.0,
            malformed_fraction: 0.5,
            offline_max_ms: 200,
            ..ChaosSettings::default()
        },
        report_interval_ms: 200,
        ..fleet_settings(&broker, "chaos", 3, Protocol::V4)
    };
    let (token, fleet) = start(settings, broker.ca_pem());
    tokio::time::sleep(Duration::from_secs(4)).await;
    token.cancel();
    let s = fleet.await.unwrap().unwrap();
    assert!(s.chaos_kills + s.burst_drops >= 3, "{s:?}");
    assert!(s.burst_drops >= 1, "{s:?}");
    assert!(s.connects > 3, "devices must come back: {s:?}");
    assert!(s.malformed_sent > 0, "{s:?}");
}

#[tokio::test]
async fn a_device_enrolled_by_csr_connects_with_its_own_key() {
    let broker = Broker::start().await;
    let mut sub = broker.subscribe("devices/#", "observer-csr").await;
    let keys = tempfile::tempdir().expect("tempdir");
    let settings = Settings {
        provisioning: kumo_sim::Provisioning::Csr,
        device_cert_dir: Some(keys.path().to_path_buf()),
        ..fleet_settings(&broker, "enrolled", 2, Protocol::V5)
    };
    let provisioned = kumo_sim::provision::provision(&broker.pki_dir, &settings).expect("enrol");
    assert_eq!(provisioned.issued, 2);
    let (token, fleet) = start(settings, provisioned.ca_pem);
    // A reading, not the state report: that leaves with the CONNECT, and the
    // device counts itself connected only once the CONNACK is in.
    let mut reporting = BTreeSet::new();
    while reporting.len() < 2 {
        let (topic, _) = sub
            .wait_for("both enrolled devices reporting", 20, |t, _| {
                t.starts_with("devices/enrolled-") && !t.ends_with("/state")
            })
            .await;
        reporting.extend(topic.split('/').nth(1).map(str::to_string));
    }
    token.cancel();
    let summary = fleet.await.unwrap().unwrap();
    assert_eq!(summary.connected, 2, "{summary:?}");
}

#[tokio::test]
async fn a_device_whose_node_is_down_fails_over_to_the_next_node() {
    let broker = Broker::start_kumo().await;
    // A port nobody listens on: bound, then released.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let mut sub = broker
        .subscribe("devices/+/state", "observer-failover")
        .await;
    let settings = Settings {
        // Device 0 starts at the dead node, device 1 at the live one.
        nodes: vec![dead, broker.node()],
        meter_fraction: 0.0,
        ..fleet_settings(&broker, "fo", 2, Protocol::V4)
    };
    let (token, fleet) = start(settings, broker.ca_pem());
    let mut online = BTreeSet::new();
    while online.len() < 2 {
        let (topic, _) = sub
            .wait_for("both devices online", 20, |t, j| {
                t.ends_with("/state") && j["online"] == true
            })
            .await;
        online.insert(topic);
    }
    token.cancel();
    let s = fleet.await.unwrap().unwrap();
    assert_eq!(s.ever_connected, 2, "{s:?}");
    assert!(s.failovers >= 1, "{s:?}");
    assert!(
        s.failures.values().sum::<u64>() >= 1,
        "the dead node was tried first: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_devices_resume_their_tls_session_unless_told_not_to() {
    let broker = Broker::start_kumo().await;
    for resumption in [true, false] {
        let settings = Settings {
            chaos: ChaosSettings {
                disconnects_per_hour: 3600.0 * 2.0,
                offline_max_ms: 100,
                ..ChaosSettings::default()
            },
            tls_resumption: resumption,
            ..fleet_settings(&broker, &format!("resume-{resumption}"), 3, Protocol::V4)
        };
        let (token, fleet) = start(settings, broker.ca_pem());
        tokio::time::sleep(Duration::from_secs(4)).await;
        token.cancel();
        let s = fleet.await.unwrap().unwrap();
        assert!(s.connects > 3, "devices came back: {s:?}");
        if resumption {
            assert!(s.tls_resumed > 0, "reconnects resumed: {s:?}");
            assert!(s.tls_resumed < s.connects, "first connects are full: {s:?}");
        } else {
            assert_eq!(s.tls_resumed, 0, "{s:?}");
        }
    }
}

#[tokio::test]
async fn a_fleets_ledger_holds_each_qos_1_report_the_broker_acknowledged_and_every_session() {
    let broker = Broker::start().await;
    let mut sub = broker
        .subscribe("devices/+/sensors", "ledger-observer")
        .await;
    let ledger = tempfile::tempdir().unwrap();
    let settings = ledger_settings(&broker, "ledger", 3, ledger.path());
    let (token, fleet) = start(settings, broker.ca_pem());
    tokio::time::sleep(Duration::from_secs(3)).await;
    token.cancel();
    let s = fleet.await.unwrap().unwrap();

    let text = std::fs::read_to_string(ledger.path().join("readings-0.csv")).unwrap();
    let acked: BTreeSet<(String, u64)> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 3, "{l}");
            assert!(
                f[2].split(' ')
                    .all(|c| ["te", "hu", "il", "mo"].contains(&c)),
                "{l}"
            );
            (f[0].to_owned(), f[1].parse().unwrap())
        })
        .collect();
    assert!(acked.len() >= 3 * 5, "about 15 reports each: {acked:?}");
    assert!(acked.len() as u64 <= s.published, "{s:?}");
    // Everything acknowledged went through the broker to its subscribers.
    let mut seen = BTreeSet::new();
    while let Some((topic, json)) = sub.try_wait_for(2, |_, _| true).await {
        let id = topic.split('/').nth(1).unwrap().to_owned();
        seen.insert((id, json["ts"].as_u64().unwrap()));
        if acked.is_subset(&seen) {
            break;
        }
    }
    let missing: Vec<_> = acked.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but never delivered: {missing:?}"
    );

    let sessions = std::fs::read_to_string(ledger.path().join("sessions-0.csv")).unwrap();
    let mut last = BTreeMap::new();
    for l in sessions.lines() {
        let f: Vec<&str> = l.split(',').collect();
        last.insert(f[1].to_owned(), f[2].to_owned());
    }
    assert_eq!(last.len(), 3, "{sessions}");
    assert!(
        last.values().all(|e| e == "down"),
        "a clean shutdown ends every session: {sessions}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_sends_what_its_node_never_acknowledged_again_after_it_reconnects() {
    let broker = Broker::start_kumo().await;
    // The cloud subscribes with its session kept, then goes away: within the
    // node's park hold no reading is acknowledged to a device.
    drop(
        broker
            .subscribe_kept("devices/+/sensors", "outbox-cloud")
            .await,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ledger = tempfile::tempdir().unwrap();
    let settings = Settings {
        chaos: ChaosSettings {
            kills_per_hour: 3600.0 * 3.0,
            offline_max_ms: 100,
            ..ChaosSettings::default()
        },
        ..ledger_settings(&broker, "outbox", 2, ledger.path())
    };
    let (token, fleet) = start(settings, broker.ca_pem());
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The cloud comes back: what waited flows, and devices get PUBACKs.
    let returned = now_ms();
    let _cloud = broker
        .subscribe_kept("devices/+/sensors", "outbox-cloud")
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    token.cancel();
    let s = fleet.await.unwrap().unwrap();
    assert!(s.resent > 0, "{s:?}");

    // Each device's first session ended (killed) before anything could be
    // acknowledged; reports from it in the ledger were acknowledged in a
    // later session, so the device sent them again there.
    let sessions = std::fs::read_to_string(ledger.path().join("sessions-0.csv")).unwrap();
    let mut first_down: BTreeMap<String, u64> = BTreeMap::new();
    for l in sessions.lines() {
        let f: Vec<&str> = l.split(',').collect();
        if f[2] == "down" {
            first_down
                .entry(f[1].to_owned())
                .or_insert(f[0].parse().unwrap());
        }
    }
    let readings = std::fs::read_to_string(ledger.path().join("readings-0.csv")).unwrap();
    for (device, down) in &first_down {
        assert!(
            *down < returned,
            "{device}'s first session outlived the cloud's absence"
        );
        let from_first = readings
            .lines()
            .filter(|l| l.starts_with(&format!("{device},")))
            .filter(|l| l.split(',').nth(1).unwrap().parse::<u64>().unwrap() < *down)
            .count();
        assert!(
            from_first > 0,
            "{device}: no report of its first session acknowledged\n{readings}\n{sessions}"
        );
    }
    assert_eq!(first_down.len(), 2, "{sessions}");
}

/// A node that takes connections and never answers: every attempt ends in
/// the device's connect timeout. Records when each connection was accepted
/// and when the device closed it.
struct SilentNode {
    addr: String,
    spans: std::sync::Arc<std::sync::Mutex<Vec<(Instant, Instant)>>>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl SilentNode {
    async fn start() -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        use std::sync::{Arc, Mutex};
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (sp, a) = (spans.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let opened = Instant::now();
                a.fetch_add(1, SeqCst);
                let spans = sp.clone();
                tokio::spawn(async move {
                    // Read (the ClientHello) until the device gives up.
                    let mut sink = [0u8; 4096];
                    while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
                    spans.lock().unwrap().push((opened, Instant::now()));
                });
            }
        });
        Self {
            addr,
            spans,
            accepted,
        }
    }

    /// The most connections open at once, each counted from its accept to
    /// `slack` before its close was seen (the node may take a new connection
    /// a moment before it reads the close of the one whose place it took).
    fn peak_open(&self, slack: Duration) -> usize {
        let mut edges: Vec<(Instant, i32)> = Vec::new();
        for (open, close) in self.spans.lock().unwrap().iter() {
            let close = close.checked_sub(slack).unwrap_or(*open).max(*open);
            edges.push((*open, 1));
            edges.push((close, -1));
        }
        // Closes before opens at the same instant.
        edges.sort();
        let (mut now, mut peak) = (0i32, 0i32);
        for (_, d) in edges {
            now += d;
            peak = peak.max(now);
        }
        peak as usize
    }
}

/// `sim.max_connecting` bounds a process's connection attempts in flight,
/// retries included: a storm of retries must not queue thousands of
/// handshakes ahead of the connected devices' timers (fleet runs 29–32
/// lost ~50,000 connected devices to their nodes' keepalive that way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_wait_for_a_place_among_the_processs_connection_attempts() {
    use std::sync::atomic::Ordering::SeqCst;
    let broker = Broker::start_kumo().await;
    let silent = SilentNode::start().await;
    let settings = Settings {
        nodes: vec![silent.addr.clone()],
        max_connecting: 3,
        connect_timeout_ms: 300,
        reconnect_min_ms: 10,
        reconnect_max_ms: 40,
        meter_fraction: 0.0,
        ..fleet_settings(&broker, "gate", 30, Protocol::V4)
    };
    let (token, fleet) = start(settings, broker.ca_pem());
    // Each attempt holds its place for the 300 ms timeout: 3 places give
    // ~10 attempts a second, so 45 means most devices have retried.
    let deadline = Instant::now() + Duration::from_secs(30);
    while silent.accepted.load(SeqCst) < 45 {
        assert!(Instant::now() < deadline, "too few attempts");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    token.cancel();
    let s = fleet.await.unwrap().unwrap();
    assert!(s.retries >= 15, "devices retried: {s:?}");
    assert_eq!(s.ever_connected, 0);
    // Without the gate all 30 devices dial at once, each attempt open for
    // the whole 300 ms.
    let peak = silent.peak_open(Duration::from_millis(100));
    assert!(
        peak <= 3,
        "{peak} connection attempts open at once, limit 3"
    );
}
