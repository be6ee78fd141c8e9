//! `kumo up`: the whole stack on one machine.
//!
//! Order matters: the database first (private server unless `database.url` is
//! set), then migrations, the PKI, the broker node and the bridge; on shutdown
//! the reverse, so the database outlives everything that writes to it. If the
//! private database dies underneath us, everything stops with an error rather
//! than limping on.

use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::database::Database;
use crate::settings::Settings;

/// Arguments of `kumo up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Do not start the broker node.
    #[arg(long)]
    no_broker: bool,
    /// Do not start the REST bridge.
    #[arg(long)]
    no_bridge: bool,
}

/// The line printed once everything listens; scripts and tests wait for it.
pub const READY_LINE: &str = "Kumo is up; press Ctrl-C to stop.";

pub async fn run(args: UpArgs, settings: Settings) -> anyhow::Result<()> {
    let shutdown = super::shutdown_token();
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data_dir {}", settings.data_dir.display()))?;
    let db = Database::open(&settings.database).await?;
    let result = run_services(&args, &settings, &db, shutdown).await;
    db.close().await;
    if result.is_ok() {
        println!("Kumo stopped.");
    }
    result
}

async fn run_services(
    args: &UpArgs,
    settings: &Settings,
    db: &Database,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let report = db.migrate().await?;
    // Children of `shutdown`: cancelling `services` stops them without
    // pretending a signal arrived.
    let services = shutdown.child_token();
    let mut summary = vec![
        format!("  database  {}", db.describe()),
        format!("            url: {}", db.url()),
        format!(
            "            migrations: {} applied now, {} already",
            report.applied.len(),
            report.already.len()
        ),
    ];

    let broker = if args.no_broker {
        None
    } else {
        let mut cfg = settings.broker.clone();
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        super::broker::fill_cert_paths(settings, &mut cfg)?;
        let node = kumo_broker::start(cfg.clone(), services.clone())
            .await
            .context("starting the broker node")?;
        summary.push(format!(
            "  broker    node {} on mqtts://{} (devices: mutual TLS), metrics http://{}/metrics",
            cfg.node_id,
            node.mqtt_addr(),
            node.http_addr()
        ));
        Some(node)
    };

    let bridge = if args.no_bridge {
        None
    } else {
        let mut cfg = settings.bridge.clone();
        // The bridge reaches devices through the node `up` runs, with the
        // service certificate from the same PKI (unless configured otherwise).
        let stack = super::broker::stack_paths(settings, &settings.broker.node_id)?;
        let mqtt = &mut cfg.mqtt;
        mqtt.ca.get_or_insert(stack.ca);
        if mqtt.cert.is_none() && mqtt.key.is_none() {
            mqtt.cert = Some(stack.bridge_cert);
            mqtt.key = Some(stack.bridge_key);
        }
        if let Some(node) = &broker {
            mqtt.nodes = vec![format!("localhost:{}", node.mqtt_addr().port())];
        }
        let pool = db.pool(&settings.database)?;
        let running = kumo_bridge::start(cfg, pool, services.clone())
            .await
            .context("starting the bridge")?;
        summary.push(format!(
            "  bridge    REST API on http://{} (Nature /1 API, /v1, /healthz)",
            running.http_addr()
        ));
        Some(running)
    };

    summary.push(format!("  pki       {}", settings.certs_dir().display()));
    summary.push(format!("  data      {}", settings.data_dir.display()));
    println!("Kumo is running:");
    for line in &summary {
        println!("{line}");
    }
    println!("{READY_LINE}");

    let outcome = tokio::select! {
        _ = shutdown.cancelled() => Ok(()),
        _ = db.died() => Err(anyhow::anyhow!(
            "the private PostgreSQL exited unexpectedly; stopping (see its log next to the data directory)"
        )),
    };
    services.cancel();
    let deadline = Duration::from_secs(30);
    if let Some(bridge) = bridge {
        match tokio::time::timeout(deadline, bridge.wait()).await {
            Ok(r) => r.context("bridge stopped with an error")?,
            Err(_) => tracing::warn!("bridge did not stop within {deadline:?}"),
        }
    }
    if let Some(node) = broker {
        match tokio::time::timeout(deadline, node.wait()).await {
            Ok(r) => r.context("broker node stopped with an error")?,
            Err(_) => tracing::warn!("broker node did not stop within {deadline:?}"),
        }
    }
    outcome
}
