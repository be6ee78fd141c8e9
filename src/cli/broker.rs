//! `kumo broker`: runs one broker node until Ctrl-C or SIGTERM.
//!
//! Only wiring: certificate paths missing from `[broker]` come from the PKI
//! directory (created on first run), everything else is `kumo_broker`'s.

use std::net::SocketAddr;

use anyhow::Context;
use kumo_certs::files::PkiDir;

use crate::settings::Settings;

/// Arguments of `kumo broker`.
#[derive(Debug, clap::Args)]
pub struct BrokerArgs {
    /// MQTT/TLS listen address (overrides `broker.listen`).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Node id (overrides `broker.node_id`).
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
}

/// The stack's certificates in the PKI directory, created on first run (CA,
/// CRL, the node's server pair and the bridge's service pair).
pub(super) fn stack_paths(
    settings: &Settings,
    node_id: &str,
) -> anyhow::Result<kumo_certs::files::StackPaths> {
    let dir = settings.certs_dir();
    PkiDir::open_or_init(&dir)
        .and_then(|pki| pki.ensure_stack(node_id, &settings.certs.node_sans))
        .with_context(|| format!("preparing certificates in {}", dir.display()))
}

/// Fills certificate paths missing from `[broker]` from the PKI directory.
pub(super) fn fill_cert_paths(
    settings: &Settings,
    broker: &mut kumo_broker::Settings,
) -> anyhow::Result<()> {
    let peering =
        !broker.peers.is_empty() && broker.peer_cert.is_none() && broker.peer_key.is_none();
    if broker.ca.is_some()
        && broker.crl.is_some()
        && broker.cert.is_some()
        && broker.key.is_some()
        && !peering
    {
        return Ok(());
    }
    let stack = stack_paths(settings, &broker.node_id)?;
    // Nodes of one PKI share the ticket secret: devices resume on any of them.
    broker
        .session_ticket_key_file
        .get_or_insert_with(|| settings.certs_dir().join("session-ticket.key"));
    broker.ca.get_or_insert(stack.ca);
    broker.crl.get_or_insert(stack.crl);
    // Only take the PKI's node pair when neither half was configured.
    if broker.cert.is_none() && broker.key.is_none() {
        broker.cert = Some(stack.node_cert);
        broker.key = Some(stack.node_key);
    }
    if peering {
        broker.peer_cert = Some(stack.peer_cert);
        broker.peer_key = Some(stack.peer_key);
    }
    Ok(())
}

/// Runs a broker node to completion.
pub async fn run(args: BrokerArgs, settings: Settings) -> anyhow::Result<()> {
    let mut broker = settings.broker.clone();
    if let Some(listen) = args.listen {
        broker.listen = listen;
    }
    if let Some(node_id) = args.node_id {
        broker.node_id = node_id;
    }
    broker
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    fill_cert_paths(&settings, &mut broker)?;
    let shutdown = super::shutdown_token();
    let node = kumo_broker::start(broker.clone(), shutdown)
        .await
        .context("starting the broker node")?;
    tracing::info!(
        node = %broker.node_id,
        mqtt = %node.mqtt_addr(),
        http = %node.http_addr(),
        "broker node running; Ctrl-C to stop"
    );
    node.wait()
        .await
        .context("broker node stopped with an error")?;
    Ok(())
}
