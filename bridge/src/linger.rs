//! Closing a REST connection so the client can read the last response.
//!
//! A server that answers before it has read the whole request — a 413 for a
//! `Content-Length` over the limit, a 401 before the body — and then closes
//! the socket with the rest of the body still arriving makes the kernel send
//! a reset, which can erase the response from the client's receive buffer
//! before it is read (RFC 9112 §9.6, "Tear-down"). The remedy the RFC
//! describes: close the write side, read until the client closes (or a
//! bound), then close. [`LingeringListener`] hands out connections that do
//! this when the server drops them while the client has not closed its side,
//! and [`close_if_unread`] says so in the response (`Connection: close`),
//! which hyper does not: a client would send its next request on a
//! connection the server is closing.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::header::CONNECTION;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// How long a closed connection may keep reading what its client still sends.
const LINGER: Duration = Duration::from_secs(3);
/// How much of it: four times the largest body the API reads.
const LINGER_BYTES: usize = 4 * crate::form::BODY_LIMIT;

/// A TCP listener whose connections linger on close.
#[derive(Debug)]
pub struct LingeringListener(pub TcpListener);

impl axum::serve::Listener for LingeringListener {
    type Io = Lingering;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Lingering, SocketAddr) {
        // axum's own accept logs and retries what can fail.
        let (tcp, addr) = axum::serve::Listener::accept(&mut self.0).await;
        (
            Lingering {
                tcp: Some(tcp),
                client_closed: false,
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// A REST connection; see the module documentation.
#[derive(Debug)]
pub struct Lingering {
    /// Taken only when dropped.
    tcp: Option<TcpStream>,
    /// A read found the end of the client's stream: nothing more can arrive.
    client_closed: bool,
}

impl Lingering {
    /// Responses are small and written whole: no Nagle delay on them.
    pub fn set_nodelay(&self) {
        if let Some(Err(e)) = self.tcp.as_ref().map(|t| t.set_nodelay(true)) {
            tracing::debug!(error = %e, "TCP_NODELAY not set on a REST connection");
        }
    }

    fn tcp(&mut self) -> io::Result<&mut TcpStream> {
        self.tcp
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let room = buf.remaining();
        let before = buf.filled().len();
        let polled = Pin::new(self.tcp()?).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && room > 0 && buf.filled().len() == before {
            self.client_closed = true;
        }
        polled
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.tcp()?).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.tcp()?).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.as_ref().is_some_and(|t| t.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.tcp()?).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.tcp()?).poll_shutdown(cx)
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        if self.client_closed {
            return;
        }
        // Outside a runtime (or in one shutting down) the socket just closes.
        if let (Some(tcp), Ok(rt)) = (self.tcp.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(linger(tcp));
        }
    }
}

/// Closes the write side, then reads and discards until the client closes,
/// [`LINGER`] passes or [`LINGER_BYTES`] arrived; dropping `tcp` closes it.
async fn linger(mut tcp: TcpStream) {
    // Already closed by the server's own shutdown, if it did one: harmless.
    let _ = tcp.shutdown().await;
    let mut left = LINGER_BYTES;
    let mut scratch = vec![0u8; 16 * 1024];
    let drain = async {
        while let Ok(n @ 1..) = tcp.read(&mut scratch).await {
            left = left.saturating_sub(n);
            if left == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Middleware: a response that leaves part of its request's body unread
/// says `Connection: close` — the server (hyper) closes such a connection
/// after the response, and a client that was not told would reuse it.
pub async fn close_if_unread(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let ended = Arc::new(AtomicBool::new(false));
    let body = Body::new(Watched {
        inner: body,
        ended: ended.clone(),
    });
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if !ended.load(Relaxed) {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A request body that notes when it has been read to the end.
struct Watched {
    inner: Body,
    ended: Arc<AtomicBool>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.ended.store(true, Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
