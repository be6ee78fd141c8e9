//! The device contract, end to end: `kumo up` with a real `kumo sim` device,
//! every command the catalogue offers sent through `/1` with `Prefer: wait`.
//! Each must be acknowledged by the simulated device; the state the API
//! predicted in its response must equal the state the device reported in its
//! ack (read off the wire by an integration's `mosquitto_sub`), and
//! `GET /1/appliances` must then show exactly that state. Learned signals and
//! rule-issued commands take the same path.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::http::{enc, eventually, http, http_json, Reply};
use crate::common::{
    account_with_token, address, kumo_ok, sim_process, temp_data_dir, KillOnDrop, Up,
};
use kumo_contract::appliance::{Capabilities, MODELS};
use serde_json::{json, Value};

const DEVICE: &str = "sim-000000";

/// A running stack with one account, its token and its simulated device,
/// plus an integration watching the device's acks.
struct Stack {
    _tmp: tempfile::TempDir,
    _up: Up,
    _sim: KillOnDrop,
    _watch: KillOnDrop,
    bridge: String,
    token: String,
    acks: mpsc::Receiver<Value>,
    /// Commands acked so far.
    acked: std::cell::Cell<usize>,
}

impl Stack {
    fn start() -> Stack {
        let (tmp, data) = temp_data_dir();
        let up = Up::start(&data);
        let bridge = address(&up.seen, "bridge", "http://");
        let node = address(&up.seen, "broker", "mqtts://");
        let port = node.rsplit(':').next().expect("port").to_string();
        let (user, token) = account_with_token(&data, "contract");
        kumo_ok(&data, &["devices", "add", DEVICE, "--user", &user]);
        let issued = kumo_ok(
            &data,
            &["certs", "issue-integration", "--account", &user, "watcher"],
        );
        let path_of = |label: &str| {
            issued
                .lines()
                .find_map(|l| l.trim().strip_prefix(label))
                .map(|p| p.trim().to_string())
                .expect("issued path")
        };
        let (cert, key) = (path_of("certificate:"), path_of("key:"));
        let ca = data.join("pki").join("ca.pem");
        let mut watch = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port, "--cafile"])
            .arg(&ca)
            .args(["--cert", &cert, "--key", &key, "-i", "watcher", "-q", "1"])
            .args(["-t", "devices/+/acks"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub (apt-get install mosquitto-clients)");
        let out = watch.stdout.take().expect("stdout");
        let (tx, acks) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        let sim = sim_process(&data, &format!("127.0.0.1:{port}"));
        let s = Stack {
            _tmp: tmp,
            _up: up,
            _sim: sim,
            _watch: KillOnDrop(watch),
            bridge,
            token,
            acks,
            acked: std::cell::Cell::new(0),
        };
        eventually("the simulated device online", 60, || {
            let r = s.get("/1/devices");
            r.status == 200 && r.body[0]["online"] == true
        });
        s
    }

    fn get(&self, path: &str) -> Reply {
        http(&self.bridge, "GET", path, &self.token, &[], "")
    }

    fn post(&self, path: &str, form: &[(&str, &str)]) -> Reply {
        let encoded: Vec<(String, String)> = form.iter().map(|(k, v)| (enc(k), enc(v))).collect();
        let pairs: Vec<(&str, &str)> = encoded
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        http(&self.bridge, "POST", path, &self.token, &pairs, "")
    }

    /// Sends a command and waits for the device: it must be acked.
    fn command(&self, path: &str, form: &[(&str, &str)]) -> (String, Value) {
        let encoded: Vec<(String, String)> = form.iter().map(|(k, v)| (enc(k), enc(v))).collect();
        let pairs: Vec<(&str, &str)> = encoded
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = http(
            &self.bridge,
            "POST",
            path,
            &self.token,
            &pairs,
            "Prefer: wait=20\r\n",
        );
        assert_eq!(r.status, 200, "{path} {form:?}: {} {}", r.headers, r.body);
        assert_eq!(
            r.header("x-kumo-command-status").as_deref(),
            Some("acked"),
            "{path} {form:?}: {}",
            r.headers
        );
        let id = r.header("x-kumo-command-id").expect("command id");
        self.acked.set(self.acked.get() + 1);
        (id, r.body)
    }

    /// The device's ack for command `id`, as it crossed MQTT.
    fn ack_of(&self, id: &str) -> Value {
        loop {
            let ack = self
                .acks
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no ack for {id} seen on the wire"));
            if ack["id"] == id {
                return ack;
            }
        }
    }

    fn appliance(&self, id: &str) -> Value {
        let all = self.get("/1/appliances");
        all.body
            .as_array()
            .and_then(|a| a.iter().find(|x| x["id"] == id).cloned())
            .unwrap_or_else(|| panic!("appliance {id} in /1/appliances: {}", all.body))
    }

    fn create_appliance(&self, model: &str, kind: &str) -> String {
        let r = self.post(
            "/1/appliances",
            &[
                ("nickname", model),
                ("image", "ico"),
                ("device", DEVICE),
                ("model", model),
                ("model_type", kind),
            ],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["id"].as_str().expect("id").to_string()
    }
}

fn without_updated_at(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("updated_at");
    }
    v
}

/// One command through the whole path: acked, the predicted state equals
/// the reported one, and the API shows it.
fn check(s: &Stack, appliance: &str, kind: &str, path: &str, form: &[(&str, &str)]) {
    let (id, predicted) = s.command(path, form);
    let ack = s.ack_of(&id);
    assert_eq!(ack["result"], "ok", "{ack}");
    let reported = ack["state"][kind].clone();
    assert!(
        reported.is_object(),
        "the ack reports the {kind} state: {ack}"
    );
    assert_eq!(
        without_updated_at(predicted),
        reported,
        "{path} {form:?}: prediction differs from the device"
    );
    let shown = s.appliance(appliance);
    let shown = match kind {
        "aircon" => without_updated_at(shown["settings"].clone()),
        other => shown[other]["state"].clone(),
    };
    assert_eq!(shown, reported, "{path} {form:?}: /1/appliances");
}

/// One command of a newer kind (whose answer is `{}` or the whole
/// appliance, as the official document has it) through the whole path:
/// acked, the floor heater's predicted settings equal the reported ones, and
/// the API shows the reported state.
fn confirm(s: &Stack, appliance: &str, kind: &str, path: &str, form: &[(&str, &str)]) {
    let (id, answer) = s.command(path, form);
    let ack = s.ack_of(&id);
    assert_eq!(ack["result"], "ok", "{ack}");
    let reported = ack["state"][kind].clone();
    assert!(
        reported.is_object(),
        "the ack reports the {kind} state: {ack}"
    );
    let shown = s.appliance(appliance);
    let shown = match kind {
        "floor_heater" => {
            let predicted = without_updated_at(answer["settings"].clone());
            assert_eq!(predicted, reported, "{path} {form:?}: prediction differs");
            without_updated_at(shown["settings"].clone())
        }
        "sesame_bot" => {
            assert_eq!(answer, json!({}));
            shown["ble"]["state"].clone()
        }
        other => {
            assert_eq!(answer, json!({}));
            shown[other]["state"].clone()
        }
    };
    assert_eq!(shown, reported, "{path} {form:?}: /1/appliances");
}

#[test]
fn every_catalogue_command_is_acked_by_the_simulated_device_and_shows_its_reported_state() {
    let s = Stack::start();
    for model in MODELS {
        match &model.capabilities {
            Capabilities::Tv { buttons } => {
                let tv = s.create_appliance(model.id, "TV");
                let path = format!("/1/appliances/{tv}/tv");
                // `power` comes first: the set is on for the rest; then off
                // again, where other buttons change nothing.
                for b in buttons.iter().chain(buttons.iter().take(2)) {
                    check(&s, &tv, "tv", &path, &[("button", b.name)]);
                }
            }
            Capabilities::Light { buttons } => {
                let light = s.create_appliance(model.id, "LIGHT");
                let path = format!("/1/appliances/{light}/light");
                for b in buttons.iter().chain(buttons.iter()) {
                    check(&s, &light, "light", &path, &[("button", b.name)]);
                }
            }
            Capabilities::FloorHeater(caps) => {
                let heater = s.create_appliance(model.id, "FLOOR_HEATER");
                let path = format!("/1/appliances/{heater}/floor_heater_settings");
                for mode in caps.modes {
                    for temp in mode.temp {
                        // The official form: every field, the unused ones empty.
                        let form = [
                            ("operation_mode", mode.name),
                            ("temperature", *temp),
                            ("temperature_unit", caps.temp_unit),
                            ("air_volume", ""),
                            ("air_direction", ""),
                            ("air_direction_h", ""),
                            ("button", ""),
                        ];
                        confirm(&s, &heater, "floor_heater", &path, &form);
                    }
                }
                for b in caps.buttons() {
                    confirm(&s, &heater, "floor_heater", &path, &[("button", b)]);
                }
            }
            Capabilities::LightProjector { buttons } => {
                let unit = s.create_appliance(model.id, "LIGHT_PROJECTOR");
                let path = format!("/1/appliances/{unit}/light_projector");
                for b in buttons.iter().chain(buttons.iter()) {
                    confirm(&s, &unit, "light_projector", &path, &[("button", b.name)]);
                }
            }
            Capabilities::SesameBot { macros } => {
                let bot = s.create_appliance(model.id, "SESAME_BOT");
                let click = format!("/1/appliances/{bot}/sesame_bot/click");
                confirm(&s, &bot, "sesame_bot", &click, &[]);
                confirm(&s, &bot, "sesame_bot", &click, &[]);
                let listed = s.get(&format!("/1/ble/appliances/{bot}/private_macros"));
                let listed = listed.body.as_array().expect("a list").clone();
                assert_eq!(listed.len(), macros.len(), "{listed:?}");
                for m in &listed {
                    let exec = m["url"].as_str().expect("url").to_string();
                    confirm(&s, &bot, "sesame_bot", &exec, &[]);
                }
            }
            Capabilities::Aircon(caps) => {
                let ac = s.create_appliance(model.id, "AC");
                let path = format!("/1/appliances/{ac}/aircon_settings");
                check(&s, &ac, "aircon", &path, &[("button", "")]);
                for mode in caps.modes {
                    for temp in [mode.temp.first(), mode.temp.last()].into_iter().flatten() {
                        let form = [("operation_mode", mode.name), ("temperature", *temp)];
                        check(&s, &ac, "aircon", &path, &form);
                    }
                    // Changing mode alone: the device and the API agree on the temperature.
                    check(&s, &ac, "aircon", &path, &[("operation_mode", mode.name)]);
                }
                let cool = caps.mode("cool").expect("a cool mode");
                for vol in cool.vol {
                    let form = [("operation_mode", "cool"), ("air_volume", *vol)];
                    check(&s, &ac, "aircon", &path, &form);
                }
                for dir in cool.dir {
                    check(&s, &ac, "aircon", &path, &[("air_direction", *dir)]);
                }
                for dirh in cool.dirh {
                    check(&s, &ac, "aircon", &path, &[("air_direction_h", *dirh)]);
                }
                for b in caps.buttons() {
                    check(&s, &ac, "aircon", &path, &[("button", b)]);
                }
                // Nature clients send every field, some empty, and `power-on`.
                let all = [
                    ("operation_mode", "warm"),
                    ("temperature", "20"),
                    ("temperature_unit", "c"),
                    ("air_volume", ""),
                    ("air_direction", ""),
                    ("air_direction_h", ""),
                    ("button", "power-on"),
                ];
                check(&s, &ac, "aircon", &path, &all);
                // And the v2 endpoint answers with the whole appliance.
                let (id, v2) = s.command(
                    &format!("/2/appliances/{ac}/aircon_settings"),
                    &[("temperature", "21")],
                );
                let reported = s.ack_of(&id)["state"]["aircon"].clone();
                assert_eq!(without_updated_at(v2["settings"].clone()), reported);
            }
        }
    }
    let acked = s.acked.get();
    assert!(acked >= 67, "only {acked} commands");
    eprintln!("{acked} catalogue commands acked by the simulated device");
}

#[test]
fn learned_signals_and_rule_commands_reach_the_simulated_device() {
    let s = Stack::start();
    // A learned IR signal on a plain IR appliance.
    let ir = s.post(
        "/1/appliances",
        &[("nickname", "fan"), ("image", "ico"), ("device", DEVICE)],
    );
    assert_eq!(ir.status, 200, "{}", ir.body);
    let ir = ir.body["id"].as_str().expect("id").to_string();
    let message = json!({"format": "us", "freq": 38, "data": [9000, 4500, 560, 1690, 560]});
    let signal = s.post(
        &format!("/1/appliances/{ir}/signals"),
        &[
            ("name", "on"),
            ("image", "ico"),
            ("message", &message.to_string()),
        ],
    );
    assert_eq!(signal.status, 200, "{}", signal.body);
    let signal = signal.body["id"].as_str().expect("id").to_string();
    let (id, _) = s.command(&format!("/1/signals/{signal}/send"), &[]);
    assert_eq!(s.ack_of(&id)["result"], "ok");

    // A rule that turns the light on at the first temperature reading.
    let light = s.create_appliance("kumo-light-generic", "LIGHT");
    let rule = json!({
        "name": "light on when measured",
        "trigger": {"threshold": {"device": DEVICE, "sensor": "te", "op": "above", "value": -50}},
        "actions": [{"command": {"appliance": light, "kind": "light", "params": {"button": "on-100"}}}]
    });
    let r = http_json(&s.bridge, "POST", "/v1/rules", &s.token, &rule);
    assert!(
        r.status == 200 || r.status == 201,
        "{} {}",
        r.status,
        r.body
    );
    eventually("the rule's command acked and shown", 30, || {
        let state = s.appliance(&light)["light"]["state"].clone();
        state["power"] == "on" && state["last_button"] == "on-100"
    });
    let ack = loop {
        let ack = s
            .acks
            .recv_timeout(Duration::from_secs(20))
            .expect("the rule's ack on the wire");
        if ack["state"]["light"].is_object() {
            break ack;
        }
    };
    assert_eq!(ack["result"], "ok");
    assert_eq!(ack["state"]["light"], s.appliance(&light)["light"]["state"]);
}
