//! Ingress flow control: when the service (bridge) session falls behind, the
//! node holds device publishes — no PUBACK — instead of acknowledging readings
//! and later dropping them from the service's queue.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::common::*;
use bytes::BytesMut;
use rumqttd::protocol::{Packet, PingReq, PubAck, PubAckReason, QoS};

const READINGS: &str = "devices/+/sensors/+";
const QUEUE: usize = 400;
const SENT: u16 = 1_500;

/// Connects the bridge identity with clean_session=0 (its control lane).
async fn service(node: &TestNode) -> Client {
    lane(node, "bridge").await
}

/// Connects the bridge identity as `client_id` with its session kept.
async fn lane(node: &TestNode, client_id: &str) -> Client {
    let creds = node.pki.service("bridge");
    let mut c = Client::open(node, &creds, 4).await;
    assert_eq!(c.connect_session(client_id, false).await.1, 0);
    c
}

/// Sends QoS 1 readings `from..to` (packet id = sequence number) without waiting.
async fn publish_range(dev: &mut Client, from: u16, to: u16) {
    let mut out = BytesMut::new();
    for i in from..to {
        peers::encode_qos1_publish(
            &mut out,
            4,
            "devices/remo-1/sensors/te",
            format!("{{\"val\":{i}}}").as_bytes(),
            i,
        );
    }
    dev.raw(&out).await;
}

/// Packet ids of the PUBACKs that arrive within `d`.
async fn pubacks(dev: &mut Client, d: Duration) -> Vec<u16> {
    let mut got = Vec::new();
    while let Some(p) = dev.recv_within(d).await {
        if let Packet::PubAck(ack, _) = p {
            got.push(ack.pkid);
        }
    }
    got
}

#[tokio::test]
async fn a_lagging_service_session_holds_device_publishes_instead_of_dropping_them() {
    // No hold while parked and acknowledgements on routing (no waiting for
    // the bridge's): this is about the high-water mark alone.
    let node = TestNode::start_with(|s| {
        s.session_queue = QUEUE;
        s.park_hold_secs = 0;
        s.confirm_timeout_secs = 0;
    })
    .await;
    let mut svc = service(&node).await;
    assert_eq!(svc.subscribe(&[READINGS], QoS::AtLeastOnce).await, vec![1]);
    drop(svc);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The bridge is away: once what waits for it (in the router and in its
    // parked queue) reaches high water (QUEUE / 4), the device stops getting PUBACKs.
    let mut dev = node.device("remo-1", 4).await;
    let mut acked = Vec::new();
    for chunk in (1..=SENT).step_by(50) {
        publish_range(&mut dev, chunk, (chunk + 50).min(SENT + 1)).await;
        acked.extend(pubacks(&mut dev, Duration::from_millis(30)).await);
    }
    acked.extend(pubacks(&mut dev, Duration::from_millis(300)).await);
    assert!(
        acked.len() >= QUEUE / 4 && acked.len() < usize::from(SENT),
        "{} of {SENT} acknowledged while the bridge was away",
        acked.len()
    );
    assert!(node.metrics.publishes_held.load(Relaxed) > 0);
    assert_eq!(
        acked,
        (1..=acked.len() as u16).collect::<Vec<_>>(),
        "PUBACKs in order"
    );

    // A held device still answers PINGREQ.
    let mut other = node.device("remo-2", 4).await;
    other
        .publish("devices/remo-2/sensors/te", b"{\"val\":1}", false)
        .await;
    other.send(Packet::PingReq(PingReq)).await;
    assert!(matches!(
        other.recv_within(Duration::from_secs(2)).await,
        Some(Packet::PingResp(_))
    ));

    // The bridge returns and acknowledges what it gets: everything arrives
    // exactly once and the device gets every PUBACK.
    let mut svc = service(&node).await;
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    // rumqttd keeps the packet id private; the node numbers a session's sends from 1.
    let mut pkid = 0u16;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < usize::from(SENT) && tokio::time::Instant::now() < deadline {
        let Some(p) = svc.recv_within(Duration::from_millis(200)).await else {
            acked.extend(pubacks(&mut dev, Duration::from_millis(1)).await);
            continue;
        };
        if let Packet::Publish(p, _) = p {
            pkid += 1;
            if p.topic.as_ref() == b"devices/remo-1/sensors/te" {
                let body = String::from_utf8(p.payload.to_vec()).unwrap();
                order.push(body.clone());
                seen.insert(body);
            }
            svc.send(Packet::PubAck(
                PubAck {
                    pkid,
                    reason: PubAckReason::Success,
                },
                None,
            ))
            .await;
        }
    }
    acked.extend(pubacks(&mut dev, Duration::from_millis(500)).await);
    assert_eq!(
        seen.len(),
        usize::from(SENT),
        "every reading delivered once"
    );
    assert_eq!(order.len(), usize::from(SENT), "no duplicates");
    let want: Vec<String> = (1..=SENT).map(|i| format!("{{\"val\":{i}}}")).collect();
    assert_eq!(order, want, "in publish order");
    assert_eq!(node.metrics.dropped_session.load(Relaxed), 0);
    assert_eq!(
        acked,
        (1..=SENT).collect::<Vec<_>>(),
        "all PUBACKs, in order"
    );
}

/// Reads the bridge's publishes for `d`, acknowledging each (the node numbers
/// a session's sends from `*pkid + 1`); returns the readings' payloads.
async fn bridge_reads(svc: &mut Client, pkid: &mut u16, d: Duration) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(p) = svc.recv_within(d).await {
        if let Packet::Publish(p, _) = p {
            *pkid += 1;
            if p.topic.as_ref() == b"devices/remo-1/sensors/te" {
                got.push(String::from_utf8(p.payload.to_vec()).unwrap());
            }
            let ack = PubAck {
                pkid: *pkid,
                reason: PubAckReason::Success,
            };
            svc.send(Packet::PubAck(ack, None)).await;
        }
    }
    got
}

#[tokio::test]
async fn no_reading_is_acknowledged_while_the_bridge_is_away_within_the_park_hold() {
    let node = TestNode::start_with(|s| s.park_hold_secs = 30).await;
    let mut svc = service(&node).await;
    assert_eq!(svc.subscribe(&[READINGS], QoS::AtLeastOnce).await, vec![1]);
    drop(svc);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Were these acknowledged now, they would live only in the node's memory.
    let mut dev = node.device("remo-1", 4).await;
    publish_range(&mut dev, 1, 11).await;
    assert_eq!(
        pubacks(&mut dev, Duration::from_millis(500)).await,
        Vec::<u16>::new()
    );

    // The bridge is back: it gets every reading once, the device every PUBACK.
    let mut svc = service(&node).await;
    let mut pkid = 0;
    let got = bridge_reads(&mut svc, &mut pkid, Duration::from_millis(500)).await;
    let want: Vec<String> = (1..11).map(|i| format!("{{\"val\":{i}}}")).collect();
    assert_eq!(got, want);
    assert_eq!(
        pubacks(&mut dev, Duration::from_millis(500)).await,
        (1..11).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn past_the_park_hold_readings_are_acknowledged_again_for_a_bridge_that_stays_away() {
    let node = TestNode::start_with(|s| {
        s.park_hold_secs = 1;
        s.confirm_timeout_secs = 1;
    })
    .await;
    let mut svc = service(&node).await;
    assert_eq!(svc.subscribe(&[READINGS], QoS::AtLeastOnce).await, vec![1]);
    drop(svc);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut dev = node.device("remo-1", 4).await;
    publish_range(&mut dev, 1, 4).await;
    assert_eq!(
        pubacks(&mut dev, Duration::from_millis(300)).await,
        Vec::<u16>::new()
    );
    // The hold ends a second after the bridge left; nobody acknowledges the
    // readings then, and a second later the node does: the fleet is not stalled.
    assert_eq!(
        pubacks(&mut dev, Duration::from_secs(4)).await,
        vec![1, 2, 3]
    );
    assert_eq!(node.metrics.confirm_timeouts.load(Relaxed), 3);
}

#[tokio::test]
async fn a_parked_session_keeps_only_the_newest_messages_over_its_cap() {
    // Presence is the node's own and is never held, so it can still overrun
    // the hard cap: the oldest go first.
    let node = TestNode::start_with(|s| s.session_queue = 3).await;
    let mut svc = service(&node).await;
    svc.subscribe(&["devices/+/presence"], QoS::AtLeastOnce)
        .await;
    drop(svc);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..5 {
        let _dev = node.device(&format!("remo-{i}"), 4).await;
        // Let each online presence reach the parked session in turn.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut svc = service(&node).await;
    let mut got = Vec::new();
    while let Some(p) = svc.recv_within(Duration::from_millis(500)).await {
        if let Packet::Publish(p, _) = p {
            got.push(String::from_utf8(p.topic.to_vec()).unwrap());
        }
    }
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(node.metrics.dropped_session.load(Relaxed) >= 2);
}

#[tokio::test]
async fn a_device_the_node_stopped_reading_from_is_not_dropped_for_its_keepalive() {
    let node = TestNode::start_with(|s| {
        s.park_hold_secs = 60;
        s.min_keepalive_secs = 1;
    })
    .await;
    let mut svc = service(&node).await;
    assert_eq!(svc.subscribe(&[READINGS], QoS::AtLeastOnce).await, vec![1]);
    drop(svc);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Keepalive 1 s: the node would drop it after 1.5 s of silence. It sends
    // more publishes than the node holds for one device (64), so the node
    // stops reading from it, and then its PINGREQs, which wait unread.
    let creds = node.pki.device("remo-1");
    let mut dev = Client::open(&node, &creds, 4).await;
    assert_eq!(dev.connect("remo-1", 1, None).await, 0);
    publish_range(&mut dev, 1, 101).await;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        dev.send(Packet::PingReq(PingReq)).await;
    }
    assert!(
        pubacks(&mut dev, Duration::from_millis(100))
            .await
            .is_empty(),
        "publishes acknowledged while the bridge is away"
    );

    // The bridge is back after 4 s (well past 1.5 s): the device is still
    // connected and gets every PUBACK.
    let mut svc = service(&node).await;
    let mut pkid = 0;
    let got = bridge_reads(&mut svc, &mut pkid, Duration::from_millis(500)).await;
    assert_eq!(got.len(), 100);
    let acked = pubacks(&mut dev, Duration::from_millis(500)).await;
    assert_eq!(acked, (1..101).collect::<Vec<_>>());
    dev.send(Packet::PingReq(PingReq)).await;
    assert!(matches!(
        dev.recv_within(Duration::from_secs(2)).await,
        Some(Packet::PingResp(_))
    ));
}

/// Connects the bridge's data lane (`bridge.data`, the same service identity).
async fn data_lane(node: &TestNode) -> Client {
    lane(node, "bridge.data").await
}

/// The topics of the publishes `c` receives within `d`; with `qos1`, each is
/// acknowledged (the node numbers them from `*pkid + 1`).
async fn lane_reads(c: &mut Client, pkid: &mut u16, d: Duration, qos1: bool) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(p) = c.recv_within(d).await {
        if let Packet::Publish(p, _) = p {
            got.push(String::from_utf8(p.topic.to_vec()).unwrap());
            if !qos1 {
                continue;
            }
            *pkid += 1;
            let ack = PubAck {
                pkid: *pkid,
                reason: PubAckReason::Success,
            };
            c.send(Packet::PubAck(ack, None)).await;
        }
    }
    got
}

/// A node whose bridge has its data lane away within the park hold (readings
/// wait) and its control lane connected, taking acks; the control lane.
async fn data_lane_away() -> (TestNode, Client) {
    let node = TestNode::start_with(|s| s.park_hold_secs = 30).await;
    let mut data = data_lane(&node).await;
    assert_eq!(data.subscribe(&[READINGS], QoS::AtLeastOnce).await, vec![1]);
    drop(data);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut control = service(&node).await;
    let granted = control
        .subscribe(&["devices/+/acks"], QoS::AtLeastOnce)
        .await;
    assert_eq!(granted, vec![1]);
    (node, control)
}

#[tokio::test]
async fn a_command_ack_is_not_held_behind_readings_waiting_for_the_data_lane() {
    let (node, mut control) = data_lane_away().await;

    // A QoS 1 reading (held), then the device's QoS 1 ack of a command.
    let mut dev = node.device("remo-1", 4).await;
    let mut out = BytesMut::new();
    peers::encode_qos1_publish(&mut out, 4, "devices/remo-1/sensors/te", b"{\"val\":1}", 1);
    peers::encode_qos1_publish(
        &mut out,
        4,
        "devices/remo-1/acks",
        &doc::ack("00000000-0000-4000-8000-000000000001"),
        2,
    );
    dev.raw(&out).await;

    // The ack reaches the bridge at once; the device's PUBACKs keep their
    // order, so neither comes while the reading waits.
    let mut control_pkid = 0;
    let got = lane_reads(
        &mut control,
        &mut control_pkid,
        Duration::from_millis(500),
        true,
    )
    .await;
    assert_eq!(got, vec!["devices/remo-1/acks".to_string()]);
    assert_eq!(
        pubacks(&mut dev, Duration::from_millis(300)).await,
        Vec::<u16>::new()
    );

    // The data lane is back: it gets the reading, the device both PUBACKs in order.
    let mut data = data_lane(&node).await;
    let mut data_pkid = 0;
    let got = lane_reads(&mut data, &mut data_pkid, Duration::from_millis(500), true).await;
    assert_eq!(got, vec!["devices/remo-1/sensors/te".to_string()]);
    assert_eq!(
        pubacks(&mut dev, Duration::from_millis(500)).await,
        vec![1, 2]
    );
}

#[tokio::test]
async fn behind_qos0_readings_a_command_ack_is_acknowledged_at_once() {
    let (node, mut control) = data_lane_away().await;
    let mut dev = node.device("remo-1", 4).await;
    for i in 0..3 {
        dev.publish(
            "devices/remo-1/sensors/te",
            format!("{{\"val\":{i}}}").as_bytes(),
            false,
        )
        .await;
    }
    // No PUBACK waits before it (QoS 0 has none): the ack's comes as soon
    // as the control lane has acknowledged it.
    let mut out = BytesMut::new();
    peers::encode_qos1_publish(
        &mut out,
        4,
        "devices/remo-1/acks",
        &doc::ack("00000000-0000-4000-8000-000000000001"),
        7,
    );
    dev.raw(&out).await;
    let mut pkid = 0;
    let got = lane_reads(&mut control, &mut pkid, Duration::from_millis(300), true).await;
    assert_eq!(got, vec!["devices/remo-1/acks".to_string()]);
    assert_eq!(pubacks(&mut dev, Duration::from_millis(500)).await, vec![7]);

    // The readings come, in order, once the data lane is back.
    let mut data = data_lane(&node).await;
    let mut pkid = 0;
    let got = lane_reads(&mut data, &mut pkid, Duration::from_millis(500), false).await;
    assert_eq!(got.len(), 3);
}
