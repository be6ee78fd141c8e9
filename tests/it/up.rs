//! `kumo up` as a user runs it: the real binary, a private PostgreSQL, signals.
//!
//! These tests check the promises of the embedded default: the server runs as an
//! unprivileged user, no `postgres` process of ours outlives Kumo (clean stop,
//! SIGKILL), data survives a restart, and bad set-ups fail with clear messages.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{kumo, kumo_ok, temp_data_dir, Up};

/// Processes whose command line mentions `needle` (our data directory).
fn processes_mentioning(needle: &Path) -> Vec<(u32, String, u32)> {
    let needle = needle.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(&needle) && !cmdline.starts_with(env!("CARGO_BIN_EXE_kumo")) {
            let uid = std::fs::read_to_string(entry.path().join("status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("Uid:"))
                        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                })
                .unwrap_or(u32::MAX);
            found.push((pid, cmdline, uid));
        }
    }
    found
}

fn wait_no_processes(data_dir: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let left = processes_mentioning(data_dir);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "orphan processes remain: {left:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-XAtc", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn up_runs_postgres_unprivileged_refuses_a_second_up_stops_cleanly_and_keeps_data_across_restarts()
{
    let (_tmp, data) = temp_data_dir();
    let mut up = Up::start(&data);
    let pg_data = data.join("postgres");
    let procs = processes_mentioning(&pg_data);
    assert!(
        !procs.is_empty(),
        "a postgres process runs on {}",
        pg_data.display()
    );
    for (_, cmd, uid) in &procs {
        assert_ne!(*uid, 0, "postgres must not run as root: {cmd}");
    }
    let url = up.database_url();
    psql(
        &url,
        "INSERT INTO users (id, nickname) VALUES ('marker', 'kept')",
    );

    // A second `up` on the same data directory says plainly that Kumo runs there.
    let second = kumo(&data).arg("up").output().expect("run kumo");
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("Kumo is already running with the data directory"),
        "{err}"
    );
    assert!(
        !String::from_utf8_lossy(&second.stdout).contains("ready"),
        "it starts nothing"
    );

    up.signal("TERM");
    let status = up.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    wait_no_processes(&pg_data, Duration::from_secs(5));

    let mut again = Up::start(&data);
    assert!(
        again.seen.iter().any(|l| l.contains("0 applied now")),
        "a second up applies no migration: {:#?}",
        again.seen
    );
    let url = again.database_url();
    assert_eq!(
        psql(&url, "SELECT nickname FROM users WHERE id = 'marker'"),
        "kept"
    );
    again.signal("INT");
    assert!(again.wait_exit(Duration::from_secs(60)).success());
    wait_no_processes(&pg_data, Duration::from_secs(5));
}

#[test]
fn a_killed_kumo_leaves_no_postgres_behind() {
    let (_tmp, data) = temp_data_dir();
    let mut up = Up::start(&data);
    let pg_data = data.join("postgres");
    assert!(!processes_mentioning(&pg_data).is_empty());
    up.signal("KILL");
    up.wait_exit(Duration::from_secs(10));
    // The parent-death signal makes the postmaster shut down on its own.
    wait_no_processes(&pg_data, Duration::from_secs(30));
}

#[test]
fn missing_server_binaries_give_a_clear_error() {
    let (_tmp, data) = temp_data_dir();
    let out = kumo(&data)
        .env("KUMO__DATABASE__EMBEDDED__BIN_DIR", "/nonexistent/pg/bin")
        .arg("up")
        .output()
        .expect("run kumo");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PostgreSQL server binaries"), "{err}");
    assert!(err.contains("KUMO__DATABASE__URL"), "{err}");
}

#[test]
fn a_bad_setting_from_the_environment_names_the_key() {
    let (_tmp, data) = temp_data_dir();
    let out = kumo(&data)
        .env("KUMO__DATABASE__POOL_SIZE", "0")
        .args(["db", "status"])
        .output()
        .expect("run kumo");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("database.pool_size"), "{err}");
}

#[test]
fn db_migrate_against_an_external_url_is_idempotent() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let db = rt.block_on(kumo_testkit::empty_db());
    let (_tmp, data) = temp_data_dir();
    for expected in ["applied migrations", "up to date"] {
        let out = kumo(&data)
            .env("KUMO__DATABASE__URL", &db.url)
            .args(["db", "migrate"])
            .output()
            .expect("run kumo");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(expected), "{stdout}");
    }
    assert!(
        !data.exists(),
        "an external database needs no private cluster"
    );
}

#[test]
fn an_occupied_port_is_a_clear_error_and_leaves_nothing_running() {
    let (_tmp, data) = temp_data_dir();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = kumo(&data)
        .env("KUMO__BRIDGE__LISTEN", &addr)
        .arg("up")
        .output()
        .expect("run kumo");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bridge.listen") && err.contains(&addr),
        "{err}"
    );
    assert!(err.contains("already in use"), "{err}");
    wait_no_processes(&data.join("postgres"), Duration::from_secs(10));
}

#[test]
fn up_stops_with_an_error_when_its_database_dies() {
    let (_tmp, data) = temp_data_dir();
    let mut up = Up::start(&data);
    let pg = processes_mentioning(&data.join("postgres"));
    let (pid, _, _) = pg.first().expect("postgres runs");
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = up.wait_exit(Duration::from_secs(30));
    assert!(!status.success(), "a dead database is an error exit");
}

fn http_get(addr: &str, path: &str, token: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the bridge");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .expect("write request");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (status, response)
}

#[test]
fn admin_commands_use_the_database_of_a_running_up_and_the_api_serves_the_result() {
    let (_tmp, data) = temp_data_dir();
    let mut up = Up::start(&data);
    let bridge = crate::common::address(&up.seen, "bridge", "http://");
    // The bridge's metrics are on their own listener, not the REST port.
    let metrics = crate::common::address(&up.seen, "bridge", "metrics http://")
        .trim_end_matches("/metrics")
        .to_string();
    let (status, text) = http_get(&metrics, "/metrics", "");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("kumo_bridge_devices_online 0"), "{text}");
    assert!(
        text.contains("\nkumo_bridge_mqtt_unacknowledged "),
        "{text}"
    );
    assert!(
        text.contains("\nkumo_bridge_reports_stored_total "),
        "{text}"
    );
    assert_eq!(http_get(&bridge, "/metrics", "").0, 404);
    let created = kumo_ok(&data, &["users", "create", "--nickname", "ayaka"]);
    let user = created
        .split_whitespace()
        .nth(2)
        .expect("user id in: created user <id> (...)")
        .to_string();
    let token = kumo_ok(
        &data,
        &["tokens", "create", "--user", &user, "--scope", "basic"],
    );
    let token = token.trim();
    let added = kumo_ok(
        &data,
        &[
            "devices", "add", "remo-e2e", "--user", &user, "--name", "Living",
        ],
    );
    assert!(added.contains("certificate:"), "{added}");
    assert!(data.join("pki").join("issued").exists());

    // Adding it again keeps the certificate a running device uses; only
    // --new-cert replaces it (and says so).
    let again = kumo_ok(
        &data,
        &[
            "devices", "add", "remo-e2e", "--user", &user, "--name", "Living",
        ],
    );
    assert!(
        again.contains("kept its valid certificate") && !again.contains("certificate:"),
        "{again}"
    );
    let valid = |listing: &str| {
        listing
            .lines()
            .filter(|l| l.contains("remo-e2e") && !l.contains("replaced"))
            .count()
    };
    let listing = kumo_ok(&data, &["certs", "list"]);
    assert_eq!(valid(&listing), 1, "{listing}");
    assert!(!listing.contains("replaced"), "{listing}");
    let replaced = kumo_ok(
        &data,
        &[
            "devices",
            "add",
            "remo-e2e",
            "--user",
            &user,
            "--name",
            "Living",
            "--new-cert",
        ],
    );
    assert!(replaced.contains("certificate:"), "{replaced}");
    let listing = kumo_ok(&data, &["certs", "list"]);
    assert_eq!(valid(&listing), 1, "{listing}");
    assert!(listing.contains("remo-e2e (replaced)"), "{listing}");

    let (status, body) = http_get(&bridge, "/1/devices", token);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"remo-e2e\"") && body.contains("Living"),
        "{body}"
    );
    let (status, _) = http_get(&bridge, "/1/devices", "kumo_not-a-token");
    assert_eq!(status, 401);

    // A demand-response aggregator exists only by this command; its token
    // opens the aggregator routes, an account's does not.
    let aggregator = kumo_ok(&data, &["aggregators", "create", "--name", "Grid Co"]);
    let aggregator = aggregator.trim();
    assert!(aggregator.starts_with("kumo_agg_"), "{aggregator}");
    let (status, body) = http_get(&bridge, "/v1/aggregator/programs", aggregator);
    assert_eq!((status, body.ends_with("[]")), (200, true), "{body}");
    assert_eq!(http_get(&bridge, "/v1/aggregator/programs", token).0, 403);

    // The operator's view and controls.
    let users = kumo_ok(&data, &["users", "list"]);
    let row = users.lines().find(|l| l.starts_with(&user)).expect(&users);
    assert!(
        row.contains("ayaka") && row.split_whitespace().nth(1) == Some("1"),
        "{users}"
    );
    let devices = kumo_ok(&data, &["devices", "list", "--user", &user]);
    assert!(
        devices
            .lines()
            .any(|l| l.starts_with("remo-e2e") && l.contains("Living")),
        "{devices}"
    );
    let tokens = kumo_ok(&data, &["tokens", "list", "--user", &user]);
    let token_id = tokens
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .expect(&tokens)
        .to_string();
    assert!(
        tokens.contains("active") && tokens.contains("basic"),
        "{tokens}"
    );
    let other = kumo_ok(
        &data,
        &["tokens", "create", "--user", &user, "--scope", "basic"],
    );
    let other = other.trim();

    let removed = kumo_ok(&data, &["devices", "remove", "remo-e2e"]);
    assert!(removed.contains("released device remo-e2e"), "{removed}");
    assert!(removed.contains("revoked certificate"), "{removed}");
    let certs = kumo_ok(&data, &["certs", "list"]);
    assert!(
        certs
            .lines()
            .any(|l| l.contains("remo-e2e") && l.contains("revoked")),
        "{certs}"
    );
    let (status, body) = http_get(&bridge, "/1/devices", token);
    assert_eq!(status, 200);
    assert!(body.ends_with("\r\n\r\n[]"), "no devices left: {body}");

    let revoked = kumo_ok(&data, &["tokens", "revoke", &token_id]);
    assert!(revoked.contains("revoked token"), "{revoked}");
    // The running bridge had it kept (it was just used); it hears the
    // revocation from PostgreSQL, in milliseconds.
    let refused = (0..100).any(|_| {
        let refused = http_get(&bridge, "/1/devices", token).0 == 401;
        if !refused {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        refused
    });
    assert!(refused, "a revoked token stops working at once");
    let (status, _) = http_get(&bridge, "/1/devices", other);
    assert_eq!(status, 200, "the account's other token still works");
    let out = kumo(&data)
        .args(["tokens", "revoke", "not-a-token-id"])
        .output()
        .expect("run kumo");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no token with id"));

    up.signal("TERM");
    assert!(up.wait_exit(Duration::from_secs(60)).success());
    wait_no_processes(&data.join("postgres"), Duration::from_secs(5));
}

#[test]
fn admin_commands_refuse_to_create_a_fresh_database_outside_a_data_directory() {
    let (_tmp, data) = temp_data_dir();
    for args in [
        &["users", "list"][..],
        &["tokens", "list", "--user", "someone"],
        &["devices", "list"],
    ] {
        let out = kumo(&data).args(args).output().expect("run kumo");
        assert!(!out.status.success(), "kumo {args:?} must refuse");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("would create a fresh, empty one") && err.contains("--new-database"),
            "kumo {args:?}: {err}"
        );
    }
    assert!(
        !data.join("postgres").exists(),
        "nothing was created in {}",
        data.display()
    );
}

#[test]
fn bootstrap_creates_the_first_account_and_a_token_once() {
    let (_tmp, data) = temp_data_dir();
    let mut up = Up::start(&data);
    let bridge = crate::common::address(&up.seen, "bridge", "http://");
    let first = kumo_ok(&data, &["users", "bootstrap"]);
    let token = first
        .lines()
        .find_map(|l| {
            l.rsplit_once("shown only once): ")
                .map(|(_, t)| t.trim().to_string())
        })
        .unwrap_or_else(|| panic!("a token in {first}"));
    let (status, body) = http_get(&bridge, "/1/users/me", &token);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"nickname\":\"admin\""), "{body}");
    let again = kumo_ok(&data, &["users", "bootstrap"]);
    assert!(again.contains("created nothing"), "{again}");
    let users = kumo_ok(&data, &["users", "list"]);
    assert_eq!(
        users.lines().count(),
        2,
        "a header and one account: {users}"
    );
    up.signal("TERM");
    assert!(up.wait_exit(Duration::from_secs(60)).success());
}
