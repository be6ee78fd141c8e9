//! MQTT 5 Message Expiry Interval: queued and retained messages expire, and a
//! forwarded message carries what is left of its interval.

use std::time::Duration;

use super::raw::{self, Props, Val};
use super::{conformance, session_present, Target};

conformance! {
    v5_3_3_2_3_3_a_queued_message_whose_interval_passed_is_not_delivered => queued_expires;
    v5_3_3_2_3_3_a_forwarded_message_carries_the_remaining_interval => remaining_interval;
    v5_3_3_2_3_3_an_expired_retained_message_is_not_sent => retained_expires;
}

fn expiring(secs: u32) -> Props {
    Props::default().with(raw::MESSAGE_EXPIRY, Val::U32(secs))
}

fn session(secs: u32) -> Props {
    Props::default().with(raw::SESSION_EXPIRY, Val::U32(secs))
}

/// A session subscribed to `topic` and then away.
async fn away(t: &Target, name: &str, topic: &str) {
    let (mut c, _) = t.reconnect(name, 5, true, &session(300)).await;
    c.subscribe(&[(topic, 1)]).await;
    c.disconnect().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
}

async fn queued_expires(t: &Target) {
    away(t, "conf-mx-q", "conf/mx/q/#").await;
    let mut p = t.client("conf-mx-q-pub", 5).await;
    p.publish_with("conf/mx/q/short", b"stale", 1, false, &expiring(1))
        .await;
    p.publish_with("conf/mx/q/long", b"fresh", 1, false, &expiring(100))
        .await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (mut c, ack) = t.reconnect("conf-mx-q", 5, false, &session(300)).await;
    assert!(session_present(&ack));
    let m = c.expect_publish().await;
    assert_eq!(m.payload, b"fresh");
    c.ack_publish(&m).await;
    assert!(c.quiet().await, "the expired message was delivered");
}

async fn remaining_interval(t: &Target) {
    away(t, "conf-mx-r", "conf/mx/r").await;
    let mut p = t.client("conf-mx-r-pub", 5).await;
    p.publish_with("conf/mx/r", b"x", 1, false, &expiring(10))
        .await;
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let (mut c, _) = t.reconnect("conf-mx-r", 5, false, &session(300)).await;
    let m = c.expect_publish().await;
    let left = m
        .props
        .num(raw::MESSAGE_EXPIRY)
        .expect("Message Expiry Interval");
    assert!(
        (1..=8).contains(&left),
        "{left} s left after waiting 2.2 s of 10"
    );
}

async fn retained_expires(t: &Target) {
    let mut p = t.client("conf-mx-ret-pub", 5).await;
    p.publish_with("conf/mx/ret", b"soon gone", 1, true, &expiring(1))
        .await;
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let mut late = t.client("conf-mx-ret-late", 5).await;
    late.subscribe(&[("conf/mx/ret", 1)]).await;
    assert!(late.quiet().await);
}
