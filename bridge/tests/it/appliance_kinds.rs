//! The newer appliance kinds of the official document — floor heaters,
//! light projectors and BLE SESAME bots with their private macros — over
//! REST: created from the catalogue, listed with the fields the document
//! gives them, every command a durable row, invalid settings a 400 naming
//! the field, another account's ids a 404. End to end with Kumo's simulated
//! hub in `appliance_kinds_live.rs`.
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};

use crate::common::*;
use kumo_bridge::DeviceKind;

struct Kinds {
    h: Harness,
    heater: String,
    projector: String,
    bot: String,
}

async fn setup() -> Kinds {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let heater = h
        .add_appliance("remo-1", "kumo-floor-heater-generic", "FLOOR_HEATER")
        .await;
    let projector = h
        .add_appliance("remo-1", "kumo-light-projector-generic", "LIGHT_PROJECTOR")
        .await;
    let bot = h
        .add_appliance("remo-1", "kumo-sesame-bot-generic", "SESAME_BOT")
        .await;
    Kinds {
        h,
        heater,
        projector,
        bot,
    }
}

fn find(list: &Value, id: &str) -> Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} in {list}"))
}

/// The official form of `floor_heater_settings`: every field.
fn heater_form(temp: &str) -> Vec<(&str, &str)> {
    vec![
        ("operation_mode", "warm"),
        ("temperature", temp),
        ("temperature_unit", "c"),
        ("air_volume", ""),
        ("air_direction", ""),
        ("air_direction_h", ""),
        ("button", ""),
    ]
}

#[tokio::test]
async fn the_newer_kinds_are_listed_with_the_fields_the_official_document_gives_them() {
    let k = setup().await;
    let all = k.h.get("/1/appliances").await.ok();

    let heater = find(&all, &k.heater);
    assert_eq!(heater["type"], "FLOOR_HEATER");
    assert_eq!(heater["model"]["id"], "kumo-floor-heater-generic");
    assert_eq!(heater["floor_heater"]["tempUnit"], "c");
    let warm = &heater["floor_heater"]["range"]["modes"]["warm"];
    assert_eq!(warm["temp"][0], "15");
    assert_eq!(warm["vol"], json!(["auto"]));
    assert_eq!(
        heater["settings"]["button"], "power-off",
        "a new one is off"
    );
    assert_eq!(heater["settings"]["temp"], "28");
    assert!(heater.get("light").is_none() && heater.get("ble").is_none());

    let projector = find(&all, &k.projector);
    assert_eq!(projector["type"], "LIGHT_PROJECTOR");
    let layout = &projector["light_projector"]["layout"];
    for field in ["type", "name", "uuid", "image", "label", "text"] {
        assert!(layout[field].is_string(), "{field} in {layout}");
    }
    let templates = layout["templates"].as_array().unwrap();
    assert!(templates.iter().any(|t| t["name"] == "projector-on"));
    assert_eq!(
        projector["light_projector"]["state"],
        json!({"light": "off", "projector": "off", "volume": "10", "last_button": ""})
    );
    assert!(projector["settings"].is_null());

    let bot = find(&all, &k.bot);
    assert_eq!(bot["type"], "SESAME_BOT");
    let ble = &bot["ble"];
    assert_eq!(ble["bonded"], true);
    assert_eq!(
        ble["addr"].as_str().unwrap().len(),
        17,
        "a MAC-style address"
    );
    assert_eq!(ble["sesame"]["uuid"], k.bot.as_str());
    assert_eq!(ble["state"], json!({"arm": "up", "last_action": ""}));
    let macros = ble["macros"].as_object().unwrap();
    let names: Vec<&str> = macros.keys().map(String::as_str).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for name in ["press", "hold", "release"] {
        let id = macros[name]["id"].as_str().unwrap();
        assert_eq!(
            macros[name]["url"],
            format!("/1/ble/private_macros/{id}/exec")
        );
    }

    // The macro list names the same ids; a non-BLE appliance has none.
    let listed =
        k.h.get(&format!("/1/ble/appliances/{}/private_macros", k.bot))
            .await
            .ok();
    let mut listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    let mut shown: Vec<&str> = macros.values().map(|m| m["id"].as_str().unwrap()).collect();
    listed.sort();
    shown.sort();
    assert_eq!(listed, shown);
    let none =
        k.h.get(&format!("/1/ble/appliances/{}/private_macros", k.heater))
            .await
            .ok();
    assert_eq!(none, json!([]));
    k.h.stop().await;
}

#[tokio::test]
async fn each_command_of_a_newer_kind_is_a_durable_row_with_the_predicted_state() {
    let k = setup().await;
    let h = &k.h;
    let r = h
        .post(
            &format!("/1/appliances/{}/floor_heater_settings", k.heater),
            &heater_form("33"),
        )
        .await;
    let heater_cmd = r.command_id();
    let body = r.ok();
    assert_eq!(body["id"], k.heater.as_str(), "the whole appliance");
    assert_eq!(body["settings"]["temp"], "33");
    assert_eq!(body["settings"]["button"], "");
    assert!(body["settings"]["updated_at"].is_string());

    let r = h
        .post(
            &format!("/1/appliances/{}/light_projector", k.projector),
            &[("button", "projector-on")],
        )
        .await;
    let projector_cmd = r.command_id();
    assert_eq!(r.ok(), json!({}));

    let r = h
        .post(&format!("/1/appliances/{}/sesame_bot/click", k.bot), &[])
        .await;
    let click_cmd = r.command_id();
    assert_eq!(r.ok(), json!({}));

    let macros = h
        .get(&format!("/1/ble/appliances/{}/private_macros", k.bot))
        .await
        .ok();
    let hold = macros[1]["id"].as_str().unwrap().to_string();
    let r = h
        .post(&format!("/1/ble/private_macros/{hold}/exec"), &[])
        .await;
    let macro_cmd = r.command_id();
    assert_eq!(r.ok(), json!({}));

    for (id, kind, payload) in [
        (
            heater_cmd,
            "floor_heater",
            json!({"type": "floor_heater", "model": "kumo-floor-heater-generic",
                   "settings": {"temp": "33", "mode": "warm", "vol": "", "dir": "",
                                "dirh": "", "button": ""}}),
        ),
        (
            projector_cmd,
            "light_projector",
            json!({"type": "light_projector", "model": "kumo-light-projector-generic",
                   "button": "projector-on"}),
        ),
        (
            click_cmd,
            "sesame_bot",
            json!({"type": "sesame_bot", "model": "kumo-sesame-bot-generic",
                   "operation": "click"}),
        ),
        (
            macro_cmd,
            "sesame_bot",
            json!({"type": "sesame_bot", "model": "kumo-sesame-bot-generic",
                   "operation": "hold"}),
        ),
    ] {
        let c = h.get(&format!("/v1/commands/{id}")).await.ok();
        assert_eq!(c["kind"], kind);
        assert_eq!(c["status"], "queued", "no device is connected");
        assert_eq!(c["payload"], payload);
    }
    // Confirmed state changes only when the device acks.
    let all = h.get("/1/appliances").await.ok();
    assert_eq!(find(&all, &k.heater)["settings"]["temp"], "28");
    assert_eq!(find(&all, &k.bot)["ble"]["state"]["arm"], "up");
    k.h.stop().await;
}

#[tokio::test]
async fn invalid_settings_of_the_newer_kinds_are_refused_naming_the_field_and_queue_nothing() {
    let k = setup().await;
    let h = &k.h;
    let heater = format!("/1/appliances/{}/floor_heater_settings", k.heater);
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("temperature", "50")], "temperature"),
        (&[("temperature", "warmish")], "temperature"),
        (&[("operation_mode", "cool")], "operation_mode"),
        (&[("air_volume", "3")], "air_volume"),
        (&[("air_direction", "swing")], "air_direction"),
        (&[("button", "airdir-swing")], "button"),
        (&[("temperature_unit", "f")], "temperature_unit"),
        (&[("extra.eco", "on")], "extra.eco"),
    ];
    for (form, field) in cases {
        let r = h.post(&heater, form).await;
        r.assert_error(400001);
        let message = r.body["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{form:?}: {message}");
    }
    let projector = format!("/1/appliances/{}/light_projector", k.projector);
    for form in [&[("button", "popcorn")][..], &[("button", "")], &[]] {
        let r = h.post(&projector, form).await;
        r.assert_error(400001);
        assert!(r.body["message"].as_str().unwrap().contains("button"));
    }
    // A kind's operation on another kind is refused, not sent.
    for (path, form) in [
        (
            format!("/1/appliances/{}/floor_heater_settings", k.projector),
            heater_form("30"),
        ),
        (
            format!("/1/appliances/{}/light_projector", k.bot),
            vec![("button", "light-on")],
        ),
        (
            format!("/1/appliances/{}/sesame_bot/click", k.heater),
            vec![],
        ),
    ] {
        h.post(&path, &form).await.assert_error(400001);
    }
    assert_eq!(h.command_count().await, 0);
    k.h.stop().await;
}

#[tokio::test]
async fn another_accounts_appliances_and_macros_of_the_newer_kinds_are_not_found() {
    let k = setup().await;
    let h = &k.h;
    let (_, bob) = h.other_user().await;
    let macros = h
        .get(&format!("/1/ble/appliances/{}/private_macros", k.bot))
        .await
        .ok();
    let press = macros[0]["id"].as_str().unwrap().to_string();
    let heater = heater_form("30");
    let calls: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            format!("/1/appliances/{}/floor_heater_settings", k.heater),
            heater.clone(),
        ),
        (
            format!("/1/appliances/{}/light_projector", k.projector),
            vec![("button", "light-on")],
        ),
        (format!("/1/appliances/{}/sesame_bot/click", k.bot), vec![]),
        (format!("/1/ble/private_macros/{press}/exec"), vec![]),
        ("/1/ble/private_macros/no-such-macro/exec".into(), vec![]),
        ("/1/appliances/no-such-id/sesame_bot/click".into(), vec![]),
    ];
    for (path, form) in &calls {
        h.post_as(&bob, path, form).await.assert_error(404001);
    }
    for id in [k.bot.as_str(), "no-such-id"] {
        h.get_as(&bob, &format!("/1/ble/appliances/{id}/private_macros"))
            .await
            .assert_error(404001);
    }
    let bobs = h.get_as(&bob, "/1/appliances").await.ok();
    assert_eq!(bobs, json!([]));
    assert_eq!(h.command_count().await, 0);
    // Deleting the bot takes its macros with it.
    h.post(&format!("/1/appliances/{}/delete", k.bot), &[])
        .await
        .ok();
    h.post(&format!("/1/ble/private_macros/{press}/exec"), &[])
        .await
        .assert_error(404001);
    k.h.stop().await;
}
