//! Real MQTT clients as devices, each with its own certificate: mosquitto_pub /
//! mosquitto_sub (MQTT 3.1.1 and 5) and paho-mqtt. The service side is the test
//! client holding the bridge's service certificate.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::peers::{self, lines};
use crate::common::TestNode;
use rumqttd::protocol::QoS;

const LINE_WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_pub_sensor_readings_reach_the_service_in_311_and_5() {
    let node = TestNode::start().await;
    let mut bridge = node.service(5).await;
    bridge
        .subscribe(&["devices/+/sensors/+"], QoS::AtLeastOnce)
        .await;
    for (n, (id, version)) in [("mosq-311", "mqttv311"), ("mosq-5", "mqttv5")]
        .into_iter()
        .enumerate()
    {
        let creds = node.pki.device(id);
        let topic = format!("devices/{id}/sensors/hu");
        let sent = peers::mosquitto_pub(&node, &creds, id, version, &topic, "{\"val\":55}", 1);
        let stored = async {
            let got = bridge.expect_publish(&topic).await;
            // The service has it: only now does the device get its PUBACK.
            bridge.ack(n as u16 + 1).await;
            got
        };
        let (ok, got) = tokio::join!(sent, stored);
        assert!(ok, "mosquitto_pub {version} failed");
        assert_eq!(got.unwrap(), b"{\"val\":55}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_sub_receives_its_command_and_only_its_own() {
    let node = TestNode::start().await;
    for (id, version) in [("sub-311", "mqttv311"), ("sub-5", "mqttv5")] {
        let creds = node.pki.device(id);
        let topic = format!("devices/{id}/commands");
        let mut child = peers::mosquitto_sub(&node, &creds, id, version, &topic, &["-C", "1"]);
        let rx = lines(&mut child);
        let mut bridge = node.service(4).await;
        // Wait for the subscription, then send a command to another device and to this one.
        tokio::time::sleep(Duration::from_millis(700)).await;
        bridge
            .publish(
                "devices/someone-else/commands",
                b"{\"id\":\"other\"}",
                false,
            )
            .await;
        bridge.publish(&topic, b"{\"id\":\"c-1\"}", false).await;
        let line = tokio::task::spawn_blocking(move || rx.recv_timeout(LINE_WAIT))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(line, format!("{topic} {{\"id\":\"c-1\"}}"));
        let status = child.wait().unwrap();
        assert!(status.success(), "mosquitto_sub {version}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_sub_cannot_subscribe_to_the_fleet() {
    let node = TestNode::start().await;
    let creds = node.pki.device("nosy");
    let mut child = peers::mosquitto_sub(
        &node,
        &creds,
        "nosy",
        "mqttv5",
        "devices/+/commands",
        &["-W", "3"],
    );
    let out = tokio::task::spawn_blocking(move || {
        let _ = child.wait();
        let mut err = String::new();
        use std::io::Read;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        err
    })
    .await
    .unwrap();
    assert!(
        out.to_lowercase().contains("denied") || out.to_lowercase().contains("not authorized"),
        "{out}"
    );
    assert_eq!(node.metrics.denials_with("subscribe", "wildcard"), 1);
}

const PAHO_DEVICE: &str = r#"
import json, os, ssl, sys, time
import paho.mqtt.client as mqtt
dev, version = sys.argv[1], sys.argv[2]
proto = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=dev, protocol=proto)
c.tls_set(ca_certs=os.environ["CA"], certfile=os.environ["CERT"], keyfile=os.environ["KEY"])
# Device-protocol documents; fixed times so the test can compare bytes.
TS = 1767225600000
WILL = {"online": False, "kind": "hub", "firmware_version": "will", "ts": TS}
c.will_set(f"devices/{dev}/state", json.dumps(WILL), qos=1)
def on_connect(client, userdata, flags, rc, props=None):
    client.subscribe(f"devices/{dev}/commands", qos=1)
def on_subscribe(client, userdata, mid, rcs, props=None):
    client.publish(f"devices/{dev}/sensors/te", json.dumps({"val": 22.5}), qos=1)
    print("ready", flush=True)
def on_message(client, userdata, msg):
    cmd = json.loads(msg.payload)
    ack = {"id": cmd["id"], "result": "ok", "ts": TS}
    client.publish(f"devices/{dev}/acks", json.dumps(ack), qos=1)
    print("command", cmd["id"], flush=True)
c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
c.connect("localhost", int(os.environ["NODE_PORT"]), keepalive=30)
c.loop_forever()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_devices_publish_receive_a_command_ack_it_and_leave_a_will() {
    let node = TestNode::start().await;
    let mut bridge = node.service(5).await;
    bridge
        .subscribe(
            &["devices/+/sensors/+", "devices/+/acks", "devices/+/state"],
            QoS::AtLeastOnce,
        )
        .await;
    for version in ["311", "5"] {
        let id = format!("paho-{version}");
        let creds = node.pki.device(&id);
        let mut child = peers::paho(
            &node,
            &creds,
            PAHO_DEVICE,
            &[&id, if version == "5" { "5" } else { "4" }],
        );
        let rx = lines(&mut child);
        let rx = tokio::task::spawn_blocking(move || {
            let l = rx.recv_timeout(LINE_WAIT);
            (rx, l)
        })
        .await
        .unwrap();
        let (rx, ready) = rx;
        assert_eq!(ready.unwrap(), "ready");
        let reading = bridge
            .expect_publish(&format!("devices/{id}/sensors/te"))
            .await
            .unwrap();
        assert_eq!(reading, b"{\"val\": 22.5}");
        bridge
            .publish(
                &format!("devices/{id}/commands"),
                b"{\"id\":\"cmd-7\"}",
                false,
            )
            .await;
        let ack = bridge
            .expect_publish(&format!("devices/{id}/acks"))
            .await
            .unwrap();
        assert_eq!(
            ack,
            br#"{"id": "cmd-7", "result": "ok", "ts": 1767225600000}"#
        );
        let line = tokio::task::spawn_blocking(move || rx.recv_timeout(LINE_WAIT))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(line, "command cmd-7");
        // Killed without DISCONNECT: the will must fire.
        child.kill().unwrap();
        let _ = child.wait();
        let will = bridge
            .expect_publish(&format!("devices/{id}/state"))
            .await
            .unwrap();
        assert_eq!(
            will,
            br#"{"online": false, "kind": "hub", "firmware_version": "will", "ts": 1767225600000}"#
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paho_device_reconnecting_takes_over_its_session() {
    let node = TestNode::start().await;
    let mut bridge = node.service(4).await;
    bridge
        .subscribe(&["devices/+/presence"], QoS::AtMostOnce)
        .await;
    let creds = node.pki.device("paho-t");
    let mut first = peers::paho(&node, &creds, PAHO_DEVICE, &["paho-t", "5"]);
    let rx1 = lines(&mut first);
    let r = tokio::task::spawn_blocking(move || rx1.recv_timeout(LINE_WAIT))
        .await
        .unwrap();
    assert_eq!(r.unwrap(), "ready");
    let online = bridge
        .expect_publish("devices/paho-t/presence")
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&online).contains("\"online\":true"));
    let mut second = peers::paho(&node, &creds, PAHO_DEVICE, &["paho-t", "5"]);
    let rx2 = lines(&mut second);
    let r = tokio::task::spawn_blocking(move || rx2.recv_timeout(LINE_WAIT))
        .await
        .unwrap();
    assert_eq!(r.unwrap(), "ready");
    let off = bridge
        .expect_publish("devices/paho-t/presence")
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&off).contains("\"reason\":\"takeover\""),
        "{}",
        String::from_utf8_lossy(&off)
    );
    let on = bridge
        .expect_publish("devices/paho-t/presence")
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&on).contains("\"online\":true"));
    let _ = first.kill();
    let _ = second.kill();
    let _ = first.wait();
    let _ = second.wait();
}

/// The lines a paho script prints until `end` or `disconnected` (then it is
/// stopped).
async fn lines_until_the_end(mut child: std::process::Child) -> Vec<String> {
    let rx = lines(&mut child);
    let got = tokio::task::spawn_blocking(move || {
        let mut got = Vec::new();
        while let Ok(line) = rx.recv_timeout(LINE_WAIT) {
            let last = line == "end" || line == "disconnected";
            got.push(line);
            if last {
                break;
            }
        }
        got
    })
    .await
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paho_device_past_its_retained_quota_gets_0x97_or_is_closed() {
    let node = TestNode::start_with(|s| s.retained_per_device = 2).await;
    for (version, expected) in [
        (
            "5",
            vec![
                "puback r/0 0",
                "puback r/1 0",
                // MQTT 5 §3.4.2.1: 0x97 Quota exceeded, the session goes on.
                "puback r/2 151",
                "puback r/0 0",
                "end",
            ],
        ),
        (
            "4",
            vec![
                "puback r/0 0",
                "puback r/1 0",
                // 3.1.1 has no negative PUBACK: the node closes the connection.
                "disconnected",
            ],
        ),
    ] {
        let id = format!("hoard-{version}");
        let creds = node.pki.device(&id);
        let mut argv = vec![id.as_str(), version];
        argv.extend(["+r/0=x", "+r/1=x", "+r/2=x", "+r/0=x"]);
        let child = peers::paho(&node, &creds, PAHO_PUBLISHER, &argv);
        let got = lines_until_the_end(child).await;
        assert_eq!(got, expected, "MQTT {version}");
    }
    assert_eq!(node.metrics.denials_with("publish", "retained_quota"), 2);
}

/// Publishes QoS 1 on `devices/{dev}/{topic}` for each `topic=payload`
/// argument (`+topic=payload`: with RETAIN), one at a time; prints
/// `puback <topic> <reason code>` for each, or `disconnected` if the node
/// closes the connection.
const PAHO_PUBLISHER: &str = r#"
import os, sys, threading
import paho.mqtt.client as mqtt
dev, version = sys.argv[1], sys.argv[2]
proto = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=dev, protocol=proto)
c.tls_set(ca_certs=os.environ["CA"], certfile=os.environ["CERT"], keyfile=os.environ["KEY"])
connected, acked, codes = threading.Event(), threading.Event(), {}
def on_connect(client, userdata, flags, rc, props=None):
    connected.set()
def on_publish(client, userdata, mid, rc, props=None):
    codes[mid] = rc.value
    acked.set()
def on_disconnect(client, userdata, flags, rc, props=None):
    print("disconnected", flush=True)
    os._exit(0)
c.on_connect, c.on_publish, c.on_disconnect = on_connect, on_publish, on_disconnect
c.connect("localhost", int(os.environ["NODE_PORT"]), keepalive=30)
c.loop_start()
connected.wait(10)
for arg in sys.argv[3:]:
    topic, payload = arg.split("=", 1)
    retain = topic.startswith("+")
    topic = topic.lstrip("+")
    acked.clear()
    info = c.publish(f"devices/{dev}/{topic}", payload, qos=1, retain=retain)
    acked.wait(10)
    print("puback", topic, codes.get(info.mid), flush=True)
print("end", flush=True)
c.disconnect()
"#;

/// paho-mqtt as the device: a payload that is not the topic's document is
/// refused with PUBACK 0x83 on MQTT 5 and acknowledged and dropped on 3.1.1; a
/// topic the protocol does not name gets 0x90, or closes a 3.1.1 connection
/// (MQTT-3.3.5-2). Only the good reading reaches the cloud.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paho_device_sending_what_the_protocol_does_not_know_is_refused_and_the_cloud_gets_only_the_good_reading(
) {
    let node = TestNode::start().await;
    let mut bridge = node.service(4).await;
    bridge
        .subscribe(&["devices/+/sensors/+"], QoS::AtMostOnce)
        .await;
    let args = [
        "sensors/te=warm",
        r#"sensors/te={"val": 21.5}"#,
        r#"sensors/xx={"val": 1}"#,
        r#"sensors/hu={"val": 40}"#,
    ];
    for (version, expected) in [
        (
            "5",
            vec![
                "puback sensors/te 131",
                "puback sensors/te 0",
                "puback sensors/xx 144",
                "puback sensors/hu 0",
                "end",
            ],
        ),
        (
            "4",
            vec!["puback sensors/te 0", "puback sensors/te 0", "disconnected"],
        ),
    ] {
        let id = format!("paho-p{version}");
        let creds = node.pki.device(&id);
        let mut argv = vec![id.as_str(), version];
        argv.extend(args);
        let child = peers::paho(&node, &creds, PAHO_PUBLISHER, &argv);
        let got = lines_until_the_end(child).await;
        assert_eq!(got, expected, "MQTT {version}");
        let te = format!("devices/{id}/sensors/te");
        assert_eq!(
            bridge.expect_publish(&te).await.unwrap(),
            br#"{"val": 21.5}"#
        );
        assert!(bridge.no_publish_on(&te, Duration::from_millis(300)).await);
    }
    assert_eq!(node.metrics.denials_with("publish", "payload_invalid"), 2);
    assert_eq!(node.metrics.denials_with("publish", "topic_invalid"), 2);
}
