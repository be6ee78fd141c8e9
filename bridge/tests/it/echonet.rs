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

/// `(EPC, value)` of device `id`'s EL_AIRCON properties, as stored.
async fn aircon_properties(h: &Harness, id: &str) -> Vec<(i32, String)> {
    h.client()
        .await
        .query(
            "SELECT p.epc, p.val FROM echonet_properties p JOIN appliances a ON a.id = p.appliance_id
             WHERE a.device_id = $1 AND a.type = 'EL_AIRCON' ORDER BY p.epc",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn many_gateways_objects_are_stored_in_one_statement_each_in_its_owners_account() {
    use kumo_bridge::device_state::record_echonets_in;
    use kumo_contract::appliance::echonet::Eoj;
    use time::{Duration, OffsetDateTime};
    let h = start().await;
    let (bob, bob_token) = h.other_user().await;
    for id in ["gw-1", "gw-2", "gw-3", "gw-4"] {
        h.add_device(id, DeviceKind::SmartMeter).await;
    }
    h.give_device("gw-2", &bob).await;
    h.client()
        .await
        .execute("UPDATE devices SET user_id = NULL WHERE id = 'gw-3'", &[])
        .await
        .unwrap();
    let [g1, g2, g3, g4] = ["gw-1", "gw-2", "gw-3", "gw-4"].map(dev);
    let aircon = Eoj::parse("013001").unwrap();
    let floor_heater = Eoj::parse("027b01").unwrap();
    let now = OffsetDateTime::now_utc();
    let (on, warm, cool) = (
        vec![(0x80, "30".to_string()), (0xB3, "1a".to_string())],
        vec![(0x80, "31".to_string())],
        vec![(0x80, "30".to_string())],
    );
    let client = h.client().await;
    record_echonets_in(
        &client,
        &[
            (&g1, aircon, &on, now),
            (&g2, aircon, &warm, now),
            (&g3, aircon, &cool, now),
            (&g4, floor_heater, &cool, now),
        ],
    )
    .await
    .unwrap();
    // Each owned gateway's air conditioner in its owner's account, with its
    // properties; the unowned gateway's and the unmodelled class dropped.
    // (The gateways' own meters are listed too: EL_SMART_METER.)
    let aircons = |list: serde_json::Value| -> Vec<String> {
        list["appliances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["type"] == "EL_AIRCON")
            .map(|a| a["Device"]["id"].as_str().unwrap().to_string())
            .collect()
    };
    let mine = h.get("/1/echonetlite/appliances").await.ok();
    assert_eq!(aircons(mine), ["gw-1"]);
    let bobs = h.get_as(&bob_token, "/1/echonetlite/appliances").await.ok();
    assert_eq!(aircons(bobs), ["gw-2"]);
    assert_eq!(
        aircon_properties(&h, "gw-1").await,
        [(0x80, "30".into()), (0xB3, "1a".into())]
    );
    assert_eq!(aircon_properties(&h, "gw-2").await, [(0x80, "31".into())]);
    assert!(aircon_properties(&h, "gw-3").await.is_empty());
    // Again: the appliances are reused, a newer value replaces, an older
    // one (a report overtaken by a later one) does not.
    let (off, stale) = (
        vec![(0x80, "31".to_string())],
        vec![(0x80, "30".to_string())],
    );
    record_echonets_in(
        &client,
        &[
            (&g1, aircon, &off, now + Duration::seconds(1)),
            (&g2, aircon, &stale, now - Duration::seconds(1)),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        aircon_properties(&h, "gw-1").await,
        [(0x80, "31".into()), (0xB3, "1a".into())]
    );
    assert_eq!(aircon_properties(&h, "gw-2").await, [(0x80, "31".into())]);
    let appliances: i64 = client
        .query_one(
            "SELECT count(*) FROM appliances WHERE type = 'EL_AIRCON'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(appliances, 2);
    h.stop().await;
}
