//! The device-facing TCP listener: accepts on the multi-threaded runtime and runs
//! every TLS handshake in its own task with a deadline.
//!
//! A connection waits for its ClientHello without holding anything scarce; only
//! the CPU-heavy part of the handshake takes a permit from the handshake
//! semaphore, so a thousand silent sockets cannot starve real devices. After the
//! handshake the certificate's serial is checked against the live revocation set
//! and its identity extracted before the MQTT session starts. During a connect
//! storm, [`crate::admission`] turns away, once their ClientHello is in and
//! before any TLS work, the connections whose handshake could not finish in time.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use kumo_contract::Identity;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::session::{self, Node};
use crate::tls::{self, TlsSlot};
use kumo_tls_io::ServerTls as TlsIo;

/// Limits shared by all connections.
pub(crate) struct Gate {
    pub connections: Arc<Semaphore>,
    pub handshakes: Arc<Semaphore>,
    pub admission: Arc<crate::admission::Admission>,
}

/// Accepts until `shutdown`; connection tasks are tracked by `tasks`.
pub(crate) async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    tls: Arc<TlsSlot>,
    gate: Arc<Gate>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(permit) = gate.connections.clone().try_acquire_owned() else {
            node.metrics.handshake("max_connections");
            drop(socket);
            continue;
        };
        let _ = socket.set_nodelay(true);
        set_tcp_keepalive(&socket);
        let deadline = Instant::now() + node.settings.handshake_timeout();
        // Boxed: the handshake's state is large and gone once it ends, so an
        // idle connection's task keeps only the session's own (small) future.
        let handshake = Box::pin(handshake(
            socket,
            peer,
            node.clone(),
            tls.clone(),
            gate.clone(),
            deadline,
        ));
        let node = node.clone();
        tasks.spawn(async move {
            node.metrics.connections_open.fetch_add(1, Relaxed);
            if let Some(verified) = handshake.await {
                verified.serve(node.clone(), deadline).await;
            }
            node.metrics.connections_open.fetch_sub(1, Relaxed);
            drop(permit);
        });
    }
}

/// A connection whose TLS handshake succeeded and whose certificate names a
/// Kumo identity that is not revoked.
struct Verified {
    stream: Box<TlsIo>,
    identity: Identity,
    serial: String,
}

impl Verified {
    /// The MQTT session on this connection (takes `self` whole, so nothing of
    /// it stays behind in the caller's future).
    fn serve(self, node: Arc<Node>, deadline: Instant) -> impl std::future::Future<Output = ()> {
        session::serve(self.stream, self.identity, self.serial, node, deadline)
    }
}

/// The TLS handshake and certificate checks; `None` when refused (counted).
async fn handshake(
    socket: TcpStream,
    peer: SocketAddr,
    node: Arc<Node>,
    tls: Arc<TlsSlot>,
    gate: Arc<Gate>,
    deadline: Instant,
) -> Option<Verified> {
    let metrics = &node.metrics;
    let refused = |reason: &str| {
        metrics.handshake(reason);
        None
    };
    let hello =
        tokio::time::timeout_at(deadline, TlsIo::hello(socket, || tls.get().config.clone()));
    let mut stream = match hello.await {
        Err(_) => return refused("timeout"),
        Ok(Err(e)) => return refused(tls::refusal_reason(&e)),
        Ok(Ok(stream)) => Box::new(stream),
    };
    // Before any TLS work: a handshake that would only time out is refused now.
    let Some(ticket) = gate.admission.admit() else {
        metrics.connects_shed.fetch_add(1, Relaxed);
        return refused("shed");
    };
    // A slot is held for each step's CPU work only, never while the client's
    // next flight is on its way: a client that stalls costs a socket.
    let mut ticket = Some(ticket);
    loop {
        let step_ticket = ticket.take().unwrap_or_else(|| gate.admission.resume());
        let Ok(Ok(permit)) = tokio::time::timeout_at(deadline, gate.handshakes.acquire()).await
        else {
            return refused("timeout");
        };
        metrics.handshakes_in_flight.fetch_add(1, Relaxed);
        let started = Instant::now();
        let step = tokio::time::timeout_at(deadline, stream.handshake_step()).await;
        metrics.handshakes_in_flight.fetch_sub(1, Relaxed);
        drop(permit);
        drop(step_ticket);
        gate.admission.finished(started.elapsed());
        let more = match step {
            Ok(Ok(true)) => break,
            Ok(Ok(false)) => tokio::time::timeout_at(deadline, stream.read_handshake()).await,
            Ok(Err(e)) => Ok(Err(e)),
            Err(elapsed) => Err(elapsed),
        };
        match more {
            Err(_) => return refused("timeout"),
            Ok(Err(e)) => {
                let reason = tls::refusal_reason(&e);
                tracing::debug!(%peer, reason, error = %e, "TLS handshake refused");
                return refused(reason);
            }
            Ok(Ok(())) => {}
        }
    }
    let Some(der) = stream.peer_certificates().and_then(|c| c.first()) else {
        return refused("no_certificate");
    };
    let serial = match kumo_certs::serial_of_der(der) {
        Ok(s) => s,
        Err(_) => return refused("bad_certificate"),
    };
    // Resumed sessions skip the verifier, so the live revocation set is checked here too.
    if tls.get().revoked.contains(&serial) {
        tracing::info!(%peer, serial, "revoked certificate refused");
        return refused("revoked");
    }
    // So is the validity: a ticket can outlive the certificate it was made for.
    let now = time::OffsetDateTime::now_utc();
    match kumo_certs::validity_of_der(der) {
        Ok((from, until)) if from <= now && now <= until => {}
        Ok(_) => return refused("expired"),
        Err(_) => return refused("bad_certificate"),
    }
    let identity = match kumo_certs::identity_from_der(der) {
        Ok(i) => i,
        Err(e) => {
            tracing::info!(%peer, error = %e, "certificate carries no Kumo identity");
            return refused("bad_identity");
        }
    };
    metrics.handshake("ok");
    if matches!(identity, Identity::Service { .. }) {
        limit_send_buffer(stream.socket(), node.settings.service_send_buffer);
    }
    Some(Verified {
        stream,
        identity,
        serial,
    })
}

/// Caps the kernel's send buffer (see `broker.service_send_buffer`); 0 leaves
/// autotuning on. A failure only costs the cap: the session works either way.
fn limit_send_buffer(socket: &TcpStream, bytes: usize) {
    if bytes > 0 {
        if let Err(e) = socket2::SockRef::from(socket).set_send_buffer_size(bytes) {
            tracing::warn!(error = %e, "cannot limit a service session's send buffer");
        }
    }
}

/// TCP keepalive on every connection: a peer that vanished without a FIN is
/// found even when MQTT keepalive is off (3.1.1 keepalive 0 means none).
fn set_tcp_keepalive(socket: &tokio::net::TcpStream) {
    let ka = socket2::TcpKeepalive::new()
        .with_time(std::time::Duration::from_secs(120))
        .with_interval(std::time::Duration::from_secs(15))
        .with_retries(4);
    let _ = socket2::SockRef::from(socket).set_tcp_keepalive(&ka);
}
