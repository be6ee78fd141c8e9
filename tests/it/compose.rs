//! docker-compose.yml cannot be run here (no Docker engine), so what it
//! assumes of the `kumo` binary is checked against the binary: paths it
//! names that Kumo itself creates, and the commands its one-shots run.

use std::path::Path;

use crate::common::{kumo, temp_data_dir};

const COMPOSE: &str = include_str!("../../docker-compose.yml");

/// The value of `KEY: value` in the compose file (first occurrence).
fn setting(key: &str) -> String {
    COMPOSE
        .lines()
        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("{key} in docker-compose.yml"))
}

#[test]
fn the_provisioning_certificate_compose_names_is_where_certs_ensure_stack_writes_it() {
    let (_tmp, data) = temp_data_dir();
    let pki = data.join("pki");
    let out = kumo(&data)
        .env("KUMO__CERTS__DIR", &pki)
        .env("KUMO__CERTS__NODE_SANS", "bridge,localhost")
        .args(["certs", "ensure-stack", "--node-id", "provision"])
        .output()
        .expect("run kumo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let in_container = setting("KUMO__BRIDGE__PROVISION__PKI_DIR");
    for key in [
        "KUMO__BRIDGE__PROVISION__CERT",
        "KUMO__BRIDGE__PROVISION__KEY",
    ] {
        let path = setting(key);
        let relative = Path::new(&path)
            .strip_prefix(&in_container)
            .unwrap_or_else(|_| panic!("{key} = {path} lies in the PKI directory"));
        assert!(
            pki.join(relative).is_file(),
            "{key} = {path}: no such file written"
        );
    }
}

#[test]
fn the_flags_compose_passes_to_bootstrap_and_sim_exist() {
    for (command, flags) in [
        (
            &["users", "bootstrap"][..],
            &["--claim-code-file", "--claim-uses"][..],
        ),
        (&["sim"][..], &["--claim-file", "--provision"][..]),
    ] {
        let (_tmp, data) = temp_data_dir();
        let out = kumo(&data)
            .args(command)
            .arg("--help")
            .output()
            .expect("run kumo");
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in flags {
            assert!(COMPOSE.contains(flag), "compose passes {flag}");
            assert!(help.contains(flag), "kumo {command:?} takes {flag}: {help}");
        }
    }
}
