//! The newer appliance kinds end to end: `floor_heater_settings`,
//! `light_projector`, `sesame_bot/click` and BLE private macros through a
//! real broker node to Kumo's simulated hub (`kumo-sim`, in process), which
//! applies each with the catalogue's behaviour and acks with the state it
//! reached; the API then shows that state. Nothing here answers for the device.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::Reply;
use crate::sim::SimulatedDevice;
use crate::stack::Stack;

/// The simulated hub `sim-000000`, registered to the test user, once it is
/// online.
async fn hub(stack: &Stack) -> SimulatedDevice {
    stack
        .h
        .add_device("sim-000000", kumo_bridge::DeviceKind::Remo)
        .await;
    let sim = stack.simulate(|_| {});
    for _ in 0..400 {
        let devices = stack.h.get("/1/devices").await.ok();
        if devices[0]["online"] == true {
            return sim;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the simulated hub never came online");
}

/// Posts `form` and waits up to 10 s for the device's answer.
async fn command(stack: &Stack, path: &str, form: &[(&str, &str)]) -> Reply {
    let req = stack
        .h
        .http
        .post(format!("{}{path}", stack.h.base))
        .bearer_auth(&stack.h.token)
        .header("prefer", "wait=10")
        .form(form);
    let r = stack.h.send(req).await;
    assert_eq!(r.status.as_u16(), 200, "{path}: {:?}", r.body);
    assert_eq!(r.headers["x-kumo-command-status"], "acked", "{path}: {r:?}");
    r
}

async fn appliance(stack: &Stack, id: &str) -> Value {
    let all = stack.h.get("/1/appliances").await.ok();
    all.as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .cloned()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_hub_acks_floor_heater_settings_and_the_appliance_shows_them() {
    let stack = Stack::start(|_| {}).await;
    let _hub = hub(&stack).await;
    let heater = stack
        .h
        .add_appliance("sim-000000", "kumo-floor-heater-generic", "FLOOR_HEATER")
        .await;
    let path = format!("/1/appliances/{heater}/floor_heater_settings");
    let r = command(
        &stack,
        &path,
        &[
            ("operation_mode", "warm"),
            ("temperature", "33"),
            ("temperature_unit", "c"),
            ("air_volume", ""),
            ("air_direction", ""),
            ("air_direction_h", ""),
            ("button", ""),
        ],
    )
    .await;
    let id = r.command_id();
    let c = stack.h.get(&format!("/v1/commands/{id}")).await.ok();
    assert_eq!(
        (c["kind"].as_str(), c["status"].as_str()),
        (Some("floor_heater"), Some("acked"))
    );
    let settings = &appliance(&stack, &heater).await["settings"];
    assert_eq!(
        (settings["temp"].as_str(), settings["button"].as_str()),
        (Some("33"), Some(""))
    );

    command(&stack, &path, &[("button", "power-off")]).await;
    let settings = &appliance(&stack, &heater).await["settings"];
    assert_eq!(settings["button"], "power-off");
    assert_eq!(
        settings["temp"], "33",
        "turning it off keeps the temperature"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_hub_plays_the_light_projector_and_the_sesame_bot_and_reports_their_state() {
    let stack = Stack::start(|_| {}).await;
    let _hub = hub(&stack).await;
    let h = &stack.h;
    let projector = h
        .add_appliance(
            "sim-000000",
            "kumo-light-projector-generic",
            "LIGHT_PROJECTOR",
        )
        .await;
    let path = format!("/1/appliances/{projector}/light_projector");
    command(&stack, &path, &[("button", "vol-up")]).await;
    command(&stack, &path, &[("button", "projector-on")]).await;
    command(&stack, &path, &[("button", "vol-up")]).await;
    assert_eq!(
        appliance(&stack, &projector).await["light_projector"]["state"],
        json!({"light": "off", "projector": "on", "volume": "11", "last_button": "vol-up"}),
        "the volume moved only once the projector played"
    );

    let bot = h
        .add_appliance("sim-000000", "kumo-sesame-bot-generic", "SESAME_BOT")
        .await;
    let r = command(
        &stack,
        &format!("/1/appliances/{bot}/sesame_bot/click"),
        &[],
    )
    .await;
    assert_eq!(r.body, json!({}));
    assert_eq!(
        appliance(&stack, &bot).await["ble"]["state"],
        json!({"arm": "down", "last_action": "click"})
    );
    let macros = appliance(&stack, &bot).await["ble"]["macros"].clone();
    let release = macros["release"]["url"].as_str().unwrap().to_string();
    command(&stack, &release, &[]).await;
    assert_eq!(
        appliance(&stack, &bot).await["ble"]["state"],
        json!({"arm": "up", "last_action": "release"})
    );
    let hold = macros["hold"]["url"].as_str().unwrap().to_string();
    command(&stack, &hold, &[]).await;

    // A second bot entry for the same hub learns the bot's state from the
    // hub's retained state report, which follows every command.
    let again = h
        .add_appliance("sim-000000", "kumo-sesame-bot-generic", "SESAME_BOT")
        .await;
    command(&stack, &path, &[("button", "light-on")]).await;
    let mut shown = Value::Null;
    for _ in 0..100 {
        shown = appliance(&stack, &again).await["ble"]["state"].clone();
        if shown["arm"] == "down" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(shown, json!({"arm": "down", "last_action": "hold"}));
    stack.stop().await;
}
