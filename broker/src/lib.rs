//! Kumo broker node: the device front door.
//!
//! Accepts mutual-TLS MQTT 3.1.1/5 connections, proves who is on each from the
//! client certificate, authorizes every topic against that identity and moves
//! fleet-level traffic through an embedded rumqttd router, while device-bound
//! messages reach their session through one wildcard subscription and an O(1)
//! lookup. See `ARCHITECTURE.md` for the path of a command and a reading.
//!
//! Module map: [`settings`] (configuration), `listener` (accept + TLS handshakes),
//! `tls` (trust, CRL, reload), `session` (MQTT), [`acl`] (authorization),
//! `fabric` (router plumbing), [`ownership`] (device → account, fed by the
//! bridge), `registry` (live sessions), `presence`,
//! [`metrics`] and `http` (observability).

pub mod acl;
mod admission;
mod codec;
mod confirm;
mod error;
mod fabric;
mod http;
mod listener;
mod mailbox;
mod message;
pub mod metrics;
pub mod ownership;
mod peering;
mod presence;
mod pressure;
mod registry;
mod retained;
mod session;
pub mod settings;
mod tickets;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use acl::{AccountDevices, AccountLookup, NoAccounts};
pub use error::BrokerError;
pub use fabric::COMMANDS_FILTER;
pub use metrics::Metrics;
pub use ownership::Ownership;
pub use registry::CloseReason;
pub use settings::Settings;

/// A started node; drop the shutdown token's clone or cancel it to stop.
pub struct RunningNode {
    mqtt_addr: SocketAddr,
    http_addr: SocketAddr,
    metrics: Arc<Metrics>,
    ownership: Arc<Ownership>,
    task: JoinHandle<Result<(), BrokerError>>,
}

impl RunningNode {
    /// The bound MQTT/TLS address (useful with port 0).
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt_addr
    }

    /// The bound HTTP address serving `/metrics` and `/healthz`.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The node's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The device ownership the bridge announced to this node.
    pub fn ownership(&self) -> Arc<Ownership> {
        self.ownership.clone()
    }

    /// Waits until the node has shut down (after the token is cancelled).
    pub async fn wait(self) -> Result<(), BrokerError> {
        self.task
            .await
            .map_err(|e| BrokerError::Task(e.to_string()))?
    }
}

/// Starts a node whose integrations reach the devices the bridge announces
/// on the ownership feed (`kumo_contract::ownership`).
pub async fn start(
    settings: Settings,
    shutdown: CancellationToken,
) -> Result<RunningNode, BrokerError> {
    let ownership = Arc::new(Ownership::default());
    launch(settings, ownership.clone(), ownership, shutdown).await
}

/// Starts a node whose integrations are scoped by `accounts` instead of the
/// ownership feed (which the node still follows; see [`RunningNode::ownership`]).
pub async fn start_with(
    settings: Settings,
    accounts: AccountLookup,
    shutdown: CancellationToken,
) -> Result<RunningNode, BrokerError> {
    launch(settings, accounts, Arc::new(Ownership::default()), shutdown).await
}

async fn launch(
    settings: Settings,
    accounts: AccountLookup,
    ownership: Arc<Ownership>,
    shutdown: CancellationToken,
) -> Result<RunningNode, BrokerError> {
    settings.validate().map_err(BrokerError::Config)?;
    let files = tls::TlsFiles {
        ca: settings
            .ca
            .clone()
            .ok_or(BrokerError::MissingPath { key: "ca" })?,
        crl: settings.crl.clone(),
        cert: settings
            .cert
            .clone()
            .ok_or(BrokerError::MissingPath { key: "cert" })?,
        key: settings
            .key
            .clone()
            .ok_or(BrokerError::MissingPath { key: "key" })?,
    };
    let resumption = tls::Resumption {
        session_cache: settings.tls_session_cache,
        shared_tickets: match &settings.session_ticket_key_file {
            Some(path) => Some(tickets::TicketSecret::load_or_create(path)?),
            None => None,
        },
    };
    let loaded = {
        let files = files.clone();
        let resumption = resumption.clone();
        tokio::task::spawn_blocking(move || tls::load(&files, &resumption))
            .await
            .map_err(|e| BrokerError::Task(e.to_string()))??
    };
    let mqtt = bind_with_backlog(settings.listen, settings.accept_backlog)
        .map_err(|e| BrokerError::bind("listen", settings.listen, e))?;
    let http = TcpListener::bind(settings.http_listen)
        .await
        .map_err(|e| BrokerError::bind("http_listen", settings.http_listen, e))?;
    let mqtt_addr = mqtt
        .local_addr()
        .map_err(|e| BrokerError::bind("listen", settings.listen, e))?;
    let http_addr = http
        .local_addr()
        .map_err(|e| BrokerError::bind("http_listen", settings.http_listen, e))?;

    let metrics = Arc::new(Metrics::default());
    let registry = Arc::new(registry::Registry::default());
    // The router and its links outlive sessions; they stop with the process.
    let internal = CancellationToken::new();
    let fabric = fabric::Fabric::start(
        &settings.node_id,
        settings.ingress_threads,
        settings.router_log_mib,
        registry.clone(),
        metrics.clone(),
        ownership.clone(),
        internal.clone(),
    )
    .await?;
    // Before any device connects: presence from this run is never older.
    fabric
        .publish(
            "kumo-node",
            message::Message::from_node(presence::epoch(&settings.node_id)),
            None,
        )
        .await;
    tokio::spawn(sweep_retained(
        fabric.clone(),
        metrics.clone(),
        internal.clone(),
    ));
    let slot = Arc::new(tls::TlsSlot::new(loaded));
    let gate = Arc::new(listener::Gate {
        // Sockets: the sessions plus those still handshaking, so a client
        // past the session limit that gets as far as CONNECT is told why.
        connections: Arc::new(Semaphore::new(
            settings.max_connections + settings.max_concurrent_handshakes,
        )),
        handshakes: Arc::new(Semaphore::new(settings.max_concurrent_handshakes)),
        // A quarter of the deadline is left for the client's round trips and CONNECT.
        admission: Arc::new(admission::Admission::new(
            settings.max_concurrent_handshakes,
            settings.handshake_timeout() * 3 / 4,
        )),
    });
    let sessions_stop = CancellationToken::new();
    let interest = peering::Interest::new();
    let pressure = pressure::Pressure::for_session_queue(settings.session_queue);
    peering::start(
        &settings,
        fabric.clone(),
        pressure.clone(),
        metrics.clone(),
        &interest,
        internal.clone(),
    )?;
    let node = Arc::new(session::Node {
        settings: settings.clone(),
        metrics: metrics.clone(),
        registry: registry.clone(),
        fabric,
        accounts,
        parking: Default::default(),
        wills: Default::default(),
        interest: interest.clone(),
        pressure,
        confirms: confirm::Confirmations::new(Duration::from_secs(settings.confirm_timeout_secs)),
        shutdown: sessions_stop.clone(),
    });
    let tasks = TaskTracker::new();
    let accept_stop = CancellationToken::new();
    let accept = tokio::spawn(listener::serve(
        mqtt,
        node,
        slot.clone(),
        gate,
        tasks.clone(),
        accept_stop.clone(),
    ));
    let watch_registry = registry.clone();
    tokio::spawn(tls::watch(
        files,
        slot,
        resumption,
        Duration::from_millis(settings.crl_poll_interval_ms),
        internal.clone(),
        move |revoked| {
            let n = watch_registry.kick_revoked(revoked);
            if n > 0 {
                tracing::info!(sessions = n, "closed sessions with revoked certificates");
            }
        },
    ));
    let http_stop = CancellationToken::new();
    let http_task = tokio::spawn(http::serve(http, metrics.clone(), http_stop.clone()));
    tracing::info!(node = %settings.node_id, %mqtt_addr, %http_addr, "broker node listening");

    let grace = Duration::from_millis(settings.shutdown_grace_ms);
    let task = tokio::spawn(async move {
        shutdown.cancelled().await;
        tracing::info!("broker node shutting down");
        accept_stop.cancel();
        let _ = accept.await;
        // Sessions tell their clients (v5 DISCONNECT) and publish presence themselves.
        let finished = registry.kick_all(CloseReason::Shutdown);
        let all = futures_util::future::join_all(finished.iter().map(|t| t.cancelled()));
        let _ = tokio::time::timeout(grace, all).await;
        sessions_stop.cancel();
        tasks.close();
        let _ = tokio::time::timeout(grace, tasks.wait()).await;
        // Give the ingress threads a moment to hand the last presence to the router.
        tokio::time::sleep(Duration::from_millis(50)).await;
        internal.cancel();
        http_stop.cancel();
        let _ = http_task.await;
        Ok(())
    });
    Ok(RunningNode {
        mqtt_addr,
        http_addr,
        metrics,
        ownership,
        task,
    })
}

/// Drops expired retained messages now and then (they are never sent once
/// expired; this returns their memory) and reports how many are held.
async fn sweep_retained(fabric: fabric::Fabric, metrics: Arc<Metrics>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let held = fabric.retained().sweep();
        metrics
            .retained_messages
            .store(held as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The device listener, with the kernel's accept queue sized by `backlog`
/// (tokio's `bind` fixes it at 1,024, short for a connect storm).
fn bind_with_backlog(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}
