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
    /// Broker nodes to run: `node-1` … `node-N` (from `broker.node_id`), each with
    /// its own certificate, on consecutive ports from `broker.listen` and
    /// `broker.http_listen` (port 0 stays 0); the bridge connects to all of them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    nodes: u16,
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
    // Before the database: a second `up` here would otherwise find the
    // private server "ready" (the first one's) and fail later, unclearly.
    let _lock = crate::data_lock::lock(&settings.data_dir)?;
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
        format!("            url: {}", kumo_schema::redacted_url(db.url())),
        format!(
            "            migrations: {} applied now, {} already",
            report.applied.len(),
            report.already.len()
        ),
    ];

    let mut nodes = Vec::new();
    let count = if args.no_broker { 0 } else { args.nodes };
    let listens: Vec<_> = (0..count)
        .map(|k| node_settings(&settings.broker, k).listen)
        .collect();
    for k in 0..count {
        let mut cfg = node_settings(&settings.broker, k);
        // Several nodes are one cloud: each links to the others (see
        // `kumo_broker` peering), unless they listen on ephemeral ports.
        if cfg.peers.is_empty() && listens.iter().all(|a| a.port() != 0) {
            cfg.peers = listens
                .iter()
                .filter(|a| **a != cfg.listen)
                .map(|a| format!("localhost:{}", a.port()))
                .collect();
        }
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        super::broker::fill_cert_paths(settings, &mut cfg)?;
        let node = kumo_broker::start(cfg.clone(), services.clone())
            .await
            .with_context(|| format!("starting broker node {}", cfg.node_id))?;
        summary.push(format!(
            "  broker    node {} on mqtts://{} (devices: mutual TLS), metrics http://{}/metrics",
            cfg.node_id,
            node.mqtt_addr(),
            node.http_addr()
        ));
        nodes.push(node);
    }

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
        // Devices enrol with claim codes on a TLS listener of their own.
        let provision = &mut cfg.provision;
        provision
            .listen
            .get_or_insert(std::net::SocketAddr::from(([127, 0, 0, 1], 8443)));
        provision.pki_dir.get_or_insert(settings.certs_dir());
        if provision.cert.is_none() && provision.key.is_none() {
            let server = super::broker::stack_paths(settings, "provision")?;
            provision.cert = Some(server.node_cert);
            provision.key = Some(server.node_key);
        }
        let mqtt = &mut cfg.mqtt;
        if !nodes.is_empty() {
            mqtt.nodes = nodes
                .iter()
                .map(|n| format!("localhost:{}", n.mqtt_addr().port()))
                .collect();
        }
        let pools = db.bridge_pools(&settings.database, cfg.api_pool_size)?;
        let running = kumo_bridge::start(cfg, pools, services.clone())
            .await
            .context("starting the bridge")?;
        summary.push(format!(
            "  bridge    REST API on http://{} (Nature /1 API, /v1, /healthz), metrics http://{}/metrics",
            running.http_addr(),
            running.metrics_addr()
        ));
        if let Some(addr) = running.provision_addr() {
            summary.push(format!(
                "  provision devices enrol at https://{addr}/v1/provision (claim codes: /v1/claim_codes)"
            ));
        }
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
    for node in nodes {
        match tokio::time::timeout(deadline, node.wait()).await {
            Ok(r) => r.context("broker node stopped with an error")?,
            Err(_) => tracing::warn!("broker node did not stop within {deadline:?}"),
        }
    }
    outcome
}

/// The settings of the `k`-th node (0-based) `up` runs: the configured node
/// for `k = 0`; after it the next ids (`node-1` → `node-2`, else `id-2`) on
/// the next ports, each with the PKI's certificate for its own id.
fn node_settings(base: &kumo_broker::Settings, k: u16) -> kumo_broker::Settings {
    let mut cfg = base.clone();
    if k == 0 {
        return cfg;
    }
    let (stem, first) = match base.node_id.rsplit_once('-') {
        Some((stem, n)) if n.parse::<u32>().is_ok() => (stem.to_string(), n.parse().unwrap_or(1)),
        _ => (base.node_id.clone(), 1),
    };
    cfg.node_id = format!("{stem}-{}", first + u32::from(k));
    let shift = |a: std::net::SocketAddr| match a.port() {
        0 => a,
        p => std::net::SocketAddr::new(a.ip(), p.saturating_add(k)),
    };
    cfg.listen = shift(base.listen);
    cfg.http_listen = shift(base.http_listen);
    // Its own identity: never the configured node's pairs.
    cfg.cert = None;
    cfg.key = None;
    cfg.peer_cert = None;
    cfg.peer_key = None;
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn further_nodes_take_the_next_ids_and_ports() {
        let base = kumo_broker::Settings::default();
        let second = node_settings(&base, 1);
        assert_eq!(second.node_id, "node-2");
        assert_eq!(second.listen.port(), base.listen.port() + 1);
        assert_eq!(second.http_listen.port(), base.http_listen.port() + 1);
        let custom = kumo_broker::Settings {
            node_id: "tokyo".into(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            ..base.clone()
        };
        let third = node_settings(&custom, 2);
        assert_eq!(third.node_id, "tokyo-3");
        assert_eq!(third.listen.port(), 0, "port 0 stays 0");
        assert_eq!(node_settings(&base, 0).node_id, "node-1");
    }
}
