//! One webhook delivery attempt: sign, POST, time it, report what happened.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

use super::signature::{sign, SIGNATURE_HEADER};

/// Longest a single attempt may take, connect to response headers.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The `User-Agent` of deliveries.
pub const USER_AGENT: &str = concat!("kumo-webhooks/", env!("CARGO_PKG_VERSION"));

/// The result of one attempt, as the delivery log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryOutcome {
    /// The response status, if a response arrived.
    pub status: Option<u16>,
    /// From sending the request to the response headers (or the failure).
    pub latency: Duration,
    /// What went wrong: a transport error, or the non-2xx status.
    pub error: Option<String>,
}

impl DeliveryOutcome {
    /// Whether the receiver answered 2xx.
    pub fn delivered(&self) -> bool {
        matches!(self.status, Some(200..=299))
    }
}

/// POSTs `payload` as JSON to `url`, signed with `secret` at the current time.
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    secret: &[u8],
    payload: &Value,
) -> DeliveryOutcome {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    deliver_at(client, url, secret, payload, now).await
}

/// [`deliver`] with the signature timestamp (unix seconds) given.
pub async fn deliver_at(
    client: &reqwest::Client,
    url: &str,
    secret: &[u8],
    payload: &Value,
    timestamp: i64,
) -> DeliveryOutcome {
    // A `Value` always serializes; the fallback keeps this infallible.
    let body = serde_json::to_vec(payload).unwrap_or_else(|_| b"null".to_vec());
    let signature = sign(secret, timestamp, &body);
    let started = Instant::now();
    let sent = client
        .post(url)
        .timeout(DELIVERY_TIMEOUT)
        .header(CONTENT_TYPE, "application/json")
        .header(reqwest::header::USER_AGENT, USER_AGENT)
        .header(SIGNATURE_HEADER, signature)
        .body(body)
        .send()
        .await;
    let latency = started.elapsed();
    match sent {
        Ok(response) => {
            let status = response.status();
            DeliveryOutcome {
                status: Some(status.as_u16()),
                latency,
                error: (!status.is_success()).then(|| format!("receiver answered {status}")),
            }
        }
        // The URL may carry credentials in its query: keep it out of the log.
        Err(e) => DeliveryOutcome {
            status: None,
            latency,
            error: Some(e.without_url().to_string()),
        },
    }
}
