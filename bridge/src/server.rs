//! Binding the REST listener, serving, and graceful shutdown with a deadline.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::commands::{CommandLog, CommandSink, NoDelivery};
use crate::ratelimit::RateLimiter;
use crate::settings::Settings;
use crate::state::AppState;

/// Why the bridge could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("bridge.listen {addr} is already in use")]
    AddrInUse { addr: SocketAddr },
    #[error("cannot listen on bridge.listen {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the REST server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("the REST server task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A bridge that is serving.
#[derive(Debug)]
pub struct RunningBridge {
    http_addr: SocketAddr,
    commands: Arc<CommandLog>,
    server: JoinHandle<Result<(), BridgeError>>,
    expiry: JoinHandle<()>,
}

impl RunningBridge {
    /// The address the REST listener is bound to (useful with port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The command log, for the delivery side (mark sent, apply acks).
    pub fn commands(&self) -> Arc<CommandLog> {
        self.commands.clone()
    }

    /// Waits until the bridge has shut down (after the token is cancelled).
    pub async fn wait(self) -> Result<(), BridgeError> {
        let result = self.server.await?;
        self.expiry.abort();
        result
    }
}

/// Starts the bridge with no command delivery yet (commands stay queued).
pub async fn start(
    settings: Settings,
    pool: Pool,
    shutdown: CancellationToken,
) -> Result<RunningBridge, BridgeError> {
    start_with_sink(settings, pool, shutdown, Arc::new(NoDelivery)).await
}

/// Starts the bridge, announcing new commands to `sink`.
pub async fn start_with_sink(
    settings: Settings,
    pool: Pool,
    shutdown: CancellationToken,
    sink: Arc<dyn CommandSink>,
) -> Result<RunningBridge, BridgeError> {
    settings.validate().map_err(BridgeError::Config)?;
    let addr = settings.listen;
    let listener = TcpListener::bind(addr).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            BridgeError::AddrInUse { addr }
        } else {
            BridgeError::Bind { addr, source }
        }
    })?;
    let http_addr = listener
        .local_addr()
        .map_err(|source| BridgeError::Bind { addr, source })?;
    let commands = Arc::new(CommandLog::new(
        pool.clone(),
        Duration::from_secs(settings.command_ttl_secs),
        sink,
    ));
    let state = AppState {
        pool,
        limiter: Arc::new(RateLimiter::new(
            settings.rate_limit.requests,
            Duration::from_secs(settings.rate_limit.window_secs),
        )),
        commands: commands.clone(),
        metrics: Default::default(),
    };
    let app = crate::api::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let grace = Duration::from_secs(settings.shutdown_grace_secs);
    let stop = shutdown.clone();
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .into_future();
        tokio::pin!(serve);
        tokio::select! {
            result = &mut serve => result.map_err(BridgeError::Serve),
            () = async { stop.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(grace_secs = grace.as_secs(),
                    "requests still running after the shutdown grace period; dropping them");
                Ok(())
            }
        }
    });
    let expiry = tokio::spawn(expire_commands(commands.clone(), shutdown));
    tracing::info!(addr = %http_addr, "bridge REST API listening");
    Ok(RunningBridge {
        http_addr,
        commands,
        server,
        expiry,
    })
}

/// Marks undelivered commands past their TTL as expired, every few seconds.
async fn expire_commands(commands: Arc<CommandLog>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match commands.expire_due().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "commands expired"),
            Err(e) => tracing::warn!(error = %e, "expiring commands failed; will retry"),
        }
    }
}
