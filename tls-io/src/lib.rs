//! A TLS stream on rustls' unbuffered API, holding no buffers while the
//! connection is idle — the server side of a broker node's device connections
//! and the device side of the simulator's.
//!
//! rustls' buffered connections keep a 4 KiB read buffer (and more) for every
//! connection once it has read anything; with ~19,000 mostly idle devices per
//! broker node or simulator process that is the largest single cost per
//! connection. Here the stream owns its buffers: raw TLS bytes stay only while
//! a record is incomplete, decrypted bytes only until the reader takes them,
//! encrypted bytes only until the socket takes them — then each buffer is freed.
//!
//! It implements `AsyncRead`/`AsyncWrite` so the MQTT session neither knows nor
//! cares. It owns the TLS record layer and nothing else: which certificates are
//! trusted, and what a refused handshake means, are the caller's.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::{ClientConfig, ServerConfig};
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

/// One side of an unbuffered rustls connection: what [`TlsIo`] needs of it.
pub trait Side {
    /// rustls' per-side connection data.
    type Data;
    /// rustls' `process_tls_records` (an inherent method per side).
    fn process_records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
    /// Whether the handshake is still going on.
    fn handshaking(&self) -> bool;
}

impl Side for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn process_records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ServerConnectionData> {
        self.process_tls_records(incoming)
    }
    fn handshaking(&self) -> bool {
        self.is_handshaking()
    }
}

impl Side for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn process_records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ClientConnectionData> {
        self.process_tls_records(incoming)
    }
    fn handshaking(&self) -> bool {
        self.is_handshaking()
    }
}

/// A TLS server connection over a TCP socket.
pub type ServerTls = TlsIo<UnbufferedServerConnection>;

/// A TLS client connection over a TCP socket.
pub type ClientTls = TlsIo<UnbufferedClientConnection>;

/// A TLS connection over a TCP socket, either side.
pub struct TlsIo<C> {
    io: TcpStream,
    conn: C,
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
    /// rustls reported an error: the connection is dead (only its alert may
    /// still go out), and rustls must not see the offending bytes again.
    failed: bool,
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

impl ServerTls {
    /// Waits until the first TLS record (the ClientHello) has fully arrived,
    /// without any TLS work, so a silent client costs only a socket. Plain
    /// TCP traffic is refused as `InvalidData`.
    pub async fn hello(
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
        let mut tls = Self::new(io, conn);
        tls.incoming = incoming;
        Ok(tls)
    }

    /// The client's certificate chain, leaf first.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.conn.peer_certificates()
    }
}

impl ClientTls {
    /// Starts a client connection to `name` over `io`; [`TlsIo::handshake`]
    /// sends the ClientHello.
    pub fn client(
        io: TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<Self> {
        let conn = UnbufferedClientConnection::new(config, name).map_err(tls_err)?;
        Ok(Self::new(io, conn))
    }

    /// Whether the handshake resumed an earlier session (a ticket).
    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }
}

impl<C: Side> TlsIo<C> {
    fn new(io: TcpStream, conn: C) -> Self {
        Self {
            io,
            conn,
            incoming: Vec::new(),
            plain: Vec::new(),
            plain_pos: 0,
            outgoing: Vec::new(),
            out_pos: 0,
            peer_closed: false,
            close_sent: false,
            failed: false,
        }
    }

    /// Runs the handshake to completion. On failure the alert rustls prepared
    /// is sent (best effort) before the error is returned.
    pub async fn handshake(&mut self) -> io::Result<()> {
        while !self.handshake_step().await? {
            self.read_handshake().await?;
        }
        Ok(())
    }

    /// Runs a client's handshake to completion but leaves its last flight
    /// (Certificate, CertificateVerify, Finished) queued: the first write
    /// that follows goes out in the same segment — one send, and one wakeup
    /// of the server, fewer per connection. TLS 1.3 lets a client send data
    /// right after its Finished. The caller must write or flush next.
    pub async fn handshake_corked(&mut self) -> io::Result<()> {
        loop {
            self.process_handshake().await?;
            if !self.conn.handshaking() {
                return Ok(());
            }
            self.flush_out().await?;
            self.read_handshake().await?;
        }
    }

    /// One step of the handshake — the CPU part: processes the records that
    /// have arrived and writes the answer. `Ok(true)` once the handshake is
    /// complete; otherwise [`TlsIo::read_handshake`] waits for the peer's
    /// next flight. A server holds its handshake slot for the steps only, so a
    /// client that stalls mid-handshake costs a socket, not a slot.
    pub async fn handshake_step(&mut self) -> io::Result<bool> {
        self.process_handshake().await?;
        self.flush_out().await?;
        Ok(!self.conn.handshaking())
    }

    /// Processes the handshake records that have arrived, queueing the
    /// answer; a failure sends the peer its alert.
    async fn process_handshake(&mut self) -> io::Result<()> {
        self.check_alive()?;
        if let Err(e) = self.process(Send::Nothing) {
            self.send_alert().await;
            return Err(e);
        }
        Ok(())
    }

    /// Waits for more of the peer's handshake bytes.
    pub async fn read_handshake(&mut self) -> io::Result<()> {
        let before = self.incoming.len();
        self.incoming.reserve(READ_SIZE);
        if self.io.read_buf(&mut self.incoming).await? == 0 && self.incoming.len() == before {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    fn check_alive(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the TLS connection failed earlier",
            ));
        }
        Ok(())
    }

    /// The TCP socket underneath (for addresses and socket options).
    pub fn socket(&self) -> &TcpStream {
        &self.io
    }

    /// Whether the peer has sent anything not yet read: decrypted bytes, or
    /// bytes (or its close) waiting in the kernel. Asks the socket itself, not
    /// the runtime's idea of its readiness, which a busy process may not have
    /// caught up with. A partial record already taken from the socket does
    /// not count: it is not news, and a peer that stopped mid-record would
    /// otherwise look alive for ever.
    pub fn has_unread(&self) -> bool {
        if self.plain_pos < self.plain.len() || self.peer_closed {
            return true;
        }
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
        // Nonblocking (tokio's sockets are): WouldBlock when nothing waits;
        // Ok(0) is the peer's close, which a read will report.
        socket2::SockRef::from(&self.io).peek(&mut byte).is_ok()
    }

    /// Sends the fatal alert rustls queued with its error (best effort):
    /// one more turn yields it before anything else, and that turn must not
    /// go on to the offending bytes again.
    async fn send_alert(&mut self) {
        let UnbufferedStatus { state, .. } = self.conn.process_records(&mut self.incoming);
        if let Ok(ConnectionState::EncodeTlsData(mut e)) = state {
            let start = self.outgoing.len();
            self.outgoing.resize(start + 64, 0);
            match e.encode(&mut self.outgoing[start..]) {
                Ok(n) => self.outgoing.truncate(start + n),
                Err(_) => self.outgoing.truncate(start),
            }
        }
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
            let UnbufferedStatus { discard, state } = self.conn.process_records(&mut self.incoming);
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    // rustls queued its fatal alert ([`TlsIo::send_alert`]
                    // takes it); fed the same bytes again it would try to
                    // send a second one.
                    self.failed = true;
                    return Err(tls_err(e));
                }
            };
            let mut done = false;
            match state {
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
                // Early data is never sent or accepted (no config allows it).
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

impl<C: Side + Unpin> AsyncRead for TlsIo<C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_alive()?;
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

impl<C: Side + Unpin> AsyncWrite for TlsIo<C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_alive()?;
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
        if !this.conn.handshaking() && !this.close_sent {
            this.close_sent = true;
            this.process(Send::CloseNotify)?;
        }
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "record_fuzz.rs"]
mod record_fuzz;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use kumo_certs::{Ca, IssueOptions, KeyAlgorithm};
    use kumo_contract::DeviceId;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::server::WebPkiClientVerifier;
    use rustls::RootCertStore;
    use std::time::Duration;

    /// A server config demanding client certificates from a fresh CA, and a
    /// device's client config.
    pub(super) fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
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
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap())
            .unwrap();
        let roots = Arc::new(roots);
        let pair = |cert: &str, key: &str| {
            (
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
        };
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .unwrap();
        let (chain, key) = pair(&node.cert_pem, &node.key_pem);
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        let (chain, key) = pair(&device.cert_pem, &device.key_pem);
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
        (Arc::new(server), Arc::new(client))
    }

    pub(super) fn held<C>(io: &TlsIo<C>) -> usize {
        io.incoming.capacity() + io.plain.capacity() + io.outgoing.capacity()
    }

    pub(super) fn localhost() -> ServerName<'static> {
        ServerName::try_from("localhost").unwrap()
    }

    #[tokio::test]
    async fn an_idle_server_connection_holds_no_buffers() {
        let (server, client) = configs();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = tokio::spawn(async move {
            let mut tls = dial(addr, client).await;
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

    /// A tokio-rustls client connected to `addr`, handshake done.
    async fn dial(
        addr: std::net::SocketAddr,
        client: Arc<ClientConfig>,
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tokio_rustls::TlsConnector::from(client)
            .connect(localhost(), tcp)
            .await
            .unwrap()
    }

    /// Waits (at most 5 s) until `io` has something unread.
    async fn until_unread<C: Side>(io: &TlsIo<C>, what: &str) {
        let seen = async {
            while !io.has_unread() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), seen)
            .await
            .expect(what);
    }

    /// `has_unread` asks the socket: what the peer sent is seen before any
    /// read, and so is its close; nothing reads as nothing.
    #[tokio::test]
    async fn unread_bytes_are_seen_without_reading_them() {
        let (server, client) = configs();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (send, sent) = tokio::sync::oneshot::channel();
        let (closing, close) = tokio::sync::oneshot::channel::<()>();
        let peer = tokio::spawn(async move {
            let mut tls = dial(addr, client).await;
            // Read the server's session tickets, so the server's side is quiet.
            let mut buf = [0u8; 8];
            let _ = tokio::time::timeout(Duration::from_millis(200), tls.read(&mut buf)).await;
            tls.write_all(b"ping").await.unwrap();
            tls.flush().await.unwrap();
            // Then the first bytes of a record, and nothing more.
            tls.get_mut()
                .0
                .write_all(&[0x17, 0x03, 0x03])
                .await
                .unwrap();
            send.send(()).unwrap();
            close.await.unwrap();
            drop(tls);
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let mut io = TlsIo::hello(tcp, || server).await.unwrap();
        io.handshake().await.unwrap();
        assert!(
            !io.has_unread(),
            "the client has sent nothing since its Finished"
        );
        sent.await.unwrap();
        until_unread(&io, "the client's record is seen before it is read").await;
        let mut got = [0u8; 4];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        // The partial record: news while in the socket, not once taken.
        until_unread(&io, "the partial record is seen before it is read").await;
        let mut more = [0u8; 1];
        let short = Duration::from_millis(100);
        assert!(
            tokio::time::timeout(short, io.read(&mut more))
                .await
                .is_err(),
            "no whole record"
        );
        assert!(
            !io.has_unread(),
            "a partial record already read is not news (a peer stopped mid-record is silent)"
        );
        closing.send(()).unwrap();
        until_unread(&io, "the client's close is seen before it is read").await;
        peer.await.unwrap();
    }

    /// The first client of `listener`, through a rustls server.
    async fn accept_one(
        listener: tokio::net::TcpListener,
        server: Arc<ServerConfig>,
    ) -> tokio_rustls::server::TlsStream<TcpStream> {
        let (tcp, _) = listener.accept().await.unwrap();
        tokio_rustls::TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn an_idle_client_connection_holds_no_buffers() {
        let (server, client) = configs();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = tokio::spawn(async move {
            let mut tls = accept_one(listener, server).await;
            let mut got = vec![0u8; 30_000];
            tls.read_exact(&mut got).await.unwrap();
            assert!(got.iter().all(|b| *b == 3));
            tls.write_all(&[4u8; 30_000]).await.unwrap();
            tls.shutdown().await.unwrap();
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut io = TlsIo::client(tcp, client, localhost()).unwrap();
        io.handshake().await.unwrap();
        io.write_all(&[3u8; 30_000]).await.unwrap();
        io.flush().await.unwrap();
        let mut back = vec![0u8; 30_000];
        io.read_exact(&mut back).await.unwrap();
        assert!(back.iter().all(|b| *b == 4));
        let mut rest = Vec::new();
        assert_eq!(io.read_to_end(&mut rest).await.unwrap(), 0);
        assert_eq!(held(&io), 0, "nothing kept once read and written");
        peer.await.unwrap();
    }

    #[tokio::test]
    async fn a_corked_handshake_sends_its_last_flight_with_the_first_write() {
        let (server, client) = configs();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = tokio::spawn(async move {
            let mut tls = accept_one(listener, server).await;
            let mut got = [0u8; 7];
            tls.read_exact(&mut got).await.unwrap();
            tls.write_all(b"CONNACK").await.unwrap();
            got
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut io = TlsIo::client(tcp, client, localhost()).unwrap();
        io.handshake_corked().await.unwrap();
        assert!(!io.conn.handshaking());
        assert!(
            io.outgoing.len() > io.out_pos,
            "the client's last flight waits for the first write"
        );
        io.write_all(b"CONNECT").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.outgoing.len(), 0, "both went out");
        let mut back = [0u8; 7];
        io.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"CONNACK");
        assert_eq!(&peer.await.unwrap(), b"CONNECT");
    }

    #[tokio::test]
    async fn a_client_that_does_not_trust_the_server_fails_the_handshake() {
        let (server, _) = configs();
        let (_, stranger) = configs();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut io = TlsIo::hello(tcp, || server).await.unwrap();
            let _ = io.handshake().await;
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut io = TlsIo::client(tcp, stranger, localhost()).unwrap();
        let err = io.handshake().await.err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[tokio::test]
    async fn plain_tcp_is_refused_before_any_tls_work() {
        let (server, _) = configs();
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
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(err.to_string(), "not a TLS handshake");
    }

    /// xorshift64: reproducible noise without a dependency.
    fn noise(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[tokio::test]
    async fn mangled_records_after_the_handshake_are_errors_never_panics() {
        // A real session, then bytes that look more or less like TLS records:
        // random content types and lengths, truncated or oversized records,
        // flipped bits in real ciphertext. Each must end the read with an
        // error or EOF; a panic would kill the session's task.
        let (server, client) = configs();
        let mut seed = 0x2545_F491_4F6C_DD1D_u64;
        for round in 0..300 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let client = client.clone();
            let mut garbage = Vec::new();
            match round % 3 {
                0 => {
                    for _ in 0..(noise(&mut seed) % 4 + 1) {
                        let len = (noise(&mut seed) % 20_000) as u16;
                        garbage.extend_from_slice(&[
                            [20u8, 21, 22, 23, 24, 0][(noise(&mut seed) % 6) as usize],
                            3,
                            (noise(&mut seed) % 5) as u8,
                        ]);
                        garbage.extend_from_slice(&len.to_be_bytes());
                        let body = (noise(&mut seed) % 300) as usize;
                        garbage.extend((0..body).map(|_| noise(&mut seed) as u8));
                    }
                }
                1 => garbage.extend((0..(noise(&mut seed) % 600)).map(|_| noise(&mut seed) as u8)),
                _ => {}
            }
            let flip = noise(&mut seed);
            let peer = tokio::spawn(async move {
                let tcp = TcpStream::connect(addr).await.unwrap();
                let mut tls = TlsIo::client(tcp, client, localhost()).unwrap();
                tls.handshake().await.unwrap();
                if garbage.is_empty() {
                    // Real application data with one bit flipped on the wire.
                    let mut raw = Vec::new();
                    encrypt_into(&mut raw, |buf| {
                        match tls.conn.process_tls_records(&mut []).state {
                            Ok(ConnectionState::WriteTraffic(mut w)) => {
                                w.encrypt(b"hello, node", buf)
                            }
                            _ => Ok(0),
                        }
                    })
                    .unwrap();
                    if !raw.is_empty() {
                        let at = (flip as usize) % raw.len();
                        raw[at] ^= 1 << (flip % 8);
                    }
                    garbage = raw;
                }
                let _ = tls.io.write_all(&garbage).await;
                let _ = tls.io.shutdown().await;
            });
            let (tcp, _) = listener.accept().await.unwrap();
            let mut io = TlsIo::hello(tcp, || server.clone()).await.unwrap();
            // The garbage may arrive with the client's Finished: then the
            // handshake itself fails, as it should.
            if io.handshake().await.is_err() {
                assert!(
                    io.read_to_end(&mut Vec::new()).await.is_err(),
                    "dead after failing"
                );
                peer.await.unwrap();
                continue;
            }
            let mut sink = Vec::new();
            let read = io.read_to_end(&mut sink).await;
            assert!(
                read.is_err() || sink.len() <= 11,
                "round {round}: mangled input read as {} bytes of data",
                sink.len()
            );
            peer.await.unwrap();
        }
    }
}
