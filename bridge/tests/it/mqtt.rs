//! End to end over MQTT: a real broker node, the bridge with its service
//! certificate, and devices (paho-mqtt via `tests/device.py`, and
//! mosquitto_pub) with device certificates.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::Reply;
use crate::stack::Stack;
use serde_json::Value;
use uuid::Uuid;

const SEC: Duration = Duration::from_secs(1);

/// POSTs AC settings (optionally waiting, optionally with an idempotency key).
async fn set_ac(s: &Stack, ac: &str, wait: Option<u64>, key: Option<&str>) -> Reply {
    let mut req =
        s.h.http
            .post(format!("{}/1/appliances/{ac}/aircon_settings", s.h.base))
            .bearer_auth(&s.h.token)
            .form(&[("operation_mode", "cool"), ("temperature", "24")]);
    if let Some(w) = wait {
        req = req.header("prefer", format!("wait={w}"));
    }
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    s.h.send(req).await
}

/// Publishes one QoS 1 message as the device, with mosquitto_pub.
async fn mosquitto_pub(c: &crate::stack::DeviceCreds, topic: &str, body: &str) {
    let st = c
        .mosquitto_pub(topic)
        .args(["-m", body])
        .status()
        .await
        .expect("mosquitto_pub (apt-get install mosquitto-clients) is required");
    assert!(st.success());
}

/// The node a command went through; the node's PUBACK may trail the device's ack.
async fn node_of(s: &Stack, id: Uuid) -> Option<String> {
    for _ in 0..100 {
        let node: Option<String> =
            s.h.client()
                .await
                .query_one("SELECT node_id FROM commands WHERE id = $1", &[&id])
                .await
                .unwrap()
                .get(0);
        if node.is_some() {
            return node;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

async fn scalar(s: &Stack, sql: &str) -> i64 {
    s.h.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_command_reaches_the_device_and_its_ack_answers_the_waiting_call() {
    let s = Stack::start(|_| {}).await;
    let creds = s.device("remo-1").await;
    let ac = s.h.add_appliance("remo-1", "kumo-ac-generic", "AC").await;
    let mut dev = creds.connect(&[]).await;

    let r = set_ac(&s, &ac, Some(10), None).await;
    assert_eq!(r.headers["x-kumo-command-status"], "acked", "{:?}", r.body);
    let id = r.command_id();
    assert_eq!(r.ok()["temp"], "24");

    let cmd = dev.next_command(5 * SEC).await.expect("the device got it");
    assert_eq!(cmd["id"], id.to_string());
    assert_eq!(cmd["type"], "aircon");
    assert_eq!(cmd["settings"]["mode"], "cool");

    let c = s.h.get(&format!("/v1/commands/{id}")).await.ok();
    assert_eq!(c["status"], "acked");
    assert!(c["result"].is_null(), "an ok ack without output: {c}");
    let a = s.h.get("/1/appliances").await.ok();
    assert_eq!(
        a[0]["settings"]["temp"], "24",
        "the state the device reported"
    );
    assert_eq!(a[0]["settings"]["temp_unit"], "c");
    assert!(c["sent_at"].is_string());
    assert_eq!(node_of(&s, id).await.as_deref(), Some("node-1"));
    dev.disconnect().await;
    s.stop().await;
}

async fn online(h: &crate::common::Harness) -> Value {
    h.get("/1/devices").await.ok()[0]["online"].clone()
}

#[tokio::test]
async fn presence_marks_the_device_online_and_offline() {
    let s = Stack::start(|_| {}).await;
    let creds = s.device("remo-1").await;
    assert_eq!(online(&s.h).await, false);
    let dev = creds.connect(&[]).await;
    let mut seen = false;
    for _ in 0..100 {
        if online(&s.h).await == true {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "online after connecting");
    dev.disconnect().await;
    for _ in 0..100 {
        if online(&s.h).await == false {
            s.stop().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("still online after disconnecting");
}

#[tokio::test]
async fn a_device_registered_while_connected_shows_online_at_once() {
    let s = Stack::start(|_| {}).await;
    let creds = s.unregistered_device("remo-1");
    let dev = creds.connect(&[]).await;
    // Its presence lands on a row that belongs to nobody (not anyone's /1/devices).
    let mut known = false;
    for _ in 0..100 {
        let online =
            s.h.client()
                .await
                .query_opt("SELECT online FROM devices WHERE id = 'remo-1'", &[])
                .await
                .unwrap()
                .is_some_and(|r| r.get::<_, bool>(0));
        if online {
            known = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(known, "presence of an unregistered device is kept");
    assert_eq!(s.h.get("/1/devices").await.ok(), serde_json::json!([]));
    s.h.add_device("remo-1", kumo_bridge::DeviceKind::Remo)
        .await;
    let d = s.h.get("/1/devices").await.ok();
    assert_eq!(d[0]["online"], true, "online at once: {d}");
    dev.disconnect().await;
    s.stop().await;
}

#[tokio::test]
async fn a_command_for_an_offline_device_waits_and_is_delivered_when_it_connects() {
    let s = Stack::start(|_| {}).await;
    let creds = s.device("remo-1").await;
    let ac = s.h.add_appliance("remo-1", "kumo-ac-generic", "AC").await;

    let r = set_ac(&s, &ac, None, None).await;
    let id = r.command_id();
    tokio::time::sleep(SEC).await;
    assert_eq!(s.status(id).await, "queued");

    let mut dev = creds.connect(&[]).await;
    let cmd = dev
        .next_command(10 * SEC)
        .await
        .expect("delivered on connect");
    assert_eq!(cmd["id"], id.to_string());
    s.wait_status(id, "acked", 5 * SEC).await;
    dev.disconnect().await;
    s.stop().await;
}

/// A stack whose bridge waits 1.5 s after a device comes online before
/// sending what waits for it, an offline device `remo-1` with an AC, and one
/// command queued for it.
async fn one_command_waiting() -> (Stack, crate::stack::DeviceCreds, String, Uuid) {
    let s = Stack::start(|b| b.mqtt.online_settle_ms = 1_500).await;
    let creds = s.device("remo-1").await;
    let ac = s.h.add_appliance("remo-1", "kumo-ac-generic", "AC").await;
    let first = set_ac(&s, &ac, None, None).await.command_id();
    tokio::time::sleep(SEC).await;
    assert_eq!(s.status(first).await, "queued");
    (s, creds, ac, first)
}

/// Makes a second command; the device must get both in the order made,
/// each once (nothing more within `quiet` after them).
async fn second_goes_out_behind(
    s: &Stack,
    dev: &mut crate::stack::Device,
    ac: &str,
    first: Uuid,
    quiet: Duration,
) {
    let second = set_ac(s, ac, None, None).await.command_id();
    let mut got = Vec::new();
    for _ in 0..2 {
        let cmd = dev.next_command(10 * SEC).await.expect("both delivered");
        got.push(cmd["id"].as_str().unwrap().to_string());
    }
    assert_eq!(
        got,
        [first.to_string(), second.to_string()],
        "in the order made"
    );
    assert!(
        dev.next_command(quiet).await.is_none(),
        "each delivered once"
    );
}

#[tokio::test]
async fn commands_made_while_a_device_was_offline_reach_it_before_newer_ones() {
    // The second command is made while the first waits for the device to
    // finish subscribing.
    let (s, creds, ac, first) = one_command_waiting().await;
    let mut dev = creds.connect(&[]).await;
    for _ in 0..100 {
        if online(&s.h).await == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(online(&s.h).await, true, "the bridge knows it is online");
    second_goes_out_behind(&s, &mut dev, &ac, first, SEC).await;
    dev.disconnect().await;
    s.stop().await;
}

#[tokio::test]
async fn a_command_made_before_the_bridge_has_recorded_a_device_online_goes_out_behind_the_waiting_one_and_once(
) {
    // The bridge takes a device as online when its node says so, but reads
    // what waits for it only once that presence is committed. Here the
    // commit is slowed: the second command comes in between (the router
    // reads the waiting ones itself and holds the second behind them), and
    // the presence's announcement comes while that read settles (a second
    // read, which must send nothing again).
    let (s, creds, ac, first) = one_command_waiting().await;
    s.h.client()
        .await
        .batch_execute(
            "CREATE FUNCTION slow_online() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_sleep(0.5); RETURN NEW; END $$;
             CREATE TRIGGER slow_online BEFORE UPDATE ON devices FOR EACH ROW
               WHEN (NEW.online AND NOT OLD.online) EXECUTE FUNCTION slow_online();",
        )
        .await
        .unwrap();

    let mut dev = creds.connect(&[]).await;
    // The presence is being written: the bridge has taken the device as online.
    let sleeping = "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'";
    let mut writing = false;
    for _ in 0..200 {
        writing = scalar(&s, sleeping).await > 0;
        if writing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(writing, "the presence write was never seen");
    // The second read comes 1.5 s after the first.
    second_goes_out_behind(&s, &mut dev, &ac, first, 3 * SEC).await;
    dev.disconnect().await;
    s.stop().await;
}

#[tokio::test]
async fn an_undelivered_command_expires_after_its_ttl_and_is_never_sent() {
    let s = Stack::start(|b| b.command_ttl_secs = 1).await;
    let creds = s.device("remo-1").await;
    let ac = s.h.add_appliance("remo-1", "kumo-ac-generic", "AC").await;
    let id = set_ac(&s, &ac, None, None).await.command_id();
    s.wait_status(id, "expired", 15 * SEC).await;

    let mut dev = creds.connect(&[]).await;
    assert!(
        dev.next_command(2 * SEC).await.is_none(),
        "an expired command is not delivered"
    );
    dev.disconnect().await;
    s.stop().await;
}

#[tokio::test]
async fn a_failure_ack_fails_the_command_and_the_waiting_call() {
    let s = Stack::start(|_| {}).await;
    let creds = s.device("remo-1").await;
    let ac = s.h.add_appliance("remo-1", "kumo-ac-generic", "AC").await;
    let mut dev = creds.connect(&["--ack", "failed"]).await;

    let r = set_ac(&s, &ac, Some(10), None).await;
    r.assert_error(502001);
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .contains("did not respond"));
    assert!(dev.next_command(SEC).await.is_some());
    let status: String =
        s.h.client()
            .await
            .query_one("SELECT status FROM commands", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(status, "failed");
    // The AC settings were not confirmed.
    let a = s.h.get("/1/appliances").await.ok();
    assert_ne!(a[0]["settings"]["temp"], "24");
    dev.disconnect().await;
    s.stop().await;
}

#[tokio::test]
async fn an_idempotent_retry_is_delivered_once() {
    let s = Stack::start(|_| {}).await;
    let creds = s.device("remo-1").await;
    let ac = s.h.add_appliance("remo-1", "kumo-ac-generic", "AC").await;
    let mut dev = creds.connect(&["--ack", "none"]).await;

    let first = set_ac(&s, &ac, None, Some("k-1")).await.command_id();
    let again = set_ac(&s, &ac, None, Some("k-1")).await.command_id();
    assert_eq!(first, again);
    let cmd = dev.next_command(5 * SEC).await.unwrap();
    assert_eq!(cmd["id"], first.to_string());
    assert!(
        dev.next_command(2 * SEC).await.is_none(),
        "the retry published nothing"
    );
    s.wait_status(first, "sent", 5 * SEC).await;
    assert_eq!(scalar(&s, "SELECT count(*) FROM commands").await, 1);
    dev.disconnect().await;
    s.stop().await;
}

/// Publishes two readings that are not the protocol's and then a good one
/// with `mosquitto_pub` (MQTT 3.1.1, QoS 1) through a node with or without its
/// check of device payloads; returns once the good one is stored, alone.
async fn two_bad_readings_then_a_good_one(check_payloads: bool) -> Stack {
    let s = Stack::start_tuned(1, |n| n.check_payloads = check_payloads, |_| {}).await;
    let creds = s.device("remo-1").await;
    let te = "devices/remo-1/sensors/te";
    mosquitto_pub(&creds, te, "not json").await;
    mosquitto_pub(&creds, te, r#"{"val": "warm"}"#).await;
    mosquitto_pub(&creds, te, r#"{"val": 22.5, "ts": 1700000000000}"#).await;
    for _ in 0..100 {
        if scalar(&s, "SELECT count(*) FROM readings").await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(scalar(&s, "SELECT count(*) FROM readings").await, 1);
    let newest: Value = s.h.get("/1/devices").await.ok()[0]["newest_events"]["te"].clone();
    assert_eq!(newest["val"], 22.5);
    s
}

/// The bridge judges again what a node forwards (a node with
/// `broker.check_payloads` off, or one that runs ahead of it).
#[tokio::test]
async fn malformed_readings_are_counted_and_dropped_and_good_ones_stored() {
    let s = two_bad_readings_then_a_good_one(false).await;
    let mqtt = s.h.bridge.as_ref().unwrap().mqtt().unwrap();
    assert_eq!(mqtt.malformed.load(std::sync::atomic::Ordering::Relaxed), 2);
    s.stop().await;
}

/// By default the node refuses them where they enter: the bridge never sees
/// them (`mosquitto_pub` speaks MQTT 3.1.1 at QoS 1 here: acknowledged and
/// dropped), and the good reading behind them is stored.
#[tokio::test]
async fn malformed_readings_are_refused_by_the_node_before_the_bridge_sees_them() {
    let s = two_bad_readings_then_a_good_one(true).await;
    let mqtt = s.h.bridge.as_ref().unwrap().mqtt().unwrap();
    assert_eq!(mqtt.malformed.load(std::sync::atomic::Ordering::Relaxed), 0);
    let url = format!("http://{}/metrics", s.nodes[0].http_addr());
    let metrics =
        s.h.http
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    let refused = "kumo_broker_acl_denials_total{action=\"publish\",reason=\"payload_invalid\"} 2";
    assert!(metrics.contains(refused), "{metrics}");
    s.stop().await;
}

#[tokio::test]
async fn a_sensor_report_from_mosquitto_pub_is_stored_as_one_reading_per_sensor() {
    // The node's check off: the bridge's own refusals are what is tested.
    let s = Stack::start_tuned(1, |n| n.check_payloads = false, |_| {}).await;
    let creds = s.device("remo-1").await;
    let topic = "devices/remo-1/sensors";
    // Refused whole: an unknown field, a non-number, no value at all.
    mosquitto_pub(&creds, topic, r#"{"te": 21, "xx": 1}"#).await;
    mosquitto_pub(&creds, topic, r#"{"te": 21, "hu": "damp"}"#).await;
    mosquitto_pub(&creds, topic, r#"{"ts": 1700000000000}"#).await;
    mosquitto_pub(
        &creds,
        topic,
        r#"{"te": 22.5, "hu": 48, "il": 120, "ts": 1700000000000}"#,
    )
    .await;
    for _ in 0..100 {
        if scalar(&s, "SELECT count(*) FROM readings").await == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = s.h.client().await;
    let rows = client
        .query(
            "SELECT sensor, val, at = to_timestamp(1700000000) FROM readings ORDER BY sensor",
            &[],
        )
        .await
        .unwrap();
    let stored: Vec<(String, f64, bool)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        stored,
        [
            ("hu".to_string(), 48.0, true),
            ("il".to_string(), 120.0, true),
            ("te".to_string(), 22.5, true),
        ]
    );
    let mqtt = s.h.bridge.as_ref().unwrap().mqtt().unwrap();
    assert_eq!(mqtt.malformed.load(std::sync::atomic::Ordering::Relaxed), 3);
    let newest: Value = s.h.get("/1/devices").await.ok()[0]["newest_events"].clone();
    assert_eq!(newest["te"]["val"], 22.5);
    assert_eq!(newest["hu"]["val"], 48);
    assert_eq!(newest["il"]["val"], 120);
    s.stop().await;
}

#[tokio::test]
async fn no_qos1_reading_is_lost_while_the_bridge_restarts() {
    let mut s = Stack::start(|_| {}).await;
    let creds = s.device("remo-1").await;
    let n = 400;
    let mut dev = creds
        .connect(&["--readings", &n.to_string(), "--interval-ms", "10"])
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    s.stop_bridge().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.start_bridge().await;
    dev.expect_line("SENT", 60 * SEC).await;
    let distinct = "SELECT count(DISTINCT at) FROM readings WHERE device_id = 'remo-1'";
    for _ in 0..200 {
        if scalar(&s, distinct).await == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(scalar(&s, distinct).await, n, "every reading stored");
    let rows = "SELECT count(*) FROM readings WHERE device_id = 'remo-1'";
    assert_eq!(scalar(&s, rows).await, n, "and each once");
    let resumed = s.nodes[0]
        .metrics()
        .sessions_resumed
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        resumed >= 1,
        "the new bridge resumed the persistent session"
    );
    dev.disconnect().await;
    s.stop().await;
}

#[tokio::test]
async fn a_command_goes_to_the_node_that_holds_the_device() {
    let s = Stack::start_nodes(2, |_| {}).await;
    let creds = s.device("remo-1").await;
    let ac = s.h.add_appliance("remo-1", "kumo-ac-generic", "AC").await;
    let mut dev = creds.on_port(s.ports[1]).connect(&[]).await;

    let r = set_ac(&s, &ac, Some(10), None).await;
    assert_eq!(r.headers["x-kumo-command-status"], "acked", "{:?}", r.body);
    let id = r.command_id();
    assert_eq!(
        dev.next_command(5 * SEC).await.unwrap()["id"],
        id.to_string()
    );
    assert_eq!(node_of(&s, id).await.as_deref(), Some("node-2"));
    let device_node = s.h.get("/1/devices").await.ok()[0].clone();
    assert_eq!(device_node["online"], true);
    dev.disconnect().await;
    s.stop().await;
}

#[tokio::test]
async fn an_unacknowledged_command_is_sent_again_while_the_device_stays_online() {
    let s = Stack::start(|b| b.mqtt.resend_after_secs = 1).await;
    let creds = s.device("remo-1").await;
    let ac = s.h.add_appliance("remo-1", "kumo-ac-generic", "AC").await;
    let mut dev = creds.connect(&["--ack", "none"]).await;
    let id = set_ac(&s, &ac, None, None).await.command_id();
    let first = dev.next_command(5 * SEC).await.unwrap();
    let again = dev.next_command(5 * SEC).await.expect("sent again");
    assert_eq!(first["id"], again["id"]);
    assert_eq!(again["id"], id.to_string());
    // The node's PUBACK of the resend may trail the device's copy a little.
    let mut attempts = 0;
    for _ in 0..100 {
        attempts =
            s.h.client()
                .await
                .query_one("SELECT attempts FROM commands WHERE id = $1", &[&id])
                .await
                .unwrap()
                .get::<_, i32>(0);
        if attempts >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(attempts >= 2, "attempts {attempts}");
    dev.disconnect().await;
    s.stop().await;
}

#[tokio::test]
async fn readiness_reports_a_lost_broker_connection() {
    let mut s = Stack::start(|_| {}).await;
    let (code, body) = s.readyz().await;
    assert_eq!(code, 200);
    let key = format!("localhost:{}", s.port);
    assert_eq!(body["brokers"][&key], "connected");
    s.node_stops[0].cancel();
    s.nodes.remove(0).wait().await.unwrap();
    let mut last = (0, Value::Null);
    for _ in 0..100 {
        last = s.readyz().await;
        if last.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last.0, 503, "{:?}", last.1);
    assert_eq!(last.1["brokers"][&key], "disconnected");
    s.stop().await;
}

#[tokio::test]
async fn reported_state_updates_firmware_and_appliance_states() {
    let s = Stack::start(|_| {}).await;
    let creds = s.device("remo-1").await;
    s.h.add_appliance("remo-1", "kumo-ac-generic", "AC").await;
    let state = r#"{"online":true,"kind":"hub","firmware_version":"Remo/1.9.9",
        "appliances":{"aircon":{"temp":"27","temp_unit":"c","mode":"warm","vol":"auto",
        "dir":"auto","dirh":"auto","button":""},
        "tv":{"input":"t","power":"on","channel":"3","volume":"10"},
        "light":{"brightness":"100","power":"on","last_button":"on"}},"ts":1700000000000}"#;
    mosquitto_pub(&creds, "devices/remo-1/state", state).await;
    for _ in 0..100 {
        let d = s.h.get("/1/devices").await.ok();
        if d[0]["firmware_version"] == "Remo/1.9.9" {
            let a = s.h.get("/1/appliances").await.ok();
            if a[0]["settings"]["temp"] == "27" {
                assert_eq!(a[0]["settings"]["mode"], "warm");
                s.stop().await;
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the reported state never reached the API");
}

/// Each device's `online` as `/1/devices` shows it, by id.
async fn online_by_id(s: &Stack) -> std::collections::BTreeMap<String, bool> {
    s.h.get("/1/devices")
        .await
        .ok()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["id"].as_str().unwrap().to_string(), d["online"] == true))
        .collect()
}

async fn wait_online(s: &Stack, want: &[(&str, bool)]) {
    let want: std::collections::BTreeMap<String, bool> =
        want.iter().map(|(d, o)| (d.to_string(), *o)).collect();
    for _ in 0..300 {
        if online_by_id(s).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("online is {:?}, expected {want:?}", online_by_id(s).await);
}

#[tokio::test]
async fn devices_of_a_node_that_went_down_unheard_are_offline_once_it_starts_again() {
    let mut s = Stack::start(|_| {}).await;
    let gone = s.device("remo-1").await;
    let back = s.device("remo-2").await;
    let gone_dev = gone.connect(&[]).await;
    let mut back_dev = back.connect(&[]).await;
    wait_online(&s, &[("remo-1", true), ("remo-2", true)]).await;

    // The bridge is away while the node goes down, so it never hears the
    // node's offline announcements — as when a node crashes. One device dies
    // with it; the other (paho) reconnects to the node's next run.
    s.stop_bridge().await;
    gone_dev.disconnect().await;
    s.restart_node(0).await;
    back_dev.expect_line("READY", 30 * SEC).await;
    s.start_bridge().await;

    // The node's epoch (retained) tells the bridge that remo-1's "online"
    // predates the node's current run; remo-2 announced itself since.
    wait_online(&s, &[("remo-1", false), ("remo-2", true)]).await;
    back_dev.disconnect().await;
    wait_online(&s, &[("remo-1", false), ("remo-2", false)]).await;
    s.stop().await;
}

#[tokio::test]
async fn devices_of_an_unreachable_node_show_offline_and_come_back_when_it_is_reached() {
    let mut s = Stack::start(|_| {}).await;
    let creds = s.device("remo-1").await;
    let ac = s.h.add_appliance("remo-1", "kumo-ac-generic", "AC").await;
    let mut dev = creds.connect(&[]).await;
    wait_online(&s, &[("remo-1", true)]).await;
    // The bridge reaches the node through a proxy that can partition them.
    let proxy = crate::proxy::Proxy::start(s.port).await;
    s.stop_bridge().await;
    s.bridge_settings.mqtt.nodes = vec![format!("localhost:{}", proxy.port)];
    s.bridge_settings.mqtt.node_lost_after_secs = 2;
    s.start_bridge().await;

    // Partitioned: the device stays connected to the node, but the bridge
    // cannot tell, so after node_lost_after_secs it stops claiming it online.
    proxy.cut();
    wait_online(&s, &[("remo-1", false)]).await;
    let (status, _) = s.readyz().await;
    assert_eq!(status, 503);

    // Reached again with the session intact: the node's retained presence
    // shows the device online again, and commands reach it.
    proxy.heal();
    wait_online(&s, &[("remo-1", true)]).await;
    let r = set_ac(&s, &ac, Some(10), None).await;
    assert_eq!(r.headers["x-kumo-command-status"], "acked", "{:?}", r.body);
    assert_eq!(
        dev.next_command(5 * SEC).await.unwrap()["id"],
        r.command_id().to_string()
    );
    dev.disconnect().await;
    s.stop().await;
}

#[tokio::test]
async fn commands_queued_by_a_previous_owner_never_reach_the_device() {
    let s = Stack::start(|_| {}).await;
    let creds = s.device("remo-1").await;
    let ac = s.h.add_appliance("remo-1", "kumo-ac-generic", "AC").await;
    // The device is offline: Alice's command waits for it.
    let id = set_ac(&s, &ac, None, None).await.command_id();
    assert_eq!(s.status(id).await, "queued");
    let (bob, _) = s.h.other_user().await;
    s.h.give_device("remo-1", &bob).await;
    assert_eq!(s.status(id).await, "failed");
    let view = s.h.get(&format!("/v1/commands/{id}")).await.ok();
    assert_eq!(view["error"], "the device left the account", "{view}");
    // Bob's device comes online and gets nothing of Alice's.
    let mut dev = creds.connect(&[]).await;
    assert!(dev.next_command(2 * SEC).await.is_none());
    dev.disconnect().await;
    s.stop().await;
}
