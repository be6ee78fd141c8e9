//! `GET /v1/devices/{id}/energy`: a smart meter's energy per slot from its
//! cumulative counters, over the real bridge and database, and from a
//! simulated meter gateway through a real broker node.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::*;
use crate::stack::Stack;
use kumo_bridge::device_state::record_meter;
use kumo_bridge::DeviceKind;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use time::OffsetDateTime;

const T0: OffsetDateTime = datetime!(2024-05-01 00:00:00 UTC);

/// Reports the scale of a meter that counts in 0.1 kWh with six digits.
async fn report_scale(h: &Harness, device: &str, at: OffsetDateTime) {
    let scale = [
        (0xD3, "1".to_string()),
        (0xE1, "1".to_string()),
        (0xD7, "6".to_string()),
    ];
    record_meter(&h.pool, &dev(device), &scale, at)
        .await
        .unwrap();
}

/// Stores one meter report a minute at each of `minutes` after `base`:
/// `bought(m)`, `sold(m)` counts and `400 + m` W.
async fn store_minutes(
    h: &Harness,
    device: &str,
    base: OffsetDateTime,
    minutes: impl Iterator<Item = i64>,
    bought: impl Fn(i64) -> u64,
    sold: impl Fn(i64) -> u64,
) {
    let (mut sensors, mut vals, mut ats) = (Vec::new(), Vec::new(), Vec::new());
    for m in minutes {
        let at = base + time::Duration::minutes(m);
        for (sensor, val) in [
            ("energy", bought(m) as f64),
            ("energy_sold", sold(m) as f64),
            ("power", 400.0 + m as f64),
        ] {
            sensors.push(sensor);
            vals.push(val);
            ats.push(at);
        }
    }
    h.client()
        .await
        .execute(
            "INSERT INTO readings (device_id, sensor, val, at)
             SELECT $1, * FROM unnest($2::text[], $3::float8[], $4::timestamptz[])",
            &[&device, &sensors, &vals, &ats],
        )
        .await
        .unwrap();
}

/// A meter whose bought counter wraps in the first half hour, that sells
/// 0.2 kWh in the second, and that was silent from minute 90 to 131.
async fn meter_with_a_gap() -> Harness {
    let h = start().await;
    h.add_device("meter-1", DeviceKind::SmartMeter).await;
    report_scale(&h, "meter-1", T0 - time::Duration::hours(1)).await;
    let minutes = (-1..=90).chain(131..=181);
    let bought = |m: i64| (999_990 + (m + 1) as u64 / 3) % 1_000_000;
    let sold = |m: i64| if m < 40 { 500 } else { 502 };
    store_minutes(&h, "meter-1", T0, minutes, bought, sold).await;
    h
}

fn column(body: &Value, key: &str) -> Vec<Value> {
    body["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[key].clone())
        .collect()
}

#[tokio::test]
async fn a_meters_energy_is_given_per_half_hour_across_wrap_around_and_gaps() {
    let h = meter_with_a_gap().await;
    let body = h
        .get("/v1/devices/meter-1/energy?from=2024-05-01T00:00:00Z&to=2024-05-01T03:00:00Z")
        .await
        .ok();
    assert_eq!(body["step"], "30m");
    assert_eq!(body["tz"], "Z");
    assert_eq!(
        (&body["from"], &body["to"]),
        (
            &json!("2024-05-01T00:00:00Z"),
            &json!("2024-05-01T03:00:00Z")
        )
    );
    assert_eq!(
        column(&body, "start")[..2],
        [json!("2024-05-01T00:00:00Z"), json!("2024-05-01T00:30:00Z")]
    );
    assert_eq!(
        column(&body, "bought_kwh"),
        [
            json!(1),
            json!(1),
            json!(1),
            Value::Null,
            Value::Null,
            json!(1)
        ],
        "the wrap in the first slot counts 1 kWh; 01:30-02:30 are gaps"
    );
    assert_eq!(
        column(&body, "sold_kwh"),
        [
            json!(0),
            json!(0.2),
            json!(0),
            Value::Null,
            Value::Null,
            json!(0)
        ]
    );
    assert_eq!(
        column(&body, "gap"),
        [false, false, false, true, true, false].map(Value::from)
    );
    assert_eq!(
        column(&body, "peak_w"),
        [
            json!(429),
            json!(459),
            json!(489),
            json!(490),
            json!(549),
            json!(579)
        ],
        "power readings stand on their own: slot 4 has some"
    );
    assert_eq!(
        body["total"],
        json!({"bought_kwh": 4, "sold_kwh": 0.2, "gaps": 2})
    );
    h.stop().await;
}

#[tokio::test]
async fn hours_and_days_follow_the_clock_of_the_offset_asked_for() {
    let h = meter_with_a_gap().await;
    let hourly = h
        .get("/v1/devices/meter-1/energy?from=2024-05-01T00:00:00Z&to=2024-05-01T02:00:00Z&step=1h")
        .await
        .ok();
    assert_eq!(column(&hourly, "bought_kwh"), [json!(2), Value::Null]);
    let day = h
        .get("/v1/devices/meter-1/energy?from=2024-05-01T00:00:00Z&to=2024-05-01T03:00:00Z&step=1d&tz=%2B09:00")
        .await
        .ok();
    assert_eq!(day["tz"], "+09:00");
    assert_eq!(column(&day, "start"), [json!("2024-05-01T00:00:00+09:00")]);
    assert_eq!(day["to"], "2024-05-02T00:00:00+09:00");
    assert_eq!(
        column(&day, "gap"),
        [json!(true)],
        "the meter's readings start at 09:00 in Japan"
    );
    h.stop().await;
}

#[tokio::test]
async fn energy_history_comes_as_csv_when_asked() {
    let h = meter_with_a_gap().await;
    let url = format!(
        "{}/v1/devices/meter-1/energy?from=2024-05-01T01:00:00Z&to=2024-05-01T02:00:00Z&format=csv",
        h.base
    );
    let resp = h.http.get(url).bearer_auth(&h.token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert_eq!(
        resp.text().await.unwrap(),
        "start,end,bought_kwh,sold_kwh,peak_w,gap\r\n\
         2024-05-01T01:00:00Z,2024-05-01T01:30:00Z,1,0,489,false\r\n\
         2024-05-01T01:30:00Z,2024-05-01T02:00:00Z,,,490,true\r\n"
    );
    h.stop().await;
}

#[tokio::test]
async fn energy_history_refuses_bad_input_with_clear_errors() {
    let h = meter_with_a_gap().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let base = "/v1/devices/meter-1/energy?";
    for (query, says) in [
        (
            "from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z",
            "from must be before to",
        ),
        (
            "from=2024-01-01T00:00:00Z&to=2024-05-01T00:00:00Z",
            "at most 93 days",
        ),
        ("step=5m", "step must be one of 30m, 1h, 1d"),
        ("from=yesterday", "RFC 3339"),
        ("tz=JST", "tz must be"),
        ("format=xml", "format must be json or csv"),
    ] {
        let reply = h.get(&format!("{base}{query}")).await;
        reply.assert_error(400001);
        let message = reply.body["message"].as_str().unwrap();
        assert!(message.contains(says), "{query}: {message}");
    }
    let reply = h.get("/v1/devices/remo-1/energy").await;
    reply.assert_error(400001);
    assert_eq!(reply.body["message"], "device remo-1 is not a smart meter");
    h.get("/v1/devices/meter-9/energy")
        .await
        .assert_error(404001);
    let (_, bob_token) = h.other_user().await;
    h.get_as(&bob_token, "/v1/devices/meter-1/energy")
        .await
        .assert_error(404001);
    let no_read = h.token_with(&["sendir"]).await;
    h.get_as(&no_read, "/v1/devices/meter-1/energy")
        .await
        .assert_error(403001);
    h.stop().await;
}

#[tokio::test]
async fn a_meter_that_changes_hands_gives_its_new_owner_no_energy_from_before() {
    let h = meter_with_a_gap().await;
    let (bob, bob_token) = h.other_user().await;
    kumo_bridge::register_device(&h.pool, &dev("meter-1"), &bob, DeviceKind::SmartMeter, "m")
        .await
        .unwrap();
    let path = "/v1/devices/meter-1/energy?from=2024-05-01T00:00:00Z&to=2024-05-01T03:00:00Z";
    h.get(path).await.assert_error(404001);
    let bobs = h.get_as(&bob_token, path).await.ok();
    assert!(column(&bobs, "bought_kwh").iter().all(Value::is_null));
    assert!(column(&bobs, "peak_w").iter().all(Value::is_null));

    // What the meter counts for Bob is his, from the moment he owns it.
    let since: OffsetDateTime = h
        .client()
        .await
        .query_one("SELECT owner_since FROM devices WHERE id = 'meter-1'", &[])
        .await
        .unwrap()
        .get(0);
    report_scale(&h, "meter-1", since).await;
    let slot = since
        .replace_second(0)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap();
    let slot = slot.replace_minute(slot.minute() / 30 * 30).unwrap();
    store_minutes(
        &h,
        "meter-1",
        slot,
        -30..=95,
        |m| 7_000 + (m + 30) as u64 / 3,
        |_| 0,
    )
    .await;
    let from = slot.format(&Rfc3339).unwrap();
    let to = (slot + time::Duration::minutes(90))
        .format(&Rfc3339)
        .unwrap();
    let path = format!("/v1/devices/meter-1/energy?from={from}&to={to}");
    let bobs = h.get_as(&bob_token, &path).await.ok();
    assert_eq!(
        column(&bobs, "bought_kwh"),
        [Value::Null, json!(1), json!(1)],
        "the slot his ownership began in is not all his"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_simulated_meter_gateway_reports_what_energy_history_needs() {
    let stack = Stack::start(|_| {}).await;
    stack
        .h
        .add_device("sim-000000", DeviceKind::SmartMeter)
        .await;
    let _gw = stack.simulate(|s| s.meter_fraction = 1.0);
    let h = &stack.h;
    let count = |sql: &'static str| async move {
        let row = h.client().await.query_one(sql, &[]).await.unwrap();
        row.get::<_, i64>(0)
    };
    for _ in 0..200 {
        let sold = count("SELECT count(*) FROM readings WHERE sensor = 'energy_sold'").await;
        let scale = count("SELECT count(*) FROM meter_scale_log").await;
        if sold >= 3 && scale == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        count("SELECT count(*) FROM meter_scale_log").await,
        3,
        "coefficient, unit and digits logged once, however often reported"
    );
    let now = OffsetDateTime::now_utc();
    let path = format!(
        "/v1/devices/sim-000000/energy?from={}&to={}",
        (now - time::Duration::minutes(30))
            .format(&Rfc3339)
            .unwrap(),
        (now + time::Duration::seconds(1)).format(&Rfc3339).unwrap()
    );
    let body = stack.h.get(&path).await.ok();
    let peaks = column(&body, "peak_w");
    assert!(
        peaks.last().unwrap().is_number(),
        "the running slot has the gateway's power: {body}"
    );
    assert_eq!(
        column(&body, "gap").last(),
        Some(&json!(true)),
        "the running slot is not complete"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_backfilled_simulated_gateway_has_complete_half_hours_for_the_past_day() {
    let stack = Stack::start(|_| {}).await;
    stack.wait_ready().await;
    stack
        .h
        .add_device("sim-000000", DeviceKind::SmartMeter)
        .await;
    let settings = kumo_sim::Settings {
        nodes: vec![format!("127.0.0.1:{}", stack.port)],
        devices: 1,
        meter_fraction: 1.0,
        backfill_days: 1,
        backfill_step_secs: 300,
        pki_dir: Some(stack.pki.dir().to_path_buf()),
        ..kumo_sim::Settings::default()
    };
    let ca = std::fs::read_to_string(stack.pki.ca_path()).unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let done = kumo_sim::backfill::run(settings, ca, stop).await.unwrap();
    assert_eq!((done.gateways, done.reports, done.failed), (1, 288, 0));
    // Every acknowledged report reaches the bridge: its readings (the
    // reading writer) and its scale (the report shards, on their own path).
    let (mut stored, mut scale) = (0i64, 0i64);
    for _ in 0..200 {
        let row = stack
            .h
            .client()
            .await
            .query_one(
                "SELECT (SELECT count(*) FROM readings
                         WHERE device_id = 'sim-000000' AND sensor = 'energy'),
                        (SELECT count(*) FROM meter_scale_log)",
                &[],
            )
            .await
            .unwrap();
        (stored, scale) = (row.get(0), row.get(1));
        if stored >= 288 && scale == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(scale, 3, "coefficient, unit and digits, logged once");
    assert_eq!(stored, 288);

    let now = OffsetDateTime::now_utc();
    let path = format!(
        "/v1/devices/sim-000000/energy?from={}&to={}",
        (now - time::Duration::days(1)).format(&Rfc3339).unwrap(),
        now.format(&Rfc3339).unwrap()
    );
    let body = stack.h.get(&path).await.ok();
    let bought = column(&body, "bought_kwh");
    assert_eq!(bought.len(), 49, "a day of half hours, both ends partial");
    let complete = bought.iter().filter(|v| v.is_number()).count();
    assert!(complete >= 46, "{complete} complete slots: {body}");
    let kwh =
        body["total"]["bought_kwh"].as_f64().unwrap() + body["total"]["sold_kwh"].as_f64().unwrap();
    assert!((2.0..60.0).contains(&kwh), "a household's day: {kwh} kWh");
    stack.stop().await;
}

#[tokio::test]
async fn a_meter_without_a_reverse_counter_has_bought_energy_and_no_sold_column() {
    let h = start().await;
    h.add_device("meter-1", DeviceKind::SmartMeter).await;
    report_scale(&h, "meter-1", T0).await;
    store_minutes(
        &h,
        "meter-1",
        T0,
        -1..=61,
        |m| 100 + (m + 1) as u64 / 3,
        |_| 0,
    )
    .await;
    h.client()
        .await
        .execute("DELETE FROM readings WHERE sensor = 'energy_sold'", &[])
        .await
        .unwrap();
    let body = h
        .get("/v1/devices/meter-1/energy?from=2024-05-01T00:00:00Z&to=2024-05-01T01:00:00Z")
        .await
        .ok();
    assert_eq!(column(&body, "bought_kwh"), [json!(1), json!(1)]);
    assert_eq!(column(&body, "sold_kwh"), [Value::Null, Value::Null]);
    assert_eq!(column(&body, "gap"), [json!(false), json!(false)]);
    h.stop().await;
}
