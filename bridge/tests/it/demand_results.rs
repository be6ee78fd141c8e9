//! An event's measured results: the High 4 of 5 baseline from a home's own
//! meter history, what the meter counted in the event's half hours, the
//! reduction per home and in aggregate, homes that responded and commands
//! that failed. The meter's readings are written as a gateway's would be.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kumo_bridge::device_state::record_meter;
use kumo_bridge::DeviceKind;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::common::*;

fn rfc(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// A meter counting 0.1 kWh: one count every 5 minutes (0.6 kWh a half
/// hour) for 22 days before `slot`, then nothing until an hour after it.
async fn meter_history(h: &Harness, slot: OffsetDateTime) {
    let begin = slot - time::Duration::days(22);
    let scale = [
        (0xD3, "1".to_string()),
        (0xE1, "1".to_string()),
        (0xD7, "8".to_string()),
    ];
    record_meter(
        &h.pool,
        &dev("meter-1"),
        &scale,
        begin - time::Duration::hours(1),
    )
    .await
    .unwrap();
    let (mut vals, mut ats) = (Vec::new(), Vec::new());
    let steps = 22 * 288;
    for i in 0..=steps + 13 {
        vals.push(i.min(steps) as f64);
        ats.push(begin + time::Duration::minutes(5 * i));
    }
    h.client()
        .await
        .execute(
            "INSERT INTO readings (device_id, sensor, val, at)
             SELECT 'meter-1', 'energy', * FROM unnest($1::float8[], $2::timestamptz[])",
            &[&vals, &ats],
        )
        .await
        .unwrap();
}

async fn dispatched_command(h: &Harness, appliance: &str) -> uuid::Uuid {
    for _ in 0..100 {
        let row = h
            .client()
            .await
            .query_opt(
                "SELECT command_id FROM dr_dispatches WHERE appliance_id = $1 AND state = 'dispatched'",
                &[&appliance],
            )
            .await
            .unwrap();
        if let Some(r) = row {
            return r.get(0);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{appliance} was never dispatched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_give_the_baseline_the_metered_load_and_the_reduction_per_home_and_in_total() {
    let mut settings = test_settings();
    settings.demand_response.stagger_secs = 0;
    settings.demand_response.poll_interval_ms = 100;
    let h = start_with(settings).await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    h.add_device("meter-1", DeviceKind::SmartMeter).await;
    let ac = h.add_appliance("remo-1", "kumo-ac-generic", "AC").await;
    let (bob, bob_token) = h.other_user().await;
    h.give_device("remo-2", &bob).await;
    let bob_ac = h
        .post_as(
            &bob_token,
            "/1/appliances",
            &[
                ("nickname", "ac"),
                ("image", "i"),
                ("device", "remo-2"),
                ("model", "kumo-ac-generic"),
            ],
        )
        .await
        .ok()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Both units were confirmed cooling at 25 °C.
    let on = serde_json::json!({"temp": "25", "temp_unit": "c", "mode": "cool",
                                "vol": "", "dir": "", "dirh": "", "button": ""});
    h.client()
        .await
        .execute("UPDATE appliances SET settings = $1", &[&on])
        .await
        .unwrap();

    let now = OffsetDateTime::now_utc();
    let start = now + time::Duration::seconds(2);
    let slot = start
        .replace_second(0)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap();
    let slot = slot.replace_minute(slot.minute() / 30 * 30).unwrap();
    meter_history(&h, slot).await;

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
    h.post_as(
        &bob_token,
        &enrol,
        &[("appliance", &bob_ac), ("max_setpoint_change", "2")],
    )
    .await;
    let r = h
        .post_as(
            &agg,
            &format!("/v1/aggregator/programs/{prg}/events"),
            &[
                ("start", &rfc(start)),
                ("end", &rfc(start + time::Duration::seconds(1))),
                ("target", "setpoint"),
                ("setpoint_change", "2"),
            ],
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);
    let event = r.body["id"].as_str().unwrap().to_string();

    // Alice's unit acks, Bob's fails.
    let (a, b) = (
        dispatched_command(&h, &ac).await,
        dispatched_command(&h, &bob_ac).await,
    );
    let c = h.client().await;
    c.execute("UPDATE commands SET status = 'acked' WHERE id = $1", &[&a])
        .await
        .unwrap();
    c.execute("UPDATE commands SET status = 'failed' WHERE id = $1", &[&b])
        .await
        .unwrap();

    let res = h
        .get_as(&agg, &format!("/v1/aggregator/events/{event}/results"))
        .await
        .ok();
    assert_eq!(res["method"], "high-4-of-5");
    assert_eq!(
        (res["homes"].as_i64(), res["commanded"].as_i64()),
        (Some(2), Some(2))
    );
    assert_eq!(res["responded"], 1);
    assert_eq!(res["commands_failed"], 1);
    let homes = res["per_home"].as_array().unwrap();
    let alice: &Value = homes.iter().find(|h| h["meter"] == "meter-1").unwrap();
    assert_eq!(alice["responded"], true);
    assert_eq!(
        alice["baseline_days"].as_array().unwrap().len(),
        4,
        "{alice}"
    );
    let slots = alice["slots"].as_array().unwrap();
    assert!(!slots.is_empty());
    for s in slots {
        assert_eq!(s["baseline_kwh"], 0.6, "{alice}");
        assert_eq!(s["actual_kwh"], 0.0, "{alice}");
        assert_eq!(s["reduction_kwh"], 0.6, "{alice}");
    }
    let n = slots.len() as f64;
    assert_eq!(
        alice["reduction_kwh"].as_f64(),
        Some((0.6 * n * 1e4).round() / 1e4)
    );
    let bobs = homes.iter().find(|h| h["meter"].is_null()).unwrap();
    assert_eq!(bobs["responded"], false);
    assert_eq!(bobs["commands_failed"], 1);
    assert!(bobs["note"].as_str().unwrap().contains("no smart meter"));
    assert!(bobs["baseline_kwh"].is_null());
    let total = &res["aggregate"];
    assert_eq!(total["homes_measured"], 1);
    assert_eq!(total["reduction_kwh"], alice["reduction_kwh"]);
    assert_eq!(total["slots"].as_array().unwrap().len(), slots.len());

    // Another aggregator gets nothing; an account's token is refused.
    let (_, other) = kumo_bridge::demand::principal::create(&h.pool, "Other")
        .await
        .unwrap();
    h.get_as(&other, &format!("/v1/aggregator/events/{event}/results"))
        .await
        .assert_error(404001);
    h.get(&format!("/v1/aggregator/events/{event}/results"))
        .await
        .assert_error(403001);

    // Each user sees the results of their own home and nothing of the other's.
    let mine = format!("/v1/programs/{prg}/events/{event}/results");
    let res = h.get(&mine).await.ok();
    assert!(res.get("aggregate").is_none(), "{res}");
    assert_eq!(
        (res["homes"].as_i64(), res["responded"].as_i64()),
        (Some(1), Some(1))
    );
    let homes = res["per_home"].as_array().unwrap();
    assert_eq!(homes.len(), 1);
    assert_eq!(homes[0], *alice);
    let res = h.get_as(&bob_token, &mine).await.ok();
    let homes = res["per_home"].as_array().unwrap();
    assert_eq!(homes.len(), 1);
    assert_eq!(homes[0], *bobs);
    assert_eq!(res["commands_failed"], 1);
    // Someone whose units were not in the event, or the wrong program: not found.
    let (_, carol) = h.other_user().await;
    h.get_as(&carol, &mine).await.assert_error(404001);
    h.get(&format!("/v1/programs/nope/events/{event}/results"))
        .await
        .assert_error(404001);
    h.stop().await;
}
