//! Test harness: a fresh PKI in a temp dir, a node on port 0, and a small raw
//! MQTT-over-TLS client built on rumqttd's codecs (so attacks can send any bytes).
#![allow(dead_code, clippy::unwrap_used)]

pub mod doc;
pub mod peers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use kumo_broker::{RunningNode, Settings};
use kumo_certs::{Ca, IssueOptions, Issued, KeyAlgorithm, Revoked};
use kumo_contract::{AccountId, DeviceId};
use rumqttd::protocol::{
    v4, v5, Connect, ConnectProperties, Filter, LastWill, Packet, Protocol, Publish, QoS,
    RetainForwardRule, Subscribe,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

/// Files of one client certificate.
#[derive(Clone, Debug)]
pub struct Creds {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub serial: String,
}

/// A CA with files on disk.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub ca_path: PathBuf,
    pub crl_path: PathBuf,
    revoked: std::sync::Mutex<Vec<Revoked>>,
    crl_number: std::sync::atomic::AtomicU64,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate("Kumo Test CA", KeyAlgorithm::EcdsaP256).unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.cert_pem()).unwrap();
        let pki = Pki {
            crl_path: dir.path().join("crl.pem"),
            dir,
            ca,
            ca_path,
            revoked: Default::default(),
            crl_number: 1.into(),
        };
        pki.write_crl();
        pki
    }

    fn write_crl(&self) {
        let n = self
            .crl_number
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let revoked = self.revoked.lock().unwrap().clone();
        let next = time::OffsetDateTime::now_utc() + time::Duration::days(1);
        let pem = self.ca.crl_pem(&revoked, n, next).unwrap();
        let tmp = self.dir.path().join("crl.pem.tmp");
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(&tmp, &self.crl_path).unwrap();
    }

    /// Adds `serial` to the CRL file.
    pub fn revoke(&self, serial: &str) {
        self.revoked.lock().unwrap().push(Revoked {
            serial: serial.to_string(),
            revoked_at: time::OffsetDateTime::now_utc(),
            reason: Some("keyCompromise".into()),
        });
        self.write_crl();
    }

    fn save(&self, name: &str, issued: &Issued) -> Creds {
        let cert = self.dir.path().join(format!("{name}.pem"));
        let key = self.dir.path().join(format!("{name}.key"));
        std::fs::write(&cert, &issued.cert_pem).unwrap();
        std::fs::write(&key, &issued.key_pem).unwrap();
        Creds {
            cert,
            key,
            serial: issued.serial.clone(),
        }
    }

    pub fn device(&self, id: &str) -> Creds {
        self.device_with(id, &IssueOptions::default())
    }

    pub fn device_with(&self, id: &str, opts: &IssueOptions) -> Creds {
        let issued = self
            .ca
            .issue_device(&DeviceId::parse(id).unwrap(), opts)
            .unwrap();
        self.save(&format!("device-{id}"), &issued)
    }

    pub fn service(&self, name: &str) -> Creds {
        let issued = self
            .ca
            .issue_service(name, &IssueOptions::default())
            .unwrap();
        self.save(&format!("service-{name}"), &issued)
    }

    pub fn integration(&self, name: &str, account: &str) -> Creds {
        let account = AccountId::parse(account).unwrap();
        let issued = self
            .ca
            .issue_integration(name, &account, &IssueOptions::default())
            .unwrap();
        self.save(&format!("integration-{name}"), &issued)
    }

    pub fn node(&self) -> Creds {
        let sans = ["localhost".to_string(), "127.0.0.1".to_string()];
        let issued = self
            .ca
            .issue_node("node-1", &sans, &IssueOptions::default())
            .unwrap();
        self.save("node", &issued)
    }
}

/// A node under test and its PKI.
pub struct TestNode {
    pub pki: Arc<Pki>,
    pub node: Option<RunningNode>,
    pub addr: SocketAddr,
    pub http: SocketAddr,
    pub metrics: Arc<kumo_broker::Metrics>,
    pub shutdown: CancellationToken,
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,rumqttd=off".into()))
        .with_test_writer()
        .try_init();
}

impl TestNode {
    pub async fn start() -> TestNode {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Settings)) -> TestNode {
        Self::start_in(Arc::new(Pki::new()), tweak).await
    }

    /// A node of an existing PKI (several nodes of one cloud).
    pub async fn start_in(pki: Arc<Pki>, tweak: impl FnOnce(&mut Settings)) -> TestNode {
        init_tracing();
        let node_creds = pki.node();
        let mut settings = Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            http_listen: "127.0.0.1:0".parse().unwrap(),
            ca: Some(pki.ca_path.clone()),
            crl: Some(pki.crl_path.clone()),
            cert: Some(node_creds.cert),
            key: Some(node_creds.key),
            crl_poll_interval_ms: 100,
            ..Settings::default()
        };
        tweak(&mut settings);
        let shutdown = CancellationToken::new();
        let node = kumo_broker::start(settings, shutdown.clone())
            .await
            .unwrap();
        TestNode {
            pki,
            addr: node.mqtt_addr(),
            http: node.http_addr(),
            metrics: node.metrics(),
            node: Some(node),
            shutdown,
        }
    }

    /// Stops the node and waits for it.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(node) = self.node.take() {
            node.wait().await.unwrap();
        }
    }

    /// A TLS connection with `creds` (or none), handshake completed.
    pub async fn tls(&self, creds: Option<&Creds>) -> std::io::Result<TlsStream<TcpStream>> {
        tls_connect(self.addr, &self.pki.ca_path, creds).await
    }

    /// Connects a device and completes CONNECT/CONNACK.
    pub async fn device(&self, id: &str, version: u8) -> Client {
        let creds = self.pki.device(id);
        let mut c = Client::open(self, &creds, version).await;
        let ack = c.connect(id, 30, None).await;
        assert_eq!(ack, 0, "CONNACK code for {id}");
        c
    }

    /// Connects the bridge service identity.
    pub async fn service(&self, version: u8) -> Client {
        let creds = self.pki.service("bridge");
        let mut c = Client::open(self, &creds, version).await;
        assert_eq!(c.connect("bridge", 30, None).await, 0);
        c
    }

    /// GET on the HTTP side; returns the body.
    pub async fn http_get(&self, path: &str) -> String {
        let mut s = TcpStream::connect(self.http).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).await.unwrap();
        body
    }
}

pub async fn tls_connect(
    addr: SocketAddr,
    ca: &std::path::Path,
    creds: Option<&Creds>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match creds {
        Some(c) => {
            let chain = CertificateDer::pem_file_iter(&c.cert)
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_file(&c.key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    // TLS 1.3 reports a refused client certificate only on the first read: probe
    // with a zero-length flush so callers see the refusal where they expect it.
    tls.flush().await?;
    Ok(tls)
}

/// True when the node refuses the connection during or right after the handshake
/// (TLS 1.3 clients learn of a refused certificate only on their first read). Waits
/// until the refusal has been counted.
pub async fn refused_at_tls(node: &TestNode, creds: Option<&Creds>) -> bool {
    let before = node.metrics.handshakes_with("ok");
    let refused = match tls_connect(node.addr, &node.pki.ca_path, creds).await {
        Err(_) => true,
        Ok(mut s) => {
            let mut b = [0u8; 1];
            matches!(
                tokio::time::timeout(WAIT, s.read(&mut b)).await,
                Ok(Ok(0)) | Ok(Err(_))
            )
        }
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    refused && node.metrics.handshakes_with("ok") == before
}

/// A raw MQTT client over TLS.
pub struct Client {
    pub stream: TlsStream<TcpStream>,
    pub version: u8,
    buf: BytesMut,
}

pub const WAIT: Duration = Duration::from_secs(5);

impl Client {
    pub async fn open(node: &TestNode, creds: &Creds, version: u8) -> Client {
        let stream = node.tls(Some(creds)).await.unwrap();
        Client {
            stream,
            version,
            buf: BytesMut::new(),
        }
    }

    pub fn from_stream(stream: TlsStream<TcpStream>, version: u8) -> Client {
        Client {
            stream,
            version,
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        match self.version {
            5 => v5::V5.write(packet, &mut out).unwrap(),
            _ => v4::V4.write(packet, &mut out).unwrap(),
        };
        self.raw(&out).await;
    }

    pub async fn raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    /// Sends CONNECT and returns the CONNACK code (0 = accepted), or 255 on close.
    pub async fn connect(
        &mut self,
        client_id: &str,
        keep_alive: u16,
        will: Option<LastWill>,
    ) -> u8 {
        let props = (self.version == 5).then(|| ConnectProperties {
            session_expiry_interval: None,
            receive_maximum: None,
            max_packet_size: None,
            topic_alias_max: None,
            request_response_info: None,
            request_problem_info: None,
            user_properties: vec![],
            authentication_method: None,
            authentication_data: None,
        });
        let connect = Connect {
            keep_alive,
            client_id: client_id.into(),
            clean_session: true,
        };
        self.send(Packet::Connect(connect, props, will, None, None))
            .await;
        match self.next_raw().await {
            Some((b, body)) if b >> 4 == 2 => body[1],
            _ => 255,
        }
    }

    /// MQTT 3.1.1 CONNECT with the given clean-session flag; returns
    /// (session_present, CONNACK code), or (false, 255) on close.
    pub async fn connect_session(&mut self, client_id: &str, clean_session: bool) -> (bool, u8) {
        let connect = Connect {
            keep_alive: 30,
            client_id: client_id.into(),
            clean_session,
        };
        self.send(Packet::Connect(connect, None, None, None, None))
            .await;
        match self.next_raw().await {
            Some((b, body)) if b >> 4 == 2 => (body[0] & 1 == 1, body[1]),
            _ => (false, 255),
        }
    }

    /// Reads one complete packet: (first byte, body after the fixed header).
    async fn next_raw(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            match v4::check(self.buf.iter(), 1 << 24) {
                Ok(h) => {
                    let frame = self.buf.split_to(h.frame_length());
                    return Some((h.byte1, frame[h.fixed_header_len..].to_vec()));
                }
                Err(rumqttd::protocol::Error::InsufficientBytes(_)) => {}
                Err(_) => return None,
            }
            match tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    /// The next packet, decoded; `None` on close or after [`WAIT`].
    pub async fn recv(&mut self) -> Option<Packet> {
        self.recv_within(WAIT).await
    }

    pub async fn recv_within(&mut self, d: Duration) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let (byte1, body) = tokio::time::timeout_at(deadline, self.next_raw())
                .await
                .ok()??;
            // rumqttd's v5 decoder cannot read CONNACK (it panics); tests never need it here.
            if byte1 >> 4 == 2 {
                continue;
            }
            let mut frame = BytesMut::new();
            frame.extend_from_slice(&[byte1]);
            v4::write_remaining_length(&mut frame, body.len()).unwrap();
            frame.extend_from_slice(&body);
            return match self.version {
                5 => v5::V5.read_mut(&mut frame, 1 << 24).ok(),
                _ => v4::V4.read_mut(&mut frame, 1 << 24).ok(),
            };
        }
    }

    /// Waits until the server closes the connection; true if it did within `d`.
    pub async fn closed_within(&mut self, d: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let mut b = [0u8; 512];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut b)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }

    pub async fn subscribe(&mut self, filters: &[&str], qos: QoS) -> Vec<u8> {
        let filters = filters
            .iter()
            .map(|f| Filter {
                path: f.to_string(),
                qos,
                nolocal: false,
                preserve_retain: false,
                retain_forward_rule: RetainForwardRule::OnEverySubscribe,
            })
            .collect();
        self.send(Packet::Subscribe(Subscribe { pkid: 7, filters }, None))
            .await;
        loop {
            match self.next_raw().await {
                Some((b, body)) if b >> 4 == 9 => {
                    let mut b = bytes::Bytes::from(body);
                    b.advance(2);
                    if self.version == 5 {
                        let plen = b[0] as usize; // small property sections only
                        b.advance(1 + plen);
                    }
                    return b.to_vec();
                }
                Some(_) => continue,
                None => return vec![],
            }
        }
    }

    pub async fn publish(&mut self, topic: &str, payload: &[u8], retain: bool) {
        let p = Publish::new(topic.as_bytes().to_vec(), payload.to_vec(), retain);
        let props = (self.version == 5).then(Default::default);
        self.send(Packet::Publish(p, props)).await;
    }

    /// Publishes QoS 1 with packet id 1 and returns the PUBACK reason (0 = ok).
    pub async fn publish_qos1(&mut self, topic: &str, payload: &[u8]) -> Option<u8> {
        self.send_qos1(topic, payload, 1).await;
        self.puback().await
    }

    /// Sends a QoS 1 publish with packet id `pkid` without waiting for its PUBACK.
    pub async fn send_qos1(&mut self, topic: &str, payload: &[u8], pkid: u16) {
        let mut out = BytesMut::new();
        peers::encode_qos1_publish(&mut out, self.version, topic, payload, pkid);
        self.raw(&out).await;
    }

    /// Waits for the next PUBACK, skipping other packets; its reason (0 = ok).
    pub async fn puback(&mut self) -> Option<u8> {
        loop {
            match self.next_raw().await? {
                (b, body) if b >> 4 == 4 => return Some(*body.get(2).unwrap_or(&0)),
                _ => continue,
            }
        }
    }

    /// Acknowledges the QoS 1 publish the node sent with packet id `pkid`.
    pub async fn ack(&mut self, pkid: u16) {
        let ack = rumqttd::protocol::PubAck {
            pkid,
            reason: rumqttd::protocol::PubAckReason::Success,
        };
        self.send(Packet::PubAck(ack, None)).await;
    }

    /// Waits for a PUBLISH on `topic`; returns its payload.
    pub async fn expect_publish(&mut self, topic: &str) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_within(left).await? {
                Packet::Publish(p, _) if p.topic == topic.as_bytes() => {
                    return Some(p.payload.to_vec())
                }
                _ => continue,
            }
        }
    }

    /// True if no PUBLISH on `topic` arrives within `d`.
    pub async fn no_publish_on(&mut self, topic: &str, d: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return true;
            }
            match self.recv_within(left).await {
                None => return true,
                Some(Packet::Publish(p, _)) if p.topic == topic.as_bytes() => return false,
                Some(_) => continue,
            }
        }
    }
}

/// A TLS client configuration for `creds` speaking only `version`, with
/// session resumption (16 sessions).
pub fn client_config(
    node: &TestNode,
    creds: &Creds,
    version: &'static rustls::SupportedProtocolVersion,
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&node.pki.ca_path).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(&creds.cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(&creds.key).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.resumption = rustls::client::Resumption::in_memory_sessions(16);
    Arc::new(config)
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
