//! `/v1/rules` over REST: CRUD, validation of the rule document and of what
//! it names (the caller's devices and appliances, commands the appliance can
//! carry out), account isolation and scopes.
#![allow(clippy::unwrap_used)]

use crate::common::Harness;
use crate::rules_support::*;
use kumo_bridge::DeviceKind;
use kumo_contract::DeviceId;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn rules_can_be_created_listed_shown_updated_and_deleted() {
    let h = crate::common::start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let created = create(&h, &threshold("remo-1", 28.0, event_action()))
        .await
        .ok();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["enabled"], true, "enabled by default");
    assert_eq!(created["trigger"]["threshold"]["device"], "remo-1");
    assert!(created["created_at"].is_string() && created["updated_at"].is_string());

    let list = h.get("/v1/rules").await.ok();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(h.get(&format!("/v1/rules/{id}")).await.ok(), created);

    let off = patch(&h, &id, json!({"enabled": false, "name": "quiet"})).await;
    assert_eq!(
        (off["enabled"].clone(), off["name"].clone()),
        (json!(false), json!("quiet"))
    );
    assert_eq!(
        off["trigger"], created["trigger"],
        "PATCH keeps other fields"
    );

    let mut whole = threshold("remo-1", 30.0, event_action());
    whole["name"] = json!("replaced");
    let put = send_json(
        &h,
        Method::PUT,
        &format!("/v1/rules/{id}"),
        &h.token,
        &whole,
    )
    .await
    .ok();
    assert_eq!(put["trigger"]["threshold"]["value"], 30.0);
    assert_eq!(put["enabled"], true, "PUT replaces the whole rule");
    assert!(executions(&h, &id).await.is_empty());
    let mut fetched = h.get(&format!("/v1/rules/{id}")).await.ok();
    fetched["name"] = json!("sent back as fetched");
    let again = send_json(
        &h,
        Method::PUT,
        &format!("/v1/rules/{id}"),
        &h.token,
        &fetched,
    )
    .await;
    assert_eq!(again.ok()["name"], "sent back as fetched");

    let del = h.send(
        h.http
            .delete(format!("{}/v1/rules/{id}", h.base))
            .bearer_auth(&h.token),
    );
    assert_eq!(del.await.ok(), json!({}));
    h.get(&format!("/v1/rules/{id}")).await.assert_error(404001);
    assert!(h.get("/v1/rules").await.ok().as_array().unwrap().is_empty());
    h.stop().await;
}

/// Creates `rule` and asserts a 400 whose message starts with `field`.
async fn rejected(h: &Harness, rule: &Value, field: &str) -> String {
    let r = create(h, rule).await;
    r.assert_error(400001);
    let msg = r.body["message"].as_str().unwrap().to_string();
    assert!(msg.starts_with(field), "{msg:?} should name {field}");
    msg
}

fn command(appliance: &str, kind: &str, params: Value) -> Value {
    json!([{"command": {"appliance": appliance, "kind": kind, "params": params}}])
}

/// Bob's device `remo-bob` with an AC; returns (bob's id, his AC's id).
async fn bob_with_an_ac(h: &Harness) -> (String, String) {
    let (bob, bob_token) = h.other_user().await;
    let device = DeviceId::parse("remo-bob").unwrap();
    kumo_bridge::register_device(&h.pool, &device, &bob, DeviceKind::Remo, "b")
        .await
        .unwrap();
    let form = [
        ("nickname", "ac"),
        ("image", "i"),
        ("device", "remo-bob"),
        ("model", "kumo-ac-generic"),
        ("model_type", "AC"),
    ];
    let ac = h.post_as(&bob_token, "/1/appliances", &form).await.ok()["id"]
        .as_str()
        .unwrap()
        .to_string();
    (bob, ac)
}

#[tokio::test]
async fn malformed_rules_are_rejected_with_a_message_naming_the_field() {
    let h = crate::common::start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    rejected(
        &h,
        &threshold("remo-1", 500.0, event_action()),
        "trigger.threshold.value",
    )
    .await;
    let no_kind = json!({"name": "x", "trigger": {}, "actions": event_action()});
    rejected(
        &h,
        &no_kind,
        "trigger must be an object with exactly one key",
    )
    .await;
    let no_actions = threshold("remo-1", 28.0, json!([]));
    rejected(&h, &no_actions, "actions must contain at least one action").await;
    let not_json = h.send(
        h.http
            .post(format!("{}/v1/rules", h.base))
            .bearer_auth(&h.token)
            .body("{"),
    );
    not_json.await.assert_error(400001);
    assert!(h.get("/v1/rules").await.ok().as_array().unwrap().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn rules_naming_unknown_or_foreign_devices_and_appliances_are_rejected_alike() {
    let h = crate::common::start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let (bob, bobs_ac) = bob_with_an_ac(&h).await;
    let unknown = rejected(
        &h,
        &threshold("remo-9", 28.0, event_action()),
        "trigger.threshold.device \"remo-9\"",
    )
    .await;
    let foreign = rejected(
        &h,
        &threshold("remo-bob", 28.0, event_action()),
        "trigger.threshold.device \"remo-bob\"",
    )
    .await;
    assert_eq!(
        unknown.replace("remo-9", "X"),
        foreign.replace("remo-bob", "X")
    );
    let mut condition = threshold("remo-1", 28.0, event_action());
    condition["conditions"] =
        json!([{"sensor": {"device": "remo-bob", "sensor": "hu", "op": "above", "value": 60}}]);
    rejected(&h, &condition, "conditions[0].sensor.device \"remo-bob\"").await;
    let cool = json!({"operation_mode": "cool"});
    for appliance in [bobs_ac.as_str(), "no-such-ac"] {
        let rule = threshold(
            "remo-1",
            28.0,
            command(appliance, "aircon_settings", cool.clone()),
        );
        let msg = rejected(&h, &rule, "actions[0].command.appliance").await;
        assert!(msg.ends_with("is not one of your appliances") && !msg.contains(&bob));
    }
    assert!(h.get("/v1/rules").await.ok().as_array().unwrap().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn rule_commands_are_validated_against_the_appliance_like_the_rest_endpoints() {
    let h = crate::common::start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let ac = h.add_appliance("remo-1", "kumo-ac-generic", "AC").await;
    let tv = h.add_appliance("remo-1", "kumo-tv-generic", "TV").await;
    let ir = |name: &'static str| [("nickname", name), ("image", "i"), ("device", "remo-1")];
    let fan = h_post_id(&h, "/1/appliances", &ir("fan")).await;
    let heater = h_post_id(&h, "/1/appliances", &ir("heater")).await;
    let message = r#"{"format":"us","freq":38,"data":[100,200,300]}"#;
    let signal_form = [("name", "on"), ("image", "i"), ("message", message)];
    let heater_on = h_post_id(&h, &format!("/1/appliances/{heater}/signals"), &signal_form).await;
    let cases = [
        (
            command(
                &ac,
                "aircon_settings",
                json!({"operation_mode": "cool", "temperature": "99"}),
            ),
            "actions[0].command: temperature \"99\" is not supported by mode \"cool\"",
        ),
        (
            command(&ac, "aircon_settings", json!({"operation_mode": "turbo"})),
            "actions[0].command: operation_mode \"turbo\" is not supported",
        ),
        (
            command(&tv, "tv", json!({"button": "self-destruct"})),
            "actions[0].command: button \"self-destruct\" is not supported",
        ),
        (
            command(&ac, "light", json!({"button": "on"})),
            "actions[0].command: this appliance is not a LIGHT",
        ),
        (
            command(&fan, "signal", json!({"signal": heater_on})),
            "actions[0].command: signal",
        ),
    ];
    for (actions, field) in cases {
        rejected(&h, &threshold("remo-1", 28.0, actions), field).await;
    }
    let fine = command(&heater, "signal", json!({"signal": heater_on}));
    // Operating appliances through a rule takes the scope sending a command takes.
    let writer = h.token_with(&["basic.read", "basic.write"]).await;
    let rule = threshold("remo-1", 28.0, fine.clone());
    send_json(&h, Method::POST, "/v1/rules", &writer, &rule)
        .await
        .assert_error(403001);
    create_ok(&h, &threshold("remo-1", 28.0, fine)).await;
    h.stop().await;
}

/// POSTs a form and returns the `id` of what it created.
async fn h_post_id(h: &Harness, path: &str, form: &[(&str, &str)]) -> String {
    h.post(path, form).await.ok()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn another_accounts_rule_is_not_found_and_scopes_are_enforced() {
    let h = crate::common::start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let id = create_ok(&h, &threshold("remo-1", 28.0, event_action())).await;
    let (_, bob) = h.other_user().await;
    let path = format!("/v1/rules/{id}");
    h.get_as(&bob, &path).await.assert_error(404001);
    h.get_as(&bob, &format!("{path}/executions"))
        .await
        .assert_error(404001);
    send_json(&h, Method::PATCH, &path, &bob, &json!({"enabled": false}))
        .await
        .assert_error(404001);
    let del = h.send(h.http.delete(format!("{}{path}", h.base)).bearer_auth(&bob));
    del.await.assert_error(404001);
    assert!(h
        .get_as(&bob, "/v1/rules")
        .await
        .ok()
        .as_array()
        .unwrap()
        .is_empty());

    let reader = h.token_with(&["basic.read"]).await;
    assert_eq!(
        h.get_as(&reader, "/v1/rules")
            .await
            .ok()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let rule = threshold("remo-1", 28.0, event_action());
    send_json(&h, Method::POST, "/v1/rules", &reader, &rule)
        .await
        .assert_error(403001);
    h.get(&format!("{path}/executions?limit=0"))
        .await
        .assert_error(400001);
    h.stop().await;
}

#[tokio::test]
async fn the_openapi_document_describes_the_rules_routes() {
    let h = crate::common::start().await;
    let doc = h
        .send(h.http.get(format!("{}/v1/openapi.json", h.base)))
        .await
        .ok();
    let paths = &doc["paths"];
    for (path, methods) in [
        ("/v1/rules", &["get", "post"][..]),
        ("/v1/rules/{id}", &["get", "put", "patch", "delete"][..]),
        ("/v1/rules/{id}/executions", &["get"][..]),
    ] {
        for m in methods {
            assert!(paths[path][m].is_object(), "{m} {path}");
        }
    }
    for schema in ["Rule", "RuleInput", "RuleExecution"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    h.stop().await;
}

#[tokio::test]
async fn an_account_has_at_most_200_rules() {
    let h = crate::common::start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let first = create_ok(&h, &threshold("remo-1", 28.0, event_action())).await;
    // 199 more, stored directly (the API path is the same for each).
    h.client()
        .await
        .execute(
            "INSERT INTO rules (id, user_id, name, enabled, definition)
             SELECT gen_random_uuid()::text, user_id, name, enabled, definition
             FROM rules, generate_series(1, 199) WHERE id = $1",
            &[&first],
        )
        .await
        .unwrap();
    let refused = create(&h, &threshold("remo-1", 30.0, event_action())).await;
    refused.assert_error(409001);
    assert!(refused.body["message"].as_str().unwrap().contains("200"));
    assert_eq!(h.get("/v1/rules").await.ok().as_array().unwrap().len(), 200);
    // Another account is not affected; deleting one makes room again.
    let (_, other_token) = h.other_user().await;
    let mine = h
        .send(
            h.http
                .delete(format!("{}/v1/rules/{first}", h.base))
                .bearer_auth(&h.token),
        )
        .await;
    assert_eq!(mine.status, 200, "{:?}", mine.body);
    create_ok(&h, &threshold("remo-1", 30.0, event_action())).await;
    let theirs = h
        .send(
            h.http
                .post(format!("{}/v1/rules", h.base))
                .bearer_auth(&other_token)
                .json(&json!({"name": "t", "trigger": {"schedule": {"at": "07:00",
                    "time_zone": "UTC"}}, "actions": [{"event": {"name": "x"}}]})),
        )
        .await;
    assert_eq!(theirs.status, 200, "{:?}", theirs.body);
    h.stop().await;
}
