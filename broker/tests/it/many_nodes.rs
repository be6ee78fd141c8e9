//! Three nodes of one cloud linked as peers: an integration connected to one
//! node sees and commands its account's devices on the others, exactly once,
//! and keeps doing so when a node dies and its devices move.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use crate::common::{doc, free_port, Client, Creds, Pki, TestNode, WAIT};
use kumo_contract::DeviceId;
use rumqttd::protocol::{Packet, QoS};

/// Nodes `node-0`…`node-{n-1}`, each peered with all others.
async fn cloud(pki: &Arc<Pki>, n: usize) -> Vec<TestNode> {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let mut nodes = Vec::new();
    for i in 0..n {
        let peer = pki.service(&format!("peer-node-{i}"));
        let peers = ports
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| format!("localhost:{p}"))
            .collect();
        let port = ports[i];
        nodes.push(
            TestNode::start_in(pki.clone(), |s| {
                s.node_id = format!("node-{i}");
                s.listen = format!("127.0.0.1:{port}").parse().unwrap();
                s.peers = peers;
                s.peer_cert = Some(peer.cert);
                s.peer_key = Some(peer.key);
            })
            .await,
        );
    }
    nodes
}

/// Tells every node who owns what, as the bridge does on each of them.
async fn announce(nodes: &[TestNode], owners: &[(&str, &str)]) {
    for node in nodes {
        let mut bridge = node.service(4).await;
        for (device, account) in owners {
            bridge
                .publish(
                    &format!("kumo/ownership/devices/{device}"),
                    account.as_bytes(),
                    false,
                )
                .await;
        }
        let ownership = node.node.as_ref().unwrap().ownership();
        for (device, account) in owners {
            let id = DeviceId::parse(*device).unwrap();
            let deadline = tokio::time::Instant::now() + WAIT;
            while ownership.owner_of(&id).map(|a| a.to_string()).as_deref() != Some(*account) {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "ownership of {device}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn connect(node: &TestNode, creds: &Creds, id: &str, v: u8) -> Client {
    let mut c = Client::open(node, creds, v).await;
    assert_eq!(c.connect(id, 30, None).await, 0, "{id}");
    c
}

/// Publishes readings from `dev` until `watcher` sees one (peer links
/// subscribe once the integration is there); returns the payloads sent.
async fn until_seen(dev: &mut Client, id: &str, watcher: &mut Client) {
    let topic = format!("devices/{id}/sensors/te");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        dev.publish(&topic, b"{\"val\":20.0}", false).await;
        if !watcher
            .no_publish_on(&topic, Duration::from_millis(200))
            .await
        {
            // Drain anything sent before the link subscribed.
            while !watcher
                .no_publish_on(&topic, Duration::from_millis(300))
                .await
            {}
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id}'s readings never crossed"
        );
    }
}

/// Collects the payloads of PUBLISHes on `topic` until nothing arrives for a while.
async fn collect(c: &mut Client, topic: &str) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while let Some(p) = c.recv_within(Duration::from_millis(500)).await {
        if let Packet::Publish(p, _) = p {
            if p.topic == topic.as_bytes() {
                got.push(p.payload.to_vec());
            }
        }
    }
    got
}

/// The readings of values `values`, as `collect` returns them.
fn readings(values: std::ops::Range<i32>) -> Vec<Vec<u8>> {
    values.map(|i| doc::reading(f64::from(i))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integration_on_one_node_sees_and_commands_its_devices_on_the_others_exactly_once() {
    let pki = Arc::new(Pki::new());
    let mut nodes = cloud(&pki, 3).await;
    announce(
        &nodes,
        &[
            ("dev-b", "acct-1"),
            ("dev-c", "acct-1"),
            ("dev-x", "acct-2"),
        ],
    )
    .await;

    let app_creds = pki.integration("app-1", "acct-1");
    let mut app = connect(&nodes[0], &app_creds, "app-1", 5).await;
    app.subscribe(&["devices/+/sensors/#", "devices/+/acks"], QoS::AtMostOnce)
        .await;
    // The bridge on node 0 reads node 0 only: it must never get imported copies.
    let mut bridge0 = nodes[0].service(4).await;
    bridge0
        .subscribe(&["devices/+/sensors/#"], QoS::AtMostOnce)
        .await;

    let b_creds = pki.device("dev-b");
    let c_creds = pki.device("dev-c");
    let mut dev_b = connect(&nodes[1], &b_creds, "dev-b", 4).await;
    let mut dev_c = connect(&nodes[2], &c_creds, "dev-c", 5).await;
    let mut dev_x = connect(&nodes[1], &pki.device("dev-x"), "dev-x", 4).await;
    dev_c
        .subscribe(&["devices/dev-c/commands"], QoS::AtLeastOnce)
        .await;
    until_seen(&mut dev_b, "dev-b", &mut app).await;
    until_seen(&mut dev_c, "dev-c", &mut app).await;
    assert!(
        bridge0
            .no_publish_on("devices/dev-b/sensors/te", Duration::from_millis(300))
            .await
    );

    // Readings from node 1 arrive once each, in order; another account's never.
    for i in 0..10 {
        let reading = doc::reading(f64::from(i));
        dev_b
            .publish("devices/dev-b/sensors/te", &reading, false)
            .await;
        dev_x
            .publish("devices/dev-x/sensors/te", &reading, false)
            .await;
    }
    let got = collect(&mut app, "devices/dev-b/sensors/te").await;
    assert_eq!(got, readings(0..10));
    assert!(
        app.no_publish_on("devices/dev-x/sensors/te", Duration::from_millis(300))
            .await
    );

    // A command from node 0 reaches the device on node 2 once; its ack comes back.
    app.publish("devices/dev-c/commands", b"{\"id\":\"c1\"}", false)
        .await;
    assert_eq!(
        dev_c
            .expect_publish("devices/dev-c/commands")
            .await
            .unwrap(),
        b"{\"id\":\"c1\"}"
    );
    assert!(
        dev_c
            .no_publish_on("devices/dev-c/commands", Duration::from_millis(500))
            .await
    );
    dev_c
        .publish("devices/dev-c/acks", &doc::ack("c1"), false)
        .await;
    assert!(app.expect_publish("devices/dev-c/acks").await.is_some());

    // Node 1 dies; dev-b moves to node 2 and goes on, seen once, commanded once.
    nodes[1].stop().await;
    assert!(dev_b.closed_within(Duration::from_secs(5)).await);
    let mut dev_b = connect(&nodes[2], &b_creds, "dev-b", 4).await;
    dev_b
        .subscribe(&["devices/dev-b/commands"], QoS::AtLeastOnce)
        .await;
    for i in 10..15 {
        dev_b
            .publish(
                "devices/dev-b/sensors/te",
                &doc::reading(f64::from(i)),
                false,
            )
            .await;
    }
    let got = collect(&mut app, "devices/dev-b/sensors/te").await;
    assert_eq!(got, readings(10..15));
    app.publish("devices/dev-b/commands", b"{\"id\":\"b1\"}", false)
        .await;
    assert_eq!(
        dev_b
            .expect_publish("devices/dev-b/commands")
            .await
            .unwrap(),
        b"{\"id\":\"b1\"}"
    );
    assert!(
        dev_b
            .no_publish_on("devices/dev-b/commands", Duration::from_millis(500))
            .await
    );
    // Another account's integration on node 0 cannot command dev-b anywhere.
    let mut other = connect(&nodes[0], &pki.integration("app-2", "acct-2"), "app-2", 5).await;
    other
        .publish("devices/dev-b/commands", b"{\"id\":\"evil\"}", false)
        .await;
    assert!(
        dev_b
            .no_publish_on("devices/dev-b/commands", Duration::from_millis(500))
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_published_where_its_device_is_connected_is_not_copied_to_the_peers() {
    let pki = Arc::new(Pki::new());
    let nodes = cloud(&pki, 3).await;
    let mut dev_a = connect(&nodes[0], &pki.device("dev-a"), "dev-a", 4).await;
    let mut dev_b = connect(&nodes[1], &pki.device("dev-b"), "dev-b", 5).await;
    for (dev, id) in [(&mut dev_a, "dev-a"), (&mut dev_b, "dev-b")] {
        dev.subscribe(&[&format!("devices/{id}/commands")], QoS::AtLeastOnce)
            .await;
    }
    let imported = |n: &TestNode| {
        n.node
            .as_ref()
            .unwrap()
            .metrics()
            .peer_imported
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    // The bridge publishes where the device is: the device gets each command
    // once and no peer imports a copy.
    let mut bridge = nodes[0].service(4).await;
    for i in 0..20u8 {
        bridge.publish("devices/dev-a/commands", &[i], false).await;
    }
    let got = collect(&mut dev_a, "devices/dev-a/commands").await;
    assert_eq!(got, (0..20u8).map(|i| vec![i]).collect::<Vec<_>>());
    assert_eq!((imported(&nodes[1]), imported(&nodes[2])), (0, 0));
    let skipped = nodes[0]
        .node
        .as_ref()
        .unwrap()
        .metrics()
        .peer_export_skipped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(skipped, 40, "20 commands not sent to each of 2 peers");
    // A device elsewhere still gets its command through the peer link.
    bridge.publish("devices/dev-b/commands", b"b1", false).await;
    assert_eq!(
        dev_b
            .expect_publish("devices/dev-b/commands")
            .await
            .unwrap(),
        b"b1"
    );
    assert_eq!(imported(&nodes[1]), 1);
}
