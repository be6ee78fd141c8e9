//! Demand response end to end: an aggregator's event commands the enrolled
//! homes' air conditioners (played by Kumo's simulator through a real broker
//! node, which acks and changes state), within each user's limits, restores
//! them at the end, and an opt-out mid-event restores at once. Bad input and
//! foreign ids get clear errors; an account's token is not an aggregator's.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::common::*;
use crate::stack::Stack;
use kumo_bridge::DeviceKind;

fn at(secs: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::seconds(secs))
        .format(&Rfc3339)
        .unwrap()
}

async fn aggregator(h: &Harness, name: &str) -> String {
    kumo_bridge::demand::principal::create(&h.pool, name)
        .await
        .unwrap()
        .1
}

async fn program(h: &Harness, agg: &str) -> String {
    let r = h
        .post_as(agg, "/v1/aggregator/programs", &[("name", "Summer peaks")])
        .await;
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

/// The confirmed settings of appliance `id` as `token` sees them.
async fn settings(h: &Harness, token: &str, id: &str) -> Value {
    let list = h.get_as(token, "/1/appliances").await.ok();
    let a = list.as_array().unwrap().iter().find(|a| a["id"] == id);
    a.unwrap()["settings"].clone()
}

/// Polls until appliance `id`'s confirmed settings satisfy `ok`.
async fn wait_settings(h: &Harness, token: &str, id: &str, ok: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..300 {
        let s = settings(h, token, id).await;
        if ok(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "settings of {id} never matched: {}",
        settings(h, token, id).await
    );
}

/// Sets an AC to cool at 25 °C, on, and waits for the device's ack.
async fn cool_at_25(h: &Harness, token: &str, ac: &str) {
    for _ in 0..50 {
        let r = h
            .send(
                h.http
                    .post(format!("{}/1/appliances/{ac}/aircon_settings", h.base))
                    .bearer_auth(token)
                    .header("prefer", "wait=5")
                    .form(&[
                        ("operation_mode", "cool"),
                        ("temperature", "25"),
                        ("button", ""),
                    ]),
            )
            .await;
        if r.status.is_success() && r.headers["x-kumo-command-status"] == "acked" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the simulated device never acked");
}

async fn dispatch_commands(h: &Harness, appliance: &str) -> i64 {
    h.client()
        .await
        .query_one(
            "SELECT count(*) FROM commands WHERE appliance_id = $1 AND idempotency_key LIKE 'dr:%'",
            &[&appliance],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_commands_enrolled_homes_within_their_limits_and_restores_them() {
    let stack = Stack::start(|s| {
        s.demand_response.stagger_secs = 1;
        s.demand_response.poll_interval_ms = 100;
    })
    .await;
    let h = &stack.h;
    h.add_device("sim-000000", DeviceKind::Remo).await;
    let (bob, bob_token) = h.other_user().await;
    h.give_device("sim-000001", &bob).await;
    let _sim = stack.simulate(|s| s.devices = 2);
    let alice_ac = h.add_appliance("sim-000000", "kumo-ac-generic", "AC").await;
    let bob_ac = h
        .post_as(
            &bob_token,
            "/1/appliances",
            &[
                ("nickname", "ac"),
                ("image", "ico_ac"),
                ("device", "sim-000001"),
                ("model", "kumo-ac-generic"),
                ("model_type", "AC"),
            ],
        )
        .await
        .ok()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let alice = h.token.clone();
    cool_at_25(h, &alice, &alice_ac).await;
    cool_at_25(h, &bob_token, &bob_ac).await;

    let agg = aggregator(h, "Grid Co").await;
    let prg = program(h, &agg).await;
    let enrol = format!("/v1/programs/{prg}/enrolments");
    // Alice allows 2 °C, Bob 1 °C; neither allows turning off.
    let r = h
        .post_as(
            &alice,
            &enrol,
            &[("appliance", &alice_ac), ("max_setpoint_change", "2")],
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);
    let r = h
        .post_as(
            &bob_token,
            &enrol,
            &[
                ("appliance", &bob_ac),
                ("max_setpoint_change", "1"),
                ("tz", "+09:00"),
            ],
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);

    // Asked for 3 °C warmer for ten seconds, from two seconds on.
    let r = h
        .post_as(
            &agg,
            &format!("/v1/aggregator/programs/{prg}/events"),
            &[
                ("start", &at(2)),
                ("end", &at(12)),
                ("target", "setpoint"),
                ("setpoint_change", "3"),
            ],
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);
    let event = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["homes"].as_array().unwrap().len(), 2);

    // Each unit moves as far as its user allows, not further.
    let s = wait_settings(h, &alice, &alice_ac, |s| s["temp"] == "27").await;
    assert_eq!(
        (s["mode"].as_str(), s["button"].as_str()),
        (Some("cool"), Some(""))
    );
    wait_settings(h, &bob_token, &bob_ac, |s| s["temp"] == "26").await;

    // Alice opts out mid-event: her unit is back at 25 at once, Bob's still at 26.
    let r = h
        .post_as(&alice, &format!("{enrol}/{alice_ac}/opt_out"), &[])
        .await
        .ok();
    assert!(r["opted_out_at"].is_string());
    wait_settings(h, &alice, &alice_ac, |s| s["temp"] == "25").await;
    assert_eq!(settings(h, &bob_token, &bob_ac).await["temp"], "26");
    let e = h
        .get_as(&agg, &format!("/v1/aggregator/events/{event}"))
        .await
        .ok();
    let end = OffsetDateTime::parse(e["end"].as_str().unwrap(), &Rfc3339).unwrap();
    assert!(
        OffsetDateTime::now_utc() < end,
        "the opt-out was tested mid-event"
    );

    // At the end Bob's is restored too.
    wait_settings(h, &bob_token, &bob_ac, |s| s["temp"] == "25").await;
    let e = h
        .get_as(&agg, &format!("/v1/aggregator/events/{event}"))
        .await
        .ok();
    for home in e["homes"].as_array().unwrap() {
        assert_eq!(home["state"], "restored", "{home}");
        assert_eq!(home["command"]["status"], "acked", "{home}");
        assert!(home["restore_command"]["id"].is_string(), "{home}");
    }
    assert_eq!(e["summary"]["restored"], 2);
    // Alice was commanded once and restored once; never again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(dispatch_commands(h, &alice_ac).await, 2);

    // Each user sees their own unit's outcome only.
    let mine = h
        .get_as(&bob_token, &format!("/v1/programs/{prg}/events"))
        .await
        .ok();
    let units = mine[0]["appliances"].as_array().unwrap();
    assert_eq!(units.len(), 1);
    assert_eq!(units[0]["appliance"], bob_ac.as_str());
    drop(_sim);
    stack.stop().await;
}

#[tokio::test]
async fn bad_events_foreign_ids_and_account_tokens_get_clear_errors() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let ac = h.add_appliance("remo-1", "kumo-ac-generic", "AC").await;
    let tv = h.add_appliance("remo-1", "kumo-tv-generic", "TV").await;
    let (_, bob) = h.other_user().await;
    let agg = aggregator(&h, "Grid Co").await;
    let other_agg = aggregator(&h, "Other Grid").await;

    // An account's token, even with every scope, is not an aggregator's.
    h.get("/v1/aggregator/programs").await.assert_error(403001);
    h.post("/v1/aggregator/programs", &[("name", "x")])
        .await
        .assert_error(403001);
    h.get_as("nope", "/v1/aggregator/programs")
        .await
        .assert_error(401001);
    // Nor can an account give itself the scope.
    h.post("/v1/tokens", &[("name", "x"), ("scopes", "aggregator")])
        .await
        .assert_error(400001);

    let prg = program(&h, &agg).await;
    let events = format!("/v1/aggregator/programs/{prg}/events");
    let ev = |start: String, end: String| {
        vec![
            ("start", start),
            ("end", end),
            ("target", "setpoint".to_string()),
            ("setpoint_change", "2".to_string()),
        ]
    };
    let post = |form: Vec<(&'static str, String)>| {
        let (h, agg, events) = (&h, &agg, &events);
        async move {
            let f: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            h.post_as(agg, events, &f).await
        }
    };
    // Nobody enrolled yet.
    post(ev(at(60), at(120))).await.assert_error(409001);
    let enrol = format!("/v1/programs/{prg}/enrolments");
    // Someone else's appliance, an unknown program, a TV, limits out of range.
    h.post_as(
        &bob,
        &enrol,
        &[("appliance", &ac), ("max_setpoint_change", "2")],
    )
    .await
    .assert_error(404001);
    h.post(
        "/v1/programs/prg-nope/enrolments",
        &[("appliance", &ac), ("max_setpoint_change", "2")],
    )
    .await
    .assert_error(404001);
    h.post(&enrol, &[("appliance", &tv), ("max_setpoint_change", "2")])
        .await
        .assert_error(400001);
    for bad in [
        &[("appliance", ac.as_str()), ("max_setpoint_change", "11")][..],
        &[
            ("appliance", ac.as_str()),
            ("max_setpoint_change", "1"),
            ("excluded_hours", "24"),
        ],
        &[
            ("appliance", ac.as_str()),
            ("max_setpoint_change", "1"),
            ("tz", "Mars"),
        ],
        &[
            ("appliance", ac.as_str()),
            ("max_setpoint_change", "1"),
            ("allow_off", "maybe"),
        ],
    ] {
        h.post(&enrol, bad).await.assert_error(400001);
    }
    let r = h
        .post(
            &enrol,
            &[("appliance", &ac), ("max_setpoint_change", "0.1")],
        )
        .await;
    assert_eq!(r.body["max_setpoint_change"], 0.1, "{:?}", r.body);
    let r = h
        .post(
            &enrol,
            &[
                ("appliance", &ac),
                ("max_setpoint_change", "2"),
                ("excluded_hours", "18,19"),
            ],
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);
    assert_eq!(r.body["excluded_hours"], serde_json::json!([18, 19]));

    // Windows in the past, backwards, too long; unknown targets.
    post(ev(at(-60), at(60))).await.assert_error(400001);
    post(ev(at(120), at(60))).await.assert_error(400001);
    post(ev(at(60), at(60 + 25 * 3600)))
        .await
        .assert_error(400001);
    let mut odd = ev(at(60), at(120));
    odd[2].1 = "melt".into();
    post(odd).await.assert_error(400001);
    let mut big = ev(at(60), at(120));
    big[3].1 = "40".into();
    post(big).await.assert_error(400001);

    let r = post(ev(at(600), at(1200))).await;
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);
    let event = r.body["id"].as_str().unwrap().to_string();
    // Overlapping the first: refused; just after it: fine.
    post(ev(at(900), at(1500))).await.assert_error(409001);
    let r = post(ev(at(1200), at(1300))).await;
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);
    // A kW target: one setpoint change at 0.06 kW per kelvin (the default),
    // clamped to the unit's limit of 2 °C (no hour excluded now, so the test
    // does not depend on the time of day).
    let r = h
        .post(&enrol, &[("appliance", &ac), ("max_setpoint_change", "2")])
        .await;
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);
    let kw_at = |from: i64, extra: Option<(&'static str, &str)>| {
        let mut f = vec![
            ("start", at(from)),
            ("end", at(from + 100)),
            ("target", "kw".to_string()),
        ];
        if let Some((k, v)) = extra {
            f.push((k, v.to_string()));
        }
        f
    };
    let kw = |extra| kw_at(1300, extra);
    post(kw(None)).await.assert_error(400001);
    post(kw(Some(("setpoint_change", "1"))))
        .await
        .assert_error(400001);
    let r = post(kw(Some(("reduction_kw", "0.06")))).await;
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);
    assert_eq!(
        (
            &r.body["target"],
            &r.body["reduction_kw"],
            &r.body["setpoint_change"]
        ),
        (
            &serde_json::json!("kw"),
            &serde_json::json!(0.06),
            &serde_json::json!(1.0)
        )
    );
    assert_eq!(r.body["expected_reduction_kw"], 0.06, "{:?}", r.body);
    // More than the unit's limit can give: its limit, and the event says
    // how much that is expected to give.
    let r = post(kw_at(1400, Some(("reduction_kw", "1")))).await;
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);
    assert_eq!(r.body["setpoint_change"], 2.0, "{:?}", r.body);
    assert_eq!(r.body["expected_reduction_kw"], 0.12, "{:?}", r.body);
    assert_eq!(r.body["reduction_kw"], 1.0, "{:?}", r.body);
    // No unit may move in the window (every hour excluded): a kW target
    // cannot be planned, and nothing is created.
    let all_day = (0..24).map(|h| h.to_string()).collect::<Vec<_>>().join(",");
    let r = h
        .post(
            &enrol,
            &[
                ("appliance", &ac),
                ("max_setpoint_change", "2"),
                ("excluded_hours", &all_day),
            ],
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);
    post(kw_at(1500, Some(("reduction_kw", "0.06"))))
        .await
        .assert_error(409001);

    // Another aggregator sees none of it.
    h.get_as(&other_agg, &format!("/v1/aggregator/events/{event}"))
        .await
        .assert_error(404001);
    h.get_as(&other_agg, &events).await.assert_error(404001);
    h.post_as(
        &other_agg,
        &events,
        &[("start", &at(60)), ("end", &at(90)), ("target", "off")],
    )
    .await
    .assert_error(404001);
    let theirs = h.get_as(&other_agg, "/v1/aggregator/programs").await.ok();
    assert_eq!(theirs, serde_json::json!([]));

    // Another user sees the program but not Alice's enrolment or events,
    // and cannot opt her out.
    let list = h.get_as(&bob, "/v1/programs").await.ok();
    assert_eq!(list[0]["id"], prg.as_str());
    assert_eq!(list[0]["enrolments"], serde_json::json!([]));
    let none = h
        .get_as(&bob, &format!("/v1/programs/{prg}/events"))
        .await
        .ok();
    assert_eq!(none, serde_json::json!([]));
    h.post_as(&bob, &format!("{enrol}/{ac}/opt_out"), &[])
        .await
        .assert_error(404001);
    let mine = h.get(&format!("/v1/programs/{prg}/events")).await.ok();
    assert_eq!(mine.as_array().unwrap().len(), 4);
    assert_eq!(h.command_count().await, 0);
    h.stop().await;
}
