//! Test harness: a broker with mutual TLS from a fresh Kumo PKI — a private
//! mosquitto, or a Kumo broker node in-process — and mosquitto_sub /
//! mosquitto_pub as the cloud side (with service certificates). Missing binaries
//! fail loudly.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use kumo_certs::files::{IssuedPaths, PkiDir};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// A broker requiring client certificates, on a free port.
pub struct Broker {
    pub port: u16,
    pub pki_dir: PathBuf,
    pub ca: PathBuf,
    pub observer: IssuedPaths,
    pub publisher: IssuedPaths,
    /// A Kumo node checks that client ids equal the certificate's identity.
    kumo: bool,
    _child: Option<Child>,
    _node: Option<(
        tokio_util::sync::CancellationToken,
        kumo_broker::RunningNode,
    )>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("addr").port()
}

fn require(binary: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(binary).is_file()))
        .unwrap_or(false);
    let found = found || Path::new("/usr/sbin").join(binary).is_file();
    assert!(
        found,
        "{binary} is required: apt-get install mosquitto mosquitto-clients"
    );
}

fn mosquitto_path() -> PathBuf {
    let sbin = Path::new("/usr/sbin/mosquitto");
    if sbin.is_file() {
        sbin.to_path_buf()
    } else {
        PathBuf::from("mosquitto")
    }
}

impl Broker {
    /// Creates a PKI (CA, node cert for 127.0.0.1, observer service cert) and
    /// starts mosquitto on it.
    pub async fn start() -> Broker {
        require("mosquitto");
        require("mosquitto_sub");
        require("mosquitto_pub");
        let dir = tempfile::tempdir().expect("tempdir");
        let pki_dir = dir.path().join("pki");
        let pki = PkiDir::open_or_init(&pki_dir).expect("pki");
        let node = pki
            .issue_node("test-node", &["127.0.0.1".to_string()])
            .expect("node cert");
        let observer = pki.issue_service("observer").expect("observer cert");
        let publisher = pki.issue_service("publisher").expect("publisher cert");
        let port = free_port();
        let running_as_root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let conf = dir.path().join("mosquitto.conf");
        let mut text = format!(
            "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
             require_certificate true\nuse_identity_as_username true\npersistence false\n\
             log_dest stderr\nlog_type error\nlog_type warning\n",
            pki.ca_path().display(),
            node.cert.display(),
            node.key.display(),
        );
        if running_as_root {
            // Otherwise mosquitto drops to a user that cannot read the 0600 keys.
            text.push_str("user root\n");
        }
        std::fs::write(&conf, text).expect("write conf");
        let child = Command::new(mosquitto_path())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            // Abruptly killed devices make mosquitto log TLS EOF errors; expected here.
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn mosquitto");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Broker {
            port,
            ca: pki.ca_path(),
            pki_dir,
            observer,
            publisher,
            kumo: false,
            _child: Some(child),
            _node: None,
            _dir: dir,
        }
    }

    /// Creates a PKI and starts a Kumo broker node on it, in this process.
    pub async fn start_kumo() -> Broker {
        require("mosquitto_sub");
        require("mosquitto_pub");
        let dir = tempfile::tempdir().expect("tempdir");
        let pki_dir = dir.path().join("pki");
        let pki = PkiDir::open_or_init(&pki_dir).expect("pki");
        let stack = pki
            .ensure_stack("test-node", &["127.0.0.1".to_string()])
            .expect("stack");
        let observer = pki.issue_service("observer").expect("observer cert");
        let publisher = pki.issue_service("publisher").expect("publisher cert");
        let settings = kumo_broker::Settings {
            node_id: "test-node".into(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            http_listen: "127.0.0.1:0".parse().expect("addr"),
            ca: Some(stack.ca),
            crl: Some(stack.crl),
            cert: Some(stack.node_cert),
            key: Some(stack.node_key),
            ..kumo_broker::Settings::default()
        };
        let token = tokio_util::sync::CancellationToken::new();
        let node = kumo_broker::start(settings, token.clone())
            .await
            .expect("start the Kumo node");
        Broker {
            port: node.mqtt_addr().port(),
            ca: pki.ca_path(),
            pki_dir,
            observer,
            publisher,
            kumo: true,
            _child: None,
            _node: Some((token, node)),
            _dir: dir,
        }
    }

    pub fn node(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(&self.ca).expect("ca.pem")
    }

    fn tls_args(&self, cmd: &mut Command, who: &IssuedPaths) {
        cmd.arg("-h")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .arg("--cafile")
            .arg(&self.ca)
            .arg("--cert")
            .arg(&who.cert)
            .arg("--key")
            .arg(&who.key);
    }

    /// Subscribes to `filter` with mosquitto_sub; lines arrive as (topic, payload).
    pub async fn subscribe(&self, filter: &str, client_id: &str) -> Subscription {
        self.subscribe_with(filter, client_id, &[]).await
    }

    /// [`Broker::subscribe`] with the session kept while mosquitto_sub is
    /// away (clean session off), as the bridge's is.
    pub async fn subscribe_kept(&self, filter: &str, client_id: &str) -> Subscription {
        self.subscribe_with(filter, client_id, &["-c"]).await
    }

    async fn subscribe_with(&self, filter: &str, client_id: &str, extra: &[&str]) -> Subscription {
        let mut cmd = Command::new("mosquitto_sub");
        self.tls_args(&mut cmd, &self.observer);
        let client_id = if self.kumo { "observer" } else { client_id };
        cmd.args([
            "-V", "mqttv311", "-q", "1", "-v", "-i", client_id, "-t", filter,
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn mosquitto_sub");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let (topic, payload) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                if tx.send((topic.to_owned(), payload.to_owned())).is_err() {
                    break;
                }
            }
        });
        // Give the subscription time to register before anything is published.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Subscription { rx, _child: child }
    }

    /// Publishes one QoS 1 message with mosquitto_pub; `extra` adds arguments.
    pub async fn publish(&self, topic: &str, payload: &str, extra: &[&str]) {
        let mut cmd = Command::new("mosquitto_pub");
        self.tls_args(&mut cmd, &self.publisher);
        cmd.args(["-q", "1", "-i", "publisher", "-t", topic, "-m", payload])
            .args(extra);
        let status = cmd.status().await.expect("run mosquitto_pub");
        assert!(status.success(), "mosquitto_pub failed");
    }
}

/// Messages seen by a mosquitto_sub.
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<(String, String)>,
    _child: Child,
}

impl Subscription {
    /// Waits for the first message matching `pred`; panics after `secs` naming `what`.
    pub async fn wait_for(
        &mut self,
        what: &str,
        secs: u64,
        pred: impl FnMut(&str, &serde_json::Value) -> bool,
    ) -> (String, serde_json::Value) {
        match self.try_wait_for(secs, pred).await {
            Some(m) => m,
            None => panic!("timed out waiting for {what}"),
        }
    }

    /// Like [`Subscription::wait_for`], but `None` on timeout.
    pub async fn try_wait_for(
        &mut self,
        secs: u64,
        mut pred: impl FnMut(&str, &serde_json::Value) -> bool,
    ) -> Option<(String, serde_json::Value)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let (topic, payload) = match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) => m,
                Ok(None) => panic!("mosquitto_sub exited"),
                Err(_) => return None,
            };
            let json = serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null);
            if pred(&topic, &json) {
                return Some((topic, json));
            }
        }
    }
}
