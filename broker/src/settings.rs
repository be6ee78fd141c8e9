//! The `[broker]` section of Kumo's configuration: addresses, certificate paths
//! and the limits that protect a node from its clients.
//!
//! Validation happens before anything binds; every error names its key as
//! `broker.<key>` so an operator can find it in `kumo.toml` or the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of one broker node.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// This node's id, published in presence messages; default `node-1`.
    pub node_id: String,
    /// MQTT over TLS listener; default `0.0.0.0:8883`.
    pub listen: SocketAddr,
    /// HTTP listener for `/metrics` and `/healthz`; default `127.0.0.1:9883`.
    pub http_listen: SocketAddr,
    /// CA certificate(s) (PEM) that client certificates must chain to.
    pub ca: Option<PathBuf>,
    /// Certificate revocation list (PEM); watched for changes.
    pub crl: Option<PathBuf>,
    /// This node's server certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// This node's private key (PEM).
    pub key: Option<PathBuf>,
    /// MQTT sessions held at once; default 19,000. Up to
    /// `max_concurrent_handshakes` more sockets may be handshaking; a CONNECT
    /// past the limit gets CONNACK 0x97 Quota exceeded (MQTT 5) or 0x03
    /// Server unavailable (3.1.1), so the device fails over to another node.
    pub max_connections: usize,
    /// Deadline for a TLS handshake plus MQTT CONNECT, in ms; default 10,000.
    pub handshake_timeout_ms: u64,
    /// TLS handshakes in flight at once; default 256.
    pub max_concurrent_handshakes: usize,
    /// Connections the kernel queues before the node accepts them (capped by
    /// `net.core.somaxconn`); default 4,096.
    pub accept_backlog: u32,
    /// Largest MQTT packet accepted or sent, in bytes; default 256 KiB.
    pub max_packet_size: usize,
    /// Smallest keepalive granted, in s (smaller values are raised: MQTT 5 is
    /// told through Server Keep Alive); default 5.
    pub min_keepalive_secs: u16,
    /// Largest keepalive granted to MQTT 5 clients, in s; their 0 (no keepalive)
    /// is replaced by this. MQTT 3.1.1 cannot be told, so its values are kept
    /// and its 0 means no keepalive (TCP keepalive still finds dead peers); default 1,200.
    pub max_keepalive_secs: u16,
    /// How often the CA and CRL files are checked for changes, in ms; default 500.
    pub crl_poll_interval_ms: u64,
    /// Messages queued towards one client before it is treated as stuck; default 256.
    pub outbound_queue: usize,
    /// Messages held for one service or integration session (connected with
    /// clean_session=0) while it is away or slow; beyond it the oldest are
    /// dropped and counted. Service sessions do not get there in practice:
    /// when what waits for them node-wide (in the router and in their queues)
    /// reaches a quarter of it, device publishes are held unacknowledged until
    /// it is down to an eighth (see `pressure`). Default 100,000.
    pub session_queue: usize,
    /// Longest a disconnected service or integration session is kept, in s: the
    /// MQTT 5 Session Expiry Interval is capped to it, a 3.1.1 CleanSession=0
    /// session gets it; default 3,600.
    pub session_expiry_secs: u64,
    /// While a service session (the bridge) is away with its session kept,
    /// device publishes are held unacknowledged for up to this many seconds
    /// from when it left, so that what the node acknowledges is not left in
    /// its memory alone (a node crash would lose it); 0 = never hold;
    /// default 30.
    pub park_hold_secs: u64,
    /// A device's QoS 1 publish that a service session (the bridge) takes at
    /// QoS 1 is acknowledged only once the service has acknowledged its copy
    /// (the bridge does after committing it). Unconfirmed after this many
    /// seconds, the copy is routed again if it looks lost (a later copy of
    /// its class was confirmed; `kumo_broker_confirm_resends_total`), then
    /// after twice as long, up to 8 times as long; otherwise the cloud is
    /// behind and the deadline just moves on
    /// (`kumo_broker_confirm_deferrals_total`). It is acknowledged
    /// unconfirmed only when, past its deadline, no service session that is
    /// connected or parked within `park_hold_secs` takes its topic
    /// (`kumo_broker_confirm_timeouts_total`). 0 = acknowledge when the
    /// publish enters the node's router, with the window that leaves (a node
    /// crash loses what is acknowledged and not yet with the bridge);
    /// default 30.
    pub confirm_timeout_secs: u64,
    /// Kernel send buffer of a service session's socket (the bridge), in
    /// bytes; 0 = the kernel's autotuning (up to `net.ipv4.tcp_wmem`'s
    /// maximum, 4 MiB here). What waits in it is ahead of the node's answer
    /// to a PINGREQ, and is lost with the connection if it is QoS 0. Smaller,
    /// the backlog stays in the router, where the ingress flow control counts
    /// it and holds device publishes sooner: at 64 KiB a 250,000-device fleet
    /// run held publishes so often that devices were dropped for keepalive
    /// (BENCHMARKS.md, run G), so the default leaves it to the kernel and the
    /// bridge bounds its side (`bridge.mqtt.data_recv_buffer`); default 0.
    pub service_send_buffer: usize,
    /// Threads feeding device publishes into the router; default 2.
    pub ingress_threads: usize,
    /// Bytes of messages (topic and payload, as rumqttd counts them) the
    /// embedded router keeps per subscription filter, in MiB: eight segments
    /// of an eighth each, the oldest dropped when a ninth starts. It must
    /// hold what a service session (the bridge) has not read yet — the
    /// ingress flow control holds devices at a quarter of `session_queue`
    /// messages behind — or a lagging reader's cursor is overrun. What the
    /// node's memory pays is several times the counted bytes (each entry's
    /// publish, properties and bookkeeping), for every filter, once its log
    /// has filled: with 32 a 19,000-device node grew for the whole soak
    /// hour, with 8 it levels off after ~12 minutes, and a 250,000-device
    /// fleet run with 8 lost no reading to an overrun (BENCHMARKS.md, "Soak"
    /// and "Fleet", run 23); 4 is too tight for meter reports; default 8.
    pub router_log_mib: usize,
    /// Topics one device may hold a retained message on, this node's store
    /// counting (`devices/{id}/…`): a device may publish on any topic of its
    /// own, and a retained message lives until replaced, so without a bound
    /// one device could fill the node's memory with them. A RETAIN=1 publish
    /// on a further topic is refused: MQTT 5 QoS 1/2 with reason 0x97 (Quota
    /// exceeded) in its PUBACK/PUBREC, otherwise the connection is closed
    /// (MQTT 5: DISCONNECT 0x97); a CONNECT whose retained will would set a
    /// further one is refused (CONNACK 0x97, 3.1.1: 5). Replacing or clearing
    /// a retained message always works. The contract retains one topic
    /// (`state`); default 32.
    pub retained_per_device: usize,
    /// Refuse a device's message on a device-protocol topic (`sensors…`,
    /// `meter`, `state`, `acks…`) that the protocol does not name or whose
    /// payload is not the topic's document (`docs/device-protocol.md`), before
    /// it is routed or retained: junk never fills the router's logs or the
    /// retained store, and the bridge never sees it. MQTT 5 QoS 1/2 are
    /// answered with reason 0x83 (Implementation specific error: "valid, but
    /// the receiver is not willing to accept it"; 0x99 is only for a Payload
    /// Format Indicator mismatch) or 0x90 (Topic Name
    /// invalid); MQTT 3.1.1 gets its PUBACK and the message is dropped (a
    /// payload that will never be right, as the bridge treats it), or the
    /// connection is closed (a topic that does not exist); a CONNECT whose
    /// will is such a message is refused (CONNACK 0x83/0x90, 3.1.1: 5).
    /// Counted in `kumo_broker_acl_denials_total` as `payload_invalid` and
    /// `topic_invalid`. Turn off only while nodes run ahead of a bridge that
    /// knows a newer protocol; default true.
    pub check_payloads: bool,
    /// TLS sessions remembered for resumption; default 65,536.
    pub tls_session_cache: usize,
    /// A file holding the secret TLS session tickets are sealed with (64 hex
    /// digits; created if missing). Nodes given the same file resume each
    /// other's sessions, so devices moving between nodes skip the full
    /// handshake. `kumo broker` and `kumo up`, when they take the node's
    /// certificates from the PKI directory, use `session-ticket.key` there;
    /// unset = tickets of this node only.
    pub session_ticket_key_file: Option<std::path::PathBuf>,
    /// How long shutdown waits for sessions to say goodbye, in ms; default 3,000.
    pub shutdown_grace_ms: u64,
    /// The other nodes of the cloud (`host:port` of their MQTT listeners). The
    /// node links to each (see `peering`) so its integrations see devices
    /// and reach devices on every node; default none.
    pub peers: Vec<String>,
    /// The service certificate (PEM) this node presents to its peers; its
    /// identity is the client id of the peer links. Required with `peers`
    /// (`kumo broker` and `kumo up` take `peer-{node id}` from the PKI).
    pub peer_cert: Option<PathBuf>,
    /// The peer certificate's private key (PEM).
    pub peer_key: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            node_id: "node-1".into(),
            listen: SocketAddr::from(([0, 0, 0, 0], 8883)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 9883)),
            ca: None,
            crl: None,
            cert: None,
            key: None,
            max_connections: 19_000,
            handshake_timeout_ms: 10_000,
            max_concurrent_handshakes: 256,
            accept_backlog: 4_096,
            max_packet_size: 256 * 1024,
            min_keepalive_secs: 5,
            max_keepalive_secs: 1_200,
            crl_poll_interval_ms: 500,
            outbound_queue: 256,
            session_queue: 100_000,
            session_expiry_secs: 3_600,
            park_hold_secs: 30,
            confirm_timeout_secs: 30,
            service_send_buffer: 0,
            ingress_threads: 2,
            router_log_mib: 8,
            retained_per_device: 32,
            check_payloads: true,
            tls_session_cache: 65_536,
            session_ticket_key_file: None,
            shutdown_grace_ms: 3_000,
            peers: Vec::new(),
            peer_cert: None,
            peer_key: None,
        }
    }
}

impl Settings {
    /// Checks every value; the error names the offending key as `broker.<key>`.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max_connections", self.max_connections as u64),
            ("handshake_timeout_ms", self.handshake_timeout_ms),
            (
                "max_concurrent_handshakes",
                self.max_concurrent_handshakes as u64,
            ),
            ("accept_backlog", self.accept_backlog as u64),
            ("crl_poll_interval_ms", self.crl_poll_interval_ms),
            ("outbound_queue", self.outbound_queue as u64),
            ("session_queue", self.session_queue as u64),
            ("session_expiry_secs", self.session_expiry_secs),
            ("ingress_threads", self.ingress_threads as u64),
            ("router_log_mib", self.router_log_mib as u64),
            ("retained_per_device", self.retained_per_device as u64),
            ("tls_session_cache", self.tls_session_cache as u64),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("broker.{key} must be greater than 0"));
        }
        // The node id names router links, which rumqttd refuses with `/+#$`.
        if self.node_id.trim().is_empty() || self.node_id.contains(['/', '+', '#', '$', '\0']) {
            return Err(format!(
                "broker.node_id {:?} must be non-empty without '/', '+', '#', '$' or NUL",
                self.node_id
            ));
        }
        if !(64..=268_435_455).contains(&self.max_packet_size) {
            return Err(format!(
                "broker.max_packet_size {} must be between 64 and 268435455",
                self.max_packet_size
            ));
        }
        if self.max_keepalive_secs == 0 || self.min_keepalive_secs > self.max_keepalive_secs {
            return Err(format!(
                "broker.max_keepalive_secs {} must be at least 1 and at least broker.min_keepalive_secs {}",
                self.max_keepalive_secs, self.min_keepalive_secs
            ));
        }
        if self.ingress_threads > 64 {
            return Err("broker.ingress_threads must be at most 64".into());
        }
        Ok(())
    }

    pub(crate) fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().expect("defaults validate");
    }

    #[test]
    fn a_zero_limit_is_refused_by_name() {
        let s = Settings {
            max_concurrent_handshakes: 0,
            ..Settings::default()
        };
        let err = s.validate().expect_err("zero must fail");
        assert!(err.contains("broker.max_concurrent_handshakes"), "{err}");
    }

    #[test]
    fn inverted_keepalive_bounds_are_refused() {
        let s = Settings {
            min_keepalive_secs: 100,
            max_keepalive_secs: 10,
            ..Settings::default()
        };
        let err = s.validate().expect_err("must fail");
        assert!(err.contains("broker.max_keepalive_secs"), "{err}");
    }
}
