//! The API against its documents, checked by a property-based tester that is
//! not Kumo's: [Schemathesis](https://schemathesis.readthedocs.io) reads an
//! OpenAPI document, generates requests from it — schema-valid ones and
//! deliberately invalid ones — sends them to a running bridge and checks each
//! answer: no 5xx, the status code and content type documented, the body
//! matching its documented schema, documented-valid requests accepted and
//! documented-invalid ones refused, and that no operation works without the
//! bearer token.
//!
//! Three documents: Kumo's `/v1` and `/1` ones (served by the bridge), and the
//! official Nature document (`shared/reference/nature-api/`), whose answers
//! must match Nature's response schemas. Path ids are those of real objects
//! (created below), so valid requests reach the handlers' logic instead of
//! stopping at a 404. What each run checks, and where Kumo deliberately
//! departs from the official document (with the reason, and the section of
//! `docs/nature-api-differences.md` that explains it), is in the run's
//! configuration, `bridge/tests/api-contract/*.toml`.
//!
//! Bounded for CI: a fixed seed and a few examples per operation; set
//! `KUMO_CONTRACT_EXAMPLES` for a longer run.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kumo_bridge::DeviceKind;
use time::OffsetDateTime;

use crate::common::{start_with, test_settings, Harness};

/// The `st` command of the Schemathesis that `scripts/install-test-deps` installs.
fn schemathesis() -> PathBuf {
    let dir = std::env::var_os("KUMO_SCHEMATHESIS").map_or_else(
        || {
            let cache = std::env::var_os("XDG_CACHE_HOME").map_or_else(
                || PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"),
                PathBuf::from,
            );
            cache.join("kumo/schemathesis")
        },
        PathBuf::from,
    );
    let st = dir.join("bin/st");
    assert!(
        st.exists(),
        "{} is missing: run bash scripts/install-test-deps",
        st.display()
    );
    st
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Real objects for every kind of path id, named as the configurations use
/// them (`${AC_ID}` …). Those an operation deletes are spares of their own.
async fn fixtures(h: &mut Harness) -> BTreeMap<&'static str, String> {
    let mut ids = BTreeMap::new();
    let token = kumo_bridge::create_token(
        &h.pool,
        &h.user_id,
        kumo_bridge::auth::ALL_SCOPES,
        "contract",
    )
    .await
    .unwrap();
    let spare_token = kumo_bridge::create_token(&h.pool, &h.user_id, &["basic.read"], "spare")
        .await
        .unwrap();
    // The fixtures need every scope too (claim codes, homes).
    h.token = token.clone();
    ids.insert("KUMO_TOKEN", token);
    for (device, kind) in [
        ("remo-1", DeviceKind::Remo),
        ("remo-spare", DeviceKind::Remo),
        ("meter-1", DeviceKind::SmartMeter),
    ] {
        h.add_device(device, kind).await;
    }
    ids.insert("DEVICE_ID", "remo-1".into());
    ids.insert("METER_ID", "meter-1".into());
    ids.insert("SPARE_DEVICE_ID", "remo-spare".into());
    ids.insert(
        "AC_ID",
        h.add_appliance("remo-1", "kumo-ac-generic", "AC").await,
    );
    ids.insert(
        "TV_ID",
        h.add_appliance("remo-1", "kumo-tv-generic", "TV").await,
    );
    ids.insert(
        "LIGHT_ID",
        h.add_appliance("remo-1", "kumo-light-generic", "LIGHT")
            .await,
    );
    for (key, model, kind) in [
        (
            "FLOOR_HEATER_ID",
            "kumo-floor-heater-generic",
            "FLOOR_HEATER",
        ),
        (
            "PROJECTOR_ID",
            "kumo-light-projector-generic",
            "LIGHT_PROJECTOR",
        ),
        ("SESAME_BOT_ID", "kumo-sesame-bot-generic", "SESAME_BOT"),
    ] {
        ids.insert(key, h.add_appliance("remo-1", model, kind).await);
    }
    let macros = h
        .get(&format!(
            "/1/ble/appliances/{}/private_macros",
            ids["SESAME_BOT_ID"]
        ))
        .await
        .ok();
    ids.insert("MACRO_ID", macros[0]["id"].as_str().unwrap().into());
    for (key, nickname) in [("IR_ID", "fan"), ("SPARE_APPLIANCE_ID", "spare")] {
        let form = [
            ("nickname", nickname),
            ("image", "ico_fan"),
            ("device", "remo-1"),
        ];
        let ir = h.post("/1/appliances", &form).await.ok();
        ids.insert(key, ir["id"].as_str().unwrap().into());
    }
    let message = r#"{"format":"us","freq":38,"data":[9000,4500,560,560]}"#;
    for (key, name) in [("SIGNAL_ID", "on"), ("SPARE_SIGNAL_ID", "spare")] {
        let s = h
            .post(
                &format!("/1/appliances/{}/signals", ids["IR_ID"]),
                &[("name", name), ("image", "ico_on"), ("message", message)],
            )
            .await
            .ok();
        ids.insert(key, s["id"].as_str().unwrap().into());
    }
    // The smart meter and an ECHONET Lite air conditioner behind the gateway.
    let meter = kumo_contract::DeviceId::parse("meter-1").unwrap();
    let client = h.client().await;
    kumo_bridge::device_state::record_meter_in(
        &client,
        &meter,
        &[
            (0xE7, "512".into()),
            (0xD3, "1".into()),
            (0xE0, "1000".into()),
        ],
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    let aircon = kumo_contract::appliance::echonet::Eoj::parse("013001").unwrap();
    kumo_bridge::device_state::record_echonet_in(
        &client,
        &meter,
        aircon,
        &[
            (0x80, "30".into()),
            (0xB0, "42".into()),
            (0xB3, "1a".into()),
        ],
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    let echonet = h.get("/1/echonetlite/appliances").await.ok();
    let el_aircon = echonet["appliances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "EL_AIRCON")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    ids.insert("EL_APPLIANCE_ID", el_aircon);
    // A queued command (no device is connected: it waits).
    let light = h
        .post(
            &format!("/1/appliances/{}/light", ids["LIGHT_ID"]),
            &[("button", "on")],
        )
        .await;
    ids.insert("COMMAND_ID", light.command_id().to_string());
    let rule = serde_json::json!({
        "name": "warm",
        "trigger": {"threshold": {"device": "remo-1", "sensor": "te", "op": "above", "value": 28}},
        "actions": [{"event": {"name": "warm"}}]
    });
    let request = h
        .http
        .post(format!("{}/v1/rules", h.base))
        .bearer_auth(&h.token)
        .json(&rule);
    let rule = h.send(request).await.ok();
    ids.insert("RULE_ID", rule["id"].as_str().unwrap().into());
    let webhook = h
        .post("/v1/webhooks", &[("url", "https://hooks.example.com/kumo")])
        .await
        .body;
    ids.insert("WEBHOOK_ID", webhook["id"].as_str().unwrap().into());
    let code = h.post("/v1/claim_codes", &[("uses", "1")]).await.body;
    ids.insert("CLAIM_CODE_ID", code["id"].as_str().unwrap().into());
    let tokens = h.get("/v1/tokens").await.ok();
    let spare = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "spare")
        .unwrap();
    ids.insert("SPARE_TOKEN_ID", spare["id"].as_str().unwrap().into());
    drop(spare_token);
    let homes = h.get("/1/homes").await.ok();
    let home = homes[0]["id"].as_str().unwrap().to_string();
    let spare_home = h.post("/1/homes", &[("name", "Spare")]).await.body;
    ids.insert("SPARE_HOME_ID", spare_home["id"].as_str().unwrap().into());
    let invite = h.post(&format!("/1/homes/{home}/invites"), &[]).await.body;
    let url = invite["url"].as_str().unwrap();
    ids.insert("INVITE_TOKEN", url.rsplit('/').next().unwrap().into());
    ids.insert("HOME_ID", home);
    demand_fixtures(h, &mut ids).await;
    ids
}

/// An aggregator, its program with the fixture AC enrolled, and an event a day ahead.
async fn demand_fixtures(h: &Harness, ids: &mut BTreeMap<&'static str, String>) {
    let (_, agg) = kumo_bridge::demand::principal::create(&h.pool, "Grid Co")
        .await
        .unwrap();
    let program = h
        .post_as(&agg, "/v1/aggregator/programs", &[("name", "Peaks")])
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let enrol = [
        ("appliance", ids["AC_ID"].as_str()),
        ("max_setpoint_change", "2"),
    ];
    let r = h
        .post(&format!("/v1/programs/{program}/enrolments"), &enrol)
        .await;
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);
    let at = |hours: i64| {
        (OffsetDateTime::now_utc() + time::Duration::hours(hours))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let (start, end) = (at(24), at(25));
    let event = h
        .post_as(
            &agg,
            &format!("/v1/aggregator/programs/{program}/events"),
            &[("start", &start), ("end", &end), ("target", "off")],
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_string();
    ids.insert("AGGREGATOR_TOKEN", agg);
    ids.insert("PROGRAM_ID", program);
    ids.insert("EVENT_ID", event);
}

/// Runs Schemathesis over `document` (a URL or a file) with the checks and
/// exceptions of `bridge/tests/api-contract/{config}.toml`.
async fn contract(config: &str, document: impl FnOnce(&Harness) -> String) {
    let mut settings = test_settings();
    settings.rate_limit.requests = 1_000_000;
    settings.webhooks.allow_private_targets = false;
    let mut h = start_with(settings).await;
    let ids = fixtures(&mut h).await;
    let examples = std::env::var("KUMO_CONTRACT_EXAMPLES").unwrap_or_else(|_| "12".into());
    let config_path = root().join(format!("bridge/tests/api-contract/{config}.toml"));
    // Schemathesis keeps a cache in its working directory: a scratch one.
    let scratch = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(schemathesis());
    cmd.current_dir(scratch.path())
        .arg("--config-file")
        .arg(&config_path)
        .arg("run")
        .arg(document(&h))
        .args(["--url", &h.base])
        .args(["--max-examples", &examples])
        .args(["--seed", "20261205", "--workers", "1", "--no-color"])
        .envs(ids.iter().map(|(k, v)| (*k, v.as_str())))
        .env("KUMO_BASE", &h.base);
    let run = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    // The failures section and the summary; the progress lines are noise.
    let report = out
        .split_once("=== FAILURES ===")
        .or_else(|| out.split_once("FAILURES"))
        .map_or(out.as_ref(), |(_, rest)| rest);
    assert!(
        run.status.success(),
        "Schemathesis ({config}) found failures:\n{report}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(out.contains("generated"), "nothing ran:\n{out}");
    tokio::time::timeout(Duration::from_secs(30), h.stop())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v1_api_keeps_to_its_own_document() {
    contract("kumo-v1", |h| format!("{}/v1/openapi.json", h.base)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nature_compatible_api_keeps_to_its_own_document() {
    contract("kumo-1", |h| format!("{}/1/openapi.json", h.base)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nature_compatible_api_answers_as_the_official_document_says() {
    contract("nature", |_| {
        root()
            .join("../shared/reference/nature-api/cloud-api.swagger.json")
            .display()
            .to_string()
    })
    .await;
}
