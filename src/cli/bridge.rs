//! `kumo bridge`: the REST bridge alone, against an existing database.
//!
//! `kumo up` runs the private database itself; this subcommand needs
//! `database.url`. It applies pending migrations before serving.

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
    let shutdown = super::shutdown_token();
    let bridge = kumo_bridge::start(bridge_settings, pool, shutdown)
        .await
        .context("starting the bridge")?;
    println!("kumo bridge listening on http://{}", bridge.http_addr());
    bridge.wait().await.context("running the bridge")?;
    Ok(())
}
