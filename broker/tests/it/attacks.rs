//! Hostile clients: every case must be refused without crashing the node or
//! disturbing a neighbouring session, which is checked after each attack.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::{doc, Client, TestNode, WAIT};
use kumo_certs::IssueOptions;
use rumqttd::protocol::{Packet, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SHORT: Duration = Duration::from_millis(400);

/// A healthy neighbour: a device subscribed to its commands plus the bridge.
struct Witness {
    device: Client,
    bridge: Client,
}

impl Witness {
    async fn new(node: &TestNode) -> Witness {
        let mut device = node.device("witness", 5).await;
        assert_eq!(
            device
                .subscribe(&["devices/witness/commands"], QoS::AtLeastOnce)
                .await,
            vec![1]
        );
        let mut bridge = node.service(4).await;
        bridge
            .subscribe(&["devices/+/state", "devices/+/sensors/+"], QoS::AtMostOnce)
            .await;
        Witness { device, bridge }
    }

    /// The node still routes both ways for the neighbour.
    async fn still_fine(&mut self) {
        let state = doc::state("still-fine");
        assert_eq!(
            self.device
                .publish_qos1("devices/witness/state", &state)
                .await,
            Some(0)
        );
        assert_eq!(
            self.bridge
                .expect_publish("devices/witness/state")
                .await
                .unwrap(),
            state
        );
        self.bridge
            .publish("devices/witness/commands", b"ping", false)
            .await;
        assert_eq!(
            self.device
                .expect_publish("devices/witness/commands")
                .await
                .unwrap(),
            b"ping"
        );
    }
}

async fn setup() -> (TestNode, Witness) {
    let node = TestNode::start().await;
    let w = Witness::new(&node).await;
    (node, w)
}

async fn refused_subscription(filter: &str, version: u8) {
    let (node, mut w) = setup().await;
    let mut attacker = node.device("attacker", version).await;
    let codes = attacker.subscribe(&[filter], QoS::AtLeastOnce).await;
    let expected = if version == 5 { 0x87 } else { 0x80 };
    assert!(
        codes == vec![expected] || codes == vec![0x8F],
        "{filter}: {codes:?}"
    );
    w.bridge
        .publish("devices/witness/commands", b"secret", false)
        .await;
    assert_eq!(
        w.device
            .expect_publish("devices/witness/commands")
            .await
            .unwrap(),
        b"secret"
    );
    assert!(
        attacker
            .no_publish_on("devices/witness/commands", SHORT)
            .await,
        "{filter} leaked"
    );
    assert!(
        node.metrics.denials_with("subscribe", "wildcard")
            + node.metrics.denials_with("subscribe", "not_owned")
            + node.metrics.denials_with("subscribe", "system_topic")
            + node.metrics.denials_with("subscribe", "reserved_leaf")
            >= 1
    );
    w.still_fine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_subscribe_to_everything() {
    refused_subscription("#", 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_subscribe_to_all_devices() {
    refused_subscription("devices/#", 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_subscribe_to_every_devices_commands() {
    refused_subscription("devices/+/commands", 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_subscribe_to_another_devices_commands() {
    refused_subscription("devices/witness/commands", 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_subscribe_to_another_devices_subtree() {
    refused_subscription("devices/witness/#", 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_subscribe_to_sys_topics() {
    refused_subscription("$SYS/#", 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_subscribe_with_a_leading_plus() {
    refused_subscription("+/witness/commands", 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_use_a_shared_subscription_to_read_the_fleet() {
    refused_subscription("$share/g/devices/+/commands", 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_publish_as_another_device_in_mqtt5() {
    let (node, mut w) = setup().await;
    let mut attacker = node.device("attacker", 5).await;
    assert_eq!(
        attacker
            .publish_qos1("devices/witness/state", b"forged")
            .await,
        Some(0x87)
    );
    assert!(w.bridge.no_publish_on("devices/witness/state", SHORT).await);
    assert_eq!(node.metrics.denials_with("publish", "not_owned"), 1);
    w.still_fine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_publishing_as_another_device_in_mqtt311_is_disconnected() {
    let (node, mut w) = setup().await;
    let mut attacker = node.device("attacker", 4).await;
    attacker
        .publish("devices/witness/sensors/te", b"forged", false)
        .await;
    assert!(attacker.closed_within(WAIT).await);
    assert!(
        w.bridge
            .no_publish_on("devices/witness/sensors/te", SHORT)
            .await
    );
    w.still_fine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_forge_its_own_presence() {
    let (node, mut w) = setup().await;
    let mut attacker = node.device("attacker", 5).await;
    assert_eq!(
        attacker
            .publish_qos1("devices/attacker/presence", b"{}")
            .await,
        Some(0x87)
    );
    assert_eq!(node.metrics.denials_with("publish", "reserved_leaf"), 1);
    w.still_fine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_forge_a_node_epoch() {
    // A forged epoch would make the bridge mark a whole node's devices offline.
    let (node, mut w) = setup().await;
    let mut attacker = node.device("attacker", 5).await;
    let topic = kumo_contract::nodes::epoch_topic("node-1");
    let forged = br#"{"node":"node-1","started":"2999-01-01T00:00:00Z"}"#;
    assert_eq!(attacker.publish_qos1(&topic, forged).await, Some(0x87));
    assert_eq!(node.metrics.denials_with("publish", "not_owned"), 1);
    w.still_fine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_inject_commands_to_another_device() {
    let (node, mut w) = setup().await;
    let mut attacker = node.device("attacker", 5).await;
    assert_eq!(
        attacker
            .publish_qos1("devices/witness/commands", b"evil")
            .await,
        Some(0x87)
    );
    assert!(
        w.device
            .no_publish_on("devices/witness/commands", SHORT)
            .await
    );
    w.still_fine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_in_a_publish_topic_is_refused() {
    let (node, mut w) = setup().await;
    let mut attacker = node.device("attacker", 5).await;
    assert_eq!(
        attacker.publish_qos1("devices/attacker/+", b"x").await,
        Some(0x87)
    );
    assert_eq!(
        attacker.publish_qos1("devices/attacker/#", b"x").await,
        Some(0x87)
    );
    assert_eq!(node.metrics.denials_with("publish", "invalid"), 2);
    w.still_fine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_a_publish_topic_is_refused() {
    let (node, mut w) = setup().await;
    let mut attacker = node.device("attacker", 5).await;
    assert_eq!(
        attacker
            .publish_qos1("devices/attacker/state\0x", b"x")
            .await,
        Some(0x87)
    );
    w.still_fine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_that_differs_from_the_certificate_is_refused() {
    let (node, mut w) = setup().await;
    let creds = node.pki.device("attacker");
    for version in [4u8, 5] {
        let mut c = Client::open(&node, &creds, version).await;
        let code = c.connect("witness", 30, None).await;
        assert_eq!(code, if version == 5 { 0x85 } else { 2 });
        assert!(c.closed_within(WAIT).await);
    }
    w.still_fine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    let (node, mut w) = setup().await;
    let rogue = crate::common::Pki::new();
    let creds = rogue.device("witness");
    assert!(try_session(&node, &creds).await.is_err());
    assert_eq!(node.metrics.handshakes_with("unknown_ca"), 1);
    w.still_fine().await;
}

/// Handshake plus CONNECT; Err when either is refused.
async fn try_session(node: &TestNode, creds: &crate::common::Creds) -> Result<(), String> {
    let stream = crate::common::tls_connect(node.addr, &node.pki.ca_path, Some(creds))
        .await
        .map_err(|e| e.to_string())?;
    let mut c = Client::from_stream(stream, 4);
    match c.connect("witness", 30, None).await {
        0 => Ok(()),
        code => Err(format!("CONNACK {code}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused() {
    let (node, mut w) = setup().await;
    let now = time::OffsetDateTime::now_utc();
    let opts = IssueOptions {
        not_before: Some(now - time::Duration::days(10)),
        not_after: Some(now - time::Duration::days(1)),
        ..Default::default()
    };
    let creds = node.pki.device_with("old-remo", &opts);
    assert!(crate::common::refused_at_tls(&node, Some(&creds)).await);
    assert_eq!(node.metrics.handshakes_with("expired"), 1);
    w.still_fine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_cannot_connect() {
    let (node, mut w) = setup().await;
    let creds = node.pki.device("stolen");
    node.pki.revoke(&creds.serial);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(crate::common::refused_at_tls(&node, Some(&creds)).await);
    assert_eq!(node.metrics.handshakes_with("revoked"), 1);
    w.still_fine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_refused() {
    let (node, mut w) = setup().await;
    assert!(crate::common::refused_at_tls(&node, None).await);
    assert_eq!(node.metrics.handshakes_with("no_certificate"), 1);
    w.still_fine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_mqtt_on_the_tls_port_is_refused() {
    let (node, mut w) = setup().await;
    let mut tcp = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    // A valid MQTT 3.1.1 CONNECT in clear text.
    tcp.write_all(&[
        0x10, 0x0e, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 2, b'h', b'i',
    ])
    .await
    .unwrap();
    let mut b = [0u8; 64];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut b))
        .await
        .unwrap()
        .unwrap_or(0);
    assert!(
        n == 0 || b[0] == 0x15,
        "expected close or a TLS alert, got {:?}",
        &b[..n]
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(node.metrics.handshakes_with("not_tls"), 1);
    w.still_fine().await;
}

/// Opens a device connection and sends `bytes` right after the TLS handshake.
async fn raw_after_handshake(node: &TestNode, bytes: &[u8]) -> Client {
    let creds = node.pki.device("attacker");
    let mut c = Client::open(node, &creds, 4).await;
    c.raw(bytes).await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_before_connect_closes_the_connection() {
    let (node, mut w) = setup().await;
    let mut c = raw_after_handshake(&node, &[0x30, 0x05, 0, 1, b'a', b'h', b'i']).await;
    assert!(c.closed_within(WAIT).await);
    w.still_fine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_close_the_connection() {
    let (node, mut w) = setup().await;
    let mut c = raw_after_handshake(&node, &[0xff; 64]).await;
    assert!(c.closed_within(WAIT).await);
    w.still_fine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_connect_times_out_without_harm() {
    let node = TestNode::start_with(|s| s.handshake_timeout_ms = 800).await;
    let mut w = Witness::new(&node).await;
    let mut c = raw_after_handshake(&node, &[0x10, 0x20, 0, 4, b'M', b'Q']).await;
    assert!(c.closed_within(Duration::from_secs(3)).await);
    w.still_fine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_with_an_unknown_protocol_level_gets_return_code_one() {
    let (node, mut w) = setup().await;
    let mut c = raw_after_handshake(
        &node,
        &[0x10, 0x0c, 0, 4, b'M', b'Q', b'T', b'T', 9, 2, 0, 60, 0, 0],
    )
    .await;
    let mut b = [0u8; 4];
    c.stream.read_exact(&mut b).await.unwrap();
    assert_eq!(b, [0x20, 0x02, 0x00, 0x01]);
    w.still_fine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connect_closes_the_session() {
    let (node, mut w) = setup().await;
    let mut c = node.device("attacker", 4).await;
    assert_eq!(c.connect("attacker", 30, None).await, 255);
    assert!(c.closed_within(WAIT).await);
    w.still_fine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_subscribe_closes_the_session() {
    let (node, mut w) = setup().await;
    let mut c = node.device("attacker", 4).await;
    // SUBSCRIBE whose filter length runs past the packet.
    c.raw(&[0x82, 0x06, 0, 1, 0, 0x40, b'a', 1]).await;
    assert!(c.closed_within(WAIT).await);
    w.still_fine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_only_packet_from_an_mqtt5_client_closes_the_session() {
    let (node, mut w) = setup().await;
    let mut c = node.device("attacker", 5).await;
    c.raw(&[0x20, 0x03, 0, 0, 0]).await; // CONNACK from a client
    assert!(c.closed_within(WAIT).await);
    w.still_fine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_packet_is_refused_from_its_header() {
    let node = TestNode::start_with(|s| s.max_packet_size = 1024).await;
    let mut w = Witness::new(&node).await;
    let mut c = node.device("attacker", 5).await;
    // Announces 2 MB; the node must not wait for (or buffer) the body.
    c.raw(&[0x30, 0x80, 0x80, 0x80, 0x01, 0, 1, b'a']).await;
    match c.recv().await {
        Some(Packet::Disconnect(d, _)) => {
            assert_eq!(
                d.reason_code,
                rumqttd::protocol::DisconnectReasonCode::PacketTooLarge
            )
        }
        other => panic!("expected DISCONNECT 0x95, got {other:?}"),
    }
    w.still_fine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_alias_is_refused_as_a_protocol_error() {
    let (node, mut w) = setup().await;
    let mut c = node.device("attacker", 5).await;
    let p = rumqttd::protocol::Publish::new("devices/attacker/state", "x", false);
    let props = rumqttd::protocol::PublishProperties {
        topic_alias: Some(1),
        ..Default::default()
    };
    c.send(Packet::Publish(p, Some(props))).await;
    assert!(c.closed_within(WAIT).await);
    w.still_fine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_will_on_another_devices_topic_is_refused_at_connect() {
    let (node, mut w) = setup().await;
    let creds = node.pki.device("attacker");
    let mut c = Client::open(&node, &creds, 5).await;
    let will = rumqttd::protocol::LastWill {
        topic: "devices/witness/state".into(),
        message: "forged".into(),
        qos: QoS::AtMostOnce,
        retain: true,
    };
    assert_eq!(c.connect("attacker", 30, Some(will)).await, 0x87);
    w.still_fine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_certificate_cannot_be_used_as_a_client() {
    let (node, mut w) = setup().await;
    let creds = node.pki.node();
    assert!(crate::common::refused_at_tls(&node, Some(&creds)).await);
    assert!(
        node.metrics.handshakes_with("bad_identity")
            + node.metrics.handshakes_with("bad_certificate")
            >= 1
    );
    w.still_fine().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_beyond_the_quota_are_told_so_and_sockets_beyond_it_refused_without_affecting_held_ones(
) {
    // Two sessions, one socket of headroom for a handshake.
    let node = TestNode::start_with(|s| {
        s.max_connections = 2;
        s.max_concurrent_handshakes = 1;
    })
    .await;
    let mut w = Witness::new(&node).await;
    // A client that gets as far as CONNECT hears why (MQTT 5 0x97 Quota
    // exceeded, 3.1.1 0x03 Server unavailable) and can go to another node.
    for (id, version, code) in [("over-quota-5", 5, 0x97), ("over-quota-4", 4, 0x03)] {
        let mut c = crate::common::Client::open(&node, &node.pki.device(id), version).await;
        assert_eq!(c.connect(id, 30, None).await, code, "{id}");
    }
    assert_eq!(node.metrics.connects_with("quota_exceeded"), 2);
    // A session taking over its own is no new session.
    w.device = node.device("witness", 5).await;
    w.device
        .subscribe(&["devices/witness/commands"], QoS::AtLeastOnce)
        .await;
    // The headroom socket taken by a client that says nothing, one more
    // socket is refused before TLS.
    let _silent = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let creds = node.pki.device("one-too-many");
    assert!(crate::common::refused_at_tls(&node, Some(&creds)).await);
    assert_eq!(node.metrics.handshakes_with("max_connections"), 1);
    w.still_fine().await;
}

/// A RETAIN=1 QoS 1 publish, hand-encoded.
fn retained_qos1(topic: &str, payload: &[u8], pkid: u16) -> bytes::BytesMut {
    let mut out = bytes::BytesMut::new();
    crate::common::peers::encode_qos1_publish(&mut out, 5, topic, payload, pkid);
    out[0] |= 0x01;
    out
}

/// A device may publish on any topic of its own and a retained message lives
/// until it is replaced, so one device could fill the node's memory with
/// them: past `broker.retained_per_device` topics a RETAIN=1 publish is
/// refused (MQTT 5 QoS 1: PUBACK 0x97, Quota exceeded), while replacing and
/// clearing still work, and a refusal no acknowledgement can carry closes
/// the connection (MQTT 5 QoS 0: DISCONNECT 0x97; MQTT 3.1.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_fill_the_node_with_retained_messages() {
    let node = TestNode::start_with(|s| s.retained_per_device = 2).await;
    let mut w = Witness::new(&node).await;
    let mut d = node.device("hoarder", 5).await;
    let send = |topic: &'static str, payload: &'static [u8], pkid: u16| {
        (retained_qos1(topic, payload, pkid), topic, payload)
    };
    let steps = [
        (send("devices/hoarder/a", b"1", 1), 0),
        (send("devices/hoarder/b", b"2", 2), 0),
        (send("devices/hoarder/c", b"3", 3), 0x97),
        (send("devices/hoarder/a", b"4", 4), 0),
        (send("devices/hoarder/b", b"", 5), 0),
        (send("devices/hoarder/c", b"6", 6), 0),
    ];
    for ((bytes, topic, payload), reason) in steps {
        d.raw(&bytes).await;
        assert_eq!(d.puback().await, Some(reason), "{topic} {payload:?}");
    }
    assert_eq!(
        d.publish_qos1("devices/hoarder/d", b"not retained").await,
        Some(0),
        "publishes without RETAIN are not counted"
    );
    d.publish("devices/hoarder/d", b"7", true).await;
    match d.recv().await {
        Some(Packet::Disconnect(x, _)) => assert_eq!(
            x.reason_code,
            rumqttd::protocol::DisconnectReasonCode::QuotaExceeded
        ),
        other => panic!("expected DISCONNECT 0x97, got {other:?}"),
    }
    assert!(d.closed_within(WAIT).await);
    let mut v4 = node.device("hoarder", 4).await;
    v4.publish("devices/hoarder/e", b"8", true).await;
    assert!(
        v4.closed_within(WAIT).await,
        "MQTT 3.1.1 has no reason code: closed"
    );
    assert_eq!(node.metrics.denials_with("publish", "retained_quota"), 3);
    // A retained will on a further topic is refused at CONNECT (each
    // connection could otherwise leave one more behind); one on a topic the
    // device already retains is accepted.
    let will = |topic: &str| rumqttd::protocol::LastWill {
        topic: bytes::Bytes::copy_from_slice(topic.as_bytes()),
        message: bytes::Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: true,
    };
    let creds = node.pki.device("hoarder");
    for (version, topic, code) in [
        (5, "devices/hoarder/f", 0x97),
        (4, "devices/hoarder/f", 5),
        (5, "devices/hoarder/a", 0),
    ] {
        let mut c = Client::open(&node, &creds, version).await;
        let got = c.connect("hoarder", 30, Some(will(topic))).await;
        assert_eq!(got, code, "MQTT {version} will on {topic}");
        if got == 0 {
            // A clean goodbye: the will is not published.
            let normal = rumqttd::protocol::DisconnectReasonCode::NormalDisconnection;
            let bye = rumqttd::protocol::Disconnect {
                reason_code: normal,
            };
            c.send(Packet::Disconnect(bye, None)).await;
            assert!(c.closed_within(WAIT).await);
        }
    }
    assert_eq!(node.metrics.denials_with("will", "retained_quota"), 2);
    // What the node keeps of the device's own: a (replaced) and c (besides
    // the presence the node retains for it).
    let creds = node.pki.service("bridge");
    let mut svc = Client::open(&node, &creds, 5).await;
    assert_eq!(svc.connect("bridge.check", 30, None).await, 0);
    svc.subscribe(&["devices/hoarder/+"], QoS::AtMostOnce).await;
    let mut got = Vec::new();
    while let Some(Packet::Publish(p, _)) = svc.recv_within(Duration::from_millis(500)).await {
        got.push((
            String::from_utf8_lossy(&p.topic).into_owned(),
            p.payload.to_vec(),
        ));
    }
    got.retain(|(t, _)| t != "devices/hoarder/presence");
    got.sort();
    assert_eq!(
        got,
        vec![
            ("devices/hoarder/a".to_string(), b"4".to_vec()),
            ("devices/hoarder/c".to_string(), b"6".to_vec())
        ]
    );
    w.still_fine().await;
}
