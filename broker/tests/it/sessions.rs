//! MQTT sessions end to end with the test client: publishing, commands,
//! presence, takeover, last will, revocation, shutdown and observability.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::{doc, TestNode, WAIT};
use rumqttd::protocol::{DisconnectReasonCode, LastWill, Packet, QoS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_reading_reaches_the_service_in_both_protocol_versions() {
    let node = TestNode::start().await;
    for version in [4u8, 5] {
        let mut bridge = node.service(version).await;
        assert_eq!(
            bridge
                .subscribe(&["devices/+/sensors/+"], QoS::AtLeastOnce)
                .await,
            vec![1]
        );
        let mut dev = node.device(&format!("remo-v{version}"), version).await;
        let topic = format!("devices/remo-v{version}/sensors/te");
        dev.send_qos1(&topic, br#"{"val":21.5}"#, 1).await;
        assert_eq!(
            bridge.expect_publish(&topic).await.unwrap(),
            br#"{"val":21.5}"#
        );
        // The device's PUBACK follows the bridge's (see `confirmations.rs`).
        bridge.ack(1).await;
        assert_eq!(dev.puback().await, Some(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_command_reaches_the_right_device_only() {
    let node = TestNode::start().await;
    let mut a = node.device("remo-a", 4).await;
    let mut b = node.device("remo-b", 5).await;
    assert_eq!(
        a.subscribe(&["devices/remo-a/commands"], QoS::AtLeastOnce)
            .await,
        vec![1]
    );
    assert_eq!(
        b.subscribe(&["devices/remo-b/commands"], QoS::AtLeastOnce)
            .await,
        vec![1]
    );
    let mut bridge = node.service(5).await;
    bridge
        .publish("devices/remo-a/commands", b"{\"id\":\"c1\"}", false)
        .await;
    assert_eq!(
        a.expect_publish("devices/remo-a/commands").await.unwrap(),
        b"{\"id\":\"c1\"}"
    );
    assert!(
        b.no_publish_on("devices/remo-a/commands", Duration::from_millis(300))
            .await
    );
    bridge
        .publish("devices/remo-b/commands", b"{\"id\":\"c2\"}", false)
        .await;
    assert_eq!(
        b.expect_publish("devices/remo-b/commands").await.unwrap(),
        b"{\"id\":\"c2\"}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_published_on_connect_and_on_clean_disconnect() {
    let node = TestNode::start().await;
    let mut bridge = node.service(4).await;
    bridge
        .subscribe(&["devices/+/presence"], QoS::AtMostOnce)
        .await;
    let mut dev = node.device("remo-p", 4).await;
    let online = bridge
        .expect_publish("devices/remo-p/presence")
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&online).unwrap();
    assert_eq!(
        (v["online"].as_bool(), v["reason"].as_str()),
        (Some(true), Some("connected"))
    );
    assert_eq!(v["node"], "node-1");
    dev.send(Packet::Disconnect(
        rumqttd::protocol::Disconnect {
            reason_code: DisconnectReasonCode::NormalDisconnection,
        },
        None,
    ))
    .await;
    let offline = bridge
        .expect_publish("devices/remo-p/presence")
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&offline).unwrap();
    assert_eq!(
        (v["online"].as_bool(), v["reason"].as_str()),
        (Some(false), Some("disconnect"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_retained_for_late_subscribers() {
    let node = TestNode::start().await;
    let _dev = node.device("remo-r", 5).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut bridge = node.service(4).await;
    bridge
        .subscribe(&["devices/remo-r/presence"], QoS::AtMostOnce)
        .await;
    let doc = bridge
        .expect_publish("devices/remo-r/presence")
        .await
        .unwrap();
    assert!(String::from_utf8(doc).unwrap().contains("\"online\":true"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_announces_its_start_retained_and_only_the_service_may_read_it() {
    let before = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    let node = TestNode::start().await;
    let mut bridge = node.service(4).await;
    bridge
        .subscribe(&[kumo_contract::nodes::EPOCH_FILTER], QoS::AtMostOnce)
        .await;
    let topic = kumo_contract::nodes::epoch_topic("node-1");
    let doc: serde_json::Value =
        serde_json::from_slice(&bridge.expect_publish(&topic).await.unwrap()).unwrap();
    assert_eq!(doc["node"], "node-1");
    let started = time::OffsetDateTime::parse(
        doc["started"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(started >= before && started <= time::OffsetDateTime::now_utc());
    let mut dev = node.device("remo-e", 4).await;
    assert_eq!(
        dev.subscribe(&[kumo_contract::nodes::EPOCH_FILTER], QoS::AtMostOnce)
            .await,
        vec![0x80],
        "a device may not read node announcements"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_device_takes_over_its_old_session() {
    let node = TestNode::start().await;
    let mut old = node.device("remo-t", 5).await;
    let mut new = node.device("remo-t", 5).await;
    match old.recv().await {
        Some(Packet::Disconnect(d, _)) => {
            assert_eq!(d.reason_code, DisconnectReasonCode::SessionTakenOver)
        }
        other => panic!("expected DISCONNECT 0x8E, got {other:?}"),
    }
    assert!(old.closed_within(WAIT).await);
    new.subscribe(&["devices/remo-t/commands"], QoS::AtLeastOnce)
        .await;
    let mut bridge = node.service(4).await;
    bridge.publish("devices/remo-t/commands", b"x", false).await;
    assert_eq!(
        new.expect_publish("devices/remo-t/commands").await.unwrap(),
        b"x"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_will_fires_when_a_device_vanishes_but_not_on_clean_disconnect() {
    let node = TestNode::start().await;
    let mut bridge = node.service(4).await;
    bridge
        .subscribe(&["devices/+/state"], QoS::AtMostOnce)
        .await;
    let will = LastWill {
        topic: "devices/remo-w/state".into(),
        message: doc::will_state().into(),
        qos: QoS::AtMostOnce,
        retain: false,
    };
    let creds = node.pki.device("remo-w");
    let mut dev = crate::common::Client::open(&node, &creds, 4).await;
    assert_eq!(dev.connect("remo-w", 30, Some(will.clone())).await, 0);
    drop(dev); // TCP closed without DISCONNECT
    assert_eq!(
        bridge.expect_publish("devices/remo-w/state").await.unwrap(),
        doc::will_state()
    );

    let mut dev = crate::common::Client::open(&node, &creds, 4).await;
    assert_eq!(dev.connect("remo-w", 30, Some(will)).await, 0);
    dev.send(Packet::Disconnect(
        rumqttd::protocol::Disconnect {
            reason_code: DisconnectReasonCode::NormalDisconnection,
        },
        None,
    ))
    .await;
    assert!(
        bridge
            .no_publish_on("devices/remo-w/state", Duration::from_millis(500))
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_device_is_dropped_after_one_and_a_half_keepalives() {
    let node = TestNode::start_with(|s| s.min_keepalive_secs = 1).await;
    let creds = node.pki.device("remo-k");
    let mut dev = crate::common::Client::open(&node, &creds, 5).await;
    assert_eq!(dev.connect("remo-k", 1, None).await, 0);
    let started = std::time::Instant::now();
    match dev.recv().await {
        Some(Packet::Disconnect(d, _)) => {
            assert_eq!(d.reason_code, DisconnectReasonCode::KeepAliveTimeout)
        }
        other => panic!("expected keepalive DISCONNECT, got {other:?}"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_certificate_closes_its_live_session_within_two_seconds() {
    let node = TestNode::start().await;
    let creds = node.pki.device("remo-x");
    let mut dev = crate::common::Client::open(&node, &creds, 5).await;
    assert_eq!(dev.connect("remo-x", 30, None).await, 0);
    let mut other = node.device("remo-y", 5).await;
    let started = std::time::Instant::now();
    node.pki.revoke(&creds.serial);
    match dev.recv_within(Duration::from_secs(2)).await {
        Some(Packet::Disconnect(d, _)) => {
            assert_eq!(d.reason_code, DisconnectReasonCode::AdministrativeAction)
        }
        other => panic!("expected an administrative DISCONNECT, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    // New handshakes with it are refused, the neighbour is untouched.
    assert!(crate::common::refused_at_tls(&node, Some(&creds)).await);
    assert_eq!(
        other
            .publish_qos1("devices/remo-y/state", &doc::state("y"))
            .await,
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_devices_and_publishes_presence() {
    let mut node = TestNode::start().await;
    let mut dev = node.device("remo-s", 5).await;
    node.stop().await;
    match dev.recv().await {
        Some(Packet::Disconnect(d, _)) => {
            assert_eq!(d.reason_code, DisconnectReasonCode::ServerShuttingDown)
        }
        other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_healthz_are_served() {
    let node = TestNode::start().await;
    let _dev = node.device("remo-m", 4).await;
    assert!(node.http_get("/healthz").await.contains("ok"));
    let mut text = String::new();
    for _ in 0..20 {
        text = node.http_get("/metrics").await;
        if text.contains("kumo_broker_sessions_open 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        text.contains("kumo_broker_handshakes_total{outcome=\"ok\"} 1"),
        "{text}"
    );
    assert!(text.contains("kumo_broker_sessions_open 1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_address_is_a_clear_error_naming_the_key() {
    let node = TestNode::start().await;
    let pki = &node.pki;
    let creds = pki.node();
    let settings = kumo_broker::Settings {
        listen: node.addr,
        http_listen: "127.0.0.1:0".parse().unwrap(),
        ca: Some(pki.ca_path.clone()),
        cert: Some(creds.cert),
        key: Some(creds.key),
        ..Default::default()
    };
    let err = kumo_broker::start(settings, Default::default())
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        format!("broker.listen {} is already in use", node.addr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_stops_reading_is_still_closed_promptly_on_revocation() {
    let node = TestNode::start_with(|s| s.max_packet_size = 300_000).await;
    let creds = node.pki.device("remo-stuck");
    let mut dev = crate::common::Client::open(&node, &creds, 4).await;
    assert_eq!(dev.connect("remo-stuck", 30, None).await, 0);
    dev.subscribe(&["devices/remo-stuck/commands"], QoS::AtMostOnce)
        .await;
    // Fill the socket buffers: the device never reads from here on.
    let mut bridge = node.service(4).await;
    let big = vec![b'x'; 200_000];
    for _ in 0..60 {
        bridge
            .publish("devices/remo-stuck/commands", &big, false)
            .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    node.pki.revoke(&creds.serial);
    while node.metrics.disconnects_with("revoked") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "stuck session not closed in 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(dev);
}
