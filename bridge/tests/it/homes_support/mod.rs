//! Helpers of the homes tests: two users with home scopes, Alice's home with
//! a device, an IR appliance and a signal; invites; an SSE reader.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use kumo_bridge::live::LiveEvent;
use kumo_bridge::DeviceKind;
use serde_json::Value;
use time::OffsetDateTime;

use crate::common::*;

const MESSAGE: &str = r#"{"format":"us","freq":38,"data":[3400,1700,450,450,450,1300]}"#;

/// The harness with home scopes for Alice (owner of `remo-1` with an IR
/// appliance and a signal) and a second user, Bob.
pub struct Homes {
    pub h: Harness,
    pub alice: String,
    pub bob_id: String,
    pub bob: String,
    pub home: String,
    pub appliance: String,
    pub signal: String,
}

pub async fn token(h: &Harness, user: &str) -> String {
    let scopes = [ALL, &["home"]].concat();
    kumo_bridge::create_token(&h.pool, user, &scopes, "homes")
        .await
        .unwrap()
}

pub async fn setup() -> Homes {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let alice = token(&h, &h.user_id).await;
    let (bob_id, _) = h.other_user().await;
    let bob = token(&h, &bob_id).await;
    let homes = h.get_as(&alice, "/1/homes").await.ok();
    assert_eq!(homes.as_array().unwrap().len(), 1, "every user has a home");
    let home = homes[0]["id"].as_str().unwrap().to_string();
    let ir = h
        .post_as(
            &alice,
            "/1/appliances",
            &[("nickname", "fan"), ("image", "ico"), ("device", "remo-1")],
        )
        .await
        .ok();
    let appliance = ir["id"].as_str().unwrap().to_string();
    let signal = h
        .post_as(
            &alice,
            &format!("/1/appliances/{appliance}/signals"),
            &[("name", "on"), ("image", "ico_on"), ("message", MESSAGE)],
        )
        .await
        .ok()["id"]
        .as_str()
        .unwrap()
        .to_string();
    Homes {
        h,
        alice,
        bob_id,
        bob,
        home,
        appliance,
        signal,
    }
}

impl Homes {
    /// Alice invites, Bob accepts; returns the invite token.
    pub async fn bob_joins(&self) -> String {
        let token = self.invite().await;
        let home = self
            .h
            .post_as(&self.bob, &format!("/1/invites/{token}"), &[])
            .await
            .ok();
        assert_eq!(home["id"], self.home.as_str());
        token
    }

    pub async fn invite(&self) -> String {
        let invite = self
            .h
            .post_as(&self.alice, &format!("/1/homes/{}/invites", self.home), &[])
            .await
            .ok();
        let url = invite["url"].as_str().unwrap();
        url.strip_prefix("/1/invites/").unwrap().to_string()
    }

    pub async fn device_ids(&self, token: &str) -> Vec<String> {
        let list = self.h.get_as(token, "/1/devices").await.ok();
        let mut ids: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    }

    pub fn path(&self, tail: &str) -> String {
        format!("/1/homes/{}{tail}", self.home)
    }
}

/// Reads SSE frames (event name, data) off `/v1/events`.
pub struct Sse {
    response: reqwest::Response,
    buf: String,
}

impl Sse {
    pub async fn open(h: &Harness, token: &str) -> Self {
        let response = h
            .http
            .get(format!("{}/v1/events", h.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        Self {
            response,
            buf: String::new(),
        }
    }

    pub async fn next(&mut self) -> (String, Value) {
        let read = async {
            loop {
                if let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    let event = block.lines().find_map(|l| l.strip_prefix("event:"));
                    let data = block.lines().find_map(|l| l.strip_prefix("data:"));
                    if let (Some(e), Some(d)) = (event, data) {
                        return (
                            e.trim().to_string(),
                            serde_json::from_str(d.trim()).unwrap(),
                        );
                    }
                    continue;
                }
                let chunk = self.response.chunk().await.unwrap().expect("stream open");
                self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("an SSE event within 10 s")
    }
}

pub fn reading(device: &str, val: f64) -> LiveEvent {
    LiveEvent::Reading {
        device: crate::common::dev(device),
        sensor: "te",
        val,
        at: OffsetDateTime::now_utc(),
    }
}
