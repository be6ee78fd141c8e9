//! A server-side TLS stream on rustls' unbuffered API, holding no buffers while
//! the connection is idle.
//!
//! rustls' buffered `ServerConnection` keeps a 4 KiB read buffer for every
//! connection once it has read anything; with ~19,000 mostly idle devices per
//! node that is the largest single cost per connection. Here the stream owns
//! its buffers: raw TLS bytes stay only while a record is incomplete, decrypted
//! bytes only until the session reads them, encrypted bytes only until the
//! socket takes them — then each buffer is freed.
//!
//! It implements `AsyncRead`/`AsyncWrite` so the MQTT session neither knows nor
//! cares. It owns the TLS record layer and nothing else: which certificates are
//! trusted, and what a refused handshake means, live in `tls` and `listener`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::pki_types::CertificateDer;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Bytes asked of the socket per read.
const READ_SIZE: usize = 4096;

/// Encrypted output beyond which `poll_write` first waits for the socket.
const WRITE_HIGH_WATER: usize = 64 * 1024;

/// TLS record header: type, version, length.
const RECORD_HEADER: usize = 5;

/// Content type of a TLS handshake record.
const HANDSHAKE: u8 = 0x16;

/// A TLS server connection over a TCP socket.
pub(crate) struct TlsIo {
    io: TcpStream,
    conn: UnbufferedServerConnection,
    /// Raw TLS bytes read and not yet processed (at most a partial record
    /// between reads).
    incoming: Vec<u8>,
    /// Decrypted bytes not yet read, from `plain_pos`.
    plain: Vec<u8>,
    plain_pos: usize,
    /// Encrypted bytes not yet written, from `out_pos`.
    outgoing: Vec<u8>,
    out_pos: usize,
    /// The peer sent close_notify or closed its side.
    peer_closed: bool,
    /// Our close_notify is queued.
    close_sent: bool,
}

/// What to do on reaching `WriteTraffic`.
enum Send<'a> {
    Nothing,
    Data(&'a [u8]),
    CloseNotify,
}

fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsIo {
    /// Waits until the first TLS record (the ClientHello) has fully arrived,
    /// without any TLS work, so a silent client costs only a socket. Plain
    /// TCP traffic is refused as `InvalidData`.
    pub(crate) async fn hello(
        mut io: TcpStream,
        config: impl FnOnce() -> Arc<ServerConfig>,
    ) -> io::Result<Self> {
        let mut incoming = Vec::with_capacity(1024);
        loop {
            if let Some(&first) = incoming.first() {
                if first != HANDSHAKE {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "not a TLS handshake",
                    ));
                }
            }
            if incoming.len() >= RECORD_HEADER {
                let len = usize::from(u16::from_be_bytes([incoming[3], incoming[4]]));
                if incoming.len() >= RECORD_HEADER + len {
                    break;
                }
            }
            if io.read_buf(&mut incoming).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        let conn = UnbufferedServerConnection::new(config()).map_err(tls_err)?;
        Ok(Self {
            io,
            conn,
            incoming,
            plain: Vec::new(),
            plain_pos: 0,
            outgoing: Vec::new(),
            out_pos: 0,
            peer_closed: false,
            close_sent: false,
        })
    }

    /// Runs the handshake to completion. On failure the alert rustls prepared
    /// is sent (best effort) before the error is returned.
    pub(crate) async fn handshake(&mut self) -> io::Result<()> {
        loop {
            if let Err(e) = self.process(Send::Nothing) {
                self.send_alert().await;
                return Err(e);
            }
            self.flush_out().await?;
            if !self.conn.is_handshaking() {
                return Ok(());
            }
            let before = self.incoming.len();
            self.incoming.reserve(READ_SIZE);
            if self.io.read_buf(&mut self.incoming).await? == 0 && self.incoming.len() == before {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// The client's certificate chain, leaf first.
    pub(crate) fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.conn.peer_certificates()
    }

    async fn send_alert(&mut self) {
        // After an error rustls yields the queued alert once more, then the error.
        let _ = self.process(Send::Nothing);
        let _ = self.flush_out().await;
    }

    async fn flush_out(&mut self) -> io::Result<()> {
        while self.out_pos < self.outgoing.len() {
            let n = self.io.write(&self.outgoing[self.out_pos..]).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.out_pos += n;
        }
        self.release_outgoing();
        Ok(())
    }

    fn release_outgoing(&mut self) {
        if self.out_pos >= self.outgoing.len() {
            self.outgoing = Vec::new();
            self.out_pos = 0;
        }
    }

    /// Processes every complete record in `incoming`: decrypted data goes to
    /// `plain`, handshake and alert records to `outgoing`. On reaching
    /// `WriteTraffic`, performs `send`; returns how many bytes of it were taken.
    fn process(&mut self, mut send: Send<'_>) -> io::Result<usize> {
        let mut taken = 0;
        loop {
            let status = self.conn.process_tls_records(&mut self.incoming);
            let discard = status.discard;
            let mut done = false;
            match status.state.map_err(tls_err)? {
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(record) = r.next_record() {
                        let record = record.map_err(tls_err)?;
                        if self.plain_pos == self.plain.len() {
                            self.plain.clear();
                            self.plain_pos = 0;
                        }
                        self.plain.extend_from_slice(record.payload);
                    }
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    let start = self.outgoing.len();
                    self.outgoing.resize(start + 512, 0);
                    let n = match e.encode(&mut self.outgoing[start..]) {
                        Err(EncodeError::InsufficientSize(InsufficientSizeError {
                            required_size,
                        })) => {
                            self.outgoing.resize(start + required_size, 0);
                            e.encode(&mut self.outgoing[start..])
                        }
                        other => other,
                    }
                    .map_err(io::Error::other)?;
                    self.outgoing.truncate(start + n);
                }
                // Our caller writes `outgoing` before it waits for the peer.
                ConnectionState::TransmitTlsData(t) => t.done(),
                ConnectionState::BlockedHandshake => done = true,
                ConnectionState::WriteTraffic(mut w) => {
                    match std::mem::replace(&mut send, Send::Nothing) {
                        Send::Nothing => {}
                        Send::Data(data) => {
                            encrypt_into(&mut self.outgoing, |buf| w.encrypt(data, buf))?;
                            taken = data.len();
                        }
                        Send::CloseNotify => {
                            encrypt_into(&mut self.outgoing, |buf| w.queue_close_notify(buf))?;
                        }
                    }
                    done = true;
                }
                ConnectionState::PeerClosed => self.peer_closed = true,
                ConnectionState::Closed => {
                    self.peer_closed = true;
                    done = true;
                }
                // Early data is never accepted (the config allows none).
                _ => return Err(io::Error::other("unexpected TLS connection state")),
            }
            self.incoming.drain(..discard);
            if done {
                if self.incoming.is_empty() {
                    self.incoming = Vec::new();
                }
                return Ok(taken);
            }
        }
    }

    /// Writes pending encrypted output; `Ready` once all of it is written.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing[self.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        self.release_outgoing();
        Poll::Ready(Ok(()))
    }
}

/// Appends what `f` encrypts to `out`, growing it as rustls asks.
fn encrypt_into(
    out: &mut Vec<u8>,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> io::Result<()> {
    let start = out.len();
    out.resize(start + 256, 0);
    let n = match f(&mut out[start..]) {
        Ok(n) => n,
        Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
            out.resize(start + required_size, 0);
            f(&mut out[start..]).map_err(io::Error::other)?
        }
        Err(e) => return Err(io::Error::other(e)),
    };
    out.truncate(start + n);
    Ok(())
}

impl AsyncRead for TlsIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.plain_pos < this.plain.len() {
                let n = buf.remaining().min(this.plain.len() - this.plain_pos);
                buf.put_slice(&this.plain[this.plain_pos..this.plain_pos + n]);
                this.plain_pos += n;
                if this.plain_pos == this.plain.len() {
                    this.plain = Vec::new();
                    this.plain_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            // Answers rustls owes the peer (tickets, key updates) go out first;
            // a peer that does not read must not stop us reading.
            if let Poll::Ready(Err(e)) = this.poll_write_out(cx) {
                return Poll::Ready(Err(e));
            }
            let len = this.incoming.len();
            this.incoming.resize(len + READ_SIZE, 0);
            let mut rb = ReadBuf::new(&mut this.incoming[len..]);
            let polled = Pin::new(&mut this.io).poll_read(cx, &mut rb);
            let n = rb.filled().len();
            this.incoming.truncate(len + n);
            if this.incoming.is_empty() {
                this.incoming = Vec::new();
            }
            ready!(polled)?;
            if n == 0 {
                this.peer_closed = true;
                return Poll::Ready(Ok(()));
            }
            this.process(Send::Nothing)?;
        }
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.outgoing.len() - this.out_pos >= WRITE_HIGH_WATER {
            ready!(this.poll_write_out(cx))?;
        }
        let taken = this.process(Send::Data(data))?;
        // Start sending now; what the socket cannot take waits for flush.
        if let Poll::Ready(Err(e)) = this.poll_write_out(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.conn.is_handshaking() && !this.close_sent {
            this.close_sent = true;
            this.process(Send::CloseNotify)?;
        }
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use kumo_certs::{Ca, IssueOptions, KeyAlgorithm};
    use kumo_contract::DeviceId;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{PrivateKeyDer, ServerName};

    use crate::tls::{self, TlsFiles};

    /// A server config from a fresh CA, and a device client config.
    fn configs(dir: &std::path::Path) -> (Arc<ServerConfig>, Arc<rustls::ClientConfig>) {
        let ca = Ca::generate("Test CA", KeyAlgorithm::EcdsaP256).unwrap();
        let node = ca
            .issue_node("node-1", &["localhost".into()], &IssueOptions::default())
            .unwrap();
        let device = ca
            .issue_device(
                &DeviceId::parse("remo-1").unwrap(),
                &IssueOptions::default(),
            )
            .unwrap();
        let write = |name: &str, body: &str| {
            let path = dir.join(name);
            std::fs::write(&path, body).unwrap();
            path
        };
        let files = TlsFiles {
            ca: write("ca.pem", &ca.cert_pem()),
            crl: None,
            cert: write("node.pem", &node.cert_pem),
            key: write("node.key", &node.key_pem),
        };
        let server = tls::load(&files, 16).unwrap().config;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap())
            .unwrap();
        let chain = vec![CertificateDer::from_pem_slice(device.cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(device.key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
        (server, Arc::new(client))
    }

    fn held(io: &TlsIo) -> usize {
        io.incoming.capacity() + io.plain.capacity() + io.outgoing.capacity()
    }

    #[tokio::test]
    async fn an_idle_connection_holds_no_buffers() {
        let dir = tempfile::tempdir().unwrap();
        let (server, client) = configs(dir.path());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(client)
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap();
            tls.write_all(&[7u8; 40_000]).await.unwrap();
            tls.flush().await.unwrap();
            let mut back = vec![0u8; 40_000];
            tls.read_exact(&mut back).await.unwrap();
            assert!(back.iter().all(|b| *b == 9));
            tls.shutdown().await.unwrap();
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let mut io = TlsIo::hello(tcp, || server).await.unwrap();
        io.handshake().await.unwrap();
        assert!(io.peer_certificates().is_some_and(|c| c.len() == 1));
        let mut got = vec![0u8; 40_000];
        io.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|b| *b == 7));
        io.write_all(&[9u8; 40_000]).await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(held(&io), 0, "nothing kept once read and written");
        let mut rest = Vec::new();
        assert_eq!(
            io.read_to_end(&mut rest).await.unwrap(),
            0,
            "close_notify is EOF"
        );
        peer.await.unwrap();
    }

    #[tokio::test]
    async fn plain_tcp_is_refused_before_any_tls_work() {
        let dir = tempfile::tempdir().unwrap();
        let (server, _) = configs(dir.path());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c")
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let err = TlsIo::hello(tcp, || server).await.err().unwrap();
        assert_eq!(tls::refusal_reason(&err), "not_tls");
    }
}
