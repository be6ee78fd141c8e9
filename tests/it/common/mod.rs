//! Shared by the tests that run the real `kumo` binary: a clean command, a
//! running `kumo up` read line by line, and its start-up summary.
#![allow(dead_code)] // each test binary uses its own subset

pub mod http;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const READY: &str = "Kumo is up; press Ctrl-C to stop.";

/// A running `kumo up`, killed when dropped.
pub struct Up {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
}

/// The `kumo` binary with a clean environment, `data_dir` and port-0 listeners.
pub fn kumo(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kumo"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("KUMO__DATA_DIR", data_dir)
        .env("RUST_LOG", "warn")
        .current_dir(data_dir.parent().unwrap_or(data_dir));
    for (k, v) in kumo_testkit_ports() {
        cmd.env(k, v);
    }
    cmd
}

/// Every listener `up` opens binds port 0, so tests never collide; the
/// start-up summary says where each one landed.
fn kumo_testkit_ports() -> Vec<(String, String)> {
    [
        "KUMO__BROKER__LISTEN",
        "KUMO__BROKER__HTTP_LISTEN",
        "KUMO__BRIDGE__LISTEN",
        "KUMO__BRIDGE__METRICS_LISTEN",
        "KUMO__BRIDGE__PROVISION__LISTEN",
    ]
    .into_iter()
    .map(|k| (k.to_string(), "127.0.0.1:0".to_string()))
    .collect()
}

impl Up {
    pub fn start(data_dir: &Path) -> Up {
        Self::start_with(data_dir, &["up"], &[])
    }

    /// `kumo args…` (an `up` variant) with extra environment.
    pub fn start_with(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Up {
        let mut child = kumo(data_dir)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn kumo up");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut up = Up {
            child,
            lines,
            seen: Vec::new(),
        };
        up.wait_for(READY, Duration::from_secs(90));
        up
    }

    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no {needle:?} within {timeout:?}; output so far: {:#?}",
                    self.seen
                ),
            }
        }
    }

    pub fn database_url(&self) -> String {
        self.seen
            .iter()
            .find_map(|l| l.trim().strip_prefix("url: ").map(str::to_string))
            .expect("url line in the start-up summary")
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "kumo did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        // A failed assertion must not leave `kumo up` (and its database) running.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The address after `scheme` on the summary line starting with `component`.
pub fn address(summary: &[String], component: &str, scheme: &str) -> String {
    summary
        .iter()
        .find(|l| l.trim_start().starts_with(component))
        .and_then(|l| l.split(scheme).nth(1)?.split_whitespace().next())
        .map(|a| a.trim_end_matches(',').to_string())
        .unwrap_or_else(|| panic!("no {component} address in {summary:#?}"))
}

/// Runs `kumo args…` to completion, asserting success; returns stdout.
pub fn kumo_ok(data: &Path, args: &[&str]) -> String {
    let out = kumo(data).args(args).output().expect("run kumo");
    assert!(
        out.status.success(),
        "kumo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh temporary directory and the data directory inside it.
pub fn temp_data_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix("kumo-up-")
        .tempdir()
        .expect("tempdir");
    let data = tmp.path().join("data");
    (tmp, data)
}

/// A child process killed when the test ends, however it ends.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// One simulated IR hub, `sim-000000`, from `kumo sim` on the node at
/// `addr`, reporting every 500 ms; killed when dropped.
pub fn sim_process(data: &Path, addr: &str) -> KillOnDrop {
    KillOnDrop(
        kumo(data)
            .env("KUMO__SIM__METER_FRACTION", "0")
            .env("KUMO__SIM__REPORT_INTERVAL_MS", "500")
            .env("KUMO__SIM__PROGRESS_INTERVAL_MS", "0")
            .args(["sim", "--devices", "1", "--nodes", addr])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kumo sim"),
    )
}

/// `kumo users create` + a token with `basic` and `sendir` for it, against the
/// running `up` in `data`: the account id and the token.
pub fn account_with_token(data: &Path, nickname: &str) -> (String, String) {
    let created = kumo_ok(data, &["users", "create", "--nickname", nickname]);
    let user = created
        .split_whitespace()
        .nth(2)
        .expect("user id in: created user <id> (...)")
        .to_string();
    let token = kumo_ok(
        data,
        &[
            "tokens", "create", "--user", &user, "--scope", "basic", "--scope", "sendir",
        ],
    );
    (user, token.trim().to_string())
}
