//! The node applies the device protocol where a device's message enters
//! (`broker.check_payloads`): a message on a protocol topic that is not the
//! topic's document, or a topic inside the protocol's namespaces that the
//! protocol does not name, is refused before it is routed or retained — the
//! cloud never sees it and it fills no router log. Checked against what MQTT
//! lets a server say: MQTT 5 reason codes 0x83 (Implementation specific error: the
//! publish is valid but the receiver is not willing to accept it; 0x99 is
//! reserved for a Payload Format Indicator mismatch) and
//! 0x90 (Topic Name invalid) in PUBACK/PUBREC (§3.4.2.1, §3.5.2.1) and
//! CONNACK (§3.2.2.2); MQTT 3.1.1, which has no negative acknowledgement,
//! either acknowledges or closes the connection [MQTT-3.3.5-2].
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::BytesMut;
use rumqttd::protocol::{LastWill, Packet, PubRecReason, QoS};

use crate::common::{doc, Client, TestNode, WAIT};

const SHORT: Duration = Duration::from_millis(400);

const JUNK: &[&[u8]] = &[
    b"not json",
    br#"{"val": "warm"}"#,
    br#"{"val": 21.5, "extra": 1}"#,
    b"[[[[[[]]]]]]",
    b"",
];

/// The cloud's side: a service session on every protocol topic a device
/// publishes on.
async fn cloud(node: &TestNode) -> Client {
    let mut bridge = node.service(4).await;
    let filters = [
        "devices/+/sensors/+",
        "devices/+/sensors",
        "devices/+/state",
        "devices/+/acks/#",
        "devices/+/meter",
    ];
    assert_eq!(bridge.subscribe(&filters, QoS::AtMostOnce).await, [0; 5]);
    bridge
}

/// A QoS 2 PUBLISH, hand-encoded (the test client has no QoS 2 helper).
fn qos2(version: u8, topic: &str, payload: &[u8], pkid: u16) -> BytesMut {
    let mut body = Vec::new();
    body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(&pkid.to_be_bytes());
    if version == 5 {
        body.push(0); // no properties
    }
    body.extend_from_slice(payload);
    let mut out = BytesMut::new();
    out.extend_from_slice(&[0x34]);
    rumqttd::protocol::v4::write_remaining_length(&mut out, body.len()).unwrap();
    out.extend_from_slice(&body);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt5_device_is_told_its_message_is_not_the_protocols_and_the_cloud_never_sees_it() {
    let node = TestNode::start().await;
    let mut bridge = cloud(&node).await;
    let mut dev = node.device("remo-p5", 5).await;
    let te = "devices/remo-p5/sensors/te";
    for junk in JUNK {
        let got = dev.publish_qos1(te, junk).await;
        assert_eq!(got, Some(0x83), "{}", String::from_utf8_lossy(junk));
    }
    for (topic, body) in [
        ("devices/remo-p5/sensors", doc::reading(1.0)),
        ("devices/remo-p5/state", doc::reading(1.0)),
        ("devices/remo-p5/acks", doc::state("1.0")),
        ("devices/remo-p5/acks/reply", b"{}".to_vec()),
        ("devices/remo-p5/meter", doc::reading(1.0)),
    ] {
        assert_eq!(dev.publish_qos1(topic, &body).await, Some(0x83), "{topic}");
    }
    // Inside the protocol's namespaces only its topics exist.
    for topic in ["devices/remo-p5/sensors/xx", "devices/remo-p5/sensors/te/1"] {
        let got = dev.publish_qos1(topic, &doc::reading(1.0)).await;
        assert_eq!(got, Some(0x90), "{topic}");
    }
    // QoS 2: PUBREC carries the refusal, which ends the exchange.
    let mut out = qos2(5, "devices/remo-p5/state", b"on", 9);
    dev.raw(&out).await;
    match dev.recv().await {
        Some(Packet::PubRec(r, _)) => {
            assert_eq!(
                (r.pkid, r.reason),
                (9, PubRecReason::ImplementationSpecificError)
            );
        }
        other => panic!("expected PUBREC 0x83, got {other:?}"),
    }
    // QoS 0 has no answer: dropped.
    dev.publish(te, b"not json", false).await;
    assert!(bridge.no_publish_on(te, SHORT).await);
    assert!(
        bridge
            .no_publish_on("devices/remo-p5/state", Duration::ZERO)
            .await
    );
    // The session goes on and the protocol's documents pass, all of them.
    let reading = doc::reading(21.5);
    assert_eq!(dev.publish_qos1(te, &reading).await, Some(0));
    assert_eq!(bridge.expect_publish(te).await.unwrap(), reading);
    let ack = doc::ack("c1");
    let reply = "devices/remo-p5/acks/reply";
    assert_eq!(dev.publish_qos1(reply, &ack).await, Some(0));
    assert_eq!(bridge.expect_publish(reply).await.unwrap(), ack);
    out = qos2(5, "devices/remo-p5/state", &doc::state("2.0"), 10);
    dev.raw(&out).await;
    assert!(
        matches!(dev.recv().await, Some(Packet::PubRec(r, _)) if r.reason == PubRecReason::Success)
    );
    assert_eq!(
        node.metrics.denials_with("publish", "payload_invalid"),
        JUNK.len() as u64 + 5 + 2
    );
    assert_eq!(node.metrics.denials_with("publish", "topic_invalid"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt311_device_gets_its_puback_for_a_bad_payload_and_is_closed_for_a_topic_that_does_not_exist(
) {
    let node = TestNode::start().await;
    let mut bridge = cloud(&node).await;
    let mut dev = node.device("remo-p4", 4).await;
    let te = "devices/remo-p4/sensors/te";
    // A payload that will never be right is acknowledged (a device would
    // otherwise send it again for ever) and dropped.
    for junk in JUNK {
        assert_eq!(dev.publish_qos1(te, junk).await, Some(0));
    }
    assert!(bridge.no_publish_on(te, SHORT).await);
    // QoS 2 goes through its whole exchange, delivering nothing.
    dev.raw(&qos2(4, "devices/remo-p4/state", b"on", 9)).await;
    assert!(matches!(dev.recv().await, Some(Packet::PubRec(r, _)) if r.pkid == 9));
    dev.raw(&[0x62, 0x02, 0, 9]).await; // PUBREL
    assert!(matches!(dev.recv().await, Some(Packet::PubComp(c, _)) if c.pkid == 9));
    let reading = doc::reading(20.0);
    assert_eq!(dev.publish_qos1(te, &reading).await, Some(0));
    assert_eq!(bridge.expect_publish(te).await.unwrap(), reading);
    assert!(
        bridge
            .no_publish_on("devices/remo-p4/state", Duration::ZERO)
            .await
    );
    // A topic the protocol does not have: 3.1.1 can only close.
    dev.publish("devices/remo-p4/sensors/xx", &reading, false)
        .await;
    assert!(dev.closed_within(WAIT).await);
    assert_eq!(
        node.metrics.denials_with("publish", "payload_invalid"),
        JUNK.len() as u64 + 1
    );
    assert_eq!(node.metrics.denials_with("publish", "topic_invalid"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_retained_state_does_not_replace_the_good_one() {
    let node = TestNode::start().await;
    let mut dev = node.device("remo-r", 5).await;
    let state = "devices/remo-r/state";
    let good = doc::state("1.0");
    let mut out = BytesMut::new();
    crate::common::peers::encode_qos1_publish(&mut out, 5, state, &good, 1);
    out[0] |= 0x01; // RETAIN
    dev.raw(&out).await;
    assert_eq!(dev.puback().await, Some(0));
    out.clear();
    crate::common::peers::encode_qos1_publish(&mut out, 5, state, b"{\"fw\":2}", 2);
    out[0] |= 0x01;
    dev.raw(&out).await;
    assert_eq!(dev.puback().await, Some(0x83));
    let mut bridge = node.service(5).await;
    bridge.subscribe(&[state], QoS::AtMostOnce).await;
    assert_eq!(bridge.expect_publish(state).await.unwrap(), good);
    assert!(bridge.no_publish_on(state, SHORT).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_will_that_is_not_the_protocols_is_refused_at_connect() {
    let node = TestNode::start().await;
    let creds = node.pki.device("remo-w");
    let will = |topic: &str, message: &[u8]| LastWill {
        topic: bytes::Bytes::copy_from_slice(topic.as_bytes()),
        message: bytes::Bytes::copy_from_slice(message),
        qos: QoS::AtLeastOnce,
        retain: false,
    };
    let state = "devices/remo-w/state";
    for (version, w, code) in [
        (5, will(state, b"gone"), 0x83),
        (
            5,
            will("devices/remo-w/sensors/xx", &doc::reading(1.0)),
            0x90,
        ),
        (4, will(state, b"gone"), 5),
        (5, will(state, &doc::will_state()), 0),
        (4, will(state, &doc::will_state()), 0),
    ] {
        let mut c = Client::open(&node, &creds, version).await;
        let topic = String::from_utf8_lossy(&w.topic).into_owned();
        assert_eq!(
            c.connect("remo-w", 30, Some(w)).await,
            code,
            "MQTT {version} {topic}"
        );
    }
    assert_eq!(node.metrics.denials_with("will", "payload_invalid"), 2);
    assert_eq!(node.metrics.denials_with("will", "topic_invalid"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_check_off_the_node_forwards_what_a_device_sends_for_the_cloud_to_judge() {
    let node = TestNode::start_with(|s| s.check_payloads = false).await;
    let mut bridge = cloud(&node).await;
    let mut dev = node.device("remo-o", 5).await;
    let te = "devices/remo-o/sensors/te";
    assert_eq!(dev.publish_qos1(te, b"not json").await, Some(0));
    assert_eq!(bridge.expect_publish(te).await.unwrap(), b"not json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_a_devices_own_other_topics_are_not_judged() {
    let node = TestNode::start().await;
    let mut bridge = cloud(&node).await;
    let mut dev = node.device("remo-x", 5).await;
    let creds = node.pki.service("tools");
    let mut other = Client::open(&node, &creds, 5).await;
    assert_eq!(other.connect("tools", 30, None).await, 0);
    other
        .subscribe(&["devices/remo-x/debug/#"], QoS::AtMostOnce)
        .await;
    let debug = "devices/remo-x/debug/log";
    assert_eq!(dev.publish_qos1(debug, b"\xff raw").await, Some(0));
    assert_eq!(other.expect_publish(debug).await.unwrap(), b"\xff raw");
    // A service (the bridge, a test harness) may publish anything anywhere.
    other
        .publish("devices/remo-x/sensors/te", b"raw", false)
        .await;
    assert_eq!(
        bridge
            .expect_publish("devices/remo-x/sensors/te")
            .await
            .unwrap(),
        b"raw"
    );
}
