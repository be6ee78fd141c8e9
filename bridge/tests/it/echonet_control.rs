//! ECHONET Lite control end to end: `POST /1/echonetlite/appliances/{id}/set`
//! and `/refresh` against a real broker node, the bridge, and Kumo's simulated
//! smart-meter gateway (`kumo-sim`, in process) with its ECHONET Lite air
//! conditioner. The device checks and applies the set itself and acks with
//! what it read back; nothing here answers for it.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::Reply;
use crate::sim::SimulatedDevice;
use crate::stack::Stack;

const WRITE: &str = "echonetlite.*.write";
const READ: &str = "echonetlite.*.read";

/// How the simulated gateway treats commands it could carry out.
#[derive(Clone, Copy)]
enum Answers {
    Always,
    /// Acks every one as failed ("appliance did not respond").
    Failure,
    /// Drops every one unanswered.
    Never,
}

/// Starts the gateway and waits for its air conditioner to appear; returns
/// the appliance's id.
async fn gateway(stack: &Stack, answers: Answers) -> (SimulatedDevice, String) {
    stack
        .h
        .add_device("sim-000000", kumo_bridge::DeviceKind::SmartMeter)
        .await;
    let gw = stack.simulate(|s| {
        s.meter_fraction = 1.0;
        s.command_failure_rate = f64::from(u8::from(matches!(answers, Answers::Failure)));
        s.command_ignore_rate = f64::from(u8::from(matches!(answers, Answers::Never)));
    });
    for _ in 0..400 {
        if let Some(ac) = aircon(stack).await {
            if ac["properties"].as_array().is_some_and(|p| p.len() == 4) {
                return (gw, ac["id"].as_str().unwrap().to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway's air conditioner never appeared");
}

/// The `EL_AIRCON` entry of `/1/echonetlite/appliances`.
async fn aircon(stack: &Stack) -> Option<Value> {
    let list = stack.h.get("/1/echonetlite/appliances").await.ok();
    list["appliances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "EL_AIRCON")
        .cloned()
}

/// Property `epc` (hex) of the air conditioner.
async fn property(stack: &Stack, epc: &str) -> Value {
    let ac = aircon(stack).await.unwrap();
    ac["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["epc"] == epc)
        .cloned()
        .unwrap_or_else(|| panic!("no property {epc} in {ac}"))
}

async fn post(
    stack: &Stack,
    token: &str,
    path: &str,
    form: &[(&str, &str)],
    wait: Option<u64>,
) -> Reply {
    let mut req = stack
        .h
        .http
        .post(format!("{}{path}", stack.h.base))
        .bearer_auth(token)
        .form(form);
    if let Some(w) = wait {
        req = req.header("prefer", format!("wait={w}"));
    }
    stack.h.send(req).await
}

fn assert_accepted(r: &Reply, status: &str) {
    assert_eq!(r.status.as_u16(), 202, "{:?}", r.body);
    assert_eq!(r.body, json!({}));
    assert_eq!(r.headers["x-kumo-command-status"], status, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_reaches_the_simulated_air_conditioner_and_its_answer_updates_the_properties() {
    let stack = Stack::start(|_| {}).await;
    let (_gw, ac) = gateway(&stack, Answers::Always).await;
    let token = stack.h.token_with(&["basic.read", WRITE]).await;
    assert_eq!(
        property(&stack, "b3").await["val"],
        "1a",
        "a new unit is at 26 °C"
    );
    assert_eq!(property(&stack, "80").await["val"], "31", "and off");

    let set = format!("/1/echonetlite/appliances/{ac}/set");
    let r = post(
        &stack,
        &token,
        &set,
        &[("epc", "b3"), ("val", "14")],
        Some(10),
    )
    .await;
    assert_accepted(&r, "acked");
    assert_eq!(property(&stack, "b3").await["val"], "14");
    let row = stack
        .h
        .client()
        .await
        .query_one(
            "SELECT kind, payload, result IS NULL FROM commands WHERE id = $1",
            &[&r.command_id()],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "echonet");
    assert_eq!(
        row.get::<_, Value>(1),
        json!({"type": "echonet_set", "eoj": "013001", "epc": 179, "edt": "14"})
    );

    // Without waiting, the properties follow once the device answered.
    let r = post(&stack, &token, &set, &[("epc", "80"), ("val", "30")], None).await;
    assert_eq!(r.status.as_u16(), 202);
    let on = async {
        loop {
            if property(&stack, "80").await["val"] == "30" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), on)
        .await
        .expect("the unit never reported itself on");
    stack
        .wait_status(r.command_id(), "acked", Duration::from_secs(5))
        .await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_reads_the_properties_again_and_moves_their_updated_at() {
    let stack = Stack::start(|_| {}).await;
    let (_gw, ac) = gateway(&stack, Answers::Always).await;
    let token = stack.h.token_with(&["basic.read", READ]).await;
    let before = property(&stack, "bb").await;
    let untouched = property(&stack, "b0").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The gateway reports only changes: nothing moved on its own meanwhile.
    assert_eq!(property(&stack, "bb").await, before);

    let refresh = format!("/1/echonetlite/appliances/{ac}/refresh");
    let r = post(&stack, &token, &refresh, &[("epc", "80,BB")], Some(10)).await;
    assert_accepted(&r, "acked");
    let after = property(&stack, "bb").await;
    assert!(
        after["updated_at"].as_str().unwrap() > before["updated_at"].as_str().unwrap(),
        "{before} → {after}"
    );
    assert_eq!(after["val"], before["val"]);
    assert_eq!(property(&stack, "b0").await, untouched, "not asked for");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sets_and_refreshes_are_400s_naming_the_field_and_reach_no_device() {
    let stack = Stack::start(|_| {}).await;
    let (_gw, ac) = gateway(&stack, Answers::Always).await;
    let token = stack.h.token_with(&["basic.read", READ, WRITE]).await;
    let set = format!("/1/echonetlite/appliances/{ac}/set");
    let refresh = format!("/1/echonetlite/appliances/{ac}/refresh");
    let before = stack.h.command_count().await;
    for (form, field) in [
        (&[("epc", "b3")][..], "val"),
        (&[("val", "14")][..], "epc"),
        (&[("epc", "b3"), ("val", "33")][..], "val"),
        (&[("epc", "b3"), ("val", "1")][..], "val"),
        (&[("epc", "b3"), ("val", "001a")][..], "val"),
        (&[("epc", "80"), ("val", "32")][..], "val"),
        (&[("epc", "bb"), ("val", "10")][..], "epc"),
        (&[("epc", "cf"), ("val", "30")][..], "epc"),
        (&[("epc", "0xb3"), ("val", "14")][..], "epc"),
    ] {
        let r = post(&stack, &token, &set, form, None).await;
        r.assert_error(400001);
        let message = r.body["message"].as_str().unwrap();
        assert!(message.contains(field), "{form:?}: {message}");
    }
    for epcs in ["", "80,zz", "80,cf"] {
        let r = post(&stack, &token, &refresh, &[("epc", epcs)], None).await;
        r.assert_error(400001);
        assert!(r.body["message"].as_str().unwrap().contains("epc"));
    }
    assert_eq!(stack.h.command_count().await, before, "nothing was queued");

    // Not an ECHONET Lite appliance, someone else's, or the meter's read-only
    // properties.
    let meter = stack.h.get("/1/echonetlite/appliances").await.ok()["appliances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "EL_SMART_METER")
        .map(|a| a["id"].as_str().unwrap().to_string())
        .unwrap();
    let r = post(
        &stack,
        &token,
        &format!("/1/echonetlite/appliances/{meter}/set"),
        &[("epc", "e7"), ("val", "00000001")],
        None,
    )
    .await;
    r.assert_error(400001);
    assert!(r.body["message"].as_str().unwrap().contains("read-only"));
    post(
        &stack,
        &token,
        "/1/echonetlite/appliances/nope/set",
        &[("epc", "80"), ("val", "30")],
        None,
    )
    .await
    .assert_error(404001);
    let tv = stack
        .h
        .add_appliance("sim-000000", "kumo-tv-generic", "TV")
        .await;
    post(
        &stack,
        &token,
        &format!("/1/echonetlite/appliances/{tv}/set"),
        &[("epc", "80"), ("val", "30")],
        None,
    )
    .await
    .assert_error(400001);

    // Scopes: set needs write, refresh needs read.
    let read_only = stack.h.token_with(&["basic.read", READ]).await;
    post(
        &stack,
        &read_only,
        &set,
        &[("epc", "80"), ("val", "30")],
        None,
    )
    .await
    .assert_error(403001);
    let write_only = stack.h.token_with(&[WRITE]).await;
    post(&stack, &write_only, &refresh, &[("epc", "80")], None)
        .await
        .assert_error(403001);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_never_answers_leaves_the_call_pending_then_expired() {
    let stack = Stack::start(|b| b.command_ttl_secs = 2).await;
    let (_gw, ac) = gateway(&stack, Answers::Never).await;
    let token = stack.h.token_with(&["basic.read", WRITE]).await;
    let set = format!("/1/echonetlite/appliances/{ac}/set");

    // The wait runs out first: Nature's 202 with the command still pending.
    let r = post(
        &stack,
        &token,
        &set,
        &[("epc", "b3"), ("val", "14")],
        Some(1),
    )
    .await;
    assert_accepted(&r, "sent");
    // The command expires before the wait does: 504.
    let r = post(
        &stack,
        &token,
        &set,
        &[("epc", "b3"), ("val", "15")],
        Some(20),
    )
    .await;
    r.assert_error(504001);
    assert_eq!(property(&stack, "b3").await["val"], "1a", "nothing changed");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_the_device_fails_is_a_502_with_its_reason_and_changes_nothing() {
    let stack = Stack::start(|_| {}).await;
    let (_gw, ac) = gateway(&stack, Answers::Failure).await;
    let token = stack.h.token_with(&["basic.read", WRITE]).await;
    let set = format!("/1/echonetlite/appliances/{ac}/set");
    let r = post(
        &stack,
        &token,
        &set,
        &[("epc", "b3"), ("val", "14")],
        Some(10),
    )
    .await;
    r.assert_error(502001);
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .contains("did not respond"));
    let status: String = stack
        .h
        .client()
        .await
        .query_one("SELECT status FROM commands WHERE kind = 'echonet'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "failed");
    assert_eq!(property(&stack, "b3").await["val"], "1a");
    stack.stop().await;
}
