//! The CONNECT exchange: reads the first packet within the handshake deadline,
//! checks the client id against the certificate and the last will against the
//! ACL and the device protocol, negotiates keepalive and limits, and answers with CONNACK.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use kumo_contract::payload::from_device;
use kumo_contract::Identity;
use rumqttd::protocol::{ConnAck, ConnAckProperties, Connect, ConnectReturnCode, Packet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::subscriptions::Subscriptions;
use super::will::Will;
use super::{Node, Session};
use crate::acl;
use crate::codec::{self, CodecError, Version};
use crate::mailbox;
use crate::registry::SessionHandle;

/// Reads and answers the CONNECT; `None` when the client was refused or vanished.
/// The session comes boxed: it lives as long as the connection, outside the
/// connection's future.
pub(super) async fn accept<S>(
    stream: &mut S,
    inbuf: &mut BytesMut,
    identity: Identity,
    serial: String,
    node: Arc<Node>,
    deadline: Instant,
) -> Option<Box<Session>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let max = node.settings.max_packet_size;
    let read = tokio::time::timeout_at(deadline, read_connect(stream, inbuf, max)).await;
    let (version, packet) = match read {
        Err(_) => return refuse_quietly(&node, "connect_timeout"),
        Ok(Err(ReadError::Eof)) => return refuse_quietly(&node, "eof"),
        Ok(Err(ReadError::Codec(CodecError::UnsupportedLevel(level)))) => {
            // 3.1.1 §3.2.2.3: answer an unknown level with return code 1, then close.
            let _ = stream.write_all(&[0x20, 0x02, 0x00, 0x01]).await;
            let _ = stream.shutdown().await;
            tracing::info!(level, client = %identity, "unsupported MQTT protocol level");
            return refuse_quietly(&node, "unsupported_protocol");
        }
        Ok(Err(ReadError::Codec(e))) => {
            tracing::info!(error = %e, client = %identity, "bad first packet");
            return refuse_quietly(&node, "malformed_connect");
        }
        Ok(Ok(v)) => v,
    };
    let Packet::Connect(connect, props, will, will_props, _login) = packet else {
        return refuse_quietly(&node, "malformed_connect");
    };
    // MQTT-3.1.3-8: a 3.1.1 client with an empty id must ask for a clean
    // session; a persistent session needs an id the client knows (0x02).
    if connect.client_id.is_empty() && !connect.clean_session && version == Version::V4 {
        return refuse(
            stream,
            version,
            &node,
            ConnectReturnCode::ClientIdentifierNotValid,
            "empty_client_id_persistent",
        )
        .await;
    }
    // The node's session quota (a takeover of the client's own session
    // does not add one). Sockets are allowed a little past it so this is a
    // CONNACK, not a dropped connection.
    let open = node
        .metrics
        .sessions_open
        .load(std::sync::atomic::Ordering::Relaxed);
    if open >= node.settings.max_connections as u64 && !node.registry.contains(identity.client_id())
    {
        tracing::info!(client = %identity, open, "session quota reached");
        return refuse(
            stream,
            version,
            &node,
            ConnectReturnCode::QuotaExceeded,
            "quota_exceeded",
        )
        .await;
    }
    let client_id = if connect.client_id.is_empty() {
        identity.client_id().to_string()
    } else {
        connect.client_id.clone()
    };
    if !client_id_allowed(&identity, &client_id) {
        tracing::warn!(client = %identity, claimed = %connect.client_id, "client id does not match the certificate");
        return refuse(
            stream,
            version,
            &node,
            ConnectReturnCode::ClientIdentifierNotValid,
            "client_id_mismatch",
        )
        .await;
    }
    if let Some(w) = &will {
        let topic = std::str::from_utf8(&w.topic).unwrap_or("\0");
        if let Err(d) = acl::may_publish(&identity, topic, node.accounts.as_ref()) {
            node.metrics.acl_denied("will", d.as_str());
            tracing::warn!(client = %identity, topic, reason = d.as_str(), "last will refused");
            return refuse(
                stream,
                version,
                &node,
                ConnectReturnCode::NotAuthorized,
                "will_not_authorized",
            )
            .await;
        }
        if let Err(refusal) = node.judge(&identity, topic, &w.message) {
            let code = match refusal {
                from_device::Refusal::Topic => ConnectReturnCode::TopicNameInvalid,
                from_device::Refusal::Payload(_) => ConnectReturnCode::ImplementationSpecificError,
            };
            node.metrics.acl_denied("will", refusal.as_str());
            tracing::warn!(client = %identity, topic, error = %refusal,
                "last will refused by the device protocol");
            return refuse(stream, version, &node, code, "will_invalid").await;
        }
        // A retained will counts against the device's retained topics like a
        // retained publish (see `broker.retained_per_device`): else every
        // connection could leave one more behind.
        if w.retain && !w.message.is_empty() && !node.admits_retained(&identity, topic) {
            node.metrics.acl_denied("will", "retained_quota");
            tracing::warn!(client = %identity, topic, quota = node.settings.retained_per_device,
                "last will refused: the device's retained topics are at their quota");
            // 3.1.1 has no quota code; "not authorized" is what it is.
            let code = match version {
                Version::V4 => ConnectReturnCode::NotAuthorized,
                Version::V5 => ConnectReturnCode::QuotaExceeded,
            };
            return refuse(stream, version, &node, code, "will_over_quota").await;
        }
    }
    let (keepalive, server_keep_alive) = negotiate_keepalive(&connect, version, &node);
    let props = props.unwrap_or_else(codec::no_connect_properties);
    if props.authentication_method.is_some() {
        return refuse(
            stream,
            version,
            &node,
            ConnectReturnCode::BadAuthenticationMethod,
            "enhanced_auth",
        )
        .await;
    }
    let asked_expiry = match version {
        // 3.1.1: CleanSession=0 keeps the session as long as the node allows.
        Version::V4 if connect.clean_session => 0,
        Version::V4 => u32::MAX,
        Version::V5 => props.session_expiry_interval.unwrap_or(0),
    };
    let session_expiry = grant_session_expiry(&identity, asked_expiry, &node);
    let receive_max_in = receive_max_in(&identity);
    let connack_props = (version == Version::V5).then(|| ConnAckProperties {
        // Announced when it differs from what the client asked (§3.2.2.3.2).
        session_expiry_interval: (session_expiry != asked_expiry).then_some(session_expiry),
        receive_max: Some(receive_max_in),
        max_packet_size: Some(max as u32),
        // QoS 2 PUBLISHes are accepted (exactly once); subscriptions are
        // granted at most QoS 1 in SUBACK (§3.9.3), so no Maximum QoS is announced.
        max_qos: None,
        retain_available: Some(1),
        topic_alias_max: None,
        wildcard_subscription_available: Some(1),
        shared_subscription_available: Some(matches!(identity, Identity::Service { .. }) as u8),
        subscription_identifiers_available: Some(0),
        server_keep_alive,
        assigned_client_identifier: connect.client_id.is_empty().then(|| client_id.clone()),
        ..ConnAckProperties::default()
    });
    // Only service and integration sessions persist (see `persist`); a parked
    // session, or a live one about to be taken over and parked, is resumed.
    let session_present = !connect.clean_session
        && !matches!(identity, Identity::Device { .. })
        && (node.parking.contains(&client_id) || node.registry.persistent(&client_id));
    let mut out = BytesMut::with_capacity(64);
    let ack = Packet::ConnAck(
        ConnAck {
            session_present,
            code: ConnectReturnCode::Success,
        },
        connack_props,
    );
    if codec::write(version, ack, &mut out).is_err() || stream.write_all(&out).await.is_err() {
        return refuse_quietly(&node, "eof");
    }
    out.clear();
    node.metrics.connect("accepted");
    tracing::info!(client_id = %client_id, role = identity.role(), version = ?version, session_expiry, "session connected");
    let conn_id = node.registry.next_conn_id();
    let receive_max = receive_window(&identity, props.receive_maximum);
    let peer_link = matches!(identity, Identity::Service { .. })
        && props.user_properties.iter().any(|(k, v)| {
            let (name, value) = crate::peering::PEER_LINK_PROPERTY;
            k == name && v == value
        });
    // The real queue is created by `serve`; this placeholder is replaced at once.
    let (tx, _) = mailbox::channel(0);
    Some(Box::new(Session {
        handle: SessionHandle::new(conn_id, serial, session_expiry > 0, tx),
        node,
        identity,
        client_id,
        version,
        will: will.map(|w| Will::from_connect(w, will_props)),
        filters: Subscriptions::default(),
        link: None,
        pending_subacks: HashMap::new(),
        qos2_in: HashSet::new(),
        inflight: HashMap::new(),
        clean_session: connect.clean_session,
        session_expiry,
        asked_expiry,
        next_pkid: 0,
        receive_max,
        receive_max_in: receive_max_in.into(),
        backlog: VecDeque::new(),
        client_max_packet: props.max_packet_size.map_or(usize::MAX, |m| m as usize),
        keepalive,
        out,
        held: None,
        waiter: None,
        gauge: None,
        interest: None,
        peer_link,
    }))
}

/// How long the session outlives its connection, in s: what the client asked
/// for, capped by `broker.session_expiry_secs`. Devices never keep a session
/// (their commands are kept durably by the bridge, see `persist`).
pub(super) fn grant_session_expiry(identity: &Identity, asked: u32, node: &Node) -> u32 {
    if matches!(identity, Identity::Device { .. }) {
        return 0;
    }
    let max = u32::try_from(node.settings.session_expiry_secs).unwrap_or(u32::MAX);
    asked.min(max)
}

/// Unacknowledged QoS 1 and 2 PUBLISHes the node accepts from a client at once
/// (MQTT 5 Receive Maximum). A device's publishes may wait for the cloud (see
/// `pressure`) and the session stops reading at [`super::HELD_MAX`], so that
/// is its window; other sessions' QoS 1 publishes are answered at once and
/// only QoS 2 exchanges stay open.
fn receive_max_in(identity: &Identity) -> u16 {
    match identity {
        Identity::Device { .. } => super::HELD_MAX as u16,
        _ => 1_024,
    }
}

/// QoS 1 messages a client may leave unacknowledged. Devices get few; a
/// service such as the bridge acknowledges only after storing a batch, so it
/// needs a window of several batches (the bridge writes 5,000 readings per
/// insert: with less than one batch in flight every batch waits for its
/// flush timer instead of filling).
fn receive_window(identity: &Identity, asked: Option<u16>) -> usize {
    let max = match identity {
        Identity::Device { .. } => 32,
        _ => 16_384,
    };
    asked.map_or(max, |r| (r as usize).clamp(1, max))
}

/// The idle window (1.5 × keepalive; `None`: no keepalive) and, for MQTT 5,
/// the Server Keep Alive to announce.
///
/// MQTT 3.1.1 cannot tell the client another value, so its keepalive 0 means
/// what §3.1.2.10 says — no keepalive: the connection lives until it closes
/// (the node still notices a dead peer through TCP keepalive). Tiny values are
/// only raised, which makes the node more patient, never less. MQTT 5 clients
/// are told the granted value, including for 0.
fn negotiate_keepalive(
    connect: &Connect,
    version: Version,
    node: &Node,
) -> (Option<Duration>, Option<u16>) {
    let s = &node.settings;
    let asked = connect.keep_alive;
    let granted = match (version, asked) {
        (Version::V4, 0) => return (None, None),
        (Version::V4, k) => k.max(s.min_keepalive_secs),
        (Version::V5, 0) => s.max_keepalive_secs,
        (Version::V5, k) => k.clamp(s.min_keepalive_secs, s.max_keepalive_secs),
    };
    let announce = (version == Version::V5 && granted != asked).then_some(granted);
    (Some(Duration::from_millis(granted as u64 * 1500)), announce)
}

enum ReadError {
    Eof,
    Codec(CodecError),
}

async fn read_connect<S: AsyncRead + Unpin>(
    stream: &mut S,
    inbuf: &mut BytesMut,
    max: usize,
) -> Result<(Version, Packet), ReadError> {
    loop {
        if let Some(version) = codec::peek_version(inbuf, max).map_err(ReadError::Codec)? {
            let frame = codec::read(version, inbuf, max).map_err(ReadError::Codec)?;
            return match frame {
                Some(f) => Ok((version, f.packet)),
                None => Err(ReadError::Eof),
            };
        }
        match stream.read_buf(inbuf).await {
            Ok(0) | Err(_) => return Err(ReadError::Eof),
            Ok(_) => {}
        }
    }
}

fn refuse_quietly(node: &Node, outcome: &str) -> Option<Box<Session>> {
    node.metrics.connect(outcome);
    None
}

async fn refuse<S: AsyncWrite + Unpin>(
    stream: &mut S,
    version: Version,
    node: &Node,
    code: ConnectReturnCode,
    outcome: &str,
) -> Option<Box<Session>> {
    // 3.1.1 only knows return codes 1–5.
    let code = match (version, code) {
        (
            Version::V4,
            ConnectReturnCode::BadAuthenticationMethod
            | ConnectReturnCode::TopicNameInvalid
            | ConnectReturnCode::ImplementationSpecificError,
        ) => ConnectReturnCode::NotAuthorized,
        (Version::V4, ConnectReturnCode::QuotaExceeded | ConnectReturnCode::ServerBusy) => {
            ConnectReturnCode::ServiceUnavailable
        }
        (_, c) => c,
    };
    let mut out = BytesMut::with_capacity(8);
    let ack = Packet::ConnAck(
        ConnAck {
            session_present: false,
            code,
        },
        None,
    );
    if codec::write(version, ack, &mut out).is_ok() {
        let _ = stream.write_all(&out).await;
        let _ = stream.shutdown().await;
    }
    refuse_quietly(node, outcome)
}

/// A client's id must be its certificate's name. A service may also open
/// lanes, `{name}.{lane}` (lane: 1–16 of `a-z0-9-`), each its own session: the
/// bridge takes bulk readings on one and commands, acks and presence on
/// another, so a backlog of readings never delays a command.
pub(crate) fn client_id_allowed(identity: &Identity, client_id: &str) -> bool {
    let name = identity.client_id();
    if client_id == name {
        return true;
    }
    let Identity::Service { .. } = identity else {
        return false;
    };
    client_id
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|lane| {
            (1..=16).contains(&lane.len())
                && lane
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

#[cfg(test)]
mod lane_tests {
    use super::*;

    #[test]
    fn only_services_open_lanes_and_only_under_their_own_name() {
        let bridge = Identity::Service {
            name: "bridge".into(),
        };
        assert!(client_id_allowed(&bridge, "bridge"));
        assert!(client_id_allowed(&bridge, "bridge.data"));
        assert!(!client_id_allowed(&bridge, "bridge."));
        assert!(!client_id_allowed(&bridge, "bridge.Data"));
        assert!(!client_id_allowed(&bridge, "bridge.a.b"));
        assert!(!client_id_allowed(&bridge, "bridge.seventeen-chars-x"));
        assert!(!client_id_allowed(&bridge, "bridgex.data"));
        assert!(!client_id_allowed(&bridge, "other.data"));
        let device = Identity::Device {
            id: kumo_contract::DeviceId::parse("remo-1").expect("valid"),
        };
        assert!(client_id_allowed(&device, "remo-1"));
        assert!(!client_id_allowed(&device, "remo-1.data"));
    }
}
