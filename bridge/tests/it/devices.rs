//! `/1/users/me` and `/1/devices`: shapes, field types, good and bad input.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use kumo_bridge::DeviceKind;
use serde_json::Value;

#[tokio::test]
async fn users_me_reads_and_updates_the_profile() {
    let h = start().await;
    let me = h.get("/1/users/me").await.ok();
    assert_eq!(me["id"], h.user_id.as_str());
    assert_eq!(me["nickname"], "Alice");
    assert_eq!(me["temp_unit"], "c");
    let updated = h
        .post(
            "/1/users/me",
            &[
                ("nickname", "Ally"),
                ("temp_unit", "f"),
                ("distance_unit", "imperial"),
                ("country", "us"),
            ],
        )
        .await
        .ok();
    assert_eq!(updated["nickname"], "Ally");
    assert_eq!(updated["temp_unit"], "f");
    assert_eq!(updated["distance_unit"], "imperial");
    assert_eq!(updated["country"], "US");
    assert_eq!(h.get("/1/users/me").await.ok(), updated);

    h.post("/1/users/me", &[("nickname", " ")])
        .await
        .assert_error(400001);
    h.post("/1/users/me", &[("temp_unit", "k")])
        .await
        .assert_error(400001);
    h.post("/1/users/me", &[("distance_unit", "parsec")])
        .await
        .assert_error(400001);
    h.post("/1/users/me", &[("country", "Japan")])
        .await
        .assert_error(400001);
    h.stop().await;
}

#[tokio::test]
async fn devices_list_with_online_and_newest_events_in_natures_types() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    h.client()
        .await
        .batch_execute(
            "UPDATE devices SET online = true, firmware_version = 'Remo/1.0.62-gabbf5bd',
                 mac_address = 'aa:bb:cc:dd:ee:ff', serial_number = '1W320000000000'
             WHERE id = 'remo-1';
             INSERT INTO readings (device_id, sensor, val, at) VALUES
               ('remo-1', 'te', 21.0, '2024-05-01T09:20:00Z'),
               ('remo-1', 'te', 22.5, '2024-05-01T09:30:00Z'),
               ('remo-1', 'hu', 48, '2024-05-01T09:30:00Z'),
               ('remo-1', 'il', 120, '2024-05-01T09:30:00Z'),
               ('remo-1', 'mo', 1, '2024-05-01T09:31:00Z');",
        )
        .await
        .unwrap();
    let list = h.get("/1/devices").await.ok();
    let d = &list.as_array().unwrap()[0];
    assert_eq!(d["id"], "remo-1");
    assert_eq!(d["name"], "remo-1");
    assert_eq!(d["online"], true);
    // Go clients decode offsets into int64: `0`, never `0.0`.
    assert_eq!(d["temperature_offset"].to_string(), "0");
    assert_eq!(d["humidity_offset"].to_string(), "0");
    assert_eq!(d["firmware_version"], "Remo/1.0.62-gabbf5bd");
    assert_eq!(d["mac_address"], "aa:bb:cc:dd:ee:ff");
    assert_eq!(d["serial_number"], "1W320000000000");
    assert!(d["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(d["updated_at"].as_str().unwrap().ends_with('Z'));
    let ev = &d["newest_events"];
    assert_eq!(ev["te"]["val"], 22.5);
    assert_eq!(ev["te"]["created_at"], "2024-05-01T09:30:00Z");
    assert_eq!(
        ev["hu"]["val"], 48,
        "whole values are integers, as Nature sends them"
    );
    assert_eq!(ev["mo"]["val"], 1);
    assert_eq!(ev["mo"]["created_at"], "2024-05-01T09:31:00Z");
    assert_eq!(d["users"][0]["id"], h.user_id.as_str());
    h.stop().await;
}

#[tokio::test]
async fn a_device_without_readings_has_empty_newest_events_and_is_offline() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let list = h.get("/1/devices").await.ok();
    assert_eq!(list[0]["newest_events"], serde_json::json!({}));
    assert_eq!(list[0]["online"], false);
    h.stop().await;
}

#[tokio::test]
async fn renaming_and_offsets_return_the_device_and_reject_bad_input() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let d = h
        .post("/1/devices/remo-1", &[("name", "Living room")])
        .await
        .ok();
    assert_eq!(d["name"], "Living room");
    assert!(d["newest_events"].is_object());
    h.post("/1/devices/remo-1", &[("name", "")])
        .await
        .assert_error(400001);
    h.post("/1/devices/remo-1", &[]).await.assert_error(400001);

    let d = h
        .post(
            "/1/devices/remo-1/temperature_offset",
            &[("offset", "-1.5")],
        )
        .await
        .ok();
    assert_eq!(d["temperature_offset"], -1.5);
    let d = h
        .post("/1/devices/remo-1/humidity_offset", &[("offset", "5")])
        .await
        .ok();
    assert_eq!(d["humidity_offset"], 5);
    for bad in ["warm", "NaN", "1e9", ""] {
        h.post("/1/devices/remo-1/temperature_offset", &[("offset", bad)])
            .await
            .assert_error(400001);
    }
    h.post("/1/devices/remo-1/humidity_offset", &[])
        .await
        .assert_error(400001);
    h.post("/1/devices/nope/temperature_offset", &[("offset", "1")])
        .await
        .assert_error(404001);
    h.stop().await;
}

#[tokio::test]
async fn another_users_device_is_not_found_for_every_operation() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let (_, bob) = h.other_user().await;
    assert_eq!(
        h.get_as(&bob, "/1/devices").await.ok(),
        Value::Array(vec![])
    );
    h.post_as(&bob, "/1/devices/remo-1", &[("name", "mine")])
        .await
        .assert_error(404001);
    h.post_as(&bob, "/1/devices/remo-1/delete", &[])
        .await
        .assert_error(404001);
    h.get_as(&bob, "/1/devices/remo-1/appliances")
        .await
        .assert_error(404001);
    h.stop().await;
}

#[tokio::test]
async fn deleting_a_device_removes_it_and_its_appliances_from_the_account() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    h.add_appliance("remo-1", "kumo-tv-generic", "TV").await;
    assert_eq!(
        h.post("/1/devices/remo-1/delete", &[]).await.ok(),
        serde_json::json!({})
    );
    assert_eq!(h.get("/1/devices").await.ok(), Value::Array(vec![]));
    assert_eq!(h.get("/1/appliances").await.ok(), Value::Array(vec![]));
    h.post("/1/devices/remo-1/delete", &[])
        .await
        .assert_error(404001);
    h.stop().await;
}

#[tokio::test]
async fn overlong_fields_are_refused() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let long = "x".repeat(2000);
    let r = h.post("/1/devices/remo-1", &[("name", &long)]).await;
    r.assert_error(400001);
    assert!(r.body["message"].as_str().unwrap().contains("name"));
    h.stop().await;
}

#[tokio::test]
async fn facts_a_device_reports_show_in_the_device_list() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let facts = kumo_bridge::device_state::DeviceFacts {
        firmware_version: Some("Remo/1.0.77"),
        mac_address: Some("aa:bb:cc:00:11:22"),
        serial_number: None,
    };
    kumo_bridge::device_state::record_facts(&h.pool, &crate::common::dev("remo-1"), &facts)
        .await
        .unwrap();
    let d = h.get("/1/devices").await.ok()[0].clone();
    assert_eq!(d["firmware_version"], "Remo/1.0.77");
    assert_eq!(d["mac_address"], "aa:bb:cc:00:11:22");
    assert_eq!(d["serial_number"], "");
    h.stop().await;
}
