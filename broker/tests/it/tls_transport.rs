//! The node's TLS record layer (rustls' unbuffered API under the session):
//! TLS 1.2 and 1.3, session resumption for both, and messages far larger than
//! one TLS record in both directions.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use crate::common::*;
use rumqttd::protocol::{Packet, PingReq, QoS};
use rustls::pki_types::ServerName;
use rustls::{HandshakeKind, ProtocolVersion, SupportedProtocolVersion};
use tokio::net::TcpStream;

/// Connects with `config` and completes MQTT CONNECT as `id`; returns the
/// client, the TLS version and how the handshake went.
async fn connect(
    node: &TestNode,
    config: &Arc<rustls::ClientConfig>,
    id: &str,
) -> (Client, ProtocolVersion, HandshakeKind) {
    let tcp = TcpStream::connect(node.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (_, conn) = tls.get_ref();
    let version = conn.protocol_version().unwrap();
    let kind = conn.handshake_kind().unwrap();
    let mut client = Client::from_stream(tls, 4);
    assert_eq!(client.connect(id, 30, None).await, 0, "CONNACK for {id}");
    (client, version, kind)
}

async fn resumes_with(version: &'static SupportedProtocolVersion) {
    let node = TestNode::start().await;
    let creds = node.pki.device("remo-1");
    let config = client_config(&node, &creds, version);
    let (mut first, v, kind) = connect(&node, &config, "remo-1").await;
    assert_eq!(v, version.version);
    assert_eq!(kind, HandshakeKind::Full);
    // TLS 1.3 tickets arrive after the handshake: read once so the client has one.
    first.send(Packet::PingReq(PingReq)).await;
    assert!(matches!(first.recv().await, Some(Packet::PingResp(_))));
    drop(first);
    let (mut second, _, kind) = connect(&node, &config, "remo-1").await;
    assert_eq!(kind, HandshakeKind::Resumed, "{:?}", version.version);
    second.send(Packet::PingReq(PingReq)).await;
    assert!(matches!(second.recv().await, Some(Packet::PingResp(_))));
}

#[tokio::test]
async fn a_tls13_device_resumes_its_session() {
    resumes_with(&rustls::version::TLS13).await;
}

#[tokio::test]
async fn a_tls12_device_connects_and_resumes_its_session() {
    resumes_with(&rustls::version::TLS12).await;
}

#[tokio::test]
async fn messages_larger_than_a_tls_record_cross_the_node_intact_both_ways() {
    let node = TestNode::start().await;
    let mut svc = node.service(4).await;
    assert_eq!(
        svc.subscribe(&["devices/+/sensors/+"], QoS::AtMostOnce)
            .await,
        vec![0]
    );
    let mut dev = node.device("remo-1", 4).await;
    assert_eq!(
        dev.subscribe(&["devices/remo-1/commands"], QoS::AtMostOnce)
            .await,
        vec![0]
    );
    // 200 KB spans thirteen 16 KiB records.
    let up: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    dev.publish("devices/remo-1/sensors/te", &up, false).await;
    assert_eq!(
        svc.expect_publish("devices/remo-1/sensors/te").await,
        Some(up)
    );
    let down: Vec<u8> = (0..150_000u32).map(|i| (i % 241) as u8).collect();
    svc.publish("devices/remo-1/commands", &down, false).await;
    assert_eq!(
        dev.expect_publish("devices/remo-1/commands").await,
        Some(down)
    );
}
