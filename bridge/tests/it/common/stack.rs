//! A real broker node (in process, port 0) with a fresh PKI, a bridge
//! connected to it with its service certificate, and devices played by
//! `tests/device.py` (paho-mqtt) with their own device certificates.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use kumo_bridge::DeviceKind;
use kumo_certs::files::PkiDir;
use kumo_contract::DeviceId;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio_util::sync::CancellationToken;

use crate::common::{start_with, test_settings, Harness};

/// Broker nodes, their PKI and a bridge connected to them.
pub struct Stack {
    pub pki_dir: tempfile::TempDir,
    pub pki: PkiDir,
    /// `node-1`, `node-2`, …; the first is the bridge's default node.
    pub nodes: Vec<kumo_broker::RunningNode>,
    pub node_stops: Vec<CancellationToken>,
    /// MQTT port of each node.
    pub ports: Vec<u16>,
    /// MQTT port of `node-1`.
    pub port: u16,
    pub h: Harness,
    pub bridge_settings: kumo_bridge::Settings,
    /// Each node's settings, with its actual MQTT port.
    pub node_settings: Vec<kumo_broker::Settings>,
}

impl Stack {
    /// Starts a node and a bridge; `tweak` adjusts the bridge's settings.
    pub async fn start(tweak: impl FnOnce(&mut kumo_bridge::Settings)) -> Stack {
        Self::start_nodes(1, tweak).await
    }

    /// Starts `count` nodes and a bridge connected to all of them.
    pub async fn start_nodes(
        count: usize,
        tweak: impl FnOnce(&mut kumo_bridge::Settings),
    ) -> Stack {
        Self::start_tuned(count, |_| {}, tweak).await
    }

    /// [`Stack::start_nodes`], with `node_tweak` applied to every node's settings.
    pub async fn start_tuned(
        count: usize,
        node_tweak: impl Fn(&mut kumo_broker::Settings),
        tweak: impl FnOnce(&mut kumo_bridge::Settings),
    ) -> Stack {
        let pki_dir = tempfile::tempdir().unwrap();
        let pki = PkiDir::open_or_init(pki_dir.path()).unwrap();
        let sans = ["localhost".to_string(), "127.0.0.1".to_string()];
        let stack = pki.ensure_stack("node-1", &sans).unwrap();
        let (mut nodes, mut node_stops, mut ports) = (Vec::new(), Vec::new(), Vec::new());
        let mut node_settings_all = Vec::new();
        for i in 1..=count {
            let node_id = format!("node-{i}");
            let (cert, key) = if i == 1 {
                (stack.node_cert.clone(), stack.node_key.clone())
            } else {
                let issued = pki.issue_node(&node_id, &sans).unwrap();
                (issued.cert, issued.key)
            };
            let mut node_settings = kumo_broker::Settings {
                node_id,
                listen: "127.0.0.1:0".parse().unwrap(),
                http_listen: "127.0.0.1:0".parse().unwrap(),
                ca: Some(stack.ca.clone()),
                crl: Some(stack.crl.clone()),
                cert: Some(cert),
                key: Some(key),
                ..kumo_broker::Settings::default()
            };
            node_tweak(&mut node_settings);
            let stop = CancellationToken::new();
            let mut kept = node_settings.clone();
            let node = kumo_broker::start(node_settings, stop.clone())
                .await
                .unwrap();
            kept.listen = node.mqtt_addr();
            ports.push(node.mqtt_addr().port());
            node_settings_all.push(kept);
            nodes.push(node);
            node_stops.push(stop);
        }
        let mut settings = test_settings();
        settings.mqtt.nodes = ports.iter().map(|p| format!("localhost:{p}")).collect();
        settings.mqtt.ca = Some(stack.ca);
        settings.mqtt.cert = Some(stack.bridge_cert);
        settings.mqtt.key = Some(stack.bridge_key);
        settings.mqtt.resend_after_secs = 30;
        // Device self-provisioning on its own TLS listener.
        let provision = pki.issue_node("provision", &sans).unwrap();
        settings.provision = kumo_bridge::settings::ProvisionSettings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            pki_dir: Some(pki_dir.path().to_path_buf()),
            cert: Some(provision.cert),
            key: Some(provision.key),
            ..Default::default()
        };
        tweak(&mut settings);
        let h = start_with(settings.clone()).await;
        let stack = Stack {
            pki_dir,
            pki,
            nodes,
            node_stops,
            port: ports[0],
            ports,
            h,
            bridge_settings: settings,
            node_settings: node_settings_all,
        };
        stack.wait_ready().await;
        stack
    }

    /// The readiness status code and body.
    pub async fn readyz(&self) -> (u16, serde_json::Value) {
        let url = format!("{}/readyz", self.h.base);
        let r = self.h.http.get(&url).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// Waits until `/readyz` says every broker node is connected.
    pub async fn wait_ready(&self) {
        let url = format!("{}/readyz", self.h.base);
        for _ in 0..200 {
            let r = self.h.http.get(&url).send().await.unwrap();
            if r.status().is_success() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the bridge never connected to the broker node");
    }

    /// Issues a device certificate without registering the device to anyone.
    pub fn unregistered_device(&self, id: &str) -> DeviceCreds {
        let issued = self
            .pki
            .issue_device(&DeviceId::parse(id).unwrap())
            .unwrap();
        DeviceCreds {
            id: id.to_string(),
            cert: issued.cert,
            key: issued.key,
            ca: self.pki.ca_path(),
            port: self.port,
        }
    }

    /// Registers a device to the test user and issues its certificate.
    pub async fn device(&self, id: &str) -> DeviceCreds {
        self.h.add_device(id, DeviceKind::Remo).await;
        self.unregistered_device(id)
    }

    /// Stops the bridge (waiting for it) and starts a new one on the same
    /// database and node.
    pub async fn restart_bridge(&mut self) {
        self.stop_bridge().await;
        self.start_bridge().await;
    }

    pub async fn stop_bridge(&mut self) {
        self.h.shutdown.cancel();
        if let Some(b) = self.h.bridge.take() {
            tokio::time::timeout(Duration::from_secs(20), b.wait())
                .await
                .expect("bridge stops within its grace period")
                .unwrap();
        }
    }

    pub async fn start_bridge(&mut self) {
        let shutdown = CancellationToken::new();
        let bridge = kumo_bridge::start(
            self.bridge_settings.clone(),
            self.h.pool.clone(),
            shutdown.clone(),
        )
        .await
        .unwrap();
        self.h.base = format!("http://{}", bridge.http_addr());
        self.h.bridge = Some(bridge);
        self.h.shutdown = shutdown;
        self.wait_ready().await;
    }

    /// Stops node `i` and starts it again on the same port (a new run of the
    /// same node: same id, certificate and settings, empty sessions).
    pub async fn restart_node(&mut self, i: usize) {
        self.node_stops[i].cancel();
        let old = self.nodes.remove(i);
        old.wait().await.unwrap();
        let stop = CancellationToken::new();
        let node = kumo_broker::start(self.node_settings[i].clone(), stop.clone())
            .await
            .unwrap();
        self.nodes.insert(i, node);
        self.node_stops[i] = stop;
    }

    pub async fn stop(mut self) {
        self.stop_bridge().await;
        for stop in &self.node_stops {
            stop.cancel();
        }
        for node in self.nodes.drain(..) {
            node.wait().await.unwrap();
        }
    }

    /// A command's status from the table.
    pub async fn status(&self, id: uuid::Uuid) -> String {
        let c = self.h.client().await;
        c.query_one("SELECT status FROM commands WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0)
    }

    /// Polls until `id` has `status` (or panics after `limit`).
    pub async fn wait_status(&self, id: uuid::Uuid, status: &str, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let now = self.status(id).await;
            if now == status {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "command {id} is {now}, expected {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A device's certificate files and where to connect.
#[derive(Debug, Clone)]
pub struct DeviceCreds {
    pub id: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub port: u16,
}

impl DeviceCreds {
    /// mosquitto_pub as this device, QoS 1 on `topic`; the caller adds the
    /// message (`-m body`, or `-l` with stdin).
    pub fn mosquitto_pub(&self, topic: &str) -> Command {
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args([
            "-h",
            "localhost",
            "-p",
            &self.port.to_string(),
            "-i",
            &self.id,
        ])
        .arg("--cafile")
        .arg(&self.ca)
        .arg("--cert")
        .arg(&self.cert)
        .arg("--key")
        .arg(&self.key)
        .args(["-q", "1", "-t", topic]);
        cmd
    }

    /// The same device, connecting to another node.
    pub fn on_port(&self, port: u16) -> DeviceCreds {
        DeviceCreds {
            port,
            ..self.clone()
        }
    }
}

/// A running `device.py`.
pub struct Device {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl DeviceCreds {
    /// Starts the device; returns once it has subscribed to its commands.
    pub async fn connect(&self, extra: &[&str]) -> Device {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/device.py");
        let port = self.port.to_string();
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", &port, "--id", &self.id])
            .arg("--ca")
            .arg(&self.ca)
            .arg("--cert")
            .arg(&self.cert)
            .arg("--key")
            .arg(&self.key)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with paho-mqtt (pip install paho-mqtt) is required");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut d = Device { child, lines };
        let first = d.next_line(Duration::from_secs(20)).await;
        assert_eq!(
            first.as_deref(),
            Some("READY"),
            "device.py did not subscribe (is paho-mqtt installed?)"
        );
        d
    }
}

impl Device {
    /// The next line the device printed, if any within `limit`.
    pub async fn next_line(&mut self, limit: Duration) -> Option<String> {
        tokio::time::timeout(limit, self.lines.next_line())
            .await
            .ok()
            .and_then(|r| r.ok())
            .flatten()
    }

    /// The next command the device received, parsed.
    pub async fn next_command(&mut self, limit: Duration) -> Option<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let line = self.next_line(left).await?;
            if let Some(body) = line.strip_prefix("CMD ") {
                return Some(serde_json::from_str(body).unwrap());
            }
        }
    }

    /// Waits for a line starting with `prefix`.
    pub async fn expect_line(&mut self, prefix: &str, limit: Duration) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_line(left).await {
                Some(l) if l.starts_with(prefix) => return l,
                Some(_) => {}
                None => panic!("device never printed {prefix}"),
            }
        }
    }

    /// Disconnects the device (closes stdin, then kills it if needed).
    pub async fn disconnect(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Makes every insert statement into `readings` take `secs` seconds before
/// it commits (a slow database, for the writer's back-pressure and for
/// what waits on a commit).
pub async fn slow_inserts(db: &tokio_postgres::Client, secs: f64) {
    db.batch_execute(&format!(
        "CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN PERFORM pg_sleep({secs}); RETURN NULL; END $$;
         CREATE TRIGGER slow_insert AFTER INSERT ON readings
           FOR EACH STATEMENT EXECUTE FUNCTION slow_insert();"
    ))
    .await
    .expect("the slow-insert trigger");
}
