//! Binding the REST listener, serving, and graceful shutdown with a deadline.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use deadpool_postgres::Pool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::commands::{CommandLog, CommandSink, NoDelivery};
use crate::ingest::ReadingWriter;
use crate::live::LiveFeed;
use crate::mqtt::{MqttSink, MqttStatus, Outbox, RunningMqtt};
use crate::ratelimit::RateLimiter;
use crate::settings::Settings;
use crate::state::AppState;

/// Why the bridge could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{key} {addr} is already in use")]
    AddrInUse { key: &'static str, addr: SocketAddr },
    #[error("cannot listen on {key} {addr}: {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the REST server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("the REST server task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("cannot start the REST API's runtime (bridge.api_threads): {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot start the MQTT side: {0}")]
    Mqtt(#[from] crate::mqtt::MqttError),
    #[error("cannot start device provisioning: {0}")]
    Provision(#[from] crate::provision::ProvisionError),
    #[error("cannot start certificate renewal: {0}")]
    Renewal(#[from] crate::renewal::RenewalError),
}

/// The bridge's database pools: `main` for its own work (readings, presence,
/// command delivery, rules, webhooks), `api` for the REST API's requests.
/// (No `Debug`: the connection string may hold a password.)
#[derive(Clone)]
pub struct Pools {
    main: Pool,
    api: Option<Pool>,
    /// Where to listen for token revocations (`Pools::listening_on`).
    listen: Option<String>,
}

impl Pools {
    /// `api` (built with `bridge.api_pool_size` connections) for requests, or
    /// none: requests share `main`. The API's pool is used only by the API's
    /// tasks, so its connections are opened, and driven, on the API's runtime.
    pub fn new(main: Pool, api: Option<Pool>) -> Self {
        Self {
            main,
            api,
            listen: None,
        }
    }

    /// The database's connection string, for a connection of the bridge's
    /// own that listens for token revocations: with it, accepted tokens are
    /// kept for `bridge.auth_cache_secs`; without, every request looks its
    /// token up.
    pub fn listening_on(mut self, url: impl Into<String>) -> Self {
        self.listen = Some(url.into());
        self
    }

    fn api(&self) -> &Pool {
        self.api.as_ref().unwrap_or(&self.main)
    }
}

/// One pool for everything: requests share the bridge's pool.
impl From<Pool> for Pools {
    fn from(main: Pool) -> Self {
        Self::new(main, None)
    }
}

/// A bridge that is serving.
#[derive(Debug)]
pub struct RunningBridge {
    http_addr: SocketAddr,
    metrics_addr: SocketAddr,
    metrics_server: JoinHandle<()>,
    commands: Arc<CommandLog>,
    server: JoinHandle<Result<(), BridgeError>>,
    upkeep: JoinHandle<()>,
    mqtt: Option<RunningMqtt>,
    ingest: Option<JoinHandle<()>>,
    events: crate::events::EventHub,
    webhooks: crate::webhooks::Webhooks,
    rules_worker: JoinHandle<()>,
    demand_worker: JoinHandle<()>,
    provision: Option<(SocketAddr, JoinHandle<()>)>,
    renewal: Vec<JoinHandle<()>>,
    grace: Duration,
    /// Last: the REST server runs on it until everything above has stopped.
    api: ApiRuntime,
}

/// Where the REST API runs: a runtime of its own with `bridge.api_threads`
/// threads, or (0) the caller's. On its own threads a request is not queued
/// behind the readings the bridge ingests — in tokio's run queue, nor for a
/// core with as many threads of the bridge competing for one.
#[derive(Debug)]
struct ApiRuntime(Option<tokio::runtime::Runtime>);

impl ApiRuntime {
    fn start(threads: usize) -> Result<Self, BridgeError> {
        if threads == 0 {
            return Ok(Self(None));
        }
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("kumo-api")
            .enable_all()
            .build()
            .map(|rt| Self(Some(rt)))
            .map_err(BridgeError::Runtime)
    }

    fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.0 {
            Some(rt) => rt.spawn(task),
            None => tokio::spawn(task),
        }
    }
}

impl Drop for ApiRuntime {
    fn drop(&mut self) {
        // Unlike dropping it, allowed inside an async context: what still
        // runs there is dropped, and nothing waits for it.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl RunningBridge {
    /// The address the REST listener is bound to (useful with port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The address `/metrics` is served on (`bridge.metrics_listen`).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// Where device provisioning (TLS) listens, when it is on.
    pub fn provision_addr(&self) -> Option<SocketAddr> {
        self.provision.as_ref().map(|(a, _)| *a)
    }

    /// The command log, for the delivery side (mark sent, apply acks).
    pub fn commands(&self) -> Arc<CommandLog> {
        self.commands.clone()
    }

    /// The live event hub behind `GET /v1/events`.
    pub fn events(&self) -> crate::events::EventHub {
        self.events.clone()
    }

    /// The webhook service (rule actions enqueue through it).
    pub fn webhooks(&self) -> crate::webhooks::Webhooks {
        self.webhooks.clone()
    }

    /// The MQTT side's connection state and counters, when it runs.
    pub fn mqtt(&self) -> Option<Arc<MqttStatus>> {
        self.mqtt.as_ref().map(|m| m.status.clone())
    }

    /// Waits until the bridge has shut down (after the token is cancelled):
    /// the REST server, then the MQTT connections (which acknowledge what the
    /// reading writer committed last), then the writer.
    pub async fn wait(self) -> Result<(), BridgeError> {
        let result = self.server.await?;
        self.upkeep.abort();
        if tokio::time::timeout(self.grace, self.metrics_server)
            .await
            .is_err()
        {
            tracing::warn!("the metrics endpoint did not stop within the grace period");
        }
        if tokio::time::timeout(self.grace, self.rules_worker)
            .await
            .is_err()
        {
            tracing::warn!("rule executions did not finish within the grace period");
        }
        if tokio::time::timeout(self.grace, self.demand_worker)
            .await
            .is_err()
        {
            tracing::warn!("the demand-response worker did not stop within the grace period");
        }
        if let Some(mqtt) = self.mqtt {
            mqtt.wait(self.grace).await;
        }
        if let Some(ingest) = self.ingest {
            if tokio::time::timeout(self.grace, ingest).await.is_err() {
                tracing::warn!("the reading writer did not finish within the grace period");
            }
        }
        if let Some((_, provision)) = self.provision {
            if tokio::time::timeout(self.grace, provision).await.is_err() {
                tracing::warn!("provisioning did not stop within the grace period");
            }
        }
        for task in self.renewal {
            if tokio::time::timeout(self.grace, task).await.is_err() {
                tracing::warn!("certificate renewal did not stop within the grace period");
            }
        }
        // Only now: database connections opened by requests run on it.
        drop(self.api);
        result
    }
}

/// Starts the bridge. With `mqtt.ca`, `cert` and `key` set, it connects to
/// every node in `mqtt.nodes`, ingests what devices report and delivers
/// commands; without them it serves REST only and commands stay queued.
pub async fn start(
    settings: Settings,
    pools: impl Into<Pools>,
    shutdown: CancellationToken,
) -> Result<RunningBridge, BridgeError> {
    let pools = pools.into();
    if settings.mqtt.enabled() {
        let (sink, outbox) = MqttSink::channel();
        launch(settings, pools, shutdown, Arc::new(sink), Some(outbox)).await
    } else {
        launch(settings, pools, shutdown, Arc::new(NoDelivery), None).await
    }
}

/// Starts the bridge without its MQTT side, announcing new commands to `sink`.
pub async fn start_with_sink(
    settings: Settings,
    pools: impl Into<Pools>,
    shutdown: CancellationToken,
    sink: Arc<dyn CommandSink>,
) -> Result<RunningBridge, BridgeError> {
    launch(settings, pools.into(), shutdown, sink, None).await
}

async fn launch(
    settings: Settings,
    pools: Pools,
    shutdown: CancellationToken,
    sink: Arc<dyn CommandSink>,
    outbox: Option<Outbox>,
) -> Result<RunningBridge, BridgeError> {
    settings.validate().map_err(BridgeError::Config)?;
    let pool = pools.main.clone();
    let api = ApiRuntime::start(settings.api_threads)?;
    if let (Some(_), Some(ca), Some(cert), Some(key)) = (
        &outbox,
        &settings.mqtt.ca,
        &settings.mqtt.cert,
        &settings.mqtt.key,
    ) {
        // Fail before binding anything when the certificates are unusable.
        crate::mqtt::tls::client_config(ca, cert, key).map_err(crate::mqtt::MqttError::from)?;
    }
    let (listener, http_addr) = bind("bridge.listen", settings.listen).await?;
    let (metrics_listener, metrics_addr) =
        bind("bridge.metrics_listen", settings.metrics_listen).await?;
    let commands = Arc::new(CommandLog::new(
        pool.clone(),
        Duration::from_secs(settings.command_ttl_secs),
        sink,
        LiveFeed::default(),
        shutdown.clone(),
    ));
    let partition_pool = pool.clone();
    let (mqtt, ingest) = match outbox {
        Some(outbox) => {
            let (writer, ingest) =
                ReadingWriter::start(pool.clone(), settings.ingest.options(), shutdown.clone());
            let mqtt = crate::mqtt::start(
                &settings.mqtt,
                pool.clone(),
                commands.clone(),
                writer,
                outbox,
                shutdown.clone(),
            )?;
            (Some(mqtt), Some(ingest))
        }
        None => (None, None),
    };
    let renewal = if mqtt.is_some() {
        crate::renewal::start(&settings, pool.clone(), shutdown.clone())?
    } else {
        Vec::new()
    };
    let events = crate::events::EventHub::new(settings.events.clone());
    let webhooks = crate::webhooks::Webhooks::start(
        pool.clone(),
        settings.webhooks.clone(),
        events.clone(),
        shutdown.clone(),
    );
    crate::events::router::spawn(
        events.clone(),
        commands.live(),
        pool.clone(),
        Duration::from_secs(settings.events.owner_refresh_secs),
        shutdown.clone(),
    );
    let (rules, rules_inbox) = crate::rules::channel();
    let (demand, demand_worker) = crate::demand::worker::start(
        pool.clone(),
        commands.clone(),
        Duration::from_millis(settings.demand_response.poll_interval_ms),
        shutdown.clone(),
    );
    let tokens = Arc::new(crate::auth::TokenCache::new(Duration::from_secs(
        settings.auth_cache_secs,
    )));
    if let (Some(url), 1..) = (&pools.listen, settings.auth_cache_secs) {
        // On the API's threads: a revocation is heard by the runtime that
        // serves the requests, not behind the readings.
        api.spawn(crate::revocations::listen(
            url.clone(),
            tokens.clone(),
            shutdown.clone(),
        ));
    }
    let state = AppState {
        pool: pools.api().clone(),
        tokens: tokens.clone(),
        limiter: Arc::new(RateLimiter::new(
            settings.rate_limit.requests,
            Duration::from_secs(settings.rate_limit.window_secs),
        )),
        commands: commands.clone(),
        metrics: Default::default(),
        mqtt: mqtt.as_ref().map(|m| m.status.clone()),
        ownership: mqtt.as_ref().map(|m| m.ownership.clone()),
        events: events.clone(),
        webhooks: webhooks.clone(),
        rules,
        homes: settings.homes.clone(),
        energy: settings.energy.clone(),
        demand_response: settings.demand_response.clone(),
        demand,
    };
    let effects = crate::rules::Effects {
        pool: pool.clone(),
        commands: commands.clone(),
        events: events.clone(),
        webhooks: webhooks.clone(),
    };
    let rules_worker = crate::rules::start(rules_inbox, effects, shutdown.clone());
    let provision = crate::provision::start(
        &settings.provision,
        &settings.certs,
        pool.clone(),
        &settings.mqtt.nodes,
        shutdown.clone(),
    )
    .await?;
    let metrics_server = tokio::spawn(crate::metrics::serve(
        metrics_listener,
        crate::metrics::Sources {
            metrics: state.metrics.clone(),
            pool: pool.clone(),
            api_pool: pools.api.clone(),
            mqtt: state.mqtt.clone(),
        },
        shutdown.clone(),
    ));
    let app = crate::api::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let grace = Duration::from_secs(settings.shutdown_grace_secs);
    let stop = shutdown.clone();
    // Registered again with the runtime that serves it.
    let listener = listener.into_std().map_err(BridgeError::Serve)?;
    let server = api.spawn(async move {
        let listener = TcpListener::from_std(listener).map_err(BridgeError::Serve)?;
        // Connections that let the client read the last response (see
        // `linger`), without Nagle's delay; axum's connection info comes
        // with `tap_io`.
        let listener = crate::linger::LingeringListener(listener).tap_io(|io| io.set_nodelay());
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
    let upkeep = tokio::spawn(maintain(commands.clone(), partition_pool, shutdown));
    tracing::info!(addr = %http_addr, metrics = %metrics_addr, "bridge REST API listening");
    Ok(RunningBridge {
        http_addr,
        metrics_addr,
        metrics_server,
        commands,
        server,
        upkeep,
        mqtt,
        ingest,
        events,
        webhooks,
        rules_worker,
        demand_worker,
        provision,
        renewal,
        grace,
        api,
    })
}

/// Binds `addr` (the value of setting `key`), naming the key when it fails.
async fn bind(
    key: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), BridgeError> {
    let fail = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            BridgeError::AddrInUse { key, addr }
        } else {
            BridgeError::Bind { key, addr, source }
        }
    };
    let listener = TcpListener::bind(addr).await.map_err(fail)?;
    let bound = listener.local_addr().map_err(fail)?;
    Ok((listener, bound))
}

/// Background upkeep: expires undelivered commands past their TTL every few
/// seconds, keeps the next `readings` partition created (hourly), and wakes
/// the requests waiting for commands completed elsewhere (every second).
async fn maintain(commands: Arc<CommandLog>, pool: Pool, shutdown: CancellationToken) {
    tokio::join!(
        expire_and_partition(&commands, &pool, &shutdown),
        commands.poll_elsewhere()
    );
}

async fn expire_and_partition(commands: &CommandLog, pool: &Pool, shutdown: &CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut partitions_due = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if tokio::time::Instant::now() >= partitions_due {
            match crate::ingest::ensure_partitions(pool).await {
                Ok(()) => partitions_due += Duration::from_secs(3600),
                Err(e) => {
                    tracing::warn!(error = %e, "creating readings partitions failed; will retry")
                }
            }
        }
        match commands.expire_due().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "commands expired"),
            Err(e) => tracing::warn!(error = %e, "expiring commands failed; will retry"),
        }
    }
}
