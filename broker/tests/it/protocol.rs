//! Protocol details: QoS 2 handled fully, MQTT 5 request/response properties
//! passed through, unsubscribe, and integration identities scoped to an account.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use crate::common::{doc, Client, TestNode, WAIT};
use bytes::Bytes;
use kumo_broker::AccountDevices;
use kumo_contract::{AccountId, DeviceId};
use rumqttd::protocol::{Packet, PublishProperties, QoS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos2_publish_is_delivered_once_with_the_full_handshake() {
    let node = TestNode::start().await;
    let mut bridge = node.service(4).await;
    bridge
        .subscribe(&["devices/+/state"], QoS::AtMostOnce)
        .await;
    let mut dev = node.device("remo-q2", 4).await;
    // QoS 2 PUBLISH, pkid 9, sent twice (a retransmission with DUP).
    let topic = b"devices/remo-q2/state";
    let mut first = vec![0x34, 0];
    first.extend_from_slice(&[0, topic.len() as u8]);
    first.extend_from_slice(topic);
    first.extend_from_slice(&[0, 9]);
    first.extend_from_slice(&doc::state("q2"));
    // One byte of remaining length.
    assert!(first.len() - 2 < 128);
    first[1] = (first.len() - 2) as u8;
    dev.raw(&first).await;
    match dev.recv().await {
        Some(Packet::PubRec(r, _)) => assert_eq!(r.pkid, 9),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    let mut dup = first.clone();
    dup[0] |= 0x08;
    dev.raw(&dup).await;
    assert!(matches!(dev.recv().await, Some(Packet::PubRec(..))));
    dev.raw(&[0x62, 0x02, 0, 9]).await; // PUBREL
    match dev.recv().await {
        Some(Packet::PubComp(c, _)) => assert_eq!(c.pkid, 9),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    assert_eq!(
        bridge
            .expect_publish("devices/remo-q2/state")
            .await
            .unwrap(),
        doc::state("q2")
    );
    assert!(
        bridge
            .no_publish_on("devices/remo-q2/state", Duration::from_millis(400))
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_response_topic_and_correlation_data_pass_through_both_ways() {
    let node = TestNode::start().await;
    let mut bridge = node.service(5).await;
    bridge.subscribe(&["devices/+/acks"], QoS::AtMostOnce).await;
    let mut dev = node.device("remo-rr", 5).await;
    dev.subscribe(&["devices/remo-rr/commands"], QoS::AtLeastOnce)
        .await;

    let props = PublishProperties {
        response_topic: Some("devices/remo-rr/acks".into()),
        correlation_data: Some(Bytes::from_static(b"cmd-42")),
        ..Default::default()
    };
    let cmd = rumqttd::protocol::Publish::new("devices/remo-rr/commands", "{}", false);
    bridge.send(Packet::Publish(cmd, Some(props))).await;
    let (rt, cd) = loop {
        match dev.recv().await {
            Some(Packet::Publish(_, Some(p))) => break (p.response_topic, p.correlation_data),
            Some(_) => continue,
            None => panic!("command not delivered"),
        }
    };
    assert_eq!(rt.as_deref(), Some("devices/remo-rr/acks"));
    assert_eq!(cd.as_deref(), Some(&b"cmd-42"[..]));

    let ack_props = PublishProperties {
        correlation_data: cd,
        ..Default::default()
    };
    let ack = rumqttd::protocol::Publish::new(
        Bytes::from_static(b"devices/remo-rr/acks"),
        Bytes::from(doc::ack("cmd-42")),
        false,
    );
    dev.send(Packet::Publish(ack, Some(ack_props))).await;
    loop {
        match bridge.recv().await {
            Some(Packet::Publish(p, props)) if p.topic == "devices/remo-rr/acks" => {
                assert_eq!(
                    props.unwrap().correlation_data.as_deref(),
                    Some(&b"cmd-42"[..])
                );
                break;
            }
            Some(_) => continue,
            None => panic!("ack not delivered"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_unsubscribe_a_device_receives_no_more_commands() {
    let node = TestNode::start().await;
    let mut dev = node.device("remo-u", 4).await;
    dev.subscribe(&["devices/remo-u/commands"], QoS::AtMostOnce)
        .await;
    dev.send(Packet::Unsubscribe(
        rumqttd::protocol::Unsubscribe {
            pkid: 3,
            filters: vec!["devices/remo-u/commands".into()],
        },
        None,
    ))
    .await;
    assert!(matches!(dev.recv().await, Some(Packet::UnsubAck(..))));
    let mut bridge = node.service(4).await;
    bridge.publish("devices/remo-u/commands", b"x", false).await;
    assert!(
        dev.no_publish_on("devices/remo-u/commands", Duration::from_millis(400))
            .await
    );
}

struct Owns(&'static str, &'static str);
impl AccountDevices for Owns {
    fn owns(&self, account: &AccountId, device: &DeviceId) -> bool {
        account.as_str() == self.0 && device.as_str() == self.1
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integration_reaches_its_accounts_device_and_no_other() {
    crate::common::init_tracing();
    let pki = Arc::new(crate::common::Pki::new());
    let node_creds = pki.node();
    let settings = kumo_broker::Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        ca: Some(pki.ca_path.clone()),
        crl: Some(pki.crl_path.clone()),
        cert: Some(node_creds.cert),
        key: Some(node_creds.key),
        ..Default::default()
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running =
        kumo_broker::start_with(settings, Arc::new(Owns("acct-1", "mine")), shutdown.clone())
            .await
            .unwrap();
    let node = TestNode {
        pki: pki.clone(),
        addr: running.mqtt_addr(),
        http: running.http_addr(),
        metrics: running.metrics(),
        node: Some(running),
        shutdown,
    };
    let mut mine = node.device("mine", 5).await;
    mine.subscribe(&["devices/mine/commands"], QoS::AtMostOnce)
        .await;
    let mut theirs = node.device("theirs", 5).await;
    theirs
        .subscribe(&["devices/theirs/commands"], QoS::AtMostOnce)
        .await;

    let creds = pki.integration("ifttt", "acct-1");
    let mut app = Client::open(&node, &creds, 5).await;
    assert_eq!(app.connect("ifttt", 30, None).await, 0);
    assert_eq!(
        app.subscribe(
            &[
                "devices/mine/sensors/+",
                "devices/theirs/sensors/+",
                "devices/+/sensors/+"
            ],
            QoS::AtMostOnce
        )
        .await,
        // A fleet-wide filter is granted; ownership narrows it per message.
        vec![0, 0x87, 0]
    );
    assert_eq!(
        app.publish_qos1("devices/mine/commands", b"on").await,
        Some(0)
    );
    assert_eq!(
        mine.expect_publish("devices/mine/commands").await.unwrap(),
        b"on"
    );
    assert_eq!(
        app.publish_qos1("devices/theirs/commands", b"on").await,
        Some(0x87)
    );
    assert!(
        theirs
            .no_publish_on("devices/theirs/commands", Duration::from_millis(300))
            .await
    );
    mine.publish("devices/mine/sensors/te", b"{\"val\":20}", false)
        .await;
    assert!(app
        .expect_publish("devices/mine/sensors/te")
        .await
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_with_qos_three_closes_the_session() {
    let node = TestNode::start().await;
    let mut dev = node.device("remo-q3", 4).await;
    dev.raw(&[0x36, 0x07, 0, 3, b'a', b'/', b'b', 0, 1]).await;
    assert!(dev.closed_within(WAIT).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_client_id_is_replaced_by_the_certificates_identity() {
    let node = TestNode::start().await;
    let creds = node.pki.device("remo-anon");
    let mut dev = Client::open(&node, &creds, 4).await;
    assert_eq!(dev.connect("", 30, None).await, 0);
    dev.subscribe(&["devices/remo-anon/commands"], QoS::AtMostOnce)
        .await;
    let mut bridge = node.service(4).await;
    bridge
        .publish("devices/remo-anon/commands", b"hi", false)
        .await;
    assert_eq!(
        dev.expect_publish("devices/remo-anon/commands")
            .await
            .unwrap(),
        b"hi"
    );
}

/// MQTT-3.1.3-8: a zero-byte client id with CleanSession=0 gets CONNACK
/// 0x02 (identifier rejected) and the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_3_8_an_empty_client_id_with_clean_session_0_is_rejected() {
    let node = TestNode::start().await;
    let creds = node.pki.device("remo-anon");
    let mut dev = Client::open(&node, &creds, 4).await;
    assert_eq!(dev.connect_session("", false).await, (false, 0x02));
    assert!(dev.closed_within(WAIT).await);
    // With CleanSession=1 the same device is accepted (its certificate names it).
    let mut again = Client::open(&node, &creds, 4).await;
    assert_eq!(again.connect_session("", true).await, (false, 0));
}
