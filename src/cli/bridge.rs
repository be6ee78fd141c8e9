//! `kumo bridge`: the REST bridge alone, against an existing database.
//!
//! `kumo up` runs the private database itself; this subcommand needs
//! `database.url`. It applies pending migrations before serving. MQTT
//! certificate paths missing from `[bridge.mqtt]` come from the PKI directory
//! (created on first run), as for `kumo broker`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

use crate::settings::Settings;

/// Arguments of `kumo bridge`.
#[derive(Debug, clap::Args)]
pub struct BridgeArgs {
    /// REST listen address; overrides `bridge.listen`.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Serve REST only: no broker connections (commands stay queued).
    #[arg(long)]
    pub no_mqtt: bool,
}

/// Fills certificate paths missing from `[bridge.mqtt]` from the PKI
/// directory: its CA and the bridge's service pair.
fn fill_cert_paths(
    settings: &Settings,
    mqtt: &mut kumo_bridge::MqttSettings,
) -> anyhow::Result<()> {
    if mqtt.ca.is_some() && mqtt.cert.is_some() && mqtt.key.is_some() {
        return Ok(());
    }
    let stack = super::broker::stack_paths(settings, &settings.broker.node_id)?;
    mqtt.ca.get_or_insert(stack.ca);
    // Only take the PKI's service pair when neither half was configured.
    if mqtt.cert.is_none() && mqtt.key.is_none() {
        mqtt.cert = Some(stack.bridge_cert);
        mqtt.key = Some(stack.bridge_key);
    }
    Ok(())
}

/// Runs the bridge until Ctrl-C or SIGTERM.
pub async fn run(args: BridgeArgs, settings: Settings) -> anyhow::Result<()> {
    let Some(url) = settings.database.url.as_deref() else {
        anyhow::bail!(
            "kumo bridge needs a database: set database.url (KUMO__DATABASE__URL=postgres://…), \
             or use `kumo up`, which runs a private PostgreSQL and the bridge together"
        );
    };
    let mut bridge_settings = settings.bridge.clone();
    if let Some(listen) = args.listen {
        bridge_settings.listen = listen;
    }
    if args.no_mqtt {
        bridge_settings.mqtt.ca = None;
        bridge_settings.mqtt.cert = None;
        bridge_settings.mqtt.key = None;
    } else {
        fill_cert_paths(&settings, &mut bridge_settings.mqtt)?;
    }
    bridge_settings
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let pool = kumo_schema::connect_pool(
        url,
        settings.database.pool_size,
        Duration::from_secs(settings.database.connect_timeout_secs),
    )
    .context("connecting to database.url")?;
    {
        let mut client = pool.get().await.context("connecting to database.url")?;
        let report = kumo_schema::migrate(&mut client)
            .await
            .context("migrating the database")?;
        if !report.applied.is_empty() {
            tracing::info!(applied = ?report.applied, "database migrated");
        }
    }
    let api_pool = (bridge_settings.api_pool_size > 0)
        .then(|| {
            kumo_schema::connect_pool(
                url,
                bridge_settings.api_pool_size,
                Duration::from_secs(settings.database.connect_timeout_secs),
            )
            .context("building the REST API's database pool")
        })
        .transpose()?;
    let shutdown = super::shutdown_token();
    let pools = kumo_bridge::Pools::new(pool, api_pool).listening_on(url);
    let bridge = kumo_bridge::start(bridge_settings, pools, shutdown)
        .await
        .context("starting the bridge")?;
    println!(
        "kumo bridge listening on http://{} (metrics on http://{}/metrics)",
        bridge.http_addr(),
        bridge.metrics_addr()
    );
    if bridge.mqtt().is_none() {
        println!("kumo bridge: MQTT disabled; commands stay queued");
    }
    bridge.wait().await.context("running the bridge")?;
    Ok(())
}
