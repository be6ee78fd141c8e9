//! MQTT 3.1.1 and 5 conformance, one test per normative statement, named
//! after it (`mqtt_3_3_1_12_…` for 3.1.1's numbered statements, `v5_3_3_2_3_3_…`
//! for MQTT 5 sections). Every check runs twice from the same code: against a
//! Kumo node (`conformance::kumo::…`) and against Mosquitto 2 with the same
//! certificates (`conformance::mosquitto::…`), over mutual TLS, with a raw
//! client ([`raw`]) that encodes and decodes every packet itself.
//!
//! Clients use service certificates (fleet-wide topic rights on Kumo) and
//! topics under `conf/`, so Kumo's authorization stays out of the way. Where
//! Kumo deliberately differs — only in identity and authorization — the check
//! runs on Kumo alone (`kumo_only!`, tests under `kumo_only`) and asserts
//! Kumo's behaviour; `docs/mqtt-conformance.md` has the longer story.
//!
//! | Deviation (Kumo) | Kumo does | The standard / Mosquitto | Why | Test |
//! |---|---|---|---|---|
//! | Client identifier | must equal the certificate's identity, else CONNACK 0x02 (3.1.1) / 0x85 (5); an empty one gets the certificate's | any identifier | the certificate is the identity; one device cannot take over another's session | `connect::kumo_only::kumo_the_client_id_must_be_the_certificates_identity` |
//! | Device sessions | never kept: 3.1.1 CleanSession=0 gets Session Present 0; MQTT 5 is told Session Expiry Interval 0 in CONNACK | kept | 200,000 parked device sessions would cost memory for nothing: the bridge keeps commands durably and re-sends them | `connect::kumo_only::kumo_a_device_never_keeps_a_session` |
//! | Device topics | a device subscribes only to its own device-bound topics (so the QoS/retain/property rules are checked on that path separately); no client uses `$` topics | any topic | a device must never read or write another device's data | `publish::kumo_only::kumo_a_device_gets_its_commands_by_the_same_qos_and_retain_rules` |
//!
//! Where Mosquitto 2.0.11 (Debian 12's) is the one that departs from the
//! standard, the check runs on Kumo alone (`mosquitto_deviates!`, tests under
//! `kumo_not_mosquitto`), with what Mosquitto does in a comment beside it:
//!
//! | Check | What Mosquitto 2.0.11 does |
//! |---|---|
//! | `retain::…::v5_4_8_2_a_shared_subscription_gets_no_retained_messages` | sends the retained message to a new shared subscription |
//! | `keepalive::…::mqtt_3_1_2_24_a_client_silent_for_one_and_a_half_keepalives_is_disconnected` | closes a silent keepalive-2 client after 5–6 s, not 3 |
//! | `flow::…::v5_4_9_more_unanswered_publishes_than_the_servers_receive_maximum_get_disconnect_0x93` | announces Receive Maximum 20, keeps taking unanswered QoS 2 publishes past it |
//! | `flow::…::v5_3_2_2_3_6_a_packet_over_the_servers_maximum_packet_size_gets_disconnect_0x95` | counts 1 + Remaining Length: takes a packet up to 3 bytes over its announced maximum |
//! | `subscribe::…::v5_3_8_3_1_no_local_on_a_shared_subscription_is_a_protocol_error` | grants it (SUBACK 0x01) |

#![allow(clippy::unwrap_used)]

mod connect;
mod expiry;
mod flow;
mod keepalive;
mod publish;
mod raw;
mod retain;
mod subscribe;
mod topics;
mod will;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use kumo_broker::Settings;

use crate::common::{tls_connect, Pki, TestNode};
use raw::{Packet, Props, Raw};

/// The server under test.
pub enum Target {
    Kumo(TestNode),
    Mosquitto(Mosquitto),
}

/// A Mosquitto 2 process with the test PKI; killed on drop.
pub struct Mosquitto {
    child: Child,
    pki: Arc<Pki>,
    addr: std::net::SocketAddr,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Target {
    pub async fn kumo(tweak: impl FnOnce(&mut Settings)) -> Target {
        Target::Kumo(TestNode::start_with(tweak).await)
    }

    /// Mosquitto on a free port: mutual TLS with the node certificate, the
    /// certificate's CN as the username, no ACL, no persistence, and the
    /// same maximum keepalive and packet size as the Kumo checks use.
    pub async fn mosquitto() -> Target {
        let pki = Arc::new(Pki::new());
        let node = pki.node();
        let port = crate::common::free_port();
        let conf = pki.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
                 require_certificate true\nuse_identity_as_username true\n\
                 allow_anonymous false\npersistence false\nmax_keepalive {MAX_KEEPALIVE}\n\
                 max_packet_size {MAX_PACKET_SIZE}\n",
                pki.ca_path.display(),
                node.cert.display(),
                node.key.display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (Debian package `mosquitto`) must be installed");
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Target::Mosquitto(Mosquitto { child, pki, addr })
    }

    fn pki(&self) -> &Pki {
        match self {
            Target::Kumo(n) => &n.pki,
            Target::Mosquitto(m) => &m.pki,
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        match self {
            Target::Kumo(n) => n.addr,
            Target::Mosquitto(m) => m.addr,
        }
    }

    /// A TLS connection with a service certificate named `name`; no CONNECT yet.
    pub async fn open(&self, name: &str, v: u8) -> Raw {
        let creds = self.pki().service(name);
        let stream = tls_connect(self.addr(), &self.pki().ca_path, Some(&creds))
            .await
            .unwrap();
        Raw::new(stream, v)
    }

    /// A TLS connection with a device certificate for `id`.
    pub async fn open_device(&self, id: &str, v: u8) -> Raw {
        let creds = self.pki().device(id);
        let stream = tls_connect(self.addr(), &self.pki().ca_path, Some(&creds))
            .await
            .unwrap();
        Raw::new(stream, v)
    }

    /// A connected client `name` (clean session/start, keepalive 60).
    pub async fn client(&self, name: &str, v: u8) -> Raw {
        let mut c = self.open(name, v).await;
        let ack = c.connect(name, true, 60, &Props::default(), None).await;
        assert_eq!(code(&ack), 0, "CONNACK for {name}: {ack:?}");
        c
    }

    /// Connects again after a session was left (clean flag as given, MQTT 5
    /// properties as given); returns the client and its CONNACK.
    pub async fn reconnect(&self, name: &str, v: u8, clean: bool, props: &Props) -> (Raw, Packet) {
        let mut c = self.open(name, v).await;
        let ack = c.connect(name, clean, 60, props, None).await;
        (c, ack)
    }
}

/// The keepalive ceiling both servers are configured with in these checks.
pub const MAX_KEEPALIVE: u16 = 60;

/// The largest packet both servers accept (and announce to MQTT 5 clients).
pub const MAX_PACKET_SIZE: usize = 256 * 1024;

/// CONNACK's return/reason code (255 for anything else).
pub fn code(p: &Packet) -> u8 {
    match p {
        Packet::ConnAck { code, .. } => *code,
        _ => 255,
    }
}

pub fn session_present(p: &Packet) -> bool {
    matches!(
        p,
        Packet::ConnAck {
            session_present: true,
            ..
        }
    )
}

pub fn connack_props(p: &Packet) -> Props {
    match p {
        Packet::ConnAck { props, .. } => props.clone(),
        _ => Props::default(),
    }
}

/// Kumo settings the checks share: the limits Mosquitto gets too.
pub fn shared_settings(s: &mut Settings) {
    s.max_keepalive_secs = MAX_KEEPALIVE;
    s.max_packet_size = MAX_PACKET_SIZE;
}

/// Kumo tests in module `$module`, one per check, Kumo settings tweaked by
/// the optional closure after the shared ones.
macro_rules! kumo_tests {
    ($module:ident { $($name:ident => $check:ident $(, kumo: $tweak:expr)?;)* }) => {
        pub mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let t = crate::conformance::Target::kumo(|s: &mut kumo_broker::Settings| {
                        crate::conformance::shared_settings(s);
                        $( ($tweak)(s); )?
                    })
                    .await;
                    super::$check(&t).await;
                }
            )*
        }
    };
}
pub(crate) use kumo_tests;

/// One check against both servers: `<area>::kumo::$name` and
/// `<area>::mosquitto::$name`.
macro_rules! conformance {
    ($($name:ident => $check:ident $(, kumo: $tweak:expr)?;)*) => {
        crate::conformance::kumo_tests!(kumo { $($name => $check $(, kumo: $tweak)?;)* });
        pub mod mosquitto {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let t = crate::conformance::Target::mosquitto().await;
                    super::$check(&t).await;
                }
            )*
        }
    };
}
pub(crate) use conformance;

/// A check of a deliberate Kumo difference: runs on Kumo only (`kumo_only`).
macro_rules! kumo_only {
    ($($name:ident => $check:ident;)*) => {
        crate::conformance::kumo_tests!(kumo_only { $($name => $check;)* });
    };
}
pub(crate) use kumo_only;

/// A check Mosquitto 2.0.11 fails because it departs from the standard (each
/// use says how): runs on Kumo only (`kumo_not_mosquitto`).
macro_rules! mosquitto_deviates {
    ($($name:ident => $check:ident $(, kumo: $tweak:expr)?;)*) => {
        crate::conformance::kumo_tests!(kumo_not_mosquitto { $($name => $check $(, kumo: $tweak)?;)* });
    };
}
pub(crate) use mosquitto_deviates;
