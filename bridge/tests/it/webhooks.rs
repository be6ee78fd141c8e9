//! Webhooks: account webhooks fed by live events, rule actions, signatures a
//! receiver can check with a few lines of its own, retries with backoff,
//! auto-disable, the test ping, and refusal of internal targets.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{start_with, test_settings, Harness};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use kumo_bridge::live::LiveEvent;
use kumo_bridge::{DeviceKind, Settings};
use serde_json::{json, Value};
use sha2::Sha256;
use time::OffsetDateTime;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    signature: String,
    body: Vec<u8>,
}

impl Hit {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Script {
    /// Statuses to answer, in order; 200 once used up (or `always` if set).
    statuses: VecDeque<u16>,
    always: Option<u16>,
    hits: Vec<Hit>,
}

/// A tiny HTTP receiver on a free port.
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    script: Arc<Mutex<Script>>,
}

async fn record(
    State(script): State<Arc<Mutex<Script>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut s = script.lock().unwrap();
    s.hits.push(Hit {
        at: Instant::now(),
        signature: headers
            .get("x-kumo-signature")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default(),
        body: body.to_vec(),
    });
    let code = match s.statuses.pop_front() {
        Some(code) => code,
        None => s.always.unwrap_or(200),
    };
    StatusCode::from_u16(code).unwrap()
}

impl Receiver {
    async fn start(statuses: &[u16], always: Option<u16>) -> Self {
        let script = Arc::new(Mutex::new(Script {
            statuses: statuses.iter().copied().collect(),
            always,
            hits: Vec::new(),
        }));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(record))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, script }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn hits(&self) -> Vec<Hit> {
        self.script.lock().unwrap().hits.clone()
    }

    /// Waits until at least `n` requests arrived.
    async fn wait_for(&self, n: usize) -> Vec<Hit> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let hits = self.hits();
            if hits.len() >= n {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "{n} requests within 10 s, got {}",
                hits.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The receiver's side of the signature check, written independently of
/// kumo-rules: `t=<ts>,v1=<hex hmac-sha256(secret, "<ts>.<body>")>`.
fn signature_is_valid(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", ts)) => t = Some(ts.to_string()),
            Some(("v1", sig)) => v1.push(sig.to_string()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    if (now - t.parse::<i64>().unwrap()).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = hex::encode(mac.finalize().into_bytes());
    v1.contains(&expected)
}

fn settings() -> Settings {
    let mut s = test_settings();
    s.webhooks.allow_private_targets = true;
    s.webhooks.poll_ms = 50;
    s.webhooks.base_delay_ms = 200;
    s.webhooks.max_attempts = 3;
    s.webhooks.disable_after_failures = 2;
    s
}

async fn create(h: &Harness, url: &str, events: &str) -> Value {
    let reply = h
        .post("/v1/webhooks", &[("url", url), ("events", events)])
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    reply.body
}

fn hub(h: &Harness) -> kumo_bridge::events::EventHub {
    h.bridge.as_ref().unwrap().events()
}

/// Polls the webhook's deliveries until `done` holds.
async fn deliveries_until(h: &Harness, id: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = h.get(&format!("/v1/webhooks/{id}/deliveries")).await.ok();
        let list = list.as_array().unwrap().clone();
        if done(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries never got there: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The exit status of `docs/examples/verify_webhook.py secret signature < body`.
fn python_verifies(secret: &str, hit: &Hit) -> Option<i32> {
    use std::io::Write as _;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/examples/verify_webhook.py"
    );
    let mut child = std::process::Command::new("python3")
        .args([script, secret, &hit.signature])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(&hit.body).unwrap();
    child.wait().unwrap().code()
}

#[tokio::test]
async fn a_webhook_gets_matching_events_signed_so_the_receiver_can_verify_them() {
    let h = start_with(settings()).await;
    let rx = Receiver::start(&[], None).await;
    let created = create(&h, &rx.url(), "rule_event").await;
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(created["events"], json!(["rule_event"]));
    assert_eq!(created["enabled"], true);

    let hub = hub(&h);
    hub.publish(&h.user_id, "other_kind", json!({"skip": true}));
    let id = hub.publish(&h.user_id, "rule_event", json!({"name": "door"}));
    let hits = rx.wait_for(1).await;
    let body = hits[0].json();
    assert_eq!(body["kind"], "rule_event");
    assert_eq!(body["event_id"], id);
    assert_eq!(body["data"]["name"], "door");
    assert!(signature_is_valid(
        &secret,
        &hits[0].signature,
        &hits[0].body
    ));
    assert!(!signature_is_valid(
        "whsec_wrong",
        &hits[0].signature,
        &hits[0].body
    ));
    // The runnable example of docs/webhooks.md agrees on this real delivery.
    assert_eq!(python_verifies(&secret, &hits[0]), Some(0));
    assert_eq!(python_verifies("whsec_wrong", &hits[0]), Some(1));

    // The secret is never shown again.
    let id = created["id"].as_str().unwrap();
    let shown = h.get(&format!("/v1/webhooks/{id}")).await.ok();
    assert!(shown.get("secret").is_none());
    let list = h.get("/v1/webhooks").await.ok();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("secret").is_none());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.hits().len(), 1, "the unmatched kind was not delivered");
    h.stop().await;
}

#[tokio::test]
async fn readings_need_an_explicit_filter_and_device_events_reach_webhooks() {
    let h = start_with(settings()).await;
    h.add_device("dev-w", DeviceKind::Remo).await;
    let rx = Receiver::start(&[], None).await;
    let created = create(&h, &rx.url(), "").await;
    let id = created["id"].as_str().unwrap().to_string();
    let feed = h.bridge.as_ref().unwrap().commands().live().clone();
    // The router learns the webhook's account asynchronously; publish until
    // a presence event gets through.
    let deadline = Instant::now() + Duration::from_secs(10);
    while rx.hits().is_empty() {
        assert!(Instant::now() < deadline, "device events reach the webhook");
        feed.publish(LiveEvent::Reading {
            device: crate::common::dev("dev-w"),
            sensor: "te",
            val: 20.0,
            at: OffsetDateTime::now_utc(),
        });
        feed.publish(LiveEvent::Presence {
            device: "dev-w".into(),
            online: true,
            node: None,
            at: OffsetDateTime::now_utc(),
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = rx.hits()[0].json();
    assert_eq!(body["kind"], "presence");
    assert_eq!(body["data"]["device_id"], "dev-w");
    let list = deliveries_until(&h, &id, |l| !l.is_empty()).await;
    assert!(list.iter().all(|d| d["kind"] == "presence"), "{list:?}");

    // Asking for readings by name gets them.
    let readings = Receiver::start(&[], None).await;
    create(&h, &readings.url(), "reading").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while readings.hits().is_empty() {
        assert!(
            Instant::now() < deadline,
            "readings reach a webhook that asks"
        );
        feed.publish(LiveEvent::Reading {
            device: crate::common::dev("dev-w"),
            sensor: "hu",
            val: 40.0,
            at: OffsetDateTime::now_utc(),
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = readings.hits()[0].json();
    assert_eq!(body["kind"], "reading");
    assert_eq!(body["data"]["sensor"], "hu");
    h.stop().await;
}

#[tokio::test]
async fn an_internal_target_is_refused_again_at_delivery_time() {
    // Private targets are not allowed; a row that got in anyway (e.g. created
    // while the setting was on, or a name that now resolves inside) is
    // checked again before anything is sent.
    let h = start_with(test_settings()).await;
    let rx = Receiver::start(&[], None).await;
    let id = uuid::Uuid::new_v4();
    h.client()
        .await
        .execute(
            "INSERT INTO webhooks (id, user_id, url, secret) VALUES ($1, $2, $3, 'whsec_x')",
            &[&id, &h.user_id, &rx.url()],
        )
        .await
        .unwrap();
    let report = h.post(&format!("/v1/webhooks/{id}/test"), &[]).await.ok();
    assert_eq!(report["delivered"], false);
    assert_eq!(report["status"], "failed");
    assert_eq!(report["error"], "target address is not allowed");
    assert!(rx.hits().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn a_failed_delivery_is_retried_with_backoff_until_accepted() {
    let h = start_with(settings()).await;
    let rx = Receiver::start(&[500], None).await;
    let created = create(&h, &rx.url(), "rule_event").await;
    let id = created["id"].as_str().unwrap().to_string();
    hub(&h).publish(&h.user_id, "rule_event", json!({}));
    let hits = rx.wait_for(2).await;
    let waited = hits[1].at - hits[0].at;
    // base_delay 200 ms: the first retry waits between 100 and 200 ms.
    assert!(waited >= Duration::from_millis(100), "waited {waited:?}");
    assert_eq!(hits[0].body, hits[1].body, "the same delivery is retried");

    let list = deliveries_until(&h, &id, |l| {
        l.first().is_some_and(|d| d["status"] == "delivered")
    })
    .await;
    let d = &list[0];
    assert_eq!(d["attempts"], 2);
    assert_eq!(d["last_status_code"], 200);
    let codes: Vec<_> = d["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].clone())
        .collect();
    assert_eq!(codes, [json!(500), json!(200)]);
    let webhook = h.get(&format!("/v1/webhooks/{id}")).await.ok();
    assert_eq!(webhook["consecutive_failures"], 0);
    h.stop().await;
}

#[tokio::test]
async fn a_webhook_is_disabled_after_repeated_failures_and_can_be_re_enabled() {
    let h = start_with(settings()).await;
    let rx = Receiver::start(&[], Some(503)).await;
    let created = create(&h, &rx.url(), "rule_event").await;
    let id = created["id"].as_str().unwrap().to_string();
    let hub = hub(&h);
    hub.publish(&h.user_id, "rule_event", json!({"n": 1}));
    hub.publish(&h.user_id, "rule_event", json!({"n": 2}));
    // Two deliveries × three attempts, then the webhook is off.
    let deadline = Instant::now() + Duration::from_secs(15);
    let webhook = loop {
        let w = h.get(&format!("/v1/webhooks/{id}")).await.ok();
        if w["enabled"] == false {
            break w;
        }
        assert!(Instant::now() < deadline, "webhook disabled in time: {w:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(webhook["consecutive_failures"], 2);
    assert!(webhook["disabled_at"].is_string());
    assert!(webhook["disabled_reason"]
        .as_str()
        .unwrap()
        .contains("2 consecutive"));
    assert_eq!(rx.hits().len(), 6);
    let list = deliveries_until(&h, &id, |l| l.len() == 2).await;
    assert!(
        list.iter()
            .all(|d| d["status"] == "gave_up" && d["attempts"] == 3),
        "{list:?}"
    );

    // Disabled webhooks get nothing new.
    hub.publish(&h.user_id, "rule_event", json!({"n": 3}));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.hits().len(), 6);

    let enabled = h.post(&format!("/v1/webhooks/{id}/enable"), &[]).await.ok();
    assert_eq!(enabled["enabled"], true);
    assert_eq!(enabled["consecutive_failures"], 0);
    assert!(enabled["disabled_at"].is_null());
    h.stop().await;
}

#[tokio::test]
async fn the_test_endpoint_sends_a_ping_and_reports_the_outcome() {
    let h = start_with(settings()).await;
    let rx = Receiver::start(&[418], None).await;
    let created = create(&h, &rx.url(), "").await;
    let id = created["id"].as_str().unwrap();
    let secret = created["secret"].as_str().unwrap();

    let rejected = h.post(&format!("/v1/webhooks/{id}/test"), &[]).await.ok();
    assert_eq!(rejected["delivered"], false);
    assert_eq!(rejected["status_code"], 418);
    assert_eq!(rejected["status"], "failed", "4xx is not retried");

    let report = h.post(&format!("/v1/webhooks/{id}/test"), &[]).await.ok();
    assert_eq!(report["delivered"], true);
    assert_eq!(report["status_code"], 200);
    let hits = rx.hits();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[1].json()["kind"], "ping");
    assert!(signature_is_valid(
        secret,
        &hits[1].signature,
        &hits[1].body
    ));
    h.stop().await;
}

#[tokio::test]
async fn rule_actions_post_to_their_url_signed_with_the_account_secret() {
    let h = start_with(settings()).await;
    let rx = Receiver::start(&[], None).await;
    let secret = h.post("/v1/webhook_secret", &[]).await.ok()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let action = kumo_rules::WebhookAction {
        url: rx.url(),
        data: Some(json!({"room": "hall"})),
    };
    let webhooks = h.bridge.as_ref().unwrap().webhooks();
    let delivery = webhooks
        .rule_action(&h.user_id, "rule-1", &action, json!({"cause": "motion"}))
        .await
        .unwrap();
    let hits = rx.wait_for(1).await;
    let body = hits[0].json();
    assert_eq!(body["id"], delivery.to_string());
    assert_eq!(body["kind"], "rule_action");
    assert_eq!(body["rule_id"], "rule-1");
    assert_eq!(body["data"]["room"], "hall");
    assert_eq!(body["event"]["cause"], "motion");
    assert!(signature_is_valid(
        &secret,
        &hits[0].signature,
        &hits[0].body
    ));
    h.stop().await;
}

#[tokio::test]
async fn internal_targets_and_bad_input_are_refused_with_clear_400s() {
    let h = start_with(test_settings()).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://10.0.0.8/hook",
        "ftp://example.com/hook",
        "not a url",
    ] {
        let reply = h.post("/v1/webhooks", &[("url", url)]).await;
        reply.assert_error(400001);
    }
    h.post("/v1/webhooks", &[]).await.assert_error(400001);
    h.post(
        "/v1/webhooks",
        &[("url", "https://example.com/h"), ("events", "Bad/Kind")],
    )
    .await
    .assert_error(400001);
    let action = kumo_rules::WebhookAction {
        url: "http://127.0.0.1:9/hook".into(),
        data: None,
    };
    let webhooks = h.bridge.as_ref().unwrap().webhooks();
    assert!(webhooks
        .rule_action(&h.user_id, "r", &action, json!({}))
        .await
        .is_err());
    // A public target is accepted (nothing is sent until an event matches).
    let ok = h
        .post("/v1/webhooks", &[("url", "https://example.com/h")])
        .await;
    assert_eq!(ok.status, 201);
    let id = ok.body["id"].as_str().unwrap().to_string();
    h.get(&format!("/v1/webhooks/{id}/deliveries?limit=0"))
        .await
        .assert_error(400001);
    h.stop().await;
}

#[tokio::test]
async fn accounts_only_see_their_own_webhooks_and_scopes_are_enforced() {
    let h = start_with(settings()).await;
    let created = create(&h, "http://127.0.0.1:9/hook", "").await;
    let id = created["id"].as_str().unwrap();
    let (_, bob) = h.other_user().await;
    h.get_as(&bob, &format!("/v1/webhooks/{id}"))
        .await
        .assert_error(404001);
    assert_eq!(h.get_as(&bob, "/v1/webhooks").await.ok(), json!([]));
    let reply = h
        .send(
            h.http
                .delete(format!("{}/v1/webhooks/{id}", h.base))
                .bearer_auth(&bob),
        )
        .await;
    reply.assert_error(404001);
    let read_only = h.token_with(&["basic.read"]).await;
    h.post_as(
        &read_only,
        "/v1/webhooks",
        &[("url", "http://127.0.0.1:9/")],
    )
    .await
    .assert_error(403001);
    h.get("/v1/webhooks/not-a-uuid").await.assert_error(404001);
    let gone = h
        .send(
            h.http
                .delete(format!("{}/v1/webhooks/{id}", h.base))
                .bearer_auth(&h.token),
        )
        .await;
    assert_eq!(gone.status, 204);
    h.get(&format!("/v1/webhooks/{id}"))
        .await
        .assert_error(404001);
    h.stop().await;
}

#[tokio::test]
async fn the_openapi_document_names_the_event_and_webhook_routes() {
    let h = start_with(test_settings()).await;
    let doc = h
        .send(h.http.get(format!("{}/v1/openapi.json", h.base)))
        .await
        .ok();
    for path in [
        "/v1/events",
        "/v1/webhooks",
        "/v1/webhooks/{id}",
        "/v1/webhooks/{id}/enable",
        "/v1/webhooks/{id}/deliveries",
        "/v1/webhooks/{id}/test",
        "/v1/webhook_secret",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
    h.stop().await;
}

#[tokio::test]
async fn finished_deliveries_past_their_retention_are_deleted_and_pending_ones_kept() {
    let mut h = start_with(settings()).await;
    assert_eq!(settings().webhooks.retention_days, 7);
    let rows: [(&str, i32, &str); 5] = [
        ("delivered", 8, "old delivered"),
        ("failed", 10, "old failed"),
        ("gave_up", 30, "old gave_up"),
        ("pending", 9, "old but still pending"),
        ("delivered", 6, "recent delivered"),
    ];
    let client = h.client().await;
    for (status, days, kind) in rows {
        client
            .execute(
                "INSERT INTO webhook_deliveries
                     (id, user_id, url, kind, body, status, created_at, next_attempt_at)
                 VALUES (gen_random_uuid(), $1, 'http://127.0.0.1:9/', $2, '{}', $3,
                         now() - make_interval(days => $4), now() + interval '1 day')",
                &[&h.user_id, &kind, &status, &days],
            )
            .await
            .unwrap();
    }
    // The worker prunes when it starts, then hourly: start a new bridge.
    h.shutdown.cancel();
    h.bridge.take().unwrap().wait().await.unwrap();
    h.shutdown = tokio_util::sync::CancellationToken::new();
    h.bridge = Some(
        kumo_bridge::start(settings(), h.pool.clone(), h.shutdown.clone())
            .await
            .unwrap(),
    );
    let left = || async {
        let rows = h
            .client()
            .await
            .query("SELECT kind FROM webhook_deliveries ORDER BY kind", &[])
            .await
            .unwrap();
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while left().await.len() > 2 {
        assert!(Instant::now() < deadline, "not pruned: {:?}", left().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left().await, ["old but still pending", "recent delivered"]);
    h.stop().await;
}

#[tokio::test]
async fn a_home_members_webhook_gets_the_homes_device_events_until_they_are_kicked() {
    let h = start_with(settings()).await;
    h.add_device("dev-h", DeviceKind::Remo).await;
    let scopes = [crate::common::ALL, &["home"]].concat();
    let alice = kumo_bridge::create_token(&h.pool, &h.user_id, &scopes, "home")
        .await
        .unwrap();
    let (bob_id, _) = h.other_user().await;
    h.give_device("bob-h", &bob_id).await;
    let bob = kumo_bridge::create_token(&h.pool, &bob_id, &scopes, "home")
        .await
        .unwrap();
    let home = h.get_as(&alice, "/1/homes").await.ok()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let invite = h
        .post_as(&alice, &format!("/1/homes/{home}/invites"), &[])
        .await
        .ok();
    h.post_as(&bob, invite["url"].as_str().unwrap(), &[])
        .await
        .ok();
    let rx = Receiver::start(&[], None).await;
    let created = h
        .post_as(
            &bob,
            "/v1/webhooks",
            &[("url", &rx.url()), ("events", "presence")],
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let feed = h.bridge.as_ref().unwrap().commands().live().clone();
    let presence = |device: &str| LiveEvent::Presence {
        device: device.into(),
        online: true,
        node: None,
        at: OffsetDateTime::now_utc(),
    };
    let about = |hits: &[Hit], device: &str| {
        hits.iter()
            .filter(|hit| hit.json()["data"]["device_id"] == device)
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while about(&rx.hits(), "dev-h") == 0 {
        assert!(
            Instant::now() < deadline,
            "the home's device reaches a member's webhook"
        );
        feed.publish(presence("dev-h"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.post_as(
        &alice,
        &format!("/1/homes/{home}/kick"),
        &[("user", &bob_id)],
    )
    .await
    .ok();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = about(&rx.hits(), "dev-h");
    feed.publish(presence("dev-h"));
    feed.publish(presence("bob-h"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while about(&rx.hits(), "bob-h") == 0 {
        assert!(
            Instant::now() < deadline,
            "Bob's own device still reaches his webhook"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        about(&rx.hits(), "dev-h"),
        before,
        "nothing of the home after the kick"
    );
    h.stop().await;
}
