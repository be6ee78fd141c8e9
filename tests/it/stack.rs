//! The whole stack as a user meets it: `kumo up` (private PostgreSQL, broker
//! node, bridge connected to the node over MQTT/TLS), accounts made with the CLI,
//! a simulated device from `kumo sim`, and real HTTP requests against the
//! Nature-compatible API: a light command travels REST → bridge → node → device,
//! the device's ack comes back to the waiting call, and its readings land in
//! `newest_events`.

use std::process::Stdio;

use crate::common::http::{eventually, http, Reply};
use crate::common::{
    account_with_token, address, kumo, kumo_ok, sim_process, temp_data_dir, KillOnDrop, Up,
};

/// Adds a catalogue light to `sim-000000` and presses "on", waiting up to
/// 20 s for the device; returns the appliance id and the answer.
fn light_on(bridge: &str, token: &str) -> (String, Reply) {
    let light = http(
        bridge,
        "POST",
        "/1/appliances",
        token,
        &[
            ("nickname", "Hall+light"),
            ("image", "ico_light"),
            ("device", "sim-000000"),
            ("model", "kumo-light-generic"),
            ("model_type", "LIGHT"),
        ],
        "",
    );
    assert_eq!(light.status, 200, "{}", light.body);
    let light = light.body["id"].as_str().expect("appliance id").to_string();
    let sent = http(
        bridge,
        "POST",
        &format!("/1/appliances/{light}/light"),
        token,
        &[("button", "on")],
        "Prefer: wait=20\r\n",
    );
    assert_eq!(sent.status, 200, "{} {}", sent.headers, sent.body);
    (light, sent)
}

#[test]
fn a_light_command_travels_from_rest_to_a_simulated_device_and_its_ack_comes_back() {
    let (_tmp, data) = temp_data_dir();
    let up = Up::start(&data);
    let summary = &up.seen;
    let bridge = address(summary, "bridge", "http://");
    let node = address(summary, "broker", "mqtts://");
    let port = node.rsplit(':').next().expect("port");

    let (user, token) = account_with_token(&data, "e2e");
    kumo_ok(
        &data,
        &[
            "devices",
            "add",
            "sim-000000",
            "--user",
            &user,
            "--name",
            "Hall",
        ],
    );

    let _sim = sim_process(&data, &format!("127.0.0.1:{port}"));

    eventually("the device online with a temperature reading", 60, || {
        let r = http(&bridge, "GET", "/1/devices", &token, &[], "");
        r.status == 200
            && r.body[0]["online"] == true
            && r.body[0]["newest_events"]["te"]["val"].is_number()
    });

    let (light, sent) = light_on(&bridge, &token);
    let id = sent
        .headers
        .lines()
        .find_map(|l| l.strip_prefix("x-kumo-command-id:"))
        .map(|v| v.trim().to_string())
        .expect("X-Kumo-Command-Id");
    let command = http(
        &bridge,
        "GET",
        &format!("/v1/commands/{id}"),
        &token,
        &[],
        "",
    );
    assert_eq!(command.status, 200, "{}", command.body);
    assert_eq!(command.body["status"], "acked", "{}", command.body);
    // The appliance's state follows the device's confirmation.
    let appliances = http(&bridge, "GET", "/1/appliances", &token, &[], "");
    let mine = appliances
        .body
        .as_array()
        .and_then(|all| all.iter().find(|a| a["id"] == light.as_str()).cloned());
    let mine = mine.expect("the light in /1/appliances");
    assert_eq!(mine["light"]["state"]["power"], "on", "{mine}");

    // An impossible setting is refused before anything reaches the device.
    let bad = http(
        &bridge,
        "POST",
        &format!("/1/appliances/{light}/light"),
        &token,
        &[("button", "warp-speed")],
        "",
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(bad.body["code"], 400001, "{}", bad.body);
}

/// A separate `kumo broker` process on `addr`, killed (SIGKILL) when dropped.
fn broker_process(data: &std::path::Path, addr: &str) -> KillOnDrop {
    KillOnDrop(
        kumo(data)
            .env("KUMO__BROKER__LISTEN", addr)
            .arg("broker")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kumo broker"),
    )
}

#[test]
fn a_broker_node_killed_mid_run_is_survived_and_its_lost_device_shows_offline() {
    let (_tmp, data) = temp_data_dir();
    let port = kumo_testkit::free_port();
    let node_addr = format!("127.0.0.1:{port}");
    let nodes = format!("localhost:{port}");
    // The bridge and PostgreSQL in `up`; the node in a process of its own.
    let up = Up::start_with(
        &data,
        &["up", "--no-broker"],
        &[("KUMO__BRIDGE__MQTT__NODES", nodes.as_str())],
    );
    let bridge = address(&up.seen, "bridge", "http://");
    let mut node = broker_process(&data, &node_addr);
    let ready = || http(&bridge, "GET", "/readyz", "", &[], "").status;
    eventually("the bridge connected to the node", 60, || ready() == 200);

    let (user, token) = account_with_token(&data, "k");
    kumo_ok(&data, &["devices", "add", "sim-000000", "--user", &user]);
    let device = |field: &str| {
        let r = http(&bridge, "GET", "/1/devices", &token, &[], "");
        r.body[0][field].clone()
    };
    let mut sim = sim_process(&data, &node_addr);
    eventually("the device online", 60, || device("online") == true);

    // The node and its device die at once, without a word to anyone.
    drop(sim);
    drop(node);
    eventually("readiness reporting the lost node", 30, || ready() == 503);
    let during = http(&bridge, "GET", "/1/devices", &token, &[], "");
    assert_eq!(during.status, 200, "the REST API keeps serving");

    // The node's next run: the bridge reconnects and learns from the node's
    // epoch that the device it showed online went down with the old run.
    node = broker_process(&data, &node_addr);
    eventually("the bridge reconnected", 60, || ready() == 200);
    eventually("the lost device shown offline", 30, || {
        device("online") == false
    });

    // The device comes back; commands reach it again.
    sim = sim_process(&data, &node_addr);
    eventually("the device online again", 60, || device("online") == true);
    let (_, sent) = light_on(&bridge, &token);
    assert!(
        sent.headers.contains("x-kumo-command-status: acked"),
        "{}",
        sent.headers
    );
    drop(sim);
    drop(node);
}

#[test]
fn up_with_three_nodes_serves_devices_on_each_and_commands_reach_them() {
    let (_tmp, data) = temp_data_dir();
    let up = Up::start_with(&data, &["up", "--nodes", "3"], &[]);
    let bridge = address(&up.seen, "bridge", "http://");
    let nodes: Vec<String> = up
        .seen
        .iter()
        .filter(|l| l.trim_start().starts_with("broker"))
        .filter_map(|l| l.split("mqtts://").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert_eq!(nodes.len(), 3, "{:?}", up.seen);
    assert!(
        up.seen
            .iter()
            .any(|l| l.contains("devices enrol at https://127.0.0.1:")),
        "{:?}",
        up.seen
    );
    for id in ["node-1", "node-2", "node-3"] {
        assert!(
            up.seen.iter().any(|l| l.contains(&format!("node {id} on"))),
            "{:?}",
            up.seen
        );
    }
    eventually("the bridge connected to all three nodes", 60, || {
        http(&bridge, "GET", "/readyz", "", &[], "").status == 200
    });
    let (user, token) = account_with_token(&data, "three");
    let devices = ["sim-000000", "sim-000001", "sim-000002"];
    for d in devices {
        kumo_ok(&data, &["devices", "add", d, "--user", &user]);
    }
    // Device i goes to node i mod 3: one device on each node.
    let _sim = KillOnDrop(
        kumo(&data)
            .env("KUMO__SIM__METER_FRACTION", "0")
            .env("KUMO__SIM__PROGRESS_INTERVAL_MS", "0")
            .args(["sim", "--devices", "3", "--nodes", &nodes.join(",")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kumo sim"),
    );
    eventually("all three devices online", 60, || {
        let r = http(&bridge, "GET", "/1/devices", &token, &[], "");
        r.body
            .as_array()
            .is_some_and(|a| a.len() == 3 && a.iter().all(|d| d["online"] == true))
    });
    for d in devices {
        let light = http(
            &bridge,
            "POST",
            "/1/appliances",
            &token,
            &[
                ("nickname", "L"),
                ("image", "ico_light"),
                ("device", d),
                ("model", "kumo-light-generic"),
                ("model_type", "LIGHT"),
            ],
            "",
        );
        assert_eq!(light.status, 200, "{}", light.body);
        let id = light.body["id"].as_str().expect("id").to_string();
        let sent = http(
            &bridge,
            "POST",
            &format!("/1/appliances/{id}/light"),
            &token,
            &[("button", "on")],
            "Prefer: wait=20\r\n",
        );
        assert_eq!(sent.status, 200, "{d}: {}", sent.body);
        assert_eq!(
            sent.header("x-kumo-command-status").as_deref(),
            Some("acked"),
            "{d}: {}",
            sent.headers
        );
    }
}

/// The compose journey for a first start: `users bootstrap` makes the first
/// account, its token and a claim code in a file; `kumo sim --claim-file`
/// enrols devices with it through the provisioning listener, and they show up
/// as that account's devices.
#[test]
fn bootstrap_writes_a_claim_code_that_simulated_devices_enrol_with_into_the_first_account() {
    use std::os::unix::fs::PermissionsExt as _;

    let (_tmp, data) = temp_data_dir();
    let up = Up::start(&data);
    let bridge = address(&up.seen, "bridge", "http://");
    let node = address(&up.seen, "broker", "mqtts://");
    let provision = address(&up.seen, "provision", "https://");
    let node_port = node.rsplit(':').next().expect("port");
    let provision_port = provision
        .split('/')
        .next()
        .and_then(|host_port| host_port.rsplit(':').next())
        .expect("port");
    let code_file = data.parent().expect("parent").join("claim-code");

    let out = kumo_ok(
        &data,
        &[
            "users",
            "bootstrap",
            "--claim-code-file",
            code_file.to_str().expect("utf-8 path"),
            "--claim-uses",
            "2",
        ],
    );
    let token = out
        .lines()
        .find_map(|l| l.rsplit_once("shown only once): ").map(|(_, t)| t.trim()))
        .unwrap_or_else(|| panic!("a token in {out}"))
        .to_string();
    assert!(out.contains("claim code for 2 device(s)"), "{out}");
    let mode = std::fs::metadata(&code_file)
        .expect("code file")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the code is readable by its owner only"
    );
    let code = std::fs::read_to_string(&code_file).expect("code");

    // A second bootstrap changes nothing, the code file included.
    let again = kumo_ok(
        &data,
        &[
            "users",
            "bootstrap",
            "--claim-code-file",
            code_file.to_str().expect("utf-8"),
        ],
    );
    assert!(again.contains("created nothing"), "{again}");
    assert_eq!(std::fs::read_to_string(&code_file).expect("code"), code);

    let _sim = KillOnDrop(
        kumo(&data)
            .env("KUMO__SIM__REPORT_INTERVAL_MS", "500")
            .env("KUMO__SIM__PROGRESS_INTERVAL_MS", "0")
            .args(["sim", "--devices", "2", "--nodes"])
            .arg(format!("127.0.0.1:{node_port}"))
            .arg("--claim-file")
            .arg(&code_file)
            .arg("--provision")
            .arg(format!("localhost:{provision_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kumo sim"),
    );
    eventually(
        "both enrolled devices online in the first account",
        60,
        || {
            let r = http(&bridge, "GET", "/1/devices", &token, &[], "");
            r.status == 200
                && r.body
                    .as_array()
                    .is_some_and(|all| all.len() == 2 && all.iter().all(|d| d["online"] == true))
        },
    );
}
