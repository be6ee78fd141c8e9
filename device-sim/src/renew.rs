//! A simulated device renews its certificate over its live session, as
//! firmware would: once the configured share of the certificate's lifetime
//! has passed it makes a fresh key and CSR and publishes them on
//! `devices/{id}/cert/request` (MQTT 5: naming its response topic, with the
//! request id as Correlation Data), and on the answer switches to the new
//! certificate at its next connect — which it makes at once, with a clean
//! DISCONNECT, so the old certificate is out of use long before it is revoked.
//!
//! Owns the schedule and the pending request; the session loop owns the link.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kumo_contract::payload::{AckResult, CertRequest, CertResponse};
use kumo_contract::topic::{device_topic, Leaf};
use kumo_contract::DeviceId;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::time::Instant;

use crate::link::{Link, Response};
use crate::tls::{Credentials, TlsContext};

/// A device's renewal schedule and its request in flight.
#[derive(Debug, Default)]
pub struct Renewal {
    /// When to renew the current certificate; `None` = never.
    due: Option<SystemTime>,
    pending: Option<Pending>,
    /// No request before this (one is in flight, or the last one failed).
    hold: Option<Instant>,
    /// Requests made so far (request ids count up).
    sent: u32,
}

#[derive(Debug)]
struct Pending {
    id: String,
    key_pem: String,
}

/// What a successful renewal yields.
pub struct Renewed {
    pub creds: Credentials,
    pub cert_pem: String,
    pub key_pem: String,
    /// The CA bundle to trust from now on, if the answer carried one.
    pub ca: Option<String>,
}

/// The CA bundle a fleet's devices trust, replaced when a renewal answer
/// brings another one (a CA rollover): devices that renewed verify nodes
/// against the new bundle.
pub struct Trust {
    current: std::sync::Mutex<(String, std::sync::Arc<TlsContext>)>,
}

impl Trust {
    pub fn new(ca_pem: String, ctx: std::sync::Arc<TlsContext>) -> Self {
        Self {
            current: std::sync::Mutex::new((ca_pem, ctx)),
        }
    }

    /// The context for `bundle` (the current one when `None` or unchanged).
    pub fn context(
        &self,
        bundle: Option<&str>,
    ) -> Result<std::sync::Arc<TlsContext>, crate::SimError> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match bundle {
            Some(pem) if pem != current.0 => {
                let resumption = current.1.resumption();
                let ctx =
                    std::sync::Arc::new(TlsContext::from_ca_pem(pem)?.with_resumption(resumption));
                *current = (pem.to_string(), ctx.clone());
                Ok(ctx)
            }
            _ => Ok(current.1.clone()),
        }
    }
}

/// What an answer meant.
pub enum Outcome {
    Renewed(Box<Renewed>),
    Failed(String),
    /// Not an answer to the request in flight.
    Ignored,
}

impl Renewal {
    /// The schedule for a certificate (`der`): renew at `percent` of its
    /// lifetime; never if `percent` is 0 or the certificate cannot be read.
    pub fn for_certificate(der: &[u8], percent: u8) -> Renewal {
        let due = (percent > 0)
            .then(|| kumo_certs::validity_of_der(der).ok())
            .flatten()
            .map(|(from, to)| {
                let lifetime = (to - from).as_seconds_f64().max(0.0);
                let at = from.unix_timestamp() as f64 + lifetime * f64::from(percent) / 100.0;
                UNIX_EPOCH + Duration::from_secs_f64(at.max(0.0))
            });
        Renewal {
            due,
            ..Renewal::default()
        }
    }

    /// How long until a request should go out (zero if overdue); `None` when
    /// renewal is off. A request in flight, or one refused, holds the next
    /// one back by the retry interval.
    pub fn wait(&self) -> Option<Duration> {
        let due = self.due?;
        let until_due = due
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let until_retry = self.hold.map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(Instant::now())
        });
        Some(until_due.max(until_retry))
    }

    /// Makes a fresh key and CSR and queues the request; `false` if the link
    /// had no room (try again shortly). No other request goes out for `retry`.
    pub fn request(&mut self, id: &DeviceId, link: &mut Link, retry: Duration) -> bool {
        let Ok(key) = rcgen::KeyPair::generate() else {
            return false;
        };
        // The subject is a placeholder: the cloud forces the identity.
        let csr = rcgen::CertificateParams::new(Vec::<String>::new())
            .and_then(|p| p.serialize_request(&key))
            .and_then(|r| r.pem());
        let Ok(csr) = csr else {
            return false;
        };
        self.sent += 1;
        let request_id = format!("renew-{}", self.sent);
        let body = CertRequest {
            id: Some(request_id.clone()),
            csr,
        };
        let Ok(body) = serde_json::to_vec(&body) else {
            return false;
        };
        let reply_to = Response {
            topic: device_topic(id, Leaf::CertResponse),
            correlation: Some(Bytes::from(request_id.clone().into_bytes())),
        };
        let queued = link.request(&device_topic(id, Leaf::CertRequest), body, &reply_to);
        if queued {
            self.pending = Some(Pending {
                id: request_id,
                key_pem: key.serialize_pem(),
            });
            self.hold = Some(Instant::now() + retry);
        }
        queued
    }

    /// Reads an answer on the response topic. After a refusal the next
    /// request waits for the hold set when this one went out.
    pub fn on_response(&mut self, payload: &[u8], percent: u8) -> Outcome {
        let Ok(answer) = serde_json::from_slice::<CertResponse>(payload) else {
            return Outcome::Ignored;
        };
        let Some(pending) = self
            .pending
            .take_if(|p| answer.id.as_deref() == Some(&p.id))
        else {
            return Outcome::Ignored;
        };
        let ca = answer.ca;
        match (answer.result, answer.certificate) {
            (AckResult::Ok, Some(cert_pem)) => match credentials(&cert_pem, &pending.key_pem) {
                Some((creds, der)) => {
                    *self = Renewal {
                        sent: self.sent,
                        ..Renewal::for_certificate(&der, percent)
                    };
                    Outcome::Renewed(Box::new(Renewed {
                        creds,
                        cert_pem,
                        key_pem: pending.key_pem,
                        ca,
                    }))
                }
                None => Outcome::Failed("the certificate in the answer is unreadable".into()),
            },
            _ => Outcome::Failed(answer.reason.unwrap_or_else(|| "no reason given".into())),
        }
    }
}

fn credentials(cert_pem: &str, key_pem: &str) -> Option<(Credentials, Vec<u8>)> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .ok()?;
    let der = chain.first()?.to_vec();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).ok()?;
    Some((Credentials { chain, key }, der))
}

/// Where a device keeps its own certificate and key (`{dir}/{id}.crt`,
/// `.key`), when the fleet's credentials come from such a directory.
pub fn persist(dir: &Path, id: &DeviceId, renewed: &Renewed) -> Result<(), crate::SimError> {
    // Key first: a certificate next to a key it does not belong to is unusable.
    crate::provision::write_file(
        &dir.join(format!("{id}.key")),
        renewed.key_pem.as_bytes(),
        true,
    )?;
    crate::provision::write_file(
        &dir.join(format!("{id}.crt")),
        renewed.cert_pem.as_bytes(),
        false,
    )
}
