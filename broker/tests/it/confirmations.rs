//! End-to-end acknowledgement: a device's QoS 1 publish that a service
//! session (the bridge) takes is acknowledged to the device only once the
//! service has acknowledged its copy, so nothing the device was told is safe
//! lives only in the node's memory. MQTT 3.1.1 §4.6 still holds: PUBACKs go
//! out in the order the publishes arrived.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::common::*;
use rumqttd::protocol::{Packet, Publish, PublishProperties, QoS};

const READINGS: &str = "devices/+/sensors/+";
const TE: &str = "devices/remo-1/sensors/te";

/// Nothing arrives at `c` within `d`.
async fn silent(c: &mut Client, d: Duration) -> bool {
    c.recv_within(d).await.is_none()
}

/// Receives `n` publishes on `c` and returns their user properties.
async fn receive(c: &mut Client, n: usize) -> Vec<Vec<(String, String)>> {
    let mut got = Vec::new();
    while got.len() < n {
        match c.recv_within(WAIT).await {
            Some(Packet::Publish(_, props)) => {
                got.push(props.map(|p| p.user_properties).unwrap_or_default());
            }
            Some(_) => continue,
            None => panic!("{} of {n} publishes arrived", got.len()),
        }
    }
    got
}

#[tokio::test]
async fn a_devices_qos1_publish_is_acknowledged_only_once_the_service_has_acknowledged_it() {
    let node = TestNode::start().await;
    for version in [4u8, 5] {
        let mut bridge = node.service(version).await;
        assert_eq!(
            bridge.subscribe(&[READINGS], QoS::AtLeastOnce).await,
            vec![1]
        );
        let mut dev = node.device("remo-1", version).await;
        dev.send_qos1(TE, b"{\"val\":1}", 1).await;
        assert_eq!(receive(&mut bridge, 1).await.len(), 1);
        assert!(
            silent(&mut dev, Duration::from_millis(500)).await,
            "v{version}: no PUBACK before the bridge's"
        );
        bridge.ack(1).await;
        assert_eq!(dev.puback().await, Some(0), "v{version}");
    }
    assert_eq!(node.metrics.publishes_confirmed.load(Relaxed), 2);
    assert_eq!(node.metrics.confirm_timeouts.load(Relaxed), 0);
}

#[tokio::test]
async fn pubacks_keep_the_publish_order_when_the_service_acknowledges_out_of_order() {
    let node = TestNode::start().await;
    let mut bridge = node.service(4).await;
    bridge.subscribe(&[READINGS], QoS::AtLeastOnce).await;
    let mut dev = node.device("remo-1", 4).await;
    for pkid in 1..=3u16 {
        dev.send_qos1(TE, format!("{{\"val\":{pkid}}}").as_bytes(), pkid)
            .await;
    }
    receive(&mut bridge, 3).await;
    // The node numbers its sends to the bridge from 1, in arrival order.
    bridge.ack(3).await;
    bridge.ack(2).await;
    assert!(
        silent(&mut dev, Duration::from_millis(500)).await,
        "2 and 3 must not overtake 1"
    );
    bridge.ack(1).await;
    let mut order = Vec::new();
    while let Some(p) = dev.recv_within(Duration::from_millis(500)).await {
        if let Packet::PubAck(ack, _) = p {
            order.push(ack.pkid);
        }
    }
    assert_eq!(order, vec![1, 2, 3]);
}

#[tokio::test]
async fn a_publish_no_service_takes_is_acknowledged_at_once() {
    let node = TestNode::start().await;
    // Nobody subscribed at all.
    let mut dev = node.device("remo-1", 4).await;
    assert_eq!(dev.publish_qos1(TE, b"{\"val\":1}").await, Some(0));
    // A bridge that takes readings only: a state report is nobody's to confirm.
    let mut bridge = node.service(4).await;
    bridge.subscribe(&[READINGS], QoS::AtLeastOnce).await;
    assert_eq!(
        dev.publish_qos1("devices/remo-1/state", &doc::state("1"))
            .await,
        Some(0)
    );
    assert_eq!(node.metrics.publishes_confirmed.load(Relaxed), 0);
}

#[tokio::test]
async fn a_service_taking_qos0_confirms_when_the_node_sends_it() {
    let node = TestNode::start().await;
    let mut bridge = node.service(4).await;
    assert_eq!(
        bridge.subscribe(&[READINGS], QoS::AtMostOnce).await,
        vec![0]
    );
    let mut dev = node.device("remo-1", 4).await;
    // There is no acknowledgement to wait for: the device's comes once the
    // copy is written to the bridge.
    assert_eq!(dev.publish_qos1(TE, b"{\"val\":1}").await, Some(0));
    assert_eq!(receive(&mut bridge, 1).await.len(), 1);
    assert_eq!(node.metrics.publishes_confirmed.load(Relaxed), 1);
}

#[tokio::test]
async fn the_confirmation_token_never_reaches_a_client_and_cannot_be_forged() {
    let node = TestNode::start().await;
    let mut bridge = node.service(5).await;
    bridge.subscribe(&[READINGS], QoS::AtLeastOnce).await;
    let mut dev = node.device("remo-1", 5).await;
    dev.send_qos1(TE, b"{\"val\":1}", 1).await;
    let props = receive(&mut bridge, 1).await;
    assert!(
        props[0].iter().all(|(k, _)| !k.starts_with("$kumo/")),
        "{props:?}"
    );

    // Another device names a token (the next one the node would hand out,
    // and the one just used): the node drops the property, and the device
    // waiting is not acknowledged by it.
    let mut other = node.device("remo-2", 5).await;
    let mut user_properties = vec![("k".to_string(), "v".to_string())];
    for t in 1..=3 {
        user_properties.push(("$kumo/confirm".to_string(), t.to_string()));
    }
    let forged = PublishProperties {
        user_properties,
        ..Default::default()
    };
    let p = Publish::new(
        "devices/remo-2/sensors/te".as_bytes().to_vec(),
        b"{\"val\":2}".to_vec(),
        false,
    );
    other.send(Packet::Publish(p, Some(forged))).await;
    let props = receive(&mut bridge, 1).await;
    assert_eq!(props[0], vec![("k".to_string(), "v".to_string())]);
    assert!(silent(&mut dev, Duration::from_millis(300)).await);
    bridge.ack(1).await;
    assert_eq!(dev.puback().await, Some(0));
}

#[tokio::test]
async fn a_copy_no_service_acknowledges_is_acknowledged_after_the_timeout() {
    let node = TestNode::start_with(|s| s.confirm_timeout_secs = 1).await;
    let mut bridge = node.service(4).await;
    bridge.subscribe(&[READINGS], QoS::AtLeastOnce).await;
    let mut dev = node.device("remo-1", 4).await;
    dev.send_qos1(TE, b"{\"val\":1}", 1).await;
    receive(&mut bridge, 1).await;
    // The bridge never answers: the device is not stalled for good.
    assert!(silent(&mut dev, Duration::from_millis(500)).await);
    assert_eq!(dev.puback().await, Some(0));
    assert_eq!(node.metrics.confirm_timeouts.load(Relaxed), 1);
    assert_eq!(node.metrics.publishes_confirmed.load(Relaxed), 0);
    // A late acknowledgement finds nothing to confirm.
    bridge.ack(1).await;
    assert!(silent(&mut dev, Duration::from_millis(300)).await);
}

#[tokio::test]
async fn with_confirmations_off_a_publish_is_acknowledged_when_routed() {
    let node = TestNode::start_with(|s| s.confirm_timeout_secs = 0).await;
    let mut bridge = node.service(4).await;
    bridge.subscribe(&[READINGS], QoS::AtLeastOnce).await;
    let mut dev = node.device("remo-1", 4).await;
    assert_eq!(dev.publish_qos1(TE, b"{\"val\":1}").await, Some(0));
    assert_eq!(receive(&mut bridge, 1).await.len(), 1);
    assert_eq!(node.metrics.publishes_confirmed.load(Relaxed), 0);
}

#[tokio::test]
async fn a_service_that_drops_its_connection_unacknowledged_confirms_the_resent_copy() {
    let node = TestNode::start().await;
    let creds = node.pki.service("bridge");
    let connect = || async {
        let mut c = Client::open(&node, &creds, 4).await;
        let (present, code) = c.connect_session("bridge.data", false).await;
        assert_eq!(code, 0);
        (c, present)
    };
    let (mut bridge, _) = connect().await;
    bridge.subscribe(&[READINGS], QoS::AtLeastOnce).await;
    let mut dev = node.device("remo-1", 4).await;
    dev.send_qos1(TE, b"{\"val\":1}", 1).await;
    receive(&mut bridge, 1).await;
    // The bridge dies before committing: the node keeps the session and the
    // device its publish.
    drop(bridge);
    assert!(silent(&mut dev, Duration::from_millis(500)).await);
    let (mut bridge, present) = connect().await;
    assert!(present);
    // MQTT-4.4.0-1: sent again with the same packet id, then acknowledged.
    receive(&mut bridge, 1).await;
    bridge.ack(1).await;
    assert_eq!(dev.puback().await, Some(0));
    assert_eq!(node.metrics.publishes_confirmed.load(Relaxed), 1);
}
