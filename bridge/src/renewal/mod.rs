//! Certificate renewal over a device's live session: a device publishes a CSR
//! on `devices/{id}/cert/request` and gets its new certificate on
//! `devices/{id}/cert/response` (or the MQTT 5 Response Topic it named below
//! that, with its Correlation Data copied). Its current session goes on; the
//! new certificate works on its next connect; its earlier certificates are
//! revoked after `bridge.certs.grace_secs` ([`revoker`]).
//!
//! The identity is the topic's, which the broker node has already tied to the
//! publisher's certificate (a device may publish only under its own
//! `devices/{id}/`); only the key is taken from the CSR. An answer never goes
//! to another device's topics, whatever the request names. Nothing is issued
//! for a bad request. Every attempt leaves a `provisioning_attempts` row.
//!
//! [`link`] holds the MQTT 5 connections (one per node) this needs; the
//! bridge's main connections speak MQTT 3.1.1, which carries no properties.

mod link;
mod revoker;
mod sign;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deadpool_postgres::Pool;
use kumo_certs::files::PkiDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::settings::Settings;
pub use sign::{Answer, Renewer};

/// Topic filter of every device's renewal requests.
pub const REQUESTS: &str = "devices/+/cert/request";

/// Why renewal could not start.
#[derive(Debug, thiserror::Error)]
pub enum RenewalError {
    #[error("the PKI at {path}: {source}")]
    Pki {
        path: PathBuf,
        #[source]
        source: kumo_certs::CertError,
    },
    #[error("bridge.mqtt TLS for renewal: {0}")]
    Tls(#[from] crate::mqtt::tls::TlsError),
    #[error("bridge.mqtt.nodes entry {node:?} is not host:port")]
    Node { node: String },
}

/// The PKI directory renewal signs with, if renewal is configured.
pub fn pki_dir(settings: &Settings) -> Option<&Path> {
    settings
        .certs
        .pki_dir
        .as_deref()
        .or(settings.provision.pki_dir.as_deref())
}

/// Starts renewal when a PKI directory and the MQTT side are configured:
/// one MQTT 5 link per node with the renewal service certificate (issued into
/// the PKI on first use, `<client id>-certs`), and the revoker.
pub fn start(
    settings: &Settings,
    pool: Pool,
    shutdown: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, RenewalError> {
    let (Some(dir), Some(ca)) = (pki_dir(settings), settings.mqtt.ca.as_ref()) else {
        return Ok(Vec::new());
    };
    if !settings.mqtt.enabled() {
        return Ok(Vec::new());
    }
    let pki_err = |source| RenewalError::Pki {
        path: dir.to_path_buf(),
        source,
    };
    let pki = PkiDir::open(dir).map_err(pki_err)?;
    let name = format!("{}-certs", settings.mqtt.client_id);
    let (cert, key) = pki.ensure_service(&name).map_err(pki_err)?;
    let tls = crate::mqtt::tls::client_config(ca, &cert, &key)?;
    let files = (ca.clone(), cert, key);
    let reload: Arc<dyn Fn() -> Option<Arc<rustls::ClientConfig>> + Send + Sync> =
        Arc::new(move || crate::mqtt::tls::client_config(&files.0, &files.1, &files.2).ok());
    let renewer = Arc::new(Renewer::new(pki, pool, settings.certs.clone()));
    let mut tasks = vec![tokio::spawn(revoker::run(
        renewer.clone(),
        std::time::Duration::from_secs(settings.certs.revoke_check_secs),
        shutdown.clone(),
    ))];
    for node in &settings.mqtt.nodes {
        let (host, port) = node
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| RenewalError::Node { node: node.clone() })?;
        let target = link::Target {
            host,
            port,
            client_id: name.clone(),
            tls: tls.clone(),
            reload: reload.clone(),
            reconnect: std::time::Duration::from_secs(settings.mqtt.reconnect_secs.max(1)),
        };
        tasks.push(tokio::spawn(link::run(
            target,
            renewer.clone(),
            shutdown.clone(),
        )));
    }
    tracing::info!(service = %name, nodes = settings.mqtt.nodes.len(), "certificate renewal on");
    Ok(tasks)
}
