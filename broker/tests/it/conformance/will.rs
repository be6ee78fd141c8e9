//! Last wills: when they are sent, when not, and the MQTT 5 Will Delay Interval.

use std::time::Duration;

use super::raw::{self, Props, Val, Will};
use super::{code, conformance, Target};

conformance! {
    mqtt_3_1_2_8_the_will_is_published_when_the_connection_is_lost => on_loss;
    mqtt_3_1_2_10_a_normal_disconnect_deletes_the_will => not_on_disconnect;
    v5_3_14_2_1_disconnect_with_will_message_0x04_publishes_it => disconnect_with_will;
    v5_3_1_3_2_2_the_will_waits_for_its_delay => delayed;
    v5_3_1_3_2_2_a_reconnect_within_the_delay_cancels_the_will => cancelled;
    v5_3_1_3_2_2_the_will_goes_when_the_session_ends_before_the_delay => session_end_first;
    mqtt_3_1_2_17_a_will_with_retain_1_is_retained => retained_will;
    v5_3_1_3_2_8_will_properties_reach_the_subscriber_with_user_properties_in_order => will_properties;
}

async fn watcher(t: &Target, topic: &str) -> raw::Raw {
    let mut w = t.client(&format!("{}-w", topic.replace('/', "-")), 5).await;
    w.subscribe(&[(topic, 1)]).await;
    w
}

/// Connects `name` (MQTT `v`) with a will on `topic`.
async fn with_will(
    t: &Target,
    name: &str,
    v: u8,
    topic: &str,
    props: Props,
    session: Props,
    retain: bool,
) -> raw::Raw {
    let mut c = t.open(name, v).await;
    let will = Will {
        topic,
        payload: b"gone",
        qos: 1,
        retain,
        props,
    };
    let ack = c.connect(name, true, 60, &session, Some(&will)).await;
    assert_eq!(code(&ack), 0, "{ack:?}");
    c
}

fn delay(secs: u32) -> Props {
    Props::default().with(raw::WILL_DELAY, Val::U32(secs))
}

fn expiry(secs: u32) -> Props {
    Props::default().with(raw::SESSION_EXPIRY, Val::U32(secs))
}

async fn on_loss(t: &Target) {
    for v in [4, 5] {
        let topic = format!("conf/will/loss{v}");
        let mut w = watcher(t, &topic).await;
        let c = with_will(
            t,
            &format!("conf-wl{v}"),
            v,
            &topic,
            Props::default(),
            Props::default(),
            false,
        )
        .await;
        drop(c);
        let m = w.expect_publish().await;
        assert_eq!(
            (m.topic.as_str(), &m.payload[..]),
            (topic.as_str(), &b"gone"[..])
        );
    }
}

async fn not_on_disconnect(t: &Target) {
    for v in [4, 5] {
        let topic = format!("conf/will/bye{v}");
        let mut w = watcher(t, &topic).await;
        let mut c = with_will(
            t,
            &format!("conf-wb{v}"),
            v,
            &topic,
            Props::default(),
            Props::default(),
            false,
        )
        .await;
        c.disconnect().await;
        drop(c);
        assert!(w.quiet().await, "v{v}");
    }
}

async fn disconnect_with_will(t: &Target) {
    let mut w = watcher(t, "conf/will/x04").await;
    let mut c = with_will(
        t,
        "conf-wx",
        5,
        "conf/will/x04",
        Props::default(),
        Props::default(),
        false,
    )
    .await;
    c.send(&raw::disconnect(5, 0x04, &Props::default())).await;
    assert_eq!(w.expect_publish().await.payload, b"gone");
}

async fn delayed(t: &Target) {
    let mut w = watcher(t, "conf/will/delay").await;
    let c = with_will(
        t,
        "conf-wd",
        5,
        "conf/will/delay",
        delay(2),
        expiry(10),
        false,
    )
    .await;
    let lost = std::time::Instant::now();
    drop(c);
    let m = w
        .publish_within(Duration::from_secs(5))
        .await
        .expect("the will");
    let waited = lost.elapsed();
    assert_eq!(m.payload, b"gone");
    assert!(
        waited >= Duration::from_millis(1_800),
        "sent after {waited:?}"
    );
}

async fn cancelled(t: &Target) {
    let mut w = watcher(t, "conf/will/cancel").await;
    let c = with_will(
        t,
        "conf-wc",
        5,
        "conf/will/cancel",
        delay(2),
        expiry(10),
        false,
    )
    .await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_back, ack) = t.reconnect("conf-wc", 5, false, &expiry(10)).await;
    assert_eq!(code(&ack), 0);
    w.no_publish(Duration::from_secs(3)).await;
}

async fn session_end_first(t: &Target) {
    let mut w = watcher(t, "conf/will/end").await;
    let c = with_will(
        t,
        "conf-we",
        5,
        "conf/will/end",
        delay(30),
        expiry(1),
        false,
    )
    .await;
    drop(c);
    let m = w.publish_within(Duration::from_secs(4)).await;
    assert!(
        m.is_some(),
        "the session ended after 1 s; its will did not go"
    );
}

async fn retained_will(t: &Target) {
    let c = with_will(
        t,
        "conf-wr",
        4,
        "conf/will/kept",
        Props::default(),
        Props::default(),
        true,
    )
    .await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut late = t.client("conf-wr-late", 4).await;
    late.subscribe(&[("conf/will/kept", 1)]).await;
    let m = late.expect_publish().await;
    assert_eq!((&m.payload[..], m.retain), (&b"gone"[..], true));
}

async fn will_properties(t: &Target) {
    // §3.1.3.2: the Will Properties are sent with the Will Message;
    // MQTT-3.1.3-10: "The Server MUST maintain the order of User Properties
    // when publishing the Will Message."
    let mut w = watcher(t, "conf/will/props").await;
    let props = Props::default()
        .with(raw::PAYLOAD_FORMAT, Val::Byte(1))
        .with(raw::CONTENT_TYPE, Val::Str("text/plain".into()))
        .with(raw::RESPONSE_TOPIC, Val::Str("conf/will/reply".into()))
        .with(raw::CORRELATION_DATA, Val::Bin(vec![9, 8, 7]))
        .with(raw::USER_PROPERTY, Val::Pair("z".into(), "1".into()))
        .with(raw::USER_PROPERTY, Val::Pair("a".into(), "2".into()))
        .with(raw::USER_PROPERTY, Val::Pair("z".into(), "3".into()));
    let c = with_will(
        t,
        "conf-wp",
        5,
        "conf/will/props",
        props.clone(),
        Props::default(),
        false,
    )
    .await;
    drop(c);
    let m = w.expect_publish().await;
    assert_eq!(m.payload, b"gone");
    for id in [
        raw::PAYLOAD_FORMAT,
        raw::CONTENT_TYPE,
        raw::RESPONSE_TOPIC,
        raw::CORRELATION_DATA,
    ] {
        assert_eq!(m.props.get(id), props.get(id), "property {id:#04x}");
    }
    assert_eq!(m.props.user(), props.user());
}
