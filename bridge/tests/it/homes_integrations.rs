//! A home member's third-party integration (MQTT, its own account's
//! certificate) sees and commands the home's devices like the member does
//! over REST, from joining on — and nothing of them once kicked: the kick
//! answers only after the broker node applied it. Real mosquitto clients as
//! the integration and the devices, against a real node and bridge.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kumo_bridge::DeviceKind;
use kumo_broker::AccountDevices;
use kumo_contract::{AccountId, DeviceId};

use crate::homes_support::token;
use crate::integrations::{publish, subscribe, topics_until, wait_ingested};
use crate::stack::Stack;

/// Polls until node 0 lets `account`'s integrations reach `device` (or not).
async fn wait_sees(s: &Stack, account: &str, device: &str, sees: bool) {
    let ownership = s.nodes[0].ownership();
    let (account, device) = (
        AccountId::parse(account).unwrap(),
        DeviceId::parse(device).unwrap(),
    );
    for _ in 0..500 {
        if ownership.owns(&account, &device) == sees {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the node never changed whether {account} sees {device}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_integration_sees_the_homes_devices_until_the_member_is_kicked() {
    // The announcer reads the log rarely here: only the kick's own wait for
    // the node can make it apply the change in time.
    let s = Stack::start(|b| b.mqtt.ownership_poll_ms = 3_000).await;
    let alice = token(&s.h, &s.h.user_id).await;
    let (bob_id, _) = s.h.other_user().await;
    let bob = token(&s.h, &bob_id).await;
    s.h.add_device("dev-a", DeviceKind::Remo).await;
    let dev_b = DeviceId::parse("dev-b").unwrap();
    kumo_bridge::register_device(&s.h.pool, &dev_b, &bob_id, DeviceKind::Remo, "b")
        .await
        .unwrap();
    let a = s
        .pki
        .issue_device(&DeviceId::parse("dev-a").unwrap())
        .unwrap();
    let b = s.pki.issue_device(&dev_b).unwrap();
    let account = AccountId::parse(bob_id.clone()).unwrap();
    let app = s.pki.issue_integration("bobs-app", &account).unwrap();
    let cmd = s.pki.issue_integration("bobs-cmd", &account).unwrap();
    wait_sees(&s, &bob_id, "dev-b", true).await;

    let (mut sub, rx) = subscribe(&s, &app, "bobs-app", &["devices/+/sensors/#"]);
    let mut live = false;
    for i in 0..50 {
        assert!(publish(
            &s,
            &b,
            "dev-b",
            "devices/dev-b/sensors/il",
            &format!("{{\"val\":{i}}}")
        ));
        if tokio::task::block_in_place(|| rx.recv_timeout(Duration::from_millis(200))).is_ok() {
            live = true;
            break;
        }
    }
    assert!(live, "the integration's subscription never delivered");

    // Not a member yet: Alice's device is not Bob's integration's business.
    assert!(publish(
        &s,
        &a,
        "dev-a",
        "devices/dev-a/sensors/te",
        "{\"val\":201}"
    ));
    wait_ingested(&s, "dev-a", 201.0).await;
    assert!(publish(
        &s,
        &b,
        "dev-b",
        "devices/dev-b/sensors/hu",
        "{\"val\":202}"
    ));
    let seen = topics_until(&rx, "devices/dev-b/sensors/hu");
    assert!(
        seen.iter().all(|t| t.starts_with("devices/dev-b/")),
        "{seen:?}"
    );
    assert!(!publish(
        &s,
        &cmd,
        "bobs-cmd",
        "devices/dev-a/commands",
        "{\"id\":\"x\"}"
    ));

    // Bob joins Alice's home: his integration sees and commands dev-a, as he
    // does over REST — without reconnecting.
    let homes = s.h.get_as(&alice, "/1/homes").await.ok();
    let home = homes[0]["id"].as_str().unwrap().to_string();
    let invite =
        s.h.post_as(&alice, &format!("/1/homes/{home}/invites"), &[])
            .await
            .ok();
    let url = invite["url"].as_str().unwrap().to_string();
    s.h.post_as(&bob, &url, &[]).await.ok();
    wait_sees(&s, &bob_id, "dev-a", true).await;
    assert!(publish(
        &s,
        &a,
        "dev-a",
        "devices/dev-a/sensors/te",
        "{\"val\":203}"
    ));
    let seen = topics_until(&rx, "devices/dev-a/sensors/te");
    assert_eq!(seen.last().unwrap(), "devices/dev-a/sensors/te");
    assert!(publish(
        &s,
        &cmd,
        "bobs-cmd",
        "devices/dev-a/commands",
        "{\"id\":\"y\"}"
    ));
    let owner = s.nodes[0]
        .ownership()
        .owner_of(&DeviceId::parse("dev-a").unwrap());
    assert_eq!(owner.unwrap().as_str(), s.h.user_id, "Alice still owns it");

    // Kicked: once the answer is in, the node already keeps dev-a from Bob's
    // integration — no polling here.
    s.h.post_as(
        &alice,
        &format!("/1/homes/{home}/kick"),
        &[("user", &bob_id)],
    )
    .await
    .ok();
    let ownership = s.nodes[0].ownership();
    let dev_a = DeviceId::parse("dev-a").unwrap();
    assert!(
        !ownership.owns(&account, &dev_a),
        "the kick answered before the node applied it"
    );
    assert!(publish(
        &s,
        &a,
        "dev-a",
        "devices/dev-a/sensors/te",
        "{\"val\":204}"
    ));
    wait_ingested(&s, "dev-a", 204.0).await;
    assert!(publish(
        &s,
        &b,
        "dev-b",
        "devices/dev-b/sensors/hu",
        "{\"val\":205}"
    ));
    let seen = topics_until(&rx, "devices/dev-b/sensors/hu");
    assert!(
        seen.iter().all(|t| t.starts_with("devices/dev-b/")),
        "a kicked member's integration got the home's data: {seen:?}"
    );
    assert!(!publish(
        &s,
        &cmd,
        "bobs-cmd",
        "devices/dev-a/commands",
        "{\"id\":\"z\"}"
    ));
    assert!(
        ownership.owns(&account, &dev_b.clone()),
        "his own device stays his"
    );

    let _ = sub.kill();
    let _ = sub.wait();
    s.stop().await;
}
