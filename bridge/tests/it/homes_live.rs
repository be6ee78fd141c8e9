//! What a home member gets live and stops getting at once: SSE events of the
//! home's devices until kicked, home rules (the last member leaving) and a
//! kicked member's rule that stays silent.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{json, Value};

use crate::homes_support::*;

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
