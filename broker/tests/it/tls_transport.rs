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
        svc.subscribe(&["devices/+/state"], QoS::AtMostOnce).await,
        vec![0]
    );
    let mut dev = node.device("remo-1", 4).await;
    assert_eq!(
        dev.subscribe(&["devices/remo-1/commands"], QoS::AtMostOnce)
            .await,
        vec![0]
    );
    // 200 KB spans thirteen 16 KiB records. What a device sends must be a
    // document of the device protocol: a state report whose firmware version
    // is a pattern that does not repeat with the records.
    const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let version: String = (0..200_000)
        .map(|i| char::from(ALNUM[i % ALNUM.len()]))
        .collect();
    let up = doc::state(&version);
    dev.publish("devices/remo-1/state", &up, false).await;
    assert_eq!(svc.expect_publish("devices/remo-1/state").await, Some(up));
    let down: Vec<u8> = (0..150_000u32).map(|i| (i % 241) as u8).collect();
    svc.publish("devices/remo-1/commands", &down, false).await;
    assert_eq!(
        dev.expect_publish("devices/remo-1/commands").await,
        Some(down)
    );
}

/// Connects with `config` as `id`: how the TLS handshake went (`None`: it
/// failed) and, when the node then accepted the session, the client.
async fn try_connect(
    node: &TestNode,
    config: &Arc<rustls::ClientConfig>,
    id: &str,
) -> (Option<HandshakeKind>, Option<Client>) {
    let tcp = TcpStream::connect(node.addr).await.unwrap();
    let Ok(tls) = tokio_rustls::TlsConnector::from(config.clone())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
    else {
        return (None, None);
    };
    let kind = tls.get_ref().1.handshake_kind();
    let mut client = Client::from_stream(tls, 4);
    let accepted = client.connect(id, 30, None).await == 0;
    (kind, accepted.then_some(client))
}

/// Reads once, so the TLS 1.3 ticket sent after the handshake reaches the client.
async fn take_ticket(client: Option<Client>) {
    let mut client = client.expect("accepted");
    client.send(Packet::PingReq(PingReq)).await;
    assert!(matches!(client.recv().await, Some(Packet::PingResp(_))));
}

#[tokio::test]
async fn nodes_sharing_a_ticket_secret_resume_each_others_sessions_but_never_a_revoked_one() {
    let pki = Arc::new(Pki::new());
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("session-ticket.key");
    let shared = |secret: std::path::PathBuf| {
        move |s: &mut kumo_broker::Settings| s.session_ticket_key_file = Some(secret)
    };
    let a = TestNode::start_in(pki.clone(), shared(secret.clone())).await;
    let b = TestNode::start_in(pki.clone(), shared(secret.clone())).await;
    let own = TestNode::start_in(pki.clone(), |_| {}).await;
    let creds = pki.device("remo-1");
    let tls13 = &rustls::version::TLS13;
    let config = client_config(&a, &creds, tls13);

    let (kind, first) = try_connect(&a, &config, "remo-1").await;
    assert_eq!(kind, Some(HandshakeKind::Full));
    take_ticket(first).await;
    // A's ticket opens on B: the device moved nodes without a full handshake.
    let (kind, moved) = try_connect(&b, &config, "remo-1").await;
    assert_eq!(kind, Some(HandshakeKind::Resumed));
    take_ticket(moved).await;
    // A node with its own tickets cannot read them: a full handshake.
    let other = client_config(&a, &creds, tls13);
    let (_, fresh) = try_connect(&a, &other, "remo-1").await;
    take_ticket(fresh).await;
    let (kind, on_own) = try_connect(&own, &other, "remo-1").await;
    assert_eq!(kind, Some(HandshakeKind::Full));
    assert!(on_own.is_some());

    // Revoked: once both nodes refuse the certificate in a full handshake,
    // B's ticket (still sealed correctly) resumes TLS on A, and A refuses
    // the session all the same.
    pki.revoke(&creds.serial);
    let probe = client_config(&a, &creds, tls13);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while try_connect(&a, &probe, "remo-1").await.1.is_some()
        || try_connect(&b, &probe, "remo-1").await.1.is_some()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "revocation never loaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (kind, session) = try_connect(&a, &config, "remo-1").await;
    assert_eq!(
        kind,
        Some(HandshakeKind::Resumed),
        "the ticket itself opened"
    );
    assert!(session.is_none(), "a revoked device gets no session");
}

#[tokio::test]
async fn a_ticket_does_not_outlive_the_certificate_it_was_made_for() {
    let node = TestNode::start().await;
    let expires = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let creds = node.pki.device_with(
        "remo-1",
        &kumo_certs::IssueOptions {
            not_after: Some(expires),
            ..Default::default()
        },
    );
    let config = client_config(&node, &creds, &rustls::version::TLS13);
    let (kind, first) = try_connect(&node, &config, "remo-1").await;
    assert_eq!(kind, Some(HandshakeKind::Full));
    take_ticket(first).await;
    // X.509 times have whole seconds: wait until notAfter is surely past.
    let left = expires - time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    tokio::time::sleep(left.try_into().unwrap_or_default()).await;
    let (kind, session) = try_connect(&node, &config, "remo-1").await;
    assert_eq!(
        kind,
        Some(HandshakeKind::Resumed),
        "the ticket itself opened"
    );
    assert!(session.is_none(), "an expired certificate gets no session");
}
