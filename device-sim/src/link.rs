//! One MQTT connection attempt, over MQTT 3.1.1 or 5, behind one small interface.
//!
//! Wraps rumqttc's two client/event-loop pairs so the device runtime is written
//! once. A `Link` is used for a single connection: on any error it is dropped and
//! the runtime builds a new one after its own backoff (rumqttc's built-in
//! reconnect is never used). Dropping a `Link` closes the socket without an MQTT
//! DISCONNECT — exactly what an abrupt kill needs.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5 as mqtt5;
use rustls::ClientConfig;

use crate::settings::Protocol;
use crate::stats::FailureReason;

/// Requests buffered between the device task and its event loop.
const REQUEST_CAPACITY: usize = 16;
/// QoS 1 publishes in flight per device; devices publish little, and every slot
/// costs memory in rumqttc's state.
const INFLIGHT: u16 = 8;

/// Everything needed to open one connection.
pub struct LinkOptions<'a> {
    pub protocol: Protocol,
    pub client_id: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub tls: Arc<ClientConfig>,
    pub keep_alive: Duration,
    pub connect_timeout: Duration,
    /// Last will: topic and payload (QoS 1, not retained).
    pub will: (String, Vec<u8>),
}

/// What the event loop produced.
#[derive(Debug)]
pub enum LinkEvent {
    /// CONNACK accepted (refusals surface as errors).
    Connected,
    /// SUBACK; `false` if any filter was refused.
    Subscribed(bool),
    /// An incoming PUBLISH.
    Message {
        topic: String,
        payload: Vec<u8>,
        /// MQTT 5 response topic and correlation data, when the sender set them.
        response: Option<Response>,
    },
    /// Anything else (acks, pings).
    Other,
}

/// Where an MQTT 5 requester wants its answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub topic: String,
    pub correlation: Option<Vec<u8>>,
}

/// A connection attempt failed or a live connection broke.
#[derive(Debug)]
pub struct LinkError {
    pub reason: FailureReason,
    pub detail: String,
}

/// One connection, MQTT 3.1.1 or 5.
// One per device and never moved in bulk; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Link {
    V4 {
        client: rumqttc::AsyncClient,
        events: rumqttc::EventLoop,
    },
    V5 {
        client: rumqttc::v5::AsyncClient,
        events: rumqttc::v5::EventLoop,
    },
}

impl Link {
    /// Prepares a connection; nothing touches the network until [`Link::poll`].
    pub fn new(o: LinkOptions<'_>) -> Link {
        let transport =
            rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(o.tls));
        let timeout_secs = o.connect_timeout.as_secs().max(1);
        match o.protocol {
            Protocol::V4 => {
                let mut opts = rumqttc::MqttOptions::new(o.client_id, o.host, o.port);
                opts.set_transport(transport)
                    .set_keep_alive(o.keep_alive)
                    .set_clean_session(true)
                    .set_inflight(INFLIGHT)
                    .set_last_will(rumqttc::LastWill::new(
                        o.will.0,
                        o.will.1,
                        rumqttc::QoS::AtLeastOnce,
                        false,
                    ));
                let (client, mut events) = rumqttc::AsyncClient::new(opts, REQUEST_CAPACITY);
                let mut net = rumqttc::NetworkOptions::new();
                net.set_connection_timeout(timeout_secs);
                // A device answers a command with several small writes; without
                // NODELAY the later ones wait ~40 ms for the peer's delayed ACK.
                net.set_tcp_nodelay(true);
                events.set_network_options(net);
                Link::V4 { client, events }
            }
            Protocol::V5 => {
                let mut opts = rumqttc::v5::MqttOptions::new(o.client_id, o.host, o.port);
                opts.set_transport(transport)
                    .set_keep_alive(o.keep_alive)
                    .set_clean_start(true)
                    .set_connection_timeout(timeout_secs)
                    .set_outgoing_inflight_upper_limit(INFLIGHT)
                    .set_network_options(nodelay(timeout_secs))
                    .set_last_will(mqtt5::LastWill::new(
                        o.will.0,
                        o.will.1,
                        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                        false,
                        None,
                    ));
                let (client, events) = rumqttc::v5::AsyncClient::new(opts, REQUEST_CAPACITY);
                Link::V5 { client, events }
            }
        }
    }

    /// Drives the connection; the first call connects.
    pub async fn poll(&mut self) -> Result<LinkEvent, LinkError> {
        match self {
            Link::V4 { events, .. } => match events.poll().await {
                Ok(rumqttc::Event::Incoming(p)) => Ok(v4_event(p)),
                Ok(rumqttc::Event::Outgoing(_)) => Ok(LinkEvent::Other),
                Err(e) => Err(v4_error(e)),
            },
            Link::V5 { events, .. } => match events.poll().await {
                Ok(rumqttc::v5::Event::Incoming(p)) => Ok(v5_event(p)),
                Ok(rumqttc::v5::Event::Outgoing(_)) => Ok(LinkEvent::Other),
                Err(e) => Err(v5_error(e)),
            },
        }
    }

    /// Queues a publish; `false` if the request buffer is full (the caller counts a drop).
    pub fn publish(&self, topic: String, qos1: bool, retain: bool, payload: Vec<u8>) -> bool {
        match self {
            Link::V4 { client, .. } => client
                .try_publish(
                    topic,
                    if qos1 {
                        rumqttc::QoS::AtLeastOnce
                    } else {
                        rumqttc::QoS::AtMostOnce
                    },
                    retain,
                    payload,
                )
                .is_ok(),
            Link::V5 { client, .. } => client
                .try_publish(
                    topic,
                    if qos1 {
                        rumqttc::v5::mqttbytes::QoS::AtLeastOnce
                    } else {
                        rumqttc::v5::mqttbytes::QoS::AtMostOnce
                    },
                    retain,
                    payload,
                )
                .is_ok(),
        }
    }

    /// Queues an MQTT 5 response (QoS 1) carrying the requester's correlation data;
    /// on MQTT 3.1.1 a plain publish to `response.topic`.
    pub fn respond(&self, response: &Response, payload: Vec<u8>) -> bool {
        match self {
            Link::V4 { .. } => self.publish(response.topic.clone(), true, false, payload),
            Link::V5 { client, .. } => {
                let props = mqtt5::PublishProperties {
                    correlation_data: response.correlation.clone().map(Into::into),
                    ..Default::default()
                };
                client
                    .try_publish_with_properties(
                        response.topic.clone(),
                        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                        false,
                        payload,
                        props,
                    )
                    .is_ok()
            }
        }
    }

    /// Queues a QoS 1 subscription.
    pub fn subscribe(&self, filter: String) -> bool {
        match self {
            Link::V4 { client, .. } => client
                .try_subscribe(filter, rumqttc::QoS::AtLeastOnce)
                .is_ok(),
            Link::V5 { client, .. } => client
                .try_subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                .is_ok(),
        }
    }

    /// Queues a clean DISCONNECT; keep polling until it errors to flush it.
    pub fn disconnect(&self) -> bool {
        match self {
            Link::V4 { client, .. } => client.try_disconnect().is_ok(),
            Link::V5 { client, .. } => client.try_disconnect().is_ok(),
        }
    }
}

fn v4_event(p: rumqttc::Packet) -> LinkEvent {
    match p {
        rumqttc::Packet::ConnAck(_) => LinkEvent::Connected,
        rumqttc::Packet::SubAck(ack) => LinkEvent::Subscribed(
            ack.return_codes
                .iter()
                .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_))),
        ),
        rumqttc::Packet::Publish(p) => LinkEvent::Message {
            topic: p.topic,
            payload: p.payload.to_vec(),
            response: None,
        },
        _ => LinkEvent::Other,
    }
}

fn v5_event(p: mqtt5::Packet) -> LinkEvent {
    match p {
        mqtt5::Packet::ConnAck(_) => LinkEvent::Connected,
        mqtt5::Packet::SubAck(ack) => LinkEvent::Subscribed(
            ack.return_codes
                .iter()
                .all(|c| matches!(c, mqtt5::SubscribeReasonCode::Success(_))),
        ),
        mqtt5::Packet::Publish(p) => {
            let response = p.properties.and_then(|props| {
                props.response_topic.map(|topic| Response {
                    topic,
                    correlation: props.correlation_data.map(|c| c.to_vec()),
                })
            });
            LinkEvent::Message {
                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                payload: p.payload.to_vec(),
                response,
            }
        }
        _ => LinkEvent::Other,
    }
}

fn io_reason(e: &std::io::Error) -> FailureReason {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => FailureReason::Refused,
        TimedOut => FailureReason::Timeout,
        InvalidData => FailureReason::Tls,
        _ => FailureReason::Io,
    }
}

fn v4_error(e: rumqttc::ConnectionError) -> LinkError {
    use rumqttc::ConnectionError as E;
    let reason = match &e {
        E::Io(io) => io_reason(io),
        E::Tls(_) => FailureReason::Tls,
        E::NetworkTimeout | E::FlushTimeout => FailureReason::Timeout,
        E::ConnectionRefused(_) => FailureReason::MqttRefused,
        _ => FailureReason::Protocol,
    };
    LinkError {
        reason,
        detail: e.to_string(),
    }
}

fn v5_error(e: rumqttc::v5::ConnectionError) -> LinkError {
    use rumqttc::v5::ConnectionError as E;
    let reason = match &e {
        E::Io(io) => io_reason(io),
        E::Tls(_) => FailureReason::Tls,
        E::Timeout(_) => FailureReason::Timeout,
        E::ConnectionRefused(_) => FailureReason::MqttRefused,
        _ => FailureReason::Protocol,
    };
    LinkError {
        reason,
        detail: e.to_string(),
    }
}

/// TCP options for MQTT 5 links: the connect timeout and NODELAY (see the v3 branch).
fn nodelay(timeout_secs: u64) -> rumqttc::NetworkOptions {
    let mut net = rumqttc::NetworkOptions::new();
    net.set_connection_timeout(timeout_secs);
    net.set_tcp_nodelay(true);
    net
}
