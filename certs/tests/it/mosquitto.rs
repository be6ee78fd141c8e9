//! mosquitto as a real peer: it must accept a device certificate we issue (and
//! read the device id from its CN), and refuse foreign and revoked certificates.
//! Needs the `mosquitto` and `mosquitto-clients` packages; fails if they are missing.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{device, path_str, write};
use kumo_certs::files::{IssuedPaths, PkiDir};
use kumo_certs::{Ca, IssueOptions, KeyAlgorithm};

/// A mosquitto process, killed on drop.
struct Mosquitto {
    child: Child,
    port: u16,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Mosquitto {
    fn start(dir: &Path, pki: &PkiDir, node: &IssuedPaths) -> Mosquitto {
        // Port 0 cannot be passed to mosquitto; take a free port from the OS.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = format!(
            "user root\nlog_dest stderr\nlog_type all\nper_listener_settings false\n\
             listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\ncrlfile {}\n\
             require_certificate true\nuse_identity_as_username true\nallow_anonymous false\n",
            path_str(&pki.ca_path()),
            path_str(&node.cert),
            path_str(&node.key),
            path_str(&pki.crl_path()),
        );
        let conf_path = write(dir, "mosquitto.conf", &conf);
        let child = Command::new("mosquitto")
            .args(["-c", path_str(&conf_path)])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("`mosquitto` must be installed (apt-get install mosquitto) for this test");
        let mut broker = Mosquitto { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!("mosquitto exited early ({status}): {}", broker.log());
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    /// Publishes once with a client certificate; returns the client's output.
    fn publish(&self, ca: &Path, cert: &Path, key: &Path, client_id: &str) -> Output {
        Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "--cafile",
                path_str(ca),
                "--cert",
                path_str(cert),
                "--key",
                path_str(key),
            ])
            .args([
                "-i",
                client_id,
                "-q",
                "1",
                "-t",
                &format!("devices/{client_id}/state"),
                "-m",
                "{}",
            ])
            .output()
            .expect("`mosquitto_pub` must be installed (apt-get install mosquitto-clients)")
    }

    /// Stops the broker and returns everything it logged.
    fn log(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut log = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut log);
        }
        log
    }
}

fn describe(out: &Output) -> String {
    format!(
        "status {}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn mosquitto_accepts_our_device_certificate_and_refuses_foreign_and_revoked_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = PkiDir::init(&tmp.path().join("pki"), KeyAlgorithm::EcdsaP256).unwrap();
    let node = pki
        .issue_node("node-1", &["localhost".into(), "127.0.0.1".into()])
        .unwrap();
    let good = pki.issue_device(&device("remo-1")).unwrap();
    let gone = pki.issue_device(&device("remo-gone")).unwrap();
    pki.revoke("remo-gone", Some("keyCompromise")).unwrap();

    let other = Ca::generate("Someone Else", KeyAlgorithm::EcdsaP256).unwrap();
    let foreign = other
        .issue_device(&device("remo-1"), &IssueOptions::default())
        .unwrap();
    let foreign_cert: PathBuf = write(tmp.path(), "foreign.pem", &foreign.cert_pem);
    let foreign_key: PathBuf = write(tmp.path(), "foreign.key", &foreign.key_pem);

    let mut broker = Mosquitto::start(tmp.path(), &pki, &node);
    let ca = pki.ca_path();

    let out = broker.publish(&ca, &good.cert, &good.key, "remo-1");
    assert!(
        out.status.success(),
        "our device must connect: {}",
        describe(&out)
    );

    let out = broker.publish(&ca, &foreign_cert, &foreign_key, "remo-1");
    assert!(
        !out.status.success(),
        "a foreign CA's certificate must be refused: {}",
        describe(&out)
    );

    let out = broker.publish(&ca, &gone.cert, &gone.key, "remo-gone");
    assert!(
        !out.status.success(),
        "a revoked certificate must be refused: {}",
        describe(&out)
    );

    let log = broker.log();
    // use_identity_as_username: the username mosquitto derived is the device id (CN).
    assert!(log.contains("u'remo-1'"), "{log}");
    assert!(!log.contains("u'remo-gone'"), "{log}");
}
