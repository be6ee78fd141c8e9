//! Third-party integrations scoped to an account by the ownership feed: the
//! service identity announces owners on `kumo/ownership/…` (as the bridge
//! does), integrations with real MQTT clients subscribe fleet-wide and see
//! only their account's devices.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::peers::{self, lines};
use crate::common::{doc, Client, TestNode, WAIT};
use kumo_contract::DeviceId;
use rumqttd::protocol::{Packet, QoS};

const LINE_WAIT: Duration = Duration::from_secs(10);

/// Announces `device`'s owner (empty: none) as the bridge would, and waits
/// until the node applied it.
async fn announce(node: &TestNode, service: &mut Client, device: &str, account: &str) {
    let topic = format!("kumo/ownership/devices/{device}");
    service.publish(&topic, account.as_bytes(), false).await;
    let id = DeviceId::parse(device).unwrap();
    let want = (!account.is_empty()).then(|| account.to_string());
    let ownership = node.node.as_ref().unwrap().ownership();
    let deadline = tokio::time::Instant::now() + WAIT;
    while ownership.owner_of(&id).map(|a| a.to_string()) != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ownership of {device} never became {account:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An MQTT 5 integration client of `account` named `name`.
async fn integration(node: &TestNode, name: &str, account: &str) -> Client {
    let creds = node.pki.integration(name, account);
    let mut c = Client::open(node, &creds, 5).await;
    assert_eq!(c.connect(name, 30, None).await, 0);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_sub_as_an_integration_sees_its_accounts_devices_and_none_of_another() {
    let node = TestNode::start().await;
    let mut service = node.service(5).await;
    service
        .subscribe(&["devices/+/state", "devices/+/sensors/+"], QoS::AtMostOnce)
        .await;
    announce(&node, &mut service, "dev-a", "acct-a").await;
    announce(&node, &mut service, "dev-b", "acct-b").await;
    let mut a = node.device("dev-a", 4).await;
    let mut b = node.device("dev-b", 4).await;
    a.publish("devices/dev-a/state", &doc::state("a"), true)
        .await;
    b.publish("devices/dev-b/state", &doc::state("b"), true)
        .await;
    // Both retained states are in the router (in either order).
    let mut states = BTreeSet::new();
    while states.len() < 2 {
        match service.recv().await {
            Some(Packet::Publish(p, _)) => states.insert(p.topic.to_vec()),
            Some(_) => false,
            None => panic!("the service never saw both states"),
        };
    }

    let creds = node.pki.integration("ifttt", "acct-a");
    let extra = ["-t", "devices/+/state", "-t", "devices/+/presence"];
    let mut child = peers::mosquitto_sub(
        &node,
        &creds,
        "ifttt",
        "mqttv311",
        "devices/+/sensors/#",
        &extra,
    );
    let rx = lines(&mut child);
    let mut seen = BTreeSet::new();
    let next_line = || {
        let line = tokio::task::block_in_place(|| rx.recv_timeout(LINE_WAIT))
            .expect("mosquitto_sub printed a line");
        let topic = line.split_once(' ').map_or(line.as_str(), |(t, _)| t);
        topic.to_string()
    };
    // The retained state says the subscription is live.
    while !seen.contains("devices/dev-a/state") {
        seen.insert(next_line());
    }
    b.publish("devices/dev-b/sensors/te", b"{\"val\":1}", false)
        .await;
    a.publish("devices/dev-a/sensors/te", b"{\"val\":2}", false)
        .await;
    // Once the service saw B's reading, anything the integration could get of it is
    // ahead of A's last reading in the same filter's log.
    assert!(service
        .expect_publish("devices/dev-b/sensors/te")
        .await
        .is_some());
    a.publish("devices/dev-a/sensors/hu", b"{\"val\":3}", false)
        .await;
    while !seen.contains("devices/dev-a/sensors/hu") {
        seen.insert(next_line());
    }
    let _ = child.kill();
    let want: BTreeSet<String> = [
        "devices/dev-a/presence",
        "devices/dev-a/state",
        "devices/dev-a/sensors/te",
        "devices/dev-a/sensors/hu",
    ]
    .map(String::from)
    .into();
    assert_eq!(seen, want);
    assert!(
        node.metrics
            .integration_filtered
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3,
        "B's presence, state and reading were withheld"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_pub_as_an_integration_commands_its_device_but_not_another_accounts() {
    let node = TestNode::start().await;
    let mut service = node.service(5).await;
    announce(&node, &mut service, "dev-a", "acct-a").await;
    announce(&node, &mut service, "dev-b", "acct-b").await;
    let mut a = node.device("dev-a", 5).await;
    a.subscribe(&["devices/dev-a/commands"], QoS::AtMostOnce)
        .await;
    let mut b = node.device("dev-b", 5).await;
    b.subscribe(&["devices/dev-b/commands"], QoS::AtMostOnce)
        .await;
    let creds = node.pki.integration("ifttt", "acct-a");

    // MQTT 3.1.1 has no negative PUBACK: the node closes the session.
    let sent = peers::mosquitto_pub(
        &node,
        &creds,
        "ifttt",
        "mqttv311",
        "devices/dev-b/commands",
        "{\"id\":\"x\"}",
        1,
    )
    .await;
    assert!(!sent, "a command to another account's device is refused");
    assert!(
        b.no_publish_on("devices/dev-b/commands", Duration::from_millis(300))
            .await
    );
    assert_eq!(node.metrics.denials_with("publish", "not_owned"), 1);

    for version in ["mqttv311", "mqttv5"] {
        let ok = peers::mosquitto_pub(
            &node,
            &creds,
            "ifttt",
            version,
            "devices/dev-a/commands",
            "{\"id\":\"c-1\"}",
            1,
        )
        .await;
        assert!(ok, "mosquitto_pub {version}");
        assert_eq!(
            a.expect_publish("devices/dev-a/commands").await.unwrap(),
            b"{\"id\":\"c-1\"}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_changes_apply_to_the_next_message_without_reconnecting() {
    let node = TestNode::start().await;
    let mut service = node.service(5).await;
    announce(&node, &mut service, "dev-a", "acct-a").await;
    announce(&node, &mut service, "dev-b", "acct-b").await;
    let mut a = node.device("dev-a", 4).await;
    let mut b = node.device("dev-b", 4).await;
    let mut app = integration(&node, "app", "acct-a").await;
    assert_eq!(
        app.subscribe(&["devices/+/sensors/+"], QoS::AtMostOnce)
            .await,
        vec![0]
    );
    a.publish("devices/dev-a/sensors/te", &doc::reading(1.0), false)
        .await;
    assert_eq!(
        app.expect_publish("devices/dev-a/sensors/te")
            .await
            .unwrap(),
        doc::reading(1.0)
    );

    // dev-a released, dev-b moved to account A.
    announce(&node, &mut service, "dev-a", "").await;
    announce(&node, &mut service, "dev-b", "acct-a").await;
    a.publish("devices/dev-a/sensors/te", &doc::reading(2.0), false)
        .await;
    b.publish("devices/dev-b/sensors/te", &doc::reading(3.0), false)
        .await;
    assert_eq!(
        app.expect_publish("devices/dev-b/sensors/te")
            .await
            .unwrap(),
        doc::reading(3.0)
    );
    assert!(
        app.no_publish_on("devices/dev-a/sensors/te", Duration::from_millis(300))
            .await
    );
    // Commands follow too: dev-b is now the integration's, dev-a is nobody's.
    assert_eq!(
        app.publish_qos1("devices/dev-b/commands", b"on").await,
        Some(0)
    );
    assert_eq!(
        app.publish_qos1("devices/dev-a/commands", b"on").await,
        Some(0x87)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_forgets_devices_the_bridge_no_longer_announces() {
    let node = TestNode::start().await;
    let mut service = node.service(5).await;
    announce(&node, &mut service, "stale", "acct-a").await;
    announce(&node, &mut service, "kept", "acct-a").await;
    service
        .publish("kumo/ownership/snapshot/begin", b"s1", false)
        .await;
    announce(&node, &mut service, "kept", "acct-a").await;
    service
        .publish("kumo/ownership/snapshot/end", b"s1", false)
        .await;
    let ownership = node.node.as_ref().unwrap().ownership();
    let stale = DeviceId::parse("stale").unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while ownership.owner_of(&stale).is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stale never forgotten"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ownership.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_announce_ownership() {
    let node = TestNode::start().await;
    let mut v5 = node.device("dev-d", 5).await;
    assert_eq!(
        v5.publish_qos1("kumo/ownership/devices/dev-d", b"acct-evil")
            .await,
        Some(0x87)
    );
    let mut v4 = node.device("dev-e", 4).await;
    v4.publish("kumo/ownership/snapshot/begin", b"x", false)
        .await;
    assert!(v4.closed_within(WAIT).await);
    assert_eq!(
        v5.subscribe(&["kumo/ownership/#"], QoS::AtMostOnce).await,
        vec![0x87]
    );
    let ownership = node.node.as_ref().unwrap().ownership();
    assert!(ownership.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integration_cannot_subscribe_to_everything_internal_topics_or_commands() {
    let node = TestNode::start().await;
    let mut app = integration(&node, "app", "acct-a").await;
    let codes = app
        .subscribe(
            &[
                "#",
                "kumo/#",
                "kumo/ownership/+",
                "$SYS/#",
                "devices/+/commands",
                "devices/#",
            ],
            QoS::AtMostOnce,
        )
        .await;
    assert_eq!(codes, vec![0x87; 6]);
    assert_eq!(
        app.publish_qos1("kumo/ownership/devices/x", b"acct-a")
            .await,
        Some(0x87)
    );
    // mosquitto_sub with the integration's certificate is refused the same way.
    let creds = node.pki.integration("nosy", "acct-a");
    let mut child = peers::mosquitto_sub(&node, &creds, "nosy", "mqttv5", "#", &["-W", "3"]);
    let err = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let _ = child.wait();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        err.to_lowercase()
    })
    .await
    .unwrap();
    assert!(
        err.contains("denied") || err.contains("not authorized"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_integration_session_queues_only_its_accounts_devices() {
    let node = TestNode::start_with(|s| s.session_queue = 3).await;
    let mut service = node.service(5).await;
    announce(&node, &mut service, "dev-a", "acct-a").await;
    announce(&node, &mut service, "dev-b", "acct-b").await;
    let creds = node.pki.integration("app", "acct-a");
    let mut app = Client::open(&node, &creds, 4).await;
    assert_eq!(app.connect_session("app", false).await, (false, 0));
    app.subscribe(&["devices/+/sensors/+"], QoS::AtLeastOnce)
        .await;
    drop(app);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // While the integration is away, another account's device floods the
    // fleet stream; its own device's readings must not be pushed out.
    let mut a = node.device("dev-a", 4).await;
    let mut b = node.device("dev-b", 4).await;
    // A's readings are 0 and 1, B's 100 to 104.
    for i in 0..2 {
        a.publish_qos1("devices/dev-a/sensors/te", &doc::reading(f64::from(i)))
            .await;
    }
    for i in 100..105 {
        b.publish_qos1("devices/dev-b/sensors/te", &doc::reading(f64::from(i)))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut app = Client::open(&node, &creds, 4).await;
    assert_eq!(app.connect_session("app", false).await, (true, 0));
    let mut got = Vec::new();
    while let Some(p) = app.recv_within(Duration::from_millis(500)).await {
        if let Packet::Publish(p, _) = p {
            got.push(p.payload.to_vec());
        }
    }
    assert_eq!(got, vec![doc::reading(0.0), doc::reading(1.0)]);
}
