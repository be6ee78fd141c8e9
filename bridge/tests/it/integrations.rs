//! Third-party integrations end to end: the bridge announces device ownership
//! from PostgreSQL to the broker node, and an integration using real MQTT
//! clients (mosquitto_sub / mosquitto_pub with its integration certificate)
//! sees its account's devices only, commands only them, and follows REST
//! changes of ownership without reconnecting.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use crate::stack::Stack;
use kumo_bridge::DeviceKind;
use kumo_certs::files::IssuedPaths;
use kumo_contract::{AccountId, DeviceId};

const WAIT: Duration = Duration::from_secs(10);

/// Polls until node 0 believes `device` belongs to `account`.
async fn wait_owner(s: &Stack, device: &str, account: Option<&str>) {
    let ownership = s.nodes[0].ownership();
    let id = DeviceId::parse(device).unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while ownership.owner_of(&id).as_ref().map(AccountId::as_str) != account {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node never learned that {device} belongs to {account:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until the bridge stored a reading `val` of `device` (so it passed the router).
pub(crate) async fn wait_ingested(s: &Stack, device: &str, val: f64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let row =
            s.h.client()
                .await
                .query_one(
                    "SELECT count(*) FROM readings WHERE device_id = $1 AND val = $2",
                    &[&device, &val],
                )
                .await
                .unwrap();
        if row.get::<_, i64>(0) > 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{device} {val} never ingested"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn tls_args(s: &Stack, creds: &IssuedPaths) -> Vec<String> {
    let path = |p: &Path| p.display().to_string();
    vec![
        "-h".into(),
        "localhost".into(),
        "-p".into(),
        s.port.to_string(),
        "--cafile".into(),
        path(&s.pki.ca_path()),
        "--cert".into(),
        path(&creds.cert),
        "--key".into(),
        path(&creds.key),
        "-V".into(),
        "mqttv311".into(),
    ]
}

/// mosquitto_pub at QoS 1; true if it exited successfully.
pub(crate) fn publish(
    s: &Stack,
    creds: &IssuedPaths,
    client_id: &str,
    topic: &str,
    msg: &str,
) -> bool {
    Command::new("mosquitto_pub")
        .args(tls_args(s, creds))
        .args(["-i", client_id, "-t", topic, "-m", msg, "-q", "1"])
        .stderr(Stdio::null())
        .status()
        .expect("mosquitto_pub is required (apt-get install mosquitto-clients)")
        .success()
}

/// mosquitto_sub printing `topic payload` lines, and a receiver of them.
pub(crate) fn subscribe(
    s: &Stack,
    creds: &IssuedPaths,
    client_id: &str,
    topics: &[&str],
) -> (Child, Receiver<String>) {
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args(tls_args(s, creds))
        .args(["-i", client_id, "-v", "-q", "1"]);
    for t in topics {
        cmd.args(["-t", t]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub is required (apt-get install mosquitto-clients)");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            if line.map(|l| tx.send(l)).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// Topics of the lines received until one is on `last` (inclusive).
pub(crate) fn topics_until(rx: &Receiver<String>, last: &str) -> Vec<String> {
    let mut topics = Vec::new();
    loop {
        let line = tokio::task::block_in_place(|| rx.recv_timeout(WAIT))
            .unwrap_or_else(|_| panic!("never received {last}; got {topics:?}"));
        let topic = line
            .split_once(' ')
            .map_or(line.as_str(), |(t, _)| t)
            .to_string();
        let done = topic == last;
        topics.push(topic);
        if done {
            return topics;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integration_sees_and_commands_only_its_accounts_devices_as_the_database_says() {
    let s = Stack::start(|_| {}).await;
    let alice = s.h.user_id.clone();
    let (bob, _) = s.h.other_user().await;
    s.h.add_device("dev-a", DeviceKind::Remo).await;
    let dev_b = DeviceId::parse("dev-b").unwrap();
    kumo_bridge::register_device(&s.h.pool, &dev_b, &bob, DeviceKind::Remo, "b")
        .await
        .unwrap();
    let a = s
        .pki
        .issue_device(&DeviceId::parse("dev-a").unwrap())
        .unwrap();
    let b = s.pki.issue_device(&dev_b).unwrap();
    let account = AccountId::parse(alice.clone()).unwrap();
    // A client id is its certificate's name: one to listen, one to command.
    let app = s.pki.issue_integration("ifttt", &account).unwrap();
    let cmd = s.pki.issue_integration("ifttt-cmd", &account).unwrap();
    wait_owner(&s, "dev-a", Some(&alice)).await;
    wait_owner(&s, "dev-b", Some(&bob)).await;

    let (mut sub, rx) = subscribe(
        &s,
        &app,
        "ifttt",
        &[
            "devices/+/sensors/#",
            "devices/+/state",
            "devices/+/presence",
        ],
    );
    // Publish from A until the subscription is live.
    let mut live = false;
    for i in 0..50 {
        assert!(publish(
            &s,
            &a,
            "dev-a",
            "devices/dev-a/sensors/il",
            &format!("{{\"val\":{i}}}")
        ));
        if tokio::task::block_in_place(|| rx.recv_timeout(Duration::from_millis(200))).is_ok() {
            live = true;
            break;
        }
    }
    assert!(live, "the integration's subscription never delivered");
    assert!(publish(
        &s,
        &b,
        "dev-b",
        "devices/dev-b/sensors/te",
        "{\"val\":101}"
    ));
    wait_ingested(&s, "dev-b", 101.0).await;
    assert!(publish(
        &s,
        &a,
        "dev-a",
        "devices/dev-a/sensors/hu",
        "{\"val\":102}"
    ));
    let seen = topics_until(&rx, "devices/dev-a/sensors/hu");
    assert!(
        seen.iter().all(|t| t.starts_with("devices/dev-a/")),
        "{seen:?}"
    );

    assert!(!publish(
        &s,
        &cmd,
        "ifttt-cmd",
        "devices/dev-b/commands",
        "{\"id\":\"x\"}"
    ));
    assert!(publish(
        &s,
        &cmd,
        "ifttt-cmd",
        "devices/dev-a/commands",
        "{\"id\":\"y\"}"
    ));

    // Alice releases dev-a over REST; dev-b moves to Alice. No reconnect.
    s.h.post("/1/devices/dev-a/delete", &[]).await.ok();
    kumo_bridge::register_device(&s.h.pool, &dev_b, &alice, DeviceKind::Remo, "b")
        .await
        .unwrap();
    wait_owner(&s, "dev-a", None).await;
    wait_owner(&s, "dev-b", Some(&alice)).await;
    assert!(publish(
        &s,
        &a,
        "dev-a",
        "devices/dev-a/sensors/te",
        "{\"val\":103}"
    ));
    wait_ingested(&s, "dev-a", 103.0).await;
    assert!(publish(
        &s,
        &b,
        "dev-b",
        "devices/dev-b/sensors/hu",
        "{\"val\":104}"
    ));
    let seen = topics_until(&rx, "devices/dev-b/sensors/hu");
    assert!(
        !seen.contains(&"devices/dev-a/sensors/te".to_string()),
        "a released device's reading reached the integration: {seen:?}"
    );
    assert!(!publish(
        &s,
        &cmd,
        "ifttt-cmd",
        "devices/dev-a/commands",
        "{\"id\":\"z\"}"
    ));
    assert!(publish(
        &s,
        &cmd,
        "ifttt-cmd",
        "devices/dev-b/commands",
        "{\"id\":\"w\"}"
    ));

    let _ = sub.kill();
    let _ = sub.wait();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_bridge_resends_the_snapshot_and_the_node_forgets_released_devices() {
    let mut s = Stack::start(|_| {}).await;
    s.h.add_device("dev-r", DeviceKind::Remo).await;
    wait_owner(&s, "dev-r", Some(&s.h.user_id.clone())).await;
    // A bridge restart reconnects; the node hears the full snapshot again and
    // forgets a device that left while nobody was announcing.
    s.stop_bridge().await;
    s.h.client()
        .await
        .execute("UPDATE devices SET user_id = NULL WHERE id = 'dev-r'", &[])
        .await
        .unwrap();
    s.h.client()
        .await
        .execute("DELETE FROM device_ownership_log", &[])
        .await
        .unwrap();
    s.start_bridge().await;
    wait_owner(&s, "dev-r", None).await;
    s.stop().await;
}

/// Device ids the ownership log names after `after`, in order.
async fn logged_since(h: &crate::common::Harness, after: i64) -> Vec<String> {
    h.client()
        .await
        .query(
            "SELECT device_id FROM device_ownership_log WHERE seq > $1 ORDER BY seq",
            &[&after],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ownership_log_names_a_device_once_per_change_of_owner_in_commit_order() {
    let h = crate::common::start().await;
    let (bob, _) = h.other_user().await;
    let c = h.client().await;
    let start: i64 = c
        .query_one(
            "SELECT coalesce(max(seq), 0) FROM device_ownership_log",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // Unowned rows (bulk provisioning) are not ownership changes.
    c.execute("INSERT INTO devices (id) VALUES ('spare')", &[])
        .await
        .unwrap();
    h.add_device("d1", DeviceKind::Remo).await;
    // Registering again to the same owner changes nothing.
    h.add_device("d1", DeviceKind::Remo).await;
    let d1 = DeviceId::parse("d1").unwrap();
    kumo_bridge::register_device(&h.pool, &d1, &bob, DeviceKind::Remo, "d1")
        .await
        .unwrap();
    // Deleting a user releases its devices (ON DELETE SET NULL).
    c.execute("DELETE FROM users WHERE id = $1", &[&bob])
        .await
        .unwrap();
    c.execute(
        "UPDATE devices SET user_id = $1 WHERE id = 'spare'",
        &[&h.user_id],
    )
    .await
    .unwrap();
    c.execute("DELETE FROM devices WHERE id = 'spare'", &[])
        .await
        .unwrap();
    assert_eq!(
        logged_since(&h, start).await,
        ["d1", "d1", "d1", "spare", "spare"]
    );

    // A transaction's rows appear at its commit, after an earlier commit's.
    let mut late = h.pool.get().await.unwrap();
    let tx = late.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO devices (id, user_id) VALUES ('slow', $1)",
        &[&h.user_id],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO devices (id, user_id) VALUES ('fast', $1)",
        &[&h.user_id],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let tail = logged_since(&h, start).await;
    assert_eq!(tail[5..], ["fast", "slow"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integration_follows_the_home_owner_through_an_owner_transfer() {
    let s = Stack::start(|_| {}).await;
    let h = &s.h;
    h.add_device("dev-o", DeviceKind::Remo).await;
    wait_owner(&s, "dev-o", Some(&h.user_id.clone())).await;
    let scopes = [crate::common::ALL, &["home"]].concat();
    let alice = kumo_bridge::create_token(&h.pool, &h.user_id, &scopes, "home")
        .await
        .unwrap();
    let (bob_id, _) = h.other_user().await;
    let bob = kumo_bridge::create_token(&h.pool, &bob_id, &scopes, "home")
        .await
        .unwrap();
    let home = h.get_as(&alice, "/1/homes").await.ok()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let invite = h
        .post_as(&alice, &format!("/1/homes/{home}/invites"), &[])
        .await
        .ok();
    h.post_as(&bob, invite["url"].as_str().unwrap(), &[])
        .await
        .ok();
    // Nodes know one account per device, the home owner's (a member's
    // integration does not see it); handing the home over moves it.
    h.post_as(
        &alice,
        &format!("/1/homes/{home}/owner"),
        &[("user", &bob_id)],
    )
    .await
    .ok();
    wait_owner(&s, "dev-o", Some(&bob_id)).await;
    s.stop().await;
}
