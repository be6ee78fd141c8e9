//! Self-provisioning: a device that holds only Kumo's CA certificate sends a
//! CSR with a claim code and its hardware serial to `POST /v1/provision` on a
//! TLS listener of its own (server-authenticated: the device has no client
//! certificate yet), and gets back its device certificate, the CA and the
//! node addresses — registered to the code's account at once.
//!
//! Kumo assigns the identity (`dev-<random>`); the CSR's subject is ignored
//! and the role forced, as `kumo certs sign-csr` does. Attempts are rate
//! limited per remote address, a code is redeemed atomically (expiry,
//! revocation, uses), and every attempt leaves a `provisioning_attempts` row.
//! Nothing is issued on bad input.

pub mod codes;
pub mod tls;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use deadpool_postgres::Pool;
use kumo_certs::files::PkiDir;
use kumo_contract::DeviceId;
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use codes::{Attempt, Redeemed};

/// Longest provisioning request (a CSR is a few KB at most).
const MAX_REQUEST: usize = 16 * 1024;

/// What the provisioning service needs.
pub struct Provisioner {
    pool: Pool,
    pki: Mutex<PkiDir>,
    nodes: Vec<String>,
    per_minute: u32,
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    /// Lifetime and renewal point of the certificates it signs.
    validity: time::Duration,
    renew_at_percent: u8,
}

/// Why the provisioning listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("bridge.provision.{0} must be set when bridge.provision.listen is")]
    Missing(&'static str),
    #[error(transparent)]
    Tls(#[from] tls::TlsSetupError),
    #[error("the PKI at {path}: {source}")]
    Pki {
        path: PathBuf,
        #[source]
        source: kumo_certs::CertError,
    },
    #[error("reading the CA certificate {path}: {source}")]
    Ca {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on bridge.provision.listen {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Starts the TLS listener; returns its address and the server task.
pub async fn start(
    settings: &crate::settings::ProvisionSettings,
    certs: &crate::settings::DeviceCertSettings,
    pool: Pool,
    default_nodes: &[String],
    shutdown: CancellationToken,
) -> Result<Option<(SocketAddr, JoinHandle<()>)>, ProvisionError> {
    let Some(addr) = settings.listen else {
        return Ok(None);
    };
    let pki_dir = settings
        .pki_dir
        .clone()
        .ok_or(ProvisionError::Missing("pki_dir"))?;
    let cert = settings
        .cert
        .as_ref()
        .ok_or(ProvisionError::Missing("cert"))?;
    let key = settings
        .key
        .as_ref()
        .ok_or(ProvisionError::Missing("key"))?;
    let config = tls::server_config(cert, key)?;
    let pki = PkiDir::open(&pki_dir).map_err(|source| ProvisionError::Pki {
        path: pki_dir.clone(),
        source,
    })?;
    // Read at every provisioning (a CA rollover changes it); checked here.
    std::fs::read_to_string(pki.ca_path()).map_err(|source| ProvisionError::Ca {
        path: pki.ca_path(),
        source,
    })?;
    let nodes = if settings.nodes.is_empty() {
        default_nodes.to_vec()
    } else {
        settings.nodes.clone()
    };
    let tcp = TcpListener::bind(addr)
        .await
        .map_err(|source| ProvisionError::Bind { addr, source })?;
    let local = tcp
        .local_addr()
        .map_err(|source| ProvisionError::Bind { addr, source })?;
    let state = Arc::new(Provisioner {
        pool,
        pki: Mutex::new(pki),
        nodes,
        per_minute: settings.attempts_per_minute,
        seen: Mutex::new(HashMap::new()),
        validity: time::Duration::seconds(
            i64::try_from(certs.validity_secs).unwrap_or(i64::MAX / 2),
        ),
        renew_at_percent: certs.renew_at_percent,
    });
    let app = Router::new()
        .route("/v1/provision", post(provision))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST))
        .with_state(state)
        .into_make_service_with_connect_info::<tls::Remote>();
    let listener = tls::TlsListener::new(tcp, config);
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "the provisioning listener failed");
        }
    });
    tracing::info!(addr = %local, "device provisioning listening (TLS)");
    Ok(Some((local, server)))
}

/// `POST /v1/provision`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    claim_code: String,
    /// PEM `CERTIFICATE REQUEST`.
    csr: String,
    /// The device's hardware serial number.
    serial: String,
}

impl Provisioner {
    /// Counts an attempt from `ip`; `false` past the per-minute allowance.
    fn admit(&self, ip: IpAddr) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if seen.len() > 10_000 {
            seen.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        let entry = seen.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= Duration::from_secs(60) {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= self.per_minute
    }

    async fn audit(&self, a: Attempt<'_>) {
        let result = match self.pool.get().await {
            Ok(client) => codes::audit(&client, &a).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, outcome = a.outcome, "provisioning audit row not written");
        }
    }
}

fn parse(headers: &HeaderMap, body: &Bytes) -> Result<Request, ApiError> {
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or_default().trim() == "application/json");
    if !json {
        return Err(ApiError::bad_request(
            "the body must be application/json: {\"claim_code\", \"csr\", \"serial\"}",
        ));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    crate::text::check_json(&v)?;
    let r: Request = serde_json::from_value(v)
        .map_err(|e| ApiError::bad_request(format!("invalid provisioning request: {e}")))?;
    let serial = r.serial.trim();
    if serial.is_empty() || serial.len() > 64 {
        return Err(ApiError::bad_request("serial must be 1 to 64 characters"));
    }
    Ok(r)
}

async fn provision(
    State(p): State<Arc<Provisioner>>,
    ConnectInfo(tls::Remote(remote)): ConnectInfo<tls::Remote>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let remote_text = remote.ip().to_string();
    let attempt = |outcome, code, device, serial| Attempt {
        remote: &remote_text,
        code,
        outcome,
        device,
        serial,
    };
    if !p.admit(remote.ip()) {
        p.audit(attempt("rate_limited", None, None, None)).await;
        return Err(ApiError::too_many_requests());
    }
    let req = match parse(&headers, &body) {
        Ok(r) => r,
        Err(e) => {
            p.audit(attempt("bad_request", None, None, None)).await;
            return Err(e);
        }
    };
    let serial = req.serial.trim();
    let device = new_device_id().map_err(ApiError::internal)?;
    let mut client = p.pool.get().await?;
    let tx = client.transaction().await?;
    let (user, code) = match codes::redeem(&tx, &req.claim_code).await? {
        Redeemed::Account { user, code } => (user, code),
        Redeemed::Spent(code) => {
            drop(tx);
            let a = attempt("code_spent", Some(code), None, Some(serial));
            p.audit(a).await;
            return Err(ApiError::forbidden_because(
                "the claim code has expired, was revoked or is used up",
            ));
        }
        Redeemed::Unknown => {
            drop(tx);
            p.audit(attempt("code_unknown", None, None, Some(serial)))
                .await;
            return Err(ApiError::forbidden_because("the claim code is not known"));
        }
    };
    // Signing writes the PKI's files: one at a time, off the async workers.
    let signer = p.clone();
    let (csr, id) = (req.csr.clone(), device.clone());
    let signed = tokio::task::spawn_blocking(move || {
        let mut pki = signer.pki.lock().unwrap_or_else(|e| e.into_inner());
        // Follow a CA rollover begun by `kumo certs rollover begin`.
        pki.refresh()?;
        let signed = pki.sign_device_csr_for(&csr, &id, signer.validity)?;
        Ok::<_, kumo_certs::CertError>((signed, pki.trust_bundle_pem()?))
    })
    .await
    .map_err(ApiError::internal)?;
    let ((issued, _paths), ca_pem) = match signed {
        Ok(done) => done,
        Err(e) => {
            drop(tx);
            let a = attempt("bad_csr", Some(code), None, Some(serial));
            p.audit(a).await;
            return Err(ApiError::bad_request(format!("the CSR was refused: {e}")));
        }
    };
    tx.execute(
        "INSERT INTO devices (id, user_id, kind, name, serial_number)
         VALUES ($1, $2, 'remo', '', $3)",
        &[&device.as_str(), &user, &serial],
    )
    .await?;
    tx.commit().await?;
    drop(client);
    let a = attempt(
        "issued",
        Some(code),
        Some(device.as_str()),
        Some(issued.serial.as_str()),
    );
    p.audit(a).await;
    tracing::info!(device_id = %device, serial = %issued.serial, "device provisioned by claim code");
    let lifetime = issued.not_after - issued.not_before;
    let renew_at = issued.not_before + lifetime * (f64::from(p.renew_at_percent) / 100.0);
    let rfc3339 = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    Ok(Json(json!({
        "device_id": device.as_str(),
        "certificate": issued.cert_pem,
        "ca": ca_pem,
        "nodes": p.nodes,
        "serial": issued.serial,
        "not_after": rfc3339(issued.not_after),
        "renew_at": rfc3339(renew_at),
    })))
}

/// `dev-` and 16 random hex digits (64 bits).
fn new_device_id() -> Result<DeviceId, kumo_contract::IdError> {
    let mut bytes = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut bytes);
    DeviceId::parse(format!("dev-{}", hex::encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assigned_device_ids_are_valid_and_distinct() {
        let a = new_device_id().expect("valid");
        assert!(a.as_str().starts_with("dev-") && a.as_str().len() == 20);
        assert_ne!(a, new_device_id().expect("valid"));
    }
}
