//! Enrolling with a claim code, as a device out of the box does: each
//! simulated device makes its own key and CSR and posts them with the claim
//! code and its serial to the provisioning listener (`POST /v1/provision`,
//! TLS verified against Kumo's CA); Kumo answers with the device's identity
//! (`dev-…`) and certificate, already registered to the code's account.
//!
//! The pair is kept in `device_cert_dir` as `{id}.crt` / `{id}.key`, and the
//! identity under the device's slot name (`{slot}.claimed`, the slot being the
//! configured `{id_prefix}-{index}`), so the next run reuses it and spends no
//! code. A provisioning listener that limits attempts (429) is waited out.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kumo_contract::DeviceId;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::error::SimError;
use crate::tls::TlsContext;

/// Longest answer read (a certificate, a CA bundle, a few addresses).
const MAX_ANSWER: u64 = 256 * 1024;
/// Attempts before a device gives up (rate limits are waited out in between).
const ATTEMPTS: u32 = 60;

/// Where and with what to enrol.
pub struct Claim<'a> {
    pub code: &'a str,
    /// `host:port` of the provisioning listener; the host is also the name its
    /// certificate is checked against.
    pub addr: &'a str,
    pub dir: &'a Path,
}

/// The identity device `slot` was given, enrolling it first if it never was.
pub async fn identity(
    claim: &Claim<'_>,
    slot: &DeviceId,
    tls: &TlsContext,
    stop: &CancellationToken,
) -> Result<DeviceId, SimError> {
    let err = |reason: String| SimError::Claim {
        slot: slot.to_string(),
        reason,
    };
    let record = claim.dir.join(format!("{slot}.claimed"));
    if let Ok(text) = std::fs::read_to_string(&record) {
        let id = DeviceId::parse(text.trim())?;
        if claim.dir.join(format!("{id}.crt")).exists()
            && claim.dir.join(format!("{id}.key")).exists()
        {
            return Ok(id);
        }
    }
    let key = rcgen::KeyPair::generate().map_err(|e| err(e.to_string()))?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .and_then(|p| p.serialize_request(&key))
        .and_then(|r| r.pem())
        .map_err(|e| err(e.to_string()))?;
    let body = serde_json::json!({"claim_code": claim.code, "csr": csr, "serial": slot.as_str()})
        .to_string();
    let config = tls.server_only_config()?;
    let mut attempt = 0;
    let answer = loop {
        attempt += 1;
        match post(claim.addr, &config, &body).await {
            Ok((200, answer)) => break answer,
            Ok((429, _)) | Err(_) if attempt < ATTEMPTS => {
                // Spread the waiting devices over the limiter's next minute.
                let wait = Duration::from_millis(2_000 + u64::from(attempt % 7) * 1_000);
                tokio::select! {
                    _ = stop.cancelled() => return Err(err("stopped".into())),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Ok((status, answer)) => {
                let why = answer["message"].as_str().unwrap_or("no reason given");
                return Err(err(format!("HTTP {status}: {why}")));
            }
            Err(e) => return Err(err(e)),
        }
    };
    let id = answer["device_id"]
        .as_str()
        .ok_or_else(|| err("the answer has no device_id".into()))?;
    let id = DeviceId::parse(id)?;
    let cert = answer["certificate"]
        .as_str()
        .ok_or_else(|| err("the answer has no certificate".into()))?;
    let write = crate::provision::write_file;
    write(
        &claim.dir.join(format!("{id}.key")),
        key.serialize_pem().as_bytes(),
        true,
    )?;
    write(&claim.dir.join(format!("{id}.crt")), cert.as_bytes(), false)?;
    write(&record, id.as_str().as_bytes(), false)?;
    tracing::info!(slot = %slot, device_id = %id, "simulated device enrolled with the claim code");
    Ok(id)
}

/// `POST /v1/provision` over TLS; the status and the JSON answer.
async fn post(
    addr: &str,
    config: &Arc<rustls::ClientConfig>,
    body: &str,
) -> Result<(u16, serde_json::Value), String> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!(
        "POST /v1/provision HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let mut limited = (&mut tls).take(MAX_ANSWER);
    let read = tokio::time::timeout(Duration::from_secs(30), limited.read_to_end(&mut raw))
        .await
        .map_err(|_| "no answer in time".to_string())?;
    // A server that closes without TLS close_notify ends in an error after
    // the whole answer: keep what came.
    if let Err(e) = read {
        if raw.is_empty() {
            return Err(e.to_string());
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, json) = text.split_once("\r\n\r\n").ok_or("not an HTTP answer")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("not an HTTP status line")?;
    Ok((status, serde_json::from_str(json).unwrap_or_default()))
}
