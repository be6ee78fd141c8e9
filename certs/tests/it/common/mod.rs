//! Helpers shared by the integration tests: temp files and the `openssl` CLI.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kumo_certs::{AccountId, DeviceId};

pub fn device(id: &str) -> DeviceId {
    DeviceId::parse(id).expect("valid device id")
}

pub fn account(id: &str) -> AccountId {
    AccountId::parse(id).expect("valid account id")
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write test file");
    path
}

/// Runs `openssl` with `args`; panics (loudly) if the binary is missing.
pub fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("the `openssl` CLI must be installed for these tests")
}

/// Runs `openssl` and returns stdout, panicking with stderr on failure.
pub fn openssl_ok(args: &[&str]) -> String {
    let out = openssl(args);
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl verify` of `cert` against `ca` (and optionally a CRL); returns
/// (success, combined output).
pub fn verify(ca: &Path, cert: &Path, crl: Option<&Path>) -> (bool, String) {
    let mut args = vec!["verify", "-CAfile", ca.to_str().expect("utf-8 path")];
    if let Some(crl) = crl {
        args.extend(["-crl_check", "-CRLfile", crl.to_str().expect("utf-8 path")]);
    }
    args.push(cert.to_str().expect("utf-8 path"));
    let out = openssl(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
