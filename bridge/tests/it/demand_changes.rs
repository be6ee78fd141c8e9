//! Demand response and what users decide: a unit the user changes during
//! the event keeps the user's settings (no restore), and a unit whose
//! consent excludes the window's hours is never commanded. The simulator
//! plays both homes' air conditioners through a real broker node.
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

async fn settings(h: &Harness, token: &str, id: &str) -> Value {
    let list = h.get_as(token, "/1/appliances").await.ok();
    let a = list.as_array().unwrap().iter().find(|a| a["id"] == id);
    a.unwrap()["settings"].clone()
}

/// Sets `temperature` (cooling, on) and waits for the device's ack.
async fn set_temp(h: &Harness, token: &str, ac: &str, temperature: &str) {
    for _ in 0..50 {
        let form = [
            ("operation_mode", "cool"),
            ("temperature", temperature),
            ("button", ""),
        ];
        let r = h
            .send(
                h.http
                    .post(format!("{}/1/appliances/{ac}/aircon_settings", h.base))
                    .bearer_auth(token)
                    .header("prefer", "wait=5")
                    .form(&form),
            )
            .await;
        if r.status.is_success() && r.headers["x-kumo-command-status"] == "acked" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the simulated device never acked");
}

/// The dispatch row of `appliance` once its state satisfies `ok`.
async fn wait_row(h: &Harness, appliance: &str, ok: impl Fn(&str) -> bool) -> (String, String) {
    for _ in 0..300 {
        let row = h
            .client()
            .await
            .query_one(
                "SELECT state, coalesce(reason, '') FROM dr_dispatches WHERE appliance_id = $1",
                &[&appliance],
            )
            .await
            .unwrap();
        let (state, reason): (String, String) = (row.get(0), row.get(1));
        if ok(&state) {
            return (state, reason);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the dispatch row of {appliance} never got there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_changed_during_the_event_keeps_the_users_settings_and_excluded_hours_are_respected()
{
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
    let ac = h.add_appliance("sim-000000", "kumo-ac-generic", "AC").await;
    let bob_ac = h
        .post_as(
            &bob_token,
            "/1/appliances",
            &[
                ("nickname", "ac"),
                ("image", "i"),
                ("device", "sim-000001"),
                ("model", "kumo-ac-generic"),
            ],
        )
        .await
        .ok()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let alice = h.token.clone();
    set_temp(h, &alice, &ac, "25").await;
    set_temp(h, &bob_token, &bob_ac, "25").await;

    let (_, agg) = kumo_bridge::demand::principal::create(&h.pool, "Grid Co")
        .await
        .unwrap();
    let prg = h
        .post_as(&agg, "/v1/aggregator/programs", &[("name", "Peaks")])
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let enrol = format!("/v1/programs/{prg}/enrolments");
    h.post(&enrol, &[("appliance", &ac), ("max_setpoint_change", "2")])
        .await;
    // Bob allows nothing at any hour of his day.
    let all_day: Vec<String> = (0..24).map(|h| h.to_string()).collect();
    let r = h
        .post_as(
            &bob_token,
            &enrol,
            &[
                ("appliance", &bob_ac),
                ("max_setpoint_change", "2"),
                ("allow_off", "true"),
                ("excluded_hours", &all_day.join(",")),
                ("tz", "+09:00"),
            ],
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);
    let r = h
        .post_as(
            &agg,
            &format!("/v1/aggregator/programs/{prg}/events"),
            &[("start", &at(2)), ("end", &at(8)), ("target", "off")],
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);

    // Alice does not allow turning off: 2 °C warmer instead.
    wait_row(h, &ac, |s| s == "dispatched").await;
    for _ in 0..100 {
        if settings(h, &alice, &ac).await["temp"] == "27" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(settings(h, &alice, &ac).await["temp"], "27");
    // She is too warm and sets 24 herself: that stands after the event.
    set_temp(h, &alice, &ac, "24").await;
    let (state, reason) = wait_row(h, &ac, |s| s != "dispatched").await;
    assert_eq!(state, "restore_skipped");
    assert!(reason.contains("changed during the event"), "{reason}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(settings(h, &alice, &ac).await["temp"], "24");

    let (state, reason) = wait_row(h, &bob_ac, |s| s != "pending").await;
    assert_eq!(state, "skipped");
    assert!(reason.contains("excluded hour"), "{reason}");
    let s = settings(h, &bob_token, &bob_ac).await;
    assert_eq!(
        (s["temp"].as_str(), s["button"].as_str()),
        (Some("25"), Some(""))
    );
    let dr: i64 = h
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM commands WHERE appliance_id = $1 AND idempotency_key LIKE 'dr:%'",
            &[&bob_ac],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dr, 0, "Bob's unit was never commanded");
    drop(_sim);
    stack.stop().await;
}
