//! Answering one renewal request: checks, signing with the PKI, the audit row
//! and the response document. Knows nothing of MQTT connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use kumo_certs::files::PkiDir;
use kumo_certs::CertError;
use kumo_contract::payload::{decode, AckResult, CertRequest, CertResponse};
use kumo_contract::topic::{self, Leaf};
use kumo_contract::DeviceId;

use crate::provision::codes::{self, Attempt};
use crate::settings::DeviceCertSettings;

/// Signs renewals for devices; shared by every node's link.
pub struct Renewer {
    pki: Arc<Mutex<PkiDir>>,
    pool: Pool,
    settings: DeviceCertSettings,
    /// When each device last renewed (for `min_interval_secs`).
    last: Mutex<HashMap<DeviceId, Instant>>,
}

/// A response and where it goes.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The device's default response topic or the Response Topic it named.
    pub topic: String,
    pub response: CertResponse,
    /// The request's outcome, for the audit and logs.
    pub outcome: &'static str,
}

impl Renewer {
    pub fn new(pki: PkiDir, pool: Pool, settings: DeviceCertSettings) -> Self {
        Self {
            pki: Arc::new(Mutex::new(pki)),
            pool,
            settings,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// The PKI, one user at a time (its files are not written concurrently).
    pub(crate) fn pki(&self) -> Arc<Mutex<PkiDir>> {
        self.pki.clone()
    }

    /// Answers device `device`'s request `body`; `response_topic` is the MQTT 5
    /// Response Topic, if the device set one. `node` names where it came from
    /// (for the audit row).
    pub async fn answer(
        &self,
        device: &DeviceId,
        body: &[u8],
        response_topic: Option<&str>,
        node: &str,
    ) -> Answer {
        let default_topic = topic::device_topic(device, Leaf::CertResponse);
        // Only ever the device's own response topics, whatever it names.
        let (reply_to, bad_reply_to) = match response_topic {
            Some(t) if topic::is_cert_response_topic(t, device) => (t.to_string(), false),
            Some(_) => (default_topic.clone(), true),
            None => (default_topic.clone(), false),
        };
        let refuse = |outcome, reason: String| Answer {
            topic: reply_to.clone(),
            response: failed(None, reason),
            outcome,
        };
        let mut answer = if bad_reply_to {
            refuse(
                "renew_bad_request",
                format!("the response topic must be {default_topic} or below it"),
            )
        } else {
            match decode::<CertRequest>(body) {
                Err(e) => refuse("renew_bad_request", format!("invalid request: {e}")),
                Ok(req) => self.sign(device, req).await,
            }
        };
        answer.topic = reply_to;
        let serial = answer.response.certificate.as_deref().and_then(serial_of);
        let audit = Attempt {
            remote: &format!("mqtt:{node}"),
            code: None,
            outcome: answer.outcome,
            device: Some(device.as_str()),
            serial: serial.as_deref(),
        };
        let written = match self.pool.get().await {
            Ok(client) => codes::audit(&client, &audit).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = written {
            tracing::warn!(error = %e, device_id = %device, "renewal audit row not written");
        }
        answer
    }

    async fn sign(&self, device: &DeviceId, req: CertRequest) -> Answer {
        let topic = topic::device_topic(device, Leaf::CertResponse);
        let min = Duration::from_secs(self.settings.min_interval_secs);
        // Checked and taken in one step, so two requests at once (through two
        // nodes, say) cannot both pass; given back if nothing is issued.
        let previous = {
            let mut last = lock(&self.last);
            if last.get(device).is_some_and(|at| at.elapsed() < min) {
                let reason = format!("renewed less than {} s ago; try again later", min.as_secs());
                return Answer {
                    topic,
                    response: failed(req.id, reason),
                    outcome: "renew_too_soon",
                };
            }
            last.insert(device.clone(), Instant::now())
        };
        let give_back = || {
            let mut last = lock(&self.last);
            match previous {
                Some(at) => last.insert(device.clone(), at),
                None => last.remove(device),
            };
        };
        let validity = time::Duration::seconds(clamp_i64(self.settings.validity_secs));
        let grace = time::Duration::seconds(clamp_i64(self.settings.grace_secs));
        let (pki, id, csr) = (self.pki.clone(), device.clone(), req.csr.clone());
        let signed = tokio::task::spawn_blocking(move || {
            let mut pki = pki.lock().unwrap_or_else(|e| e.into_inner());
            // Follow a CA rollover begun by `kumo certs rollover begin`.
            pki.refresh()?;
            let renewal = pki.renew_device_csr_pem(&csr, &id, validity, grace)?;
            let ca = pki.trust_bundle_pem()?;
            Ok::<_, CertError>((renewal, ca))
        })
        .await;
        let (renewal, ca) = match signed {
            Ok(Ok(done)) => done,
            Ok(Err(e)) if is_bad_csr(&e) => {
                give_back();
                return Answer {
                    topic,
                    response: failed(req.id, format!("the CSR was refused: {e}")),
                    outcome: "renew_bad_csr",
                };
            }
            Ok(Err(e)) => {
                give_back();
                tracing::error!(error = %e, device_id = %device, "renewal failed");
                return internal(topic, req.id);
            }
            Err(e) => {
                give_back();
                tracing::error!(error = %e, device_id = %device, "renewal task failed");
                return internal(topic, req.id);
            }
        };
        let issued = &renewal.issued;
        let lifetime = issued.not_after - issued.not_before;
        let renew_at =
            issued.not_before + lifetime * (f64::from(self.settings.renew_at_percent) / 100.0);
        tracing::info!(device_id = %device, serial = %issued.serial,
            superseded = renewal.superseded.len(), "device certificate renewed");
        Answer {
            topic,
            response: CertResponse {
                id: req.id,
                result: AckResult::Ok,
                reason: None,
                certificate: Some(issued.cert_pem.clone()),
                ca: Some(ca),
                not_after: Some(issued.not_after),
                renew_at: Some(renew_at),
                old_revoked_at: (!renewal.superseded.is_empty()).then_some(renewal.revoke_at),
            },
            outcome: "renewed",
        }
    }
}

fn failed(id: Option<String>, reason: String) -> CertResponse {
    CertResponse {
        id,
        result: AckResult::Failed,
        reason: Some(reason),
        certificate: None,
        ca: None,
        not_after: None,
        renew_at: None,
        old_revoked_at: None,
    }
}

fn internal(topic: String, id: Option<String>) -> Answer {
    Answer {
        topic,
        response: failed(id, "internal error; try again later".into()),
        outcome: "renew_error",
    }
}

/// Errors that are the request's fault (everything else is the PKI's).
fn is_bad_csr(e: &CertError) -> bool {
    matches!(
        e,
        CertError::CsrTooLarge { .. }
            | CertError::CsrParse { .. }
            | CertError::CsrSignature { .. }
            | CertError::UnsupportedCsrKey { .. }
    )
}

fn serial_of(pem: &str) -> Option<String> {
    kumo_certs::pem_to_der(pem)
        .and_then(|der| kumo_certs::serial_of_der(&der))
        .ok()
}

fn clamp_i64(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX / 2)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn request(csr: &str) -> CertRequest {
        CertRequest {
            id: Some("r".into()),
            csr: csr.to_string(),
        }
    }

    fn csr() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap()
    }

    #[tokio::test]
    async fn two_renewals_at_once_issue_one_and_a_refused_one_gives_its_turn_back() {
        let dir = tempfile::tempdir().unwrap();
        let pki = PkiDir::init(dir.path(), kumo_certs::KeyAlgorithm::default()).unwrap();
        let (a, b) = (
            DeviceId::parse("dev-a").unwrap(),
            DeviceId::parse("dev-b").unwrap(),
        );
        pki.issue_device(&a).unwrap();
        pki.issue_device(&b).unwrap();
        // Signing never reaches the database; the pool is never used.
        let pool =
            kumo_schema::connect_pool("host=/nonexistent", 1, Duration::from_secs(1)).unwrap();
        let settings = DeviceCertSettings {
            min_interval_secs: 3600,
            ..DeviceCertSettings::default()
        };
        let renewer = Renewer::new(pki, pool, settings);
        let (one, two) = tokio::join!(
            renewer.sign(&a, request(&csr())),
            renewer.sign(&a, request(&csr()))
        );
        let mut outcomes = [one.outcome, two.outcome];
        outcomes.sort_unstable();
        assert_eq!(outcomes, ["renew_too_soon", "renewed"]);
        // A request that issues nothing does not use up the device's turn.
        let bad = renewer.sign(&b, request("not a CSR")).await;
        assert_eq!(bad.outcome, "renew_bad_csr");
        assert_eq!(renewer.sign(&b, request(&csr())).await.outcome, "renewed");
    }
}
