//! aircon_settings (`/1` and `/2`), tv and light: validated against the
//! model's capabilities; impossible settings are a 400, never a silent no-op.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use kumo_bridge::DeviceKind;

async fn setup() -> (Harness, String, String, String, String) {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let ac = h.add_appliance("remo-1", "kumo-ac-generic", "AC").await;
    let tv = h.add_appliance("remo-1", "kumo-tv-generic", "TV").await;
    let light = h
        .add_appliance("remo-1", "kumo-light-generic", "LIGHT")
        .await;
    let ir = h
        .post(
            "/1/appliances",
            &[("nickname", "fan"), ("image", "i"), ("device", "remo-1")],
        )
        .await
        .ok()["id"]
        .as_str()
        .unwrap()
        .to_string();
    (h, ac, tv, light, ir)
}

#[tokio::test]
async fn valid_aircon_settings_queue_a_command_and_return_the_settings() {
    let (h, ac, ..) = setup().await;
    let r = h
        .post(
            &format!("/1/appliances/{ac}/aircon_settings"),
            &[
                ("operation_mode", "warm"),
                ("temperature", "22"),
                ("air_volume", "2"),
                ("button", ""),
            ],
        )
        .await;
    let command = r.headers["x-kumo-command-id"].to_str().unwrap().to_string();
    let s = r.ok();
    assert_eq!(s["mode"], "warm");
    assert_eq!(s["temp"], "22");
    assert_eq!(s["vol"], "2");
    assert_eq!(s["button"], "");
    assert_eq!(s["temp_unit"], "c");
    assert!(s["updated_at"].is_string() && s["dir"].is_string() && s["dirh"].is_string());
    let c = h.get(&format!("/v1/commands/{command}")).await.ok();
    assert_eq!(c["kind"], "aircon");
    assert_eq!(c["status"], "queued");
    assert_eq!(c["payload"]["settings"]["temp"], "22");
    // The stored settings change only when the device confirms.
    let a = h.get("/1/appliances").await.ok();
    assert_eq!(a[0]["settings"]["button"], "power-off");

    let v2 = h
        .post(
            &format!("/2/appliances/{ac}/aircon_settings"),
            &[("button", "power-off")],
        )
        .await
        .ok();
    assert_eq!(v2["id"], ac.as_str());
    assert_eq!(v2["type"], "AC");
    assert_eq!(v2["settings"]["button"], "power-off");
    assert!(v2["aircon"]["range"]["modes"].is_object());
    assert_eq!(h.command_count().await, 2);
    h.stop().await;
}

#[tokio::test]
async fn impossible_aircon_settings_are_refused_and_queue_nothing() {
    let (h, ac, tv, _, ir) = setup().await;
    let path = format!("/1/appliances/{ac}/aircon_settings");
    let cases: &[&[(&str, &str)]] = &[
        &[("operation_mode", "turbo")],
        &[("operation_mode", "cool"), ("temperature", "45")],
        &[("operation_mode", "cool"), ("temperature", "hot")],
        &[("operation_mode", "dry"), ("air_volume", "5")],
        &[("air_direction", "sideways")],
        &[("air_direction_h", "up")],
        &[("button", "self-destruct")],
        &[("temperature_unit", "f")],
        &[("extra.eco", "on")],
    ];
    for form in cases {
        let r = h.post(&path, form).await;
        r.assert_error(400001);
        assert!(r.body["message"].as_str().unwrap().contains("allowed") || !form.is_empty());
    }
    for other in [&tv, &ir] {
        h.post(
            &format!("/1/appliances/{other}/aircon_settings"),
            &[("button", "")],
        )
        .await
        .assert_error(400001);
        h.post(
            &format!("/2/appliances/{other}/aircon_settings"),
            &[("button", "")],
        )
        .await
        .assert_error(400001);
    }
    h.post("/1/appliances/nope/aircon_settings", &[("button", "")])
        .await
        .assert_error(404001);
    assert_eq!(h.command_count().await, 0);
    h.stop().await;
}

#[tokio::test]
async fn tv_buttons_are_checked_and_the_state_is_returned() {
    let (h, ac, tv, ..) = setup().await;
    let r = h
        .post(&format!("/1/appliances/{tv}/tv"), &[("button", "input-bs")])
        .await;
    assert!(r.headers.contains_key("x-kumo-command-id"));
    // A new set is off, and a set that is off ignores every button but power:
    // the state the device will report is unchanged (the catalogue's behaviour).
    assert_eq!(
        r.ok(),
        serde_json::json!({"input": "t", "power": "off", "channel": "1", "volume": "10"})
    );
    h.post(&format!("/1/appliances/{tv}/tv"), &[("button", "eject")])
        .await
        .assert_error(400001);
    h.post(&format!("/1/appliances/{tv}/tv"), &[])
        .await
        .assert_error(400001);
    h.post(&format!("/1/appliances/{ac}/tv"), &[("button", "power")])
        .await
        .assert_error(400001);
    assert_eq!(h.command_count().await, 1);
    h.stop().await;
}

#[tokio::test]
async fn light_buttons_are_checked_and_the_state_is_returned() {
    let (h, _, tv, light, _) = setup().await;
    let s = h
        .post(&format!("/1/appliances/{light}/light"), &[("button", "on")])
        .await
        .ok();
    assert_eq!(s["power"], "on");
    assert_eq!(s["last_button"], "on");
    assert!(s["brightness"].is_string());
    h.post(
        &format!("/1/appliances/{light}/light"),
        &[("button", "disco")],
    )
    .await
    .assert_error(400001);
    h.post(&format!("/1/appliances/{tv}/light"), &[("button", "on")])
        .await
        .assert_error(400001);
    assert_eq!(h.command_count().await, 1);
    h.stop().await;
}

#[tokio::test]
async fn clients_that_send_every_field_with_empty_values_are_understood() {
    let (h, ac, ..) = setup().await;
    let path = format!("/1/appliances/{ac}/aircon_settings");
    let s = h
        .post(
            &path,
            &[
                ("operation_mode", "cool"),
                ("temperature", "25"),
                ("temperature_unit", "c"),
                ("air_volume", ""),
                ("air_direction", ""),
                ("air_direction_h", ""),
                ("button", "power-on"),
            ],
        )
        .await
        .ok();
    assert_eq!(
        (s["mode"].as_str(), s["temp"].as_str()),
        (Some("cool"), Some("25"))
    );
    assert_eq!(
        (s["vol"].as_str(), s["dir"].as_str(), s["dirh"].as_str()),
        (Some(""), Some(""), Some(""))
    );
    assert_eq!(s["button"], "", "power-on means Nature's empty on button");

    // Only a temperature: mode and power state stay as they are.
    let s = h.post(&path, &[("temperature", "27")]).await.ok();
    assert_eq!(s["mode"], "cool");
    assert_eq!(s["button"], "power-off", "the confirmed state is still off");
    let s = h
        .post(&path, &[("operation_mode", ""), ("temperature", "")])
        .await
        .ok();
    assert_eq!(
        (s["mode"].as_str(), s["temp"].as_str()),
        (Some("cool"), Some("26"))
    );
    h.stop().await;
}

#[tokio::test]
async fn commands_go_through_with_a_single_free_database_connection() {
    let (h, ac, _, light, _) = setup().await;
    // The bridge shares the harness's pool of 4: leave it one connection.
    let mut taken = Vec::new();
    for _ in 0..3 {
        taken.push(h.pool.get().await.unwrap());
    }
    // The appliance is read and the command written on one connection.
    let r = h
        .post(&format!("/1/appliances/{light}/light"), &[("button", "on")])
        .await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{:?}", r.body);
    // These read the whole appliance besides: the connection the target was
    // read on must be given back first, or the request waits for a second
    // one that never comes.
    for path in [
        format!("/2/appliances/{ac}/aircon_settings"),
        format!("/1/appliances/{ac}/aircon_settings"),
    ] {
        let started = std::time::Instant::now();
        let r = h.post(&path, &[("button", "")]).await;
        assert_eq!(r.status, reqwest::StatusCode::OK, "{path}: {:?}", r.body);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{path}"
        );
    }
    drop(taken);
    assert_eq!(h.command_count().await, 3);
    h.stop().await;
}
