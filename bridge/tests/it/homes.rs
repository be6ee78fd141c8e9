//! Homes and members over real HTTP: invites, what a member sees (REST and
//! SSE) and stops seeing the moment they are kicked or part, owner transfer,
//! moving devices between homes, geofencing, and bad input as 4xx.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kumo_bridge::live::LiveEvent;
use kumo_bridge::DeviceKind;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::common::*;

const MESSAGE: &str = r#"{"format":"us","freq":38,"data":[3400,1700,450,450,450,1300]}"#;

/// The harness with home scopes for Alice (owner of `remo-1` with an IR
/// appliance and a signal) and a second user, Bob.
struct Homes {
    h: Harness,
    alice: String,
    bob_id: String,
    bob: String,
    home: String,
    appliance: String,
    signal: String,
}

async fn token(h: &Harness, user: &str) -> String {
    let scopes = [ALL, &["home"]].concat();
    kumo_bridge::create_token(&h.pool, user, &scopes, "homes")
        .await
        .unwrap()
}

async fn setup() -> Homes {
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
    async fn bob_joins(&self) -> String {
        let token = self.invite().await;
        let home = self
            .h
            .post_as(&self.bob, &format!("/1/invites/{token}"), &[])
            .await
            .ok();
        assert_eq!(home["id"], self.home.as_str());
        token
    }

    async fn invite(&self) -> String {
        let invite = self
            .h
            .post_as(&self.alice, &format!("/1/homes/{}/invites", self.home), &[])
            .await
            .ok();
        let url = invite["url"].as_str().unwrap();
        url.strip_prefix("/1/invites/").unwrap().to_string()
    }

    async fn device_ids(&self, token: &str) -> Vec<String> {
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

    fn path(&self, tail: &str) -> String {
        format!("/1/homes/{}{tail}", self.home)
    }
}

/// Reads SSE frames (event name, data) off `/v1/events`.
struct Sse {
    response: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(h: &Harness, token: &str) -> Self {
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

    async fn next(&mut self) -> (String, Value) {
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

fn reading(device: &str, val: f64) -> LiveEvent {
    LiveEvent::Reading {
        device: device.into(),
        sensor: "te".into(),
        val,
        at: OffsetDateTime::now_utc(),
    }
}

#[tokio::test]
async fn a_member_sees_and_controls_the_home_until_kicked_and_then_sees_nothing() {
    let t = setup().await;
    let h = &t.h;
    assert!(t.device_ids(&t.bob).await.is_empty(), "not a member yet");
    h.give_device("bob-1", &t.bob_id).await;
    t.bob_joins().await;
    let users = h.get_as(&t.alice, &t.path("/users")).await.ok();
    assert_eq!(
        users,
        json!([{"user": {"id": h.user_id, "nickname": "Alice"}, "role": "owner"},
               {"user": {"id": t.bob_id, "nickname": "Bob"}, "role": "member"}])
    );
    // REST: devices, appliances, signals, history, renaming, commands.
    assert_eq!(t.device_ids(&t.bob).await, ["bob-1", "remo-1"]);
    let devices = h.get_as(&t.bob, &t.path("/devices")).await.ok();
    assert_eq!(devices[0]["id"], "remo-1");
    let apps = h.get_as(&t.bob, "/1/appliances").await.ok();
    assert_eq!(apps[0]["id"], t.appliance.as_str());
    h.get_as(&t.bob, &format!("/1/appliances/{}/signals", t.appliance))
        .await
        .ok();
    h.get_as(&t.bob, "/v1/devices/remo-1/readings?sensor=te")
        .await
        .ok();
    h.post_as(&t.bob, "/1/devices/remo-1", &[("name", "Living")])
        .await
        .ok();
    let sent = h
        .post_as(&t.bob, &format!("/1/signals/{}/send", t.signal), &[])
        .await;
    assert_eq!(sent.status, 200, "{:?}", sent.body);
    let command = sent.command_id();
    // SSE: Bob's stream gets the home's device events.
    let mut bobs = Sse::open(h, &t.bob).await;
    let feed = h.bridge.as_ref().unwrap().commands().live().clone();
    feed.publish(reading("remo-1", 1.0));
    let (kind, data) = bobs.next().await;
    assert_eq!(
        (kind.as_str(), &data["device_id"]),
        ("reading", &json!("remo-1"))
    );

    h.post_as(&t.alice, &t.path("/kick"), &[("user", &t.bob_id)])
        .await
        .ok();
    // No window: the very next reading after the answer does not reach Bob.
    // A reading of Bob's own device follows it through the same router, so
    // it arrives first only if the home's reading was not routed to him.
    feed.publish(reading("remo-1", 2.0));
    feed.publish(reading("bob-1", 3.0));
    loop {
        let (kind, data) = bobs.next().await;
        if kind != "reading" {
            continue;
        }
        assert_eq!(data["device_id"], "bob-1", "a kicked member got {data}");
        break;
    }
    assert_eq!(t.device_ids(&t.bob).await, ["bob-1"]);
    assert_eq!(h.get_as(&t.bob, "/1/appliances").await.ok(), json!([]));
    h.get_as(&t.bob, "/v1/devices/remo-1/readings?sensor=te")
        .await
        .assert_error(404001);
    h.get_as(&t.bob, &format!("/1/appliances/{}/signals", t.appliance))
        .await
        .assert_error(404001);
    h.post_as(&t.bob, &format!("/1/signals/{}/send", t.signal), &[])
        .await
        .assert_error(404001);
    h.get_as(&t.bob, &t.path("/devices"))
        .await
        .assert_error(404001);
    let status: String = h
        .client()
        .await
        .query_one("SELECT status FROM commands WHERE id = $1", &[&command])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        status, "failed",
        "a kicked member's queued command never runs"
    );
    // The owner still has everything.
    assert_eq!(t.device_ids(&t.alice).await, ["remo-1"]);
    t.h.stop().await;
}

#[tokio::test]
async fn an_invite_is_good_once_and_until_it_expires() {
    let t = setup().await;
    let h = &t.h;
    let token = t.invite().await;
    assert!(token.len() >= 4 + 32, "at least 128 random bits: {token}");
    let shown = h.get_as(&t.bob, &format!("/1/invites/{token}")).await.ok();
    assert_eq!(shown["home"]["id"], t.home.as_str());
    assert_eq!(shown["user"]["id"], h.user_id.as_str());
    h.post_as(&t.alice, &format!("/1/invites/{token}"), &[])
        .await
        .assert_error(409001);
    h.post_as(&t.bob, &format!("/1/invites/{token}"), &[])
        .await
        .ok();
    let (carol, _) = h.other_user().await;
    let carol = self::token(h, &carol).await;
    h.post_as(&carol, &format!("/1/invites/{token}"), &[])
        .await
        .assert_error(400001);
    h.get_as(&carol, &format!("/1/invites/{token}"))
        .await
        .assert_error(400001);
    let late = t.invite().await;
    h.client()
        .await
        .execute(
            "UPDATE home_invites SET expires_at = now() - interval '1 second'
             WHERE used_at IS NULL",
            &[],
        )
        .await
        .unwrap();
    h.post_as(&carol, &format!("/1/invites/{late}"), &[])
        .await
        .assert_error(400001);
    h.post_as(
        &carol,
        "/1/invites/inv_00000000000000000000000000000000",
        &[],
    )
    .await
    .assert_error(404001);
    h.get_as(&carol, "/1/invites/a%00b")
        .await
        .assert_error(400001);
    assert!(t.device_ids(&carol).await.is_empty());
    t.h.stop().await;
}

#[tokio::test]
async fn another_users_home_answers_like_an_unknown_one_and_members_are_not_owners() {
    let t = setup().await;
    let h = &t.h;
    for home in [t.home.as_str(), "no-such-home"] {
        let p = |tail: &str| format!("/1/homes/{home}{tail}");
        h.get_as(&t.bob, &p("/devices")).await.assert_error(404001);
        h.get_as(&t.bob, &p("/users")).await.assert_error(404001);
        for (tail, form) in [
            ("", vec![("name", "mine")]),
            ("/delete", vec![]),
            ("/invites", vec![]),
            ("/kick", vec![("user", h.user_id.as_str())]),
            ("/part", vec![]),
            ("/owner", vec![("user", t.bob_id.as_str())]),
            (
                "/location",
                vec![("latitude", "1"), ("longitude", "1"), ("radius", "100")],
            ),
            ("/location/delete", vec![]),
            ("/location_state/update", vec![("state", "home")]),
        ] {
            h.post_as(&t.bob, &p(tail), &form)
                .await
                .assert_error(404001);
        }
    }
    let bobs_home = h.get_as(&t.bob, "/1/homes").await.ok()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    h.post_as(
        &t.alice,
        &t.path(&format!("/transfer/{bobs_home}")),
        &[("devices", "remo-1")],
    )
    .await
    .assert_error(404001);
    t.bob_joins().await;
    for (tail, form) in [
        ("", vec![("name", "mine")]),
        ("/delete", vec![]),
        ("/invites", vec![]),
        ("/kick", vec![("user", h.user_id.as_str())]),
        ("/owner", vec![("user", t.bob_id.as_str())]),
        (
            "/location",
            vec![("latitude", "1"), ("longitude", "1"), ("radius", "100")],
        ),
    ] {
        h.post_as(&t.bob, &t.path(tail), &form)
            .await
            .assert_error(403001);
    }
    h.post_as(&t.bob, "/1/devices/remo-1/delete", &[])
        .await
        .assert_error(403001);
    assert_eq!(t.device_ids(&t.alice).await, ["remo-1"]);
    let basic_only = kumo_bridge::create_token(&h.pool, &h.user_id, ALL, "basic")
        .await
        .unwrap();
    h.get_as(&basic_only, "/1/homes").await.assert_error(403001);
    t.h.stop().await;
}

#[tokio::test]
async fn ownership_moves_to_a_member_who_then_can_kick_the_previous_owner() {
    let t = setup().await;
    let h = &t.h;
    h.client()
        .await
        .execute(
            "INSERT INTO device_newest_events VALUES ('remo-1', 'te', 21.5, now())",
            &[],
        )
        .await
        .unwrap();
    h.post_as(&t.alice, &t.path("/owner"), &[("user", &t.bob_id)])
        .await
        .assert_error(400001);
    t.bob_joins().await;
    let home = h
        .post_as(&t.alice, &t.path("/owner"), &[("user", &t.bob_id)])
        .await
        .ok();
    let roles: Vec<(&str, &str)> = home["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["id"].as_str().unwrap(), u["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        roles,
        [(t.bob_id.as_str(), "owner"), (h.user_id.as_str(), "member")]
    );
    let device = &h.get_as(&t.bob, "/1/devices").await.ok()[0];
    assert_eq!(
        device["users"][0]["id"],
        t.bob_id.as_str(),
        "the account is the owner's"
    );
    assert_eq!(
        device["newest_events"]["te"]["val"], 21.5,
        "nothing is reset"
    );
    h.post_as(&t.alice, &t.path("/kick"), &[("user", &t.bob_id)])
        .await
        .assert_error(403001);
    h.post_as(&t.bob, &t.path("/part"), &[])
        .await
        .assert_error(400001);
    h.post_as(&t.bob, &t.path("/kick"), &[("user", &h.user_id)])
        .await
        .ok();
    assert!(t.device_ids(&t.alice).await.is_empty());
    assert_eq!(t.device_ids(&t.bob).await, ["remo-1"]);
    t.h.stop().await;
}

#[tokio::test]
async fn a_member_parts_and_leaves_the_devices_behind() {
    let t = setup().await;
    let h = &t.h;
    t.bob_joins().await;
    assert_eq!(t.device_ids(&t.bob).await, ["remo-1"]);
    h.post_as(&t.bob, &t.path("/part"), &[]).await.ok();
    assert!(t.device_ids(&t.bob).await.is_empty());
    h.post_as(&t.bob, &t.path("/part"), &[])
        .await
        .assert_error(404001);
    h.post_as(&t.alice, &t.path("/part"), &[])
        .await
        .assert_error(400001);
    h.post_as(&t.alice, &t.path("/kick"), &[("user", &t.bob_id)])
        .await
        .assert_error(400001);
    t.h.stop().await;
}

#[tokio::test]
async fn devices_move_between_the_owners_homes_and_start_afresh_there() {
    let t = setup().await;
    let h = &t.h;
    t.bob_joins().await;
    h.client()
        .await
        .execute(
            "INSERT INTO device_newest_events VALUES ('remo-1', 'te', 21.5, now())",
            &[],
        )
        .await
        .unwrap();
    let flat = h
        .post_as(&t.alice, "/1/homes", &[("name", " Flat ")])
        .await
        .ok();
    assert_eq!(flat["name"], "Flat");
    assert_eq!(flat["users"][0]["role"], "owner");
    let flat = flat["id"].as_str().unwrap().to_string();
    let to_flat = t.path(&format!("/transfer/{flat}"));
    h.post_as(&t.alice, &to_flat, &[("devices", "remo-1,nope")])
        .await
        .assert_error(400001);
    h.post_as(
        &t.alice,
        &t.path(&format!("/transfer/{}", t.home)),
        &[("devices", "remo-1")],
    )
    .await
    .assert_error(400001);
    h.post_as(&t.alice, &t.path("/delete"), &[])
        .await
        .assert_error(409001);
    h.post_as(&t.alice, &to_flat, &[("devices", "remo-1")])
        .await
        .ok();
    assert!(
        t.device_ids(&t.bob).await.is_empty(),
        "Bob is not in the flat"
    );
    let moved = h
        .get_as(&t.alice, &format!("/1/homes/{flat}/devices"))
        .await
        .ok();
    assert_eq!(moved[0]["id"], "remo-1");
    assert_eq!(
        moved[0]["newest_events"],
        json!({}),
        "a new home starts afresh"
    );
    assert_eq!(
        h.get_as(&t.alice, &t.path("/devices")).await.ok(),
        json!([])
    );
    h.post_as(&t.alice, &t.path("/delete"), &[]).await.ok();
    let homes = h.get_as(&t.alice, "/1/homes").await.ok();
    assert_eq!(homes.as_array().unwrap().len(), 1);
    assert!(t.device_ids(&t.bob).await.is_empty());
    t.h.stop().await;
}

#[tokio::test]
async fn the_home_location_and_each_members_location_state_are_kept() {
    let t = setup().await;
    let h = &t.h;
    t.bob_joins().await;
    let home = h
        .post_as(
            &t.alice,
            &t.path("/location"),
            &[
                ("latitude", "35.68"),
                ("longitude", "139.76"),
                ("radius", "150"),
            ],
        )
        .await
        .ok();
    assert_eq!(
        home["location"],
        json!({"latitude": 35.68, "longitude": 139.76, "radius": 150})
    );
    for bad in [
        [("latitude", "91"), ("longitude", "0"), ("radius", "1")],
        [("latitude", "0"), ("longitude", "181"), ("radius", "1")],
        [("latitude", "0"), ("longitude", "0"), ("radius", "0")],
        [("latitude", "x"), ("longitude", "0"), ("radius", "1")],
    ] {
        h.post_as(&t.alice, &t.path("/location"), &bad)
            .await
            .assert_error(400001);
    }
    h.post_as(
        &t.bob,
        &t.path("/location_state/update"),
        &[("state", "home")],
    )
    .await
    .ok();
    h.post_as(
        &t.bob,
        &t.path("/location_state/update"),
        &[("state", "in")],
    )
    .await
    .assert_error(400001);
    h.post_as(&t.bob, &t.path("/location_state/update"), &[])
        .await
        .assert_error(400001);
    let homes = h.get_as(&t.alice, "/1/homes").await.ok();
    let states: Vec<&str> = homes[0]["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["location_state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["unknown", "home"]);
    let home = h
        .post_as(&t.alice, &t.path("/location/delete"), &[])
        .await
        .ok();
    assert!(home["location"].is_null());
    t.h.stop().await;
}

#[tokio::test]
async fn bad_home_names_are_refused_with_a_400() {
    let t = setup().await;
    let h = &t.h;
    let long = "x".repeat(65);
    for name in ["", "   ", "a\u{0}b", "a\u{7}b", long.as_str()] {
        h.post_as(&t.alice, "/1/homes", &[("name", name)])
            .await
            .assert_error(400001);
        h.post_as(&t.alice, &t.path(""), &[("name", name)])
            .await
            .assert_error(400001);
    }
    h.post_as(&t.alice, "/1/homes", &[])
        .await
        .assert_error(400001);
    let raw = h
        .send(
            h.http
                .post(format!("{}/1/homes", h.base))
                .bearer_auth(&t.alice)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("name=%FF%FE"),
        )
        .await;
    raw.assert_error(400001);
    h.get_as(&t.alice, "/1/homes/a%00b/devices")
        .await
        .assert_error(400001);
    h.post_as(&t.alice, &t.path("/transfer/x"), &[("devices", ",,")])
        .await
        .assert_error(400001);
    let renamed = h
        .post_as(&t.alice, &t.path(""), &[("name", "家")])
        .await
        .ok();
    assert_eq!(renamed["name"], "家");
    t.h.stop().await;
}

#[tokio::test]
async fn the_last_member_leaving_fires_a_home_rule_and_a_kicked_members_rule_stays_silent() {
    use crate::rules_support::{executions, send_json, settle, wait_executions};
    use reqwest::Method;
    let t = setup().await;
    let h = &t.h;
    t.bob_joins().await;
    let home_rule = |on: &str, who: &str| {
        json!({"name": format!("{on} {who}"),
               "trigger": {"home": {"home": t.home, "on": on, "who": who}},
               "actions": [{"event": {"name": format!("{on}.{who}")}}]})
    };
    let create = |token: String, rule: Value| async move {
        send_json(h, Method::POST, "/v1/rules", &token, &rule)
            .await
            .ok()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let last_out = create(t.alice.clone(), home_rule("leave", "last")).await;
    let bobs = create(t.bob.clone(), home_rule("arrive", "anyone")).await;
    let (carol, _) = h.other_user().await;
    let carol = token(h, &carol).await;
    send_json(
        h,
        Method::POST,
        "/v1/rules",
        &carol,
        &home_rule("arrive", "first"),
    )
    .await
    .assert_error(400001);
    let state = |token: &str, s: &str| {
        let token = token.to_string();
        let s = s.to_string();
        let path = t.path("/location_state/update");
        async move { h.post_as(&token, &path, &[("state", &s)]).await.ok() }
    };
    state(&t.alice, "home").await;
    state(&t.bob, "home").await;
    let bobs_runs = || async {
        let runs = h
            .get_as(&t.bob, &format!("/v1/rules/{bobs}/executions"))
            .await
            .ok();
        runs.as_array().unwrap().len()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while bobs_runs().await < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "Bob's arrival rule fired twice"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    state(&t.bob, "away").await;
    settle().await;
    assert!(
        executions(h, &last_out).await.is_empty(),
        "Alice is still home"
    );
    state(&t.alice, "away").await;
    let fired = wait_executions(h, &last_out, 1).await;
    assert_eq!(fired[0]["cause"]["type"], "home");
    assert_eq!(fired[0]["cause"]["user"], h.user_id.as_str());
    assert_eq!(fired[0]["cause"]["at_home"], 0);

    h.post_as(&t.alice, &t.path("/kick"), &[("user", &t.bob_id)])
        .await
        .ok();
    state(&t.alice, "home").await;
    settle().await;
    assert_eq!(bobs_runs().await, 2, "no firing once Bob left the home");
    t.h.stop().await;
}
