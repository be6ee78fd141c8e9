//! `/1/appliances`, `/1/appliance_orders`, `/1/devices/{id}/appliances`.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use kumo_bridge::DeviceKind;
use serde_json::{json, Value};

#[tokio::test]
async fn an_ac_appliance_has_natures_shape_with_capabilities_and_settings() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let id = h.add_appliance("remo-1", "kumo-ac-generic", "AC").await;
    let list = h.get("/1/appliances").await.ok();
    let a = &list[0];
    assert_eq!(a["id"], id.as_str());
    assert_eq!(a["type"], "AC");
    assert_eq!(a["nickname"], "thing");
    assert_eq!(a["image"], "ico_x");
    assert_eq!(a["device"]["id"], "remo-1");
    assert!(a["device"]["temperature_offset"].is_number());
    assert_eq!(a["model"]["id"], "kumo-ac-generic");
    assert_eq!(a["signals"], json!([]));
    assert_eq!(a["aircon"]["tempUnit"], "c");
    let cool = &a["aircon"]["range"]["modes"]["cool"];
    assert!(cool["temp"].as_array().unwrap().contains(&json!("26")));
    for key in ["vol", "dir", "dirh"] {
        assert!(cool[key].is_array(), "{key}");
    }
    assert!(a["aircon"]["range"]["fixedButtons"].is_array());
    let s = &a["settings"];
    for key in [
        "temp",
        "temp_unit",
        "mode",
        "vol",
        "dir",
        "dirh",
        "button",
        "updated_at",
    ] {
        assert!(s[key].is_string(), "settings.{key} is a string");
    }
    assert_eq!(s["button"], "power-off");
    for key in ["tv", "light", "smart_meter"] {
        assert!(a[key].is_null(), "{key} is null for an AC");
    }
    h.stop().await;
}

#[tokio::test]
async fn tv_light_and_learned_ir_appliances_have_their_parts() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let tv = h.add_appliance("remo-1", "kumo-tv-generic", "TV").await;
    let light = h
        .add_appliance("remo-1", "kumo-light-generic", "Light")
        .await;
    let ir = h
        .post(
            "/1/appliances",
            &[
                ("nickname", "fan"),
                ("image", "ico_fan"),
                ("device", "remo-1"),
            ],
        )
        .await
        .ok();
    assert_eq!(ir["type"], "IR");
    assert!(ir["model"].is_null() && ir["aircon"].is_null() && ir["settings"].is_null());
    let list = h.get("/1/appliances").await.ok();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [tv.as_str(), light.as_str(), ir["id"].as_str().unwrap()]
    );
    let t = &list[0];
    assert_eq!(t["type"], "TV");
    assert!(t["tv"]["buttons"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["name"] == "power"));
    assert_eq!(t["tv"]["state"]["input"], "t");
    let l = &list[1];
    assert_eq!(l["type"], "LIGHT");
    let b = &l["light"]["buttons"][0];
    assert!(b["name"].is_string() && b["image"].is_string() && b["label"].is_string());
    assert_eq!(l["light"]["state"]["power"], "off");
    h.stop().await;
}

#[tokio::test]
async fn creating_an_appliance_rejects_bad_input() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let ok = [("nickname", "x"), ("image", "i"), ("device", "remo-1")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut f = ok.to_vec();
        f.extend_from_slice(extra);
        f
    };
    h.post("/1/appliances", &[("image", "i"), ("device", "remo-1")])
        .await
        .assert_error(400001);
    h.post("/1/appliances", &[("nickname", "x")])
        .await
        .assert_error(400001);
    h.post("/1/appliances", &with(&[("model", "no-such-model")]))
        .await
        .assert_error(400001);
    h.post(
        "/1/appliances",
        &with(&[("model", "kumo-ac-generic"), ("model_type", "TV")]),
    )
    .await
    .assert_error(400001);
    h.post("/1/appliances", &with(&[("model_type", "AC")]))
        .await
        .assert_error(400001);
    h.post("/1/appliances", &with(&[("model_type", "TOASTER")]))
        .await
        .assert_error(400001);
    h.post(
        "/1/appliances",
        &[
            ("nickname", "x"),
            ("image", "i"),
            ("device", "someone-elses"),
        ],
    )
    .await
    .assert_error(400001);
    assert_eq!(h.get("/1/appliances").await.ok(), json!([]));
    h.stop().await;
}

#[tokio::test]
async fn updating_and_deleting_an_appliance() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let id = h
        .add_appliance("remo-1", "kumo-light-generic", "LIGHT")
        .await;
    let a = h
        .post(
            &format!("/1/appliances/{id}"),
            &[("nickname", "Desk"), ("image", "ico_desk")],
        )
        .await
        .ok();
    assert_eq!(
        (a["nickname"].as_str(), a["image"].as_str()),
        (Some("Desk"), Some("ico_desk"))
    );
    h.post(&format!("/1/appliances/{id}"), &[("nickname", "")])
        .await
        .assert_error(400001);
    h.post(&format!("/1/appliances/{id}"), &[])
        .await
        .assert_error(400001);
    h.post("/1/appliances/nope", &[("nickname", "x")])
        .await
        .assert_error(404001);
    let (_, bob) = h.other_user().await;
    h.post_as(&bob, &format!("/1/appliances/{id}/delete"), &[])
        .await
        .assert_error(404001);
    assert_eq!(
        h.post(&format!("/1/appliances/{id}/delete"), &[])
            .await
            .ok(),
        json!({})
    );
    h.post(&format!("/1/appliances/{id}/delete"), &[])
        .await
        .assert_error(404001);
    h.stop().await;
}

#[tokio::test]
async fn reordering_appliances_needs_every_id_once() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let a = h.add_appliance("remo-1", "kumo-tv-generic", "TV").await;
    let b = h
        .add_appliance("remo-1", "kumo-light-generic", "LIGHT")
        .await;
    let order = format!("{b},{a}");
    assert_eq!(
        h.post("/1/appliance_orders", &[("appliances", &order)])
            .await
            .ok(),
        json!({})
    );
    let list = h.get("/1/appliances").await.ok();
    assert_eq!(list[0]["id"], b.as_str());
    assert_eq!(list[1]["id"], a.as_str());
    for bad in [
        a.clone(),
        format!("{a},{a}"),
        format!("{a},{b},zzz"),
        format!("{a},,{b}"),
    ] {
        h.post("/1/appliance_orders", &[("appliances", &bad)])
            .await
            .assert_error(400001);
    }
    h.post("/1/appliance_orders", &[])
        .await
        .assert_error(400001);
    h.stop().await;
}

#[tokio::test]
async fn a_devices_appliances_are_listed_under_it() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    h.add_device("remo-2", DeviceKind::Remo).await;
    let a = h.add_appliance("remo-1", "kumo-tv-generic", "TV").await;
    h.add_appliance("remo-2", "kumo-tv-generic", "TV").await;
    let on1 = h.get("/1/devices/remo-1/appliances").await.ok();
    let ids: Vec<Value> = on1
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(a)]);
    h.get("/1/devices/remo-9/appliances")
        .await
        .assert_error(404001);
    h.stop().await;
}
