//! Webhook deliveries against a real local HTTP receiver: the signature verifies
//! with independent code, and failing receivers drive the retry and disable
//! policies.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use kumo_rules::webhook::{
    deliver, deliver_at, verify, DisablePolicy, Next, RetryPolicy, Verdict, SIGNATURE_HEADER,
};
use serde_json::json;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECRET: &[u8] = b"whsec_5f1c0ffee";

/// One request as the receiver saw it: lower-cased headers and the raw body.
#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A minimal HTTP/1.1 receiver on port 0 answering with `statuses` in turn
/// (the last one repeats). Returns its URL and what it received.
async fn receiver(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/kumo", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let n = log.lock().unwrap().len();
            let status = statuses[n.min(statuses.len() - 1)];
            let received = serve_one(stream, status).await;
            log.lock().unwrap().push(received);
        }
    });
    (url, seen)
}

async fn serve_one(mut stream: TcpStream, status: u16) -> Received {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "client closed before sending headers");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8(buf[..header_end].to_vec()).unwrap();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    let len: usize = headers["content-length"].parse().unwrap();
    while buf.len() < header_end + len {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "client closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let response = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    stream.write_all(response.as_bytes()).await.unwrap();
    stream.shutdown().await.ok();
    Received {
        headers,
        body: buf[header_end..header_end + len].to_vec(),
    }
}

/// Independent check of `X-Kumo-Signature: t=<unix>,v1=<hex>`, written from the
/// documented format only.
fn independently_verified(header: &str, body: &[u8]) -> bool {
    let fields: HashMap<&str, &str> = header
        .split(',')
        .filter_map(|p| p.split_once('='))
        .collect();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(format!("{}.", fields["t"]).as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes()) == fields["v1"]
}

fn fast_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    }
}

/// The bridge's delivery loop in miniature: attempt, then follow the policy.
async fn deliver_with_retries(url: &str, policy: RetryPolicy) -> (u32, Next) {
    let client = reqwest::Client::new();
    let payload = json!({"rule": "r1", "cause": {"type": "schedule"}});
    let mut attempts = 0;
    loop {
        let outcome = deliver(&client, url, SECRET, &payload).await;
        attempts += 1;
        match policy.next(attempts, outcome.status, 0.5) {
            Next::RetryAfter(wait) => tokio::time::sleep(wait).await,
            done => return (attempts, done),
        }
    }
}

#[tokio::test]
async fn a_delivered_webhook_carries_a_signature_that_verifies_independently() {
    let (url, seen) = receiver(vec![204]).await;
    let client = reqwest::Client::new();
    let payload = json!({"rule": "r1", "fired_at": "2026-03-02T22:30:00Z", "data": {"temp": 29.5}});
    let outcome = deliver(&client, &url, SECRET, &payload).await;
    assert!(outcome.delivered(), "{outcome:?}");
    assert_eq!(outcome.status, Some(204));
    assert_eq!(outcome.error, None);
    assert!(outcome.latency < Duration::from_secs(5));

    let got = seen.lock().unwrap()[0].clone();
    assert_eq!(got.headers["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(body, payload);
    let header = &got.headers[&SIGNATURE_HEADER.to_ascii_lowercase()];
    assert!(independently_verified(header, &got.body), "{header}");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert_eq!(verify(SECRET, header, &got.body, now, 300), Ok(()));
    assert!(!independently_verified(header, b"{\"rule\":\"r2\"}"));
}

#[tokio::test]
async fn the_signature_timestamp_is_the_one_given() {
    let (url, seen) = receiver(vec![200]).await;
    let client = reqwest::Client::new();
    let outcome = deliver_at(&client, &url, SECRET, &json!({}), 1_700_000_000).await;
    assert!(outcome.delivered());
    let got = seen.lock().unwrap()[0].clone();
    let header = &got.headers["x-kumo-signature"];
    assert!(header.starts_with("t=1700000000,v1="), "{header}");
    assert!(independently_verified(header, &got.body));
}

#[tokio::test]
async fn server_errors_are_retried_until_the_receiver_recovers() {
    let (url, seen) = receiver(vec![500, 503, 200]).await;
    let (attempts, next) = deliver_with_retries(&url, fast_retries(5)).await;
    assert_eq!((attempts, next), (3, Next::Done));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen
        .iter()
        .all(|r| independently_verified(&r.headers["x-kumo-signature"], &r.body)));
}

#[tokio::test]
async fn a_receiver_that_keeps_failing_exhausts_the_attempts_and_then_disables_the_webhook() {
    let (url, seen) = receiver(vec![500]).await;
    let disable = DisablePolicy { after_failures: 2 };
    let mut streak = 0;
    let mut disabled = false;
    for _ in 0..2 {
        let (attempts, next) = deliver_with_retries(&url, fast_retries(3)).await;
        assert_eq!((attempts, next), (3, Next::Failed));
        let s = disable.record(streak, false);
        streak = s.consecutive_failures;
        disabled = s.disable;
    }
    assert!(
        disabled,
        "two failed deliveries in a row disable the webhook"
    );
    assert_eq!(seen.lock().unwrap().len(), 6);
}

#[tokio::test]
async fn a_rejected_delivery_is_not_retried() {
    let (url, seen) = receiver(vec![410]).await;
    let (attempts, next) = deliver_with_retries(&url, fast_retries(5)).await;
    assert_eq!((attempts, next), (1, Next::Failed));
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_unreachable_receiver_is_a_retryable_transport_error() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let client = reqwest::Client::new();
    let outcome = deliver(
        &client,
        &format!("http://127.0.0.1:{port}/"),
        SECRET,
        &json!({}),
    )
    .await;
    assert_eq!(outcome.status, None);
    assert!(outcome.error.is_some());
    assert!(!outcome.delivered());
    assert_eq!(Verdict::of(outcome.status), Verdict::Retry);
}
