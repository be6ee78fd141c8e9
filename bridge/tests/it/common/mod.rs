//! Test harness: a bridge on 127.0.0.1 port 0 over a fresh migrated database,
//! a user with an all-scopes token, and an HTTP client that checks the headers
//! every response must carry.
#![allow(dead_code, clippy::unwrap_used)]

pub mod browser;

use std::time::Duration;

use kumo_bridge::{DeviceKind, RunningBridge, Settings};
use kumo_contract::DeviceId;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const ALL: &[&str] = &["basic.read", "basic.write", "sendir", "detectappliance"];

pub struct Harness {
    pub base: String,
    pub pool: deadpool_postgres::Pool,
    pub db_url: String,
    pub shutdown: CancellationToken,
    pub bridge: Option<RunningBridge>,
    pub http: reqwest::Client,
    pub user_id: String,
    pub token: String,
}

/// A response, with the body parsed as JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The `X-Kumo-Command-Id` of a call that reached a device.
    pub fn command_id(&self) -> uuid::Uuid {
        self.headers["x-kumo-command-id"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Asserts a Nature-shaped error with `code`.
    pub fn assert_error(&self, code: u64) {
        assert_eq!(
            self.status.as_u16() as u64,
            code / 1000,
            "status of {:?}",
            self.body
        );
        assert_eq!(self.body["code"], code, "body {:?}", self.body);
        assert!(
            self.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error message in {:?}",
            self.body
        );
        assert_eq!(
            self.body.as_object().unwrap().len(),
            2,
            "only code and message"
        );
    }

    pub fn ok(self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "body {:?}", self.body);
        self.body
    }
}

pub fn test_settings() -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        ..Settings::default()
    }
}

pub async fn start() -> Harness {
    start_with(test_settings()).await
}

pub async fn start_with(settings: Settings) -> Harness {
    start_with_pools(settings, |pool, url| {
        kumo_bridge::Pools::from(pool).listening_on(url)
    })
    .await
}

/// Starts the bridge on the pools `pools` makes of the harness's own pool and
/// the test database's URL.
pub async fn start_with_pools(
    settings: Settings,
    pools: impl FnOnce(deadpool_postgres::Pool, &str) -> kumo_bridge::Pools,
) -> Harness {
    let db = kumo_testkit::migrated_db().await;
    let pool = kumo_schema::connect_pool(&db.url, 4, Duration::from_secs(10)).unwrap();
    let shutdown = CancellationToken::new();
    let bridge = kumo_bridge::start(settings, pools(pool.clone(), &db.url), shutdown.clone())
        .await
        .unwrap();
    let base = format!("http://{}", bridge.http_addr());
    let user = kumo_bridge::create_user(&pool, "Alice", Some("alice@example.com"))
        .await
        .unwrap();
    let token = kumo_bridge::create_token(&pool, &user.id, ALL, "test")
        .await
        .unwrap();
    Harness {
        base,
        pool,
        db_url: db.url,
        shutdown,
        bridge: Some(bridge),
        http: reqwest::Client::new(),
        user_id: user.id,
        token,
    }
}

/// Every response must carry these (a widely used client fails without them).
pub fn assert_standard_headers(headers: &HeaderMap) {
    for name in [
        "date",
        "x-rate-limit-limit",
        "x-rate-limit-remaining",
        "x-rate-limit-reset",
    ] {
        assert!(headers.contains_key(name), "missing {name} in {headers:?}");
    }
    let date = headers["date"].to_str().unwrap();
    assert!(date.ends_with(" GMT"), "RFC 7231 date, got {date}");
    for name in [
        "x-rate-limit-limit",
        "x-rate-limit-remaining",
        "x-rate-limit-reset",
    ] {
        headers[name].to_str().unwrap().parse::<u64>().unwrap();
    }
}

impl Harness {
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        assert_standard_headers(&headers);
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("non-JSON body {text:?}: {e}"))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get_as(&self, token: &str, path: &str) -> Reply {
        self.send(
            self.http
                .get(format!("{}{path}", self.base))
                .bearer_auth(token),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.get_as(&self.token.clone(), path).await
    }

    pub async fn post_as(&self, token: &str, path: &str, form: &[(&str, &str)]) -> Reply {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .bearer_auth(token)
                .form(form),
        )
        .await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Reply {
        self.post_as(&self.token.clone(), path, form).await
    }

    /// The bridge's `/metrics` page (from its metrics listener).
    pub async fn metrics_text(&self) -> String {
        let addr = self.bridge.as_ref().unwrap().metrics_addr();
        self.http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A token of the test user with exactly `scopes`.
    pub async fn token_with(&self, scopes: &[&str]) -> String {
        kumo_bridge::create_token(&self.pool, &self.user_id, scopes, "scoped")
            .await
            .unwrap()
    }

    /// Registers a device to the test user.
    pub async fn add_device(&self, id: &str, kind: DeviceKind) {
        kumo_bridge::register_device(
            &self.pool,
            &DeviceId::parse(id).unwrap(),
            &self.user_id,
            kind,
            id,
        )
        .await
        .unwrap();
    }

    /// Registers device `id` to account `user`; a device owned by someone
    /// else changes hands, as `kumo devices add` to another account does.
    pub async fn give_device(&self, id: &str, user: &str) {
        kumo_bridge::register_device(
            &self.pool,
            &DeviceId::parse(id).unwrap(),
            user,
            DeviceKind::Remo,
            id,
        )
        .await
        .unwrap();
    }

    /// A second user with its own all-scopes token.
    pub async fn other_user(&self) -> (String, String) {
        let user = kumo_bridge::create_user(&self.pool, "Bob", None)
            .await
            .unwrap();
        let token = kumo_bridge::create_token(&self.pool, &user.id, ALL, "bob")
            .await
            .unwrap();
        (user.id, token)
    }

    /// Creates an appliance and returns its id.
    pub async fn add_appliance(&self, device: &str, model: &str, model_type: &str) -> String {
        let body = self
            .post(
                "/1/appliances",
                &[
                    ("nickname", "thing"),
                    ("image", "ico_x"),
                    ("device", device),
                    ("model", model),
                    ("model_type", model_type),
                ],
            )
            .await
            .ok();
        body["id"].as_str().unwrap().to_string()
    }

    /// How many commands exist, all accounts together.
    pub async fn command_count(&self) -> i64 {
        self.client()
            .await
            .query_one("SELECT count(*) FROM commands", &[])
            .await
            .unwrap()
            .get(0)
    }

    pub async fn client(&self) -> deadpool_postgres::Object {
        self.pool.get().await.unwrap()
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(b) = self.bridge.take() {
            tokio::time::timeout(Duration::from_secs(15), b.wait())
                .await
                .expect("bridge stops within its grace period")
                .unwrap();
        }
    }
}

/// A device id the tests know to be valid.
pub fn dev(id: &str) -> DeviceId {
    DeviceId::parse(id).expect("a valid device id")
}

/// The value of the unique sample line `name` in a Prometheus text page.
pub fn gauge(text: &str, name: &str) -> f64 {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.split_once(' ').is_some_and(|(n, _)| n == name))
        .collect();
    assert_eq!(lines.len(), 1, "{name} in {text}");
    lines[0].rsplit(' ').next().unwrap().parse().unwrap()
}
