//! Persistent service sessions: a service connecting with clean_session=0
//! keeps its filters and gets, on return, what was published while it was
//! away and what it had not acknowledged (bounds: see `flow_control.rs`).
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::common::*;
use rumqttd::protocol::{Packet, PubAck, PubAckReason, QoS};

const READINGS: &str = "devices/+/sensors/+";

/// Connects the bridge identity with clean_session=0; returns the client and
/// whether the node said a session was present.
async fn persistent_service(node: &TestNode) -> (Client, bool) {
    let creds = node.pki.service("bridge");
    let mut c = Client::open(node, &creds, 4).await;
    let (present, code) = c.connect_session("bridge", false).await;
    assert_eq!(code, 0);
    (c, present)
}

/// Payloads of the publishes received within `d`.
async fn payloads(c: &mut Client, d: Duration) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(p) = c.recv_within(d).await {
        if let Packet::Publish(p, _) = p {
            got.push(String::from_utf8(p.payload.to_vec()).unwrap());
        }
    }
    got
}

async fn away_until_parked(c: Client) {
    drop(c);
    // The node notices the closed connection and parks the session.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_persistent_service_session_gets_what_was_published_while_it_was_away() {
    // Past the park hold (here none), the node acknowledges and queues for
    // the session; within it, devices wait (`flow_control.rs`).
    let node = TestNode::start_with(|s| s.park_hold_secs = 0).await;
    let (mut svc, present) = persistent_service(&node).await;
    assert!(!present, "no session the first time");
    assert_eq!(svc.subscribe(&[READINGS], QoS::AtLeastOnce).await, vec![1]);
    away_until_parked(svc).await;

    let mut dev = node.device("remo-1", 4).await;
    for i in 0..5 {
        let body = format!("{{\"val\":{i}}}");
        dev.send_qos1("devices/remo-1/sensors/te", body.as_bytes(), i + 1)
            .await;
    }
    assert!(
        dev.recv_within(Duration::from_millis(300)).await.is_none(),
        "no PUBACK while the bridge is away"
    );
    let (mut svc, present) = persistent_service(&node).await;
    assert!(present, "session_present=1 on return");
    let got = payloads(&mut svc, Duration::from_millis(500)).await;
    let want: Vec<String> = (0..5).map(|i| format!("{{\"val\":{i}}}")).collect();
    assert_eq!(got, want, "everything, in order, without subscribing again");
    assert_eq!(node.metrics.sessions_resumed.load(Relaxed), 1);
    // Acknowledged by the bridge on its return, the readings are acknowledged
    // to the device: none was while only the node's memory held it.
    for pkid in 1..=5 {
        svc.ack(pkid).await;
    }
    for _ in 0..5 {
        assert_eq!(dev.puback().await, Some(0));
    }
    assert_eq!(node.metrics.publishes_confirmed.load(Relaxed), 5);
}

#[tokio::test]
async fn unacknowledged_messages_are_delivered_again_after_a_reconnect() {
    let node = TestNode::start().await;
    let (mut svc, _) = persistent_service(&node).await;
    svc.subscribe(&[READINGS], QoS::AtLeastOnce).await;
    let mut dev = node.device("remo-1", 4).await;
    // The first reading is 1, the second 2.
    dev.publish_qos1("devices/remo-1/sensors/te", &doc::reading(1.0))
        .await;
    let Some(Packet::Publish(p, _)) = svc.recv().await else {
        panic!("first reading not delivered");
    };
    assert_eq!(p.payload[..], doc::reading(1.0));
    assert!(!dup(&p), "a first delivery has DUP clear");
    // rumqttd keeps the packet id private; the node numbers a session's sends from 1.
    svc.send(Packet::PubAck(
        PubAck {
            pkid: 1,
            reason: PubAckReason::Success,
        },
        None,
    ))
    .await;
    dev.publish_qos1("devices/remo-1/sensors/te", &doc::reading(2.0))
        .await;
    let Some(Packet::Publish(p, _)) = svc.recv().await else {
        panic!("second reading not delivered");
    };
    assert_eq!(p.payload[..], doc::reading(2.0));
    tokio::time::sleep(Duration::from_millis(100)).await;
    away_until_parked(svc).await;

    let (mut svc, present) = persistent_service(&node).await;
    assert!(present);
    let Some(Packet::Publish(p, _)) = svc.recv_within(Duration::from_millis(500)).await else {
        panic!("the unacknowledged reading was not delivered again");
    };
    assert_eq!(p.payload[..], doc::reading(2.0));
    assert!(dup(&p), "a redelivery has DUP set (MQTT-3.3.1-1)");
    assert_eq!(pkid(&p), 2, "and its original packet id (MQTT-4.4.0-1)");
    assert!(payloads(&mut svc, Duration::from_millis(300))
        .await
        .is_empty());
}

/// The DUP flag of a received PUBLISH (rumqttd keeps the field private; its
/// serialized first byte carries it).
fn dup(p: &rumqttd::protocol::Publish) -> bool {
    p.serialize()[0] & 0b1000 != 0
}

/// The packet id of a received PUBLISH (private in rumqttd too; its serialized
/// form puts it right after the first byte).
fn pkid(p: &rumqttd::protocol::Publish) -> u16 {
    let raw = p.serialize();
    u16::from_be_bytes([raw[1], raw[2]])
}

#[tokio::test]
async fn a_clean_session_discards_the_parked_one() {
    let node = TestNode::start().await;
    let (mut svc, _) = persistent_service(&node).await;
    svc.subscribe(&[READINGS], QoS::AtLeastOnce).await;
    away_until_parked(svc).await;
    let mut dev = node.device("remo-1", 4).await;
    dev.publish_qos1("devices/remo-1/sensors/te", &doc::reading(1.0))
        .await;

    let creds = node.pki.service("bridge");
    let mut svc = Client::open(&node, &creds, 4).await;
    assert_eq!(svc.connect_session("bridge", true).await, (false, 0));
    assert!(payloads(&mut svc, Duration::from_millis(300))
        .await
        .is_empty());
    drop(svc);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_svc, present) = persistent_service(&node).await;
    assert!(!present, "the parked session is gone");
}
