//! Smart meters (`EL_SMART_METER` appliances, `/1/echonetlite/appliances`)
//! and `/1/detectappliance`.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use kumo_bridge::DeviceKind;
use serde_json::json;

async fn with_meter() -> Harness {
    let h = start().await;
    h.add_device("meter-1", DeviceKind::SmartMeter).await;
    h.client()
        .await
        .batch_execute(
            "INSERT INTO smart_meter_properties (device_id, epc, name, val, updated_at) VALUES
               ('meter-1', 231, 'measured_instantaneous', '412', '2024-05-01T09:30:00Z'),
               ('meter-1', 224, 'normal_direction_cumulative_electric_energy', '102345',
                '2024-05-01T09:30:00Z')",
        )
        .await
        .unwrap();
    h
}

#[tokio::test]
async fn a_smart_meter_appears_as_an_appliance_with_its_properties() {
    let h = with_meter().await;
    let list = h.get("/1/appliances").await.ok();
    let m = &list[0];
    assert_eq!(m["type"], "EL_SMART_METER");
    assert_eq!(m["device"]["id"], "meter-1");
    let props = m["smart_meter"]["echonetlite_properties"]
        .as_array()
        .unwrap();
    assert_eq!(props.len(), 2);
    assert_eq!(
        props[1],
        json!({"name": "measured_instantaneous", "epc": 231, "val": "412",
               "updated_at": "2024-05-01T09:30:00Z"})
    );
    assert!(m["aircon"].is_null() && m["settings"].is_null());
    h.stop().await;
}

#[tokio::test]
async fn echonetlite_appliances_lists_meters_with_hex_epcs() {
    let h = with_meter().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    h.add_appliance("remo-1", "kumo-tv-generic", "TV").await;
    let body = h.get("/1/echonetlite/appliances").await.ok();
    let apps = body["appliances"].as_array().unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0]["type"], "EL_SMART_METER");
    assert_eq!(apps[0]["Device"]["id"], "meter-1");
    let epcs: Vec<&str> = apps[0]["properties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["epc"].as_str().unwrap())
        .collect();
    assert_eq!(epcs, ["e0", "e7"]);
    let read_only = h.token_with(&["basic.read"]).await;
    h.get_as(&read_only, "/1/echonetlite/appliances").await.ok();
    let no_read = h.token_with(&["sendir"]).await;
    h.get_as(&no_read, "/1/echonetlite/appliances")
        .await
        .assert_error(403001);
    h.stop().await;
}

#[tokio::test]
async fn detectappliance_validates_the_message_and_lists_matches() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let msg = r#"{"format":"us","freq":38,"data":[3400,1700,450]}"#;
    let found = h
        .post(
            "/1/detectappliance",
            &[("Message", msg), ("Device", "remo-1")],
        )
        .await
        .ok();
    assert!(found.is_array());
    h.post("/1/detectappliance", &[]).await.assert_error(400001);
    h.post("/1/detectappliance", &[("Message", "beep")])
        .await
        .assert_error(400001);
    h.post(
        "/1/detectappliance",
        &[("Message", msg), ("Device", "elsewhere")],
    )
    .await
    .assert_error(400001);
    h.stop().await;
}
