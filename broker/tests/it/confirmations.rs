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
async fn a_service_taking_qos0_neither_confirms_nor_holds_a_devices_puback() {
    let node = TestNode::start().await;
    let mut bridge = node.service(4).await;
    assert_eq!(
        bridge.subscribe(&[READINGS], QoS::AtMostOnce).await,
        vec![0]
    );
    let mut dev = node.device("remo-1", 4).await;
    // Nothing will ever acknowledge a QoS 0 copy: the device is answered at
    // once, as for a publish no service takes.
    assert_eq!(dev.publish_qos1(TE, b"{\"val\":1}").await, Some(0));
    assert_eq!(receive(&mut bridge, 1).await.len(), 1);
    assert_eq!(node.metrics.publishes_confirmed.load(Relaxed), 0);
}

#[tokio::test]
async fn an_observer_taking_qos0_copies_does_not_confirm_what_the_bridge_has_not_acknowledged() {
    let node = TestNode::start().await;
    let mut bridge = node.service(4).await;
    bridge.subscribe(&[READINGS], QoS::AtLeastOnce).await;
    // Another service identity counting readings at QoS 0 (the fleet
    // benchmark's tap): it gets its copy first, and that proves nothing is stored.
    let mut tap = Client::open(&node, &node.pki.service("tap"), 4).await;
    assert_eq!(tap.connect("tap", 30, None).await, 0);
    tap.subscribe(&[READINGS], QoS::AtMostOnce).await;
    let mut dev = node.device("remo-1", 4).await;
    dev.send_qos1(TE, b"{\"val\":1}", 1).await;
    assert_eq!(receive(&mut tap, 1).await.len(), 1);
    assert_eq!(receive(&mut bridge, 1).await.len(), 1);
    assert!(silent(&mut dev, Duration::from_millis(500)).await);
    bridge.ack(1).await;
    assert_eq!(dev.puback().await, Some(0));
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

/// The publishes `c` receives within `d` (the node numbers its sends to a
/// service from 1): (payload, retain flag).
async fn copies(c: &mut Client, d: Duration) -> Vec<(Vec<u8>, bool)> {
    let mut got = Vec::new();
    while let Some(p) = c.recv_within(d).await {
        if let Packet::Publish(p, _) = p {
            got.push((p.payload.to_vec(), p.retain));
        }
    }
    got
}

/// Sends readings 1 and 2; the bridge gets both copies and acknowledges the
/// second only: it went past the first.
async fn second_reading_acknowledged_first_not(dev: &mut Client, bridge: &mut Client) {
    dev.send_qos1(TE, b"{\"val\":1}", 1).await;
    dev.send_qos1(TE, b"{\"val\":2}", 2).await;
    assert_eq!(receive(bridge, 2).await.len(), 2);
    bridge.ack(2).await;
}

#[tokio::test]
async fn a_copy_the_bridge_went_past_is_routed_again_and_the_device_waits_for_one_confirmed() {
    let node = TestNode::start_with(|s| s.confirm_timeout_secs = 1).await;
    let mut bridge = node.service(4).await;
    bridge.subscribe(&[READINGS], QoS::AtLeastOnce).await;
    let mut dev = node.device("remo-1", 4).await;
    second_reading_acknowledged_first_not(&mut dev, &mut bridge).await;
    // At the first reading's deadline (a second in), the same reading again:
    // as far as the node can tell, the bridge lost the first copy.
    let got = copies(&mut bridge, Duration::from_millis(1_500)).await;
    assert_eq!(got, vec![(b"{\"val\":1}".to_vec(), false)]);
    // Nothing stored it yet: neither answer goes (the second waits behind
    // the first, MQTT 3.1.1 §4.6).
    assert!(silent(&mut dev, Duration::from_millis(100)).await);
    assert_eq!(node.metrics.confirm_resends.load(Relaxed), 1);
    assert_eq!(node.metrics.confirm_timeouts.load(Relaxed), 0);
    // The copy sent again is the one the bridge stores: both answers follow.
    bridge.ack(3).await;
    assert_eq!(pubacks(&mut dev).await, vec![1, 2]);
    // The first copy's late acknowledgement finds nothing more to confirm.
    bridge.ack(1).await;
    assert_eq!(pubacks(&mut dev).await, Vec::<u16>::new());
    assert_eq!(node.metrics.publishes_confirmed.load(Relaxed), 2);
}

#[tokio::test]
async fn a_copy_nothing_later_has_overtaken_is_waited_for_not_sent_again() {
    let node = TestNode::start_with(|s| s.confirm_timeout_secs = 1).await;
    let mut bridge = node.service(4).await;
    bridge.subscribe(&[READINGS], QoS::AtLeastOnce).await;
    let mut dev = node.device("remo-1", 4).await;
    dev.send_qos1(TE, b"{\"val\":1}", 1).await;
    // The bridge is slow, not past it: two deadlines go by with no resend.
    let got = copies(&mut bridge, Duration::from_millis(2_500)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(node.metrics.confirm_deferrals.load(Relaxed) >= 2);
    assert_eq!(node.metrics.confirm_resends.load(Relaxed), 0);
    assert!(silent(&mut dev, Duration::from_millis(100)).await);
    bridge.ack(1).await;
    assert_eq!(dev.puback().await, Some(0));
}

/// Packet ids of the PUBACKs `dev` gets within half a second.
async fn pubacks(dev: &mut Client) -> Vec<u16> {
    let mut order = Vec::new();
    while let Some(p) = dev.recv_within(Duration::from_millis(500)).await {
        if let Packet::PubAck(ack, _) = p {
            order.push(ack.pkid);
        }
    }
    order
}

#[tokio::test]
async fn resends_of_an_unconfirmed_publish_back_off() {
    let node = TestNode::start_with(|s| s.confirm_timeout_secs = 1).await;
    let mut bridge = node.service(5).await;
    bridge.subscribe(&[READINGS], QoS::AtLeastOnce).await;
    let mut dev = node.device("remo-1", 5).await;
    let started = tokio::time::Instant::now();
    second_reading_acknowledged_first_not(&mut dev, &mut bridge).await;
    // The first reading again at 1 s, then 2 s later (3 s), then 4 s later (7 s).
    let mut at = Vec::new();
    while at.len() < 3 {
        match bridge.recv_within(Duration::from_secs(6)).await {
            Some(Packet::Publish(..)) => at.push(started.elapsed().as_millis()),
            Some(_) => continue,
            None => panic!("copies sent again at {at:?} ms"),
        }
    }
    assert!(
        (800..1_600).contains(&at[0])
            && (2_800..3_600).contains(&at[1])
            && (6_800..7_600).contains(&at[2]),
        "copies sent again at {at:?} ms"
    );
    assert!(silent(&mut dev, Duration::from_millis(100)).await);
    bridge.ack(5).await;
    assert_eq!(pubacks(&mut dev).await, vec![1, 2]);
}

#[tokio::test]
async fn a_publish_no_service_takes_any_more_is_acknowledged_at_its_deadline() {
    let node = TestNode::start_with(|s| s.confirm_timeout_secs = 1).await;
    let mut bridge = node.service(4).await;
    bridge.subscribe(&[READINGS], QoS::AtLeastOnce).await;
    let mut dev = node.device("remo-1", 4).await;
    dev.send_qos1(TE, b"{\"val\":1}", 1).await;
    receive(&mut bridge, 1).await;
    // The bridge leaves for good (a clean session is not kept): nobody will
    // ever store the reading, so holding the device's answer gains nothing.
    drop(bridge);
    assert!(silent(&mut dev, Duration::from_millis(300)).await);
    assert_eq!(dev.puback().await, Some(0));
    assert_eq!(node.metrics.confirm_timeouts.load(Relaxed), 1);
    assert_eq!(node.metrics.confirm_resends.load(Relaxed), 0);
    assert_eq!(node.metrics.publishes_confirmed.load(Relaxed), 0);
}

#[tokio::test]
async fn a_retained_state_routed_again_does_not_replace_the_newer_one() {
    const STATE: &str = "devices/remo-1/state";
    let node = TestNode::start_with(|s| s.confirm_timeout_secs = 1).await;
    let mut bridge = node.service(4).await;
    bridge
        .subscribe(&["devices/+/state"], QoS::AtLeastOnce)
        .await;
    let mut dev = node.device("remo-1", 4).await;
    for (pkid, tag) in [(1u16, "old"), (2, "new")] {
        let mut out = bytes::BytesMut::new();
        peers::encode_qos1_publish(&mut out, 4, STATE, &doc::state(tag), pkid);
        out[0] |= 1; // RETAIN
        dev.raw(&out).await;
    }
    // Both copies, then the first again (not retained) at its deadline; the
    // second is acknowledged by the bridge, the first never.
    let got = copies(&mut bridge, Duration::from_millis(500)).await;
    assert_eq!(got.len(), 2, "{got:?}");
    bridge.ack(2).await;
    let again = copies(&mut bridge, Duration::from_millis(1_300)).await;
    assert_eq!(again, vec![(doc::state("old"), false)]);
    // A subscriber now gets the newer state as the retained one.
    // (Another service: one named "bridge" would take the bridge's session over.)
    let mut reader = Client::open(&node, &node.pki.service("reader"), 4).await;
    assert_eq!(reader.connect("reader", 30, None).await, 0);
    reader.subscribe(&[STATE], QoS::AtMostOnce).await;
    assert_eq!(reader.expect_publish(STATE).await, Some(doc::state("new")));
    // Both answers follow the copy's acknowledgement, in order.
    bridge.ack(3).await;
    let mut order = Vec::new();
    while let Some(p) = dev.recv_within(Duration::from_millis(500)).await {
        if let Packet::PubAck(ack, _) = p {
            order.push(ack.pkid);
        }
    }
    assert_eq!(order, vec![1, 2]);
    assert_eq!(node.metrics.publishes_confirmed.load(Relaxed), 2);
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

#[tokio::test]
async fn while_the_cloud_is_behind_an_unconfirmed_publish_waits_instead_of_being_sent_again() {
    let node = TestNode::start_with(|s| {
        s.confirm_timeout_secs = 1;
        s.park_hold_secs = 30;
    })
    .await;
    let creds = node.pki.service("bridge");
    let connect = || async {
        let mut c = Client::open(&node, &creds, 4).await;
        assert_eq!(c.connect_session("bridge.data", false).await.1, 0);
        c
    };
    let mut bridge = connect().await;
    bridge.subscribe(&[READINGS], QoS::AtLeastOnce).await;
    let mut dev = node.device("remo-1", 4).await;
    dev.send_qos1(TE, b"{\"val\":1}", 1).await;
    receive(&mut bridge, 1).await;
    // The bridge goes away within its hold: the readings gate closes, and
    // its parked session keeps the copy, so sending another would only add
    // to what waits for it.
    drop(bridge);
    assert!(silent(&mut dev, Duration::from_millis(2_500)).await);
    assert!(node.metrics.confirm_deferrals.load(Relaxed) >= 2);
    assert_eq!(node.metrics.confirm_resends.load(Relaxed), 0);
    assert_eq!(node.metrics.confirm_timeouts.load(Relaxed), 0);
    // Back, it gets the copy again (MQTT-4.4.0-1); once that is confirmed,
    // nothing more is sent.
    let mut bridge = connect().await;
    receive(&mut bridge, 1).await;
    bridge.ack(1).await;
    assert_eq!(dev.puback().await, Some(0));
    assert_eq!(
        copies(&mut bridge, Duration::from_millis(1_500)).await,
        vec![]
    );
}
