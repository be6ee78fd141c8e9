//! Demand response reaching a smart-meter gateway's ECHONET Lite air
//! conditioner (`EL_AIRCON`) end to end: Kumo's simulator (in process,
//! through a real broker node) plays the gateway, its household and the
//! unit whose draw its meter counts. The event's `echonet_set` moves the
//! unit's set temperature on the simulated device, which acks and reports
//! it; the meter draws less while it lasts; the restore puts it back.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::common::*;
use crate::sim::SimulatedDevice;
use crate::stack::Stack;
use kumo_bridge::DeviceKind;

const GATEWAY: &str = "sim-000000";

fn rfc(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// The simulated homes' UTC offset that makes it about 20:00 there now:
/// no solar output (it would swamp the meter with cloud noise), and the
/// evening peak flat for the minute the test runs.
fn evening_offset_hours() -> f64 {
    let now = OffsetDateTime::now_utc();
    let utc = f64::from(now.hour()) + f64::from(now.minute()) / 60.0;
    let offset = (20.0 - utc).rem_euclid(24.0);
    if offset > 14.0 {
        offset - 24.0
    } else {
        offset
    }
}

/// The gateway's air conditioner as `/1/echonetlite/appliances` shows it,
/// once it reported all its properties.
async fn aircon(h: &Harness, token: &str) -> Option<Value> {
    let list = h.get_as(token, "/1/echonetlite/appliances").await.ok();
    list["appliances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "EL_AIRCON" && a["properties"].as_array().unwrap().len() == 4)
        .cloned()
}

/// Property `epc` (hex) of the air conditioner, as one byte.
async fn property(h: &Harness, token: &str, epc: &str) -> u8 {
    let ac = aircon(h, token).await.unwrap();
    let p = ac["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["epc"] == epc);
    u8::from_str_radix(p.unwrap()["val"].as_str().unwrap(), 16).unwrap()
}

/// Sets a property through the REST API and waits for the device's ack.
async fn set(h: &Harness, token: &str, ac: &str, epc: &str, val: u8) {
    let r = h
        .send(
            h.http
                .post(format!("{}/1/echonetlite/appliances/{ac}/set", h.base))
                .bearer_auth(token)
                .header("prefer", "wait=10")
                .form(&[("epc", epc), ("val", &format!("{val:02x}"))]),
        )
        .await;
    assert_eq!(r.headers["x-kumo-command-status"], "acked", "{r:?}");
}

/// The gateway's mean metered power (W) over `[from, to)`, and how many
/// readings that is.
async fn mean_power(h: &Harness, from: OffsetDateTime, to: OffsetDateTime) -> (f64, i64) {
    let row = h
        .client()
        .await
        .query_one(
            "SELECT coalesce(avg(val), 0), count(*) FROM readings
             WHERE device_id = $1 AND sensor = 'power' AND at >= $2 AND at < $3",
            &[&GATEWAY, &from, &to],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Waits for the event's only unit to reach `state` with its latest
/// command acked (none for a skip); returns its outcome.
async fn wait_home(h: &Harness, agg: &str, event: &str, state: &str) -> Value {
    let latest = match state {
        "restored" => Some("restore_command"),
        "dispatched" => Some("command"),
        _ => None,
    };
    for _ in 0..300 {
        let e = h
            .get_as(agg, &format!("/v1/aggregator/events/{event}"))
            .await
            .ok();
        let home = e["homes"][0].clone();
        if home["state"] == state && latest.map_or(true, |c| home[c]["status"] == "acked") {
            return home;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the unit never reached {state}");
}

/// The simulated gateway, running its unit as usual; a token of its owner
/// that may set ECHONET Lite properties; the unit's appliance id.
async fn gateway(stack: &Stack) -> (SimulatedDevice, String, String) {
    let h = &stack.h;
    h.add_device(GATEWAY, DeviceKind::SmartMeter).await;
    let gw = stack.simulate(|s| {
        s.meter_fraction = 1.0;
        s.aircon_in_use_fraction = 1.0;
        s.utc_offset_hours = evening_offset_hours();
    });
    let token = h
        .token_with(&["basic.read", "basic.write", "echonetlite.*.write"])
        .await;
    for _ in 0..200 {
        if let Some(ac) = aircon(h, &token).await {
            let id = ac["id"].as_str().unwrap().to_string();
            return (gw, token, id);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway's air conditioner never appeared");
}

/// An aggregator's token and a new program of theirs.
async fn program(h: &Harness) -> (String, String) {
    let agg = kumo_bridge::demand::principal::create(&h.pool, "Grid Co")
        .await
        .unwrap()
        .1;
    let r = h
        .post_as(
            &agg,
            "/v1/aggregator/programs",
            &[("name", "Evening peaks")],
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);
    let prg = r.body["id"].as_str().unwrap().to_string();
    (agg, prg)
}

/// Creates an event of `prg` over `[start, end)` with `target`; its id.
async fn event(
    h: &Harness,
    agg: &str,
    prg: &str,
    (start, end): (OffsetDateTime, OffsetDateTime),
    target: &[(&str, &str)],
) -> String {
    let (start, end) = (rfc(start), rfc(end));
    let mut form = vec![("start", start.as_str()), ("end", end.as_str())];
    form.extend_from_slice(target);
    let r = h
        .post_as(agg, &format!("/v1/aggregator/programs/{prg}/events"), &form)
        .await;
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

/// When command `id` was acked.
async fn acked_at(h: &Harness, id: &Value) -> OffsetDateTime {
    let id: uuid::Uuid = id.as_str().unwrap().parse().unwrap();
    let row = h
        .client()
        .await
        .query_one(
            "SELECT completed_at, kind, payload ->> 'type' FROM commands WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(1), row.get::<_, String>(2)),
        ("echonet".to_string(), "echonet_set".to_string())
    );
    row.get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_moves_a_gateways_echonet_aircon_and_its_meter_draws_less_until_the_restore() {
    let stack = Stack::start(|s| {
        s.demand_response.stagger_secs = 1;
        s.demand_response.poll_interval_ms = 100;
    })
    .await;
    let h = &stack.h;
    let (_gw, token, ac) = gateway(&stack).await;
    assert_eq!(property(h, &token, "80").await, 0x30, "running as usual");

    // A clear draw whatever the simulated climate: cooling 3 °C below a warm
    // room, or heating 3 °C above a cool one (0xBB is signed).
    let room = i32::from(property(h, &token, "bb").await as i8);
    let (mode, setpoint, direction) = if room >= 22 {
        (0x42, room - 3, 1)
    } else {
        (0x43, room + 3, -1)
    };
    let setpoint = u8::try_from(setpoint).unwrap();
    set(h, &token, &ac, "b0", mode).await;
    set(h, &token, &ac, "b3", setpoint).await;

    let (agg, prg) = program(h).await;
    let enrol = format!("/v1/programs/{prg}/enrolments");
    // Nobody else can enrol the unit.
    let (_, bob) = h.other_user().await;
    h.post_as(
        &bob,
        &enrol,
        &[("appliance", &ac), ("max_setpoint_change", "2")],
    )
    .await
    .assert_error(404001);
    // Nor the gateway's meter: it is not an air conditioner.
    let list = h.get_as(&token, "/1/echonetlite/appliances").await.ok();
    let mut appliances = list["appliances"].as_array().unwrap().iter();
    let meter = appliances.find(|a| a["type"] == "EL_SMART_METER").unwrap();
    let meter = meter["id"].as_str().unwrap();
    h.post_as(
        &token,
        &enrol,
        &[("appliance", meter), ("max_setpoint_change", "2")],
    )
    .await
    .assert_error(400001);
    // Nor a token of the owner that could not command the unit itself.
    let basic = h.token_with(&["basic"]).await;
    h.post_as(
        &basic,
        &enrol,
        &[("appliance", &ac), ("max_setpoint_change", "2")],
    )
    .await
    .assert_error(403001);
    let r = h
        .post_as(
            &token,
            &enrol,
            &[("appliance", &ac), ("max_setpoint_change", "2")],
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);

    // 3 °C asked, 2 allowed; the meter's "before" is the 4 s until the start.
    let created = OffsetDateTime::now_utc();
    let start = created + time::Duration::seconds(4);
    let end = start + time::Duration::seconds(8);
    let target = [("target", "setpoint"), ("setpoint_change", "3")];
    let event = event(h, &agg, &prg, (start, end), &target).await;

    let home = wait_home(h, &agg, &event, "dispatched").await;
    let moved = u8::try_from(i32::from(setpoint) + 2 * direction).unwrap();
    assert_eq!(property(h, &token, "b3").await, moved, "acked and stored");
    assert_eq!(
        home["previous"]["set_temperature"],
        format!("{setpoint:02x}")
    );
    assert_eq!(home["commanded"]["set_temperature"], format!("{moved:02x}"));
    let dispatched = acked_at(h, &home["command"]["id"]).await;

    let home = wait_home(h, &agg, &event, "restored").await;
    assert_eq!(property(h, &token, "b3").await, setpoint, "put back");
    let restored = acked_at(h, &home["restore_command"]["id"]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let settle = time::Duration::milliseconds(300);
    let (before, n_before) = mean_power(h, created, start).await;
    let restore_at = OffsetDateTime::parse(home["restore_at"].as_str().unwrap(), &Rfc3339).unwrap();
    let (during, n_during) = mean_power(h, dispatched + settle, restore_at).await;
    let after_to = restored + time::Duration::seconds(3);
    let (after, n_after) = mean_power(h, restored + settle, after_to).await;
    assert!(
        n_before >= 5 && n_during >= 5 && n_after >= 3,
        "readings: {n_before}, {n_during}, {n_after}"
    );
    // Pulling the room 2 K less far draws hundreds of W less; the
    // household's own noise is a few tens.
    assert!(
        before - during >= 150.0,
        "the meter drew {before:.0} W before and {during:.0} W during the event"
    );
    assert!(
        after - during >= 100.0,
        "the meter drew {during:.0} W during the event and {after:.0} W after the restore"
    );
    let keys: Vec<String> = h
        .client()
        .await
        .query(
            "SELECT idempotency_key FROM commands WHERE appliance_id = $1
               AND idempotency_key LIKE 'dr:%' ORDER BY created_at",
            &[&ac],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        keys,
        [
            format!("dr:{event}:{ac}"),
            format!("dr:{event}:{ac}:restore")
        ]
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echonet_aircon_the_user_turns_back_on_during_an_off_event_is_left_as_they_chose() {
    let stack = Stack::start(|s| {
        s.demand_response.stagger_secs = 1;
        s.demand_response.poll_interval_ms = 100;
    })
    .await;
    let h = &stack.h;
    let (_gw, token, ac) = gateway(&stack).await;
    let (agg, prg) = program(h).await;
    let form = [
        ("appliance", ac.as_str()),
        ("max_setpoint_change", "0"),
        ("allow_off", "true"),
    ];
    let r = h
        .post_as(&token, &format!("/v1/programs/{prg}/enrolments"), &form)
        .await;
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);
    let start = OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let window = (start, start + time::Duration::seconds(6));
    let event = event(h, &agg, &prg, window, &[("target", "off")]).await;

    let home = wait_home(h, &agg, &event, "dispatched").await;
    assert_eq!(property(h, &token, "80").await, 0x31, "turned off");
    assert_eq!(home["previous"]["operation_status"], "30");
    assert_eq!(home["commanded"]["operation_status"], "31");
    // The user wants it on again, before the window ends.
    set(h, &token, &ac, "80", 0x30).await;
    assert!(OffsetDateTime::now_utc() < window.1, "changed mid-event");

    let home = wait_home(h, &agg, &event, "restore_skipped").await;
    let reason = home["reason"].as_str().unwrap();
    assert!(reason.contains("changed during the event"), "{reason}");
    assert_eq!(property(h, &token, "80").await, 0x30, "still on");
    let dr: i64 = h
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM commands WHERE appliance_id = $1 AND idempotency_key LIKE 'dr:%'",
            &[&ac],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dr, 1, "no restore was queued");
    stack.stop().await;
}
