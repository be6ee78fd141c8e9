//! The published Nature Remo API clients, unchanged except for their base URL,
//! against a running bridge, a real broker node and a device (paho-mqtt with
//! its own certificate): PyPI `nature-remo` 0.3.3 (its marshmallow schemas parse
//! every response) and npm `nature-remo` 2.0.0. Each client's script
//! (`tests/clients/`) calls every method the client offers; the device must
//! receive exactly the commands the scripts sent, and confirm them.
//!
//! The same scripts run once more against Kumo's own simulated device
//! (`kumo-sim`, in process): its acks carry the state the appliance reached,
//! so the settings the clients read back are the device's, not a stub's.
//!
//! `scripts/install-test-deps` installs both clients into
//! `$KUMO_NATURE_CLIENTS` (default `~/.cache/kumo/nature-clients`).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::sim::SimulatedDevice;
use crate::stack::{Device, DeviceCreds, Stack};
use tokio::process::Command;

fn clients_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KUMO_NATURE_CLIENTS") {
        return dir.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    cache.join("kumo/nature-clients")
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// Runs a client script to its end; returns its `OK …` lines.
async fn run_client(mut cmd: Command, what: &str) -> Vec<String> {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{what} did not finish"))
    .unwrap_or_else(|e| panic!("{what} did not start ({e}); run scripts/install-test-deps"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.lines().last() == Some("DONE"),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout.lines().map(str::to_string).collect()
}

/// A device with sensor readings the clients can read back.
async fn device_with_readings(stack: &Stack) -> (DeviceCreds, Device) {
    let creds = stack.device("remo-1").await;
    let device = creds.connect(&["--ack", "ok"]).await;
    let ts = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    for (sensor, val) in [("te", "22.5"), ("hu", "48"), ("il", "120.5"), ("mo", "1")] {
        let status = creds
            .mosquitto_pub(&format!("devices/remo-1/sensors/{sensor}"))
            .args(["-m", &format!(r#"{{"val":{val},"ts":{ts}}}"#)])
            .status()
            .await
            .unwrap();
        assert!(status.success());
    }
    for _ in 0..200 {
        let devices = stack.h.get("/1/devices").await.ok();
        if devices[0]["newest_events"]["il"]["val"] == 120.5 {
            return (creds, device);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the readings never reached newest_events");
}

/// The commands the device received, in order, as their `type`s; waits for `n`.
async fn commands(device: &mut Device, n: usize) -> Vec<String> {
    let mut kinds = Vec::new();
    while kinds.len() < n {
        let Some(cmd) = device.next_command(Duration::from_secs(10)).await else {
            panic!("the device received only {kinds:?}");
        };
        kinds.push(cmd["type"].as_str().unwrap().to_string());
    }
    // Nothing more than what the client sent.
    if let Some(more) = device.next_command(Duration::from_millis(300)).await {
        panic!("after {kinds:?}, the device received {more}");
    }
    kinds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_nature_remo_works_unchanged() {
    let stack = Stack::start(|_| {}).await;
    let (_creds, mut device) = device_with_readings(&stack).await;
    let mut cmd = Command::new(clients_dir().join("py/bin/python"));
    cmd.arg(script("nature_remo_py.py"))
        .args([&stack.h.base, &stack.h.token, "remo-1"]);
    let lines = run_client(cmd, "the Python client").await;
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("OK get_devices remo-1 te=22.5")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l == "OK aircon_state warm 23"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l
                .starts_with("OK aircon_refused HTTP Status Code: 400, Nature Remo Code: 400001")),
        "{lines:?}"
    );
    assert_eq!(
        commands(&mut device, 4).await,
        ["signal", "aircon", "light", "tv"]
    );
    device.disconnect().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_npm_client_nature_remo_works_unchanged() {
    let stack = Stack::start(|_| {}).await;
    let (_creds, mut device) = device_with_readings(&stack).await;
    let mut cmd = Command::new("node");
    cmd.arg(script("nature_remo_js.js"))
        .args([&stack.h.base, &stack.h.token, "remo-1"])
        .env("NODE_PATH", clients_dir().join("node/node_modules"));
    let lines = run_client(cmd, "the npm client").await;
    assert!(
        lines
            .iter()
            .any(|l| l == "OK getSensorValue te=22.5 hu=48 il=120.5"),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l == "OK updateAirconSettings cool 27"),
        "{lines:?}"
    );
    assert_eq!(
        commands(&mut device, 4).await,
        ["signal", "aircon", "tv", "light"]
    );
    device.disconnect().await;
    stack.stop().await;
}

/// Kumo's simulated IR hub `sim-000000`, registered to the test user, once
/// it is online and has reported.
async fn simulated_device(stack: &Stack) -> SimulatedDevice {
    stack
        .h
        .add_device("sim-000000", kumo_bridge::DeviceKind::Remo)
        .await;
    let sim = stack.simulate(|_| {});
    for _ in 0..400 {
        let devices = stack.h.get("/1/devices").await.ok();
        let device = devices
            .as_array()
            .and_then(|d| d.iter().find(|d| d["id"] == "sim-000000").cloned());
        if device
            .is_some_and(|d| d["online"] == true && d["newest_events"]["il"]["val"].is_number())
        {
            return sim;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the simulated device never came online with readings");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_drives_a_simulated_device() {
    let stack = Stack::start(|_| {}).await;
    let _sim = simulated_device(&stack).await;
    let mut cmd = Command::new(clients_dir().join("py/bin/python"));
    cmd.arg(script("nature_remo_py.py"))
        .args([&stack.h.base, &stack.h.token, "sim-000000"]);
    let lines = run_client(cmd, "the Python client").await;
    for expected in ["OK get_devices sim-000000 te=", "OK aircon_state warm 23"] {
        assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "{expected}: {lines:?}"
        );
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_npm_client_drives_a_simulated_device() {
    let stack = Stack::start(|_| {}).await;
    let _sim = simulated_device(&stack).await;
    let mut cmd = Command::new("node");
    cmd.arg(script("nature_remo_js.js"))
        .args([&stack.h.base, &stack.h.token, "sim-000000"])
        .env("NODE_PATH", clients_dir().join("node/node_modules"));
    let lines = run_client(cmd, "the npm client").await;
    for expected in ["OK getSensorValue te=", "OK updateAirconSettings cool 27"] {
        assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "{expected}: {lines:?}"
        );
    }
    stack.stop().await;
}
