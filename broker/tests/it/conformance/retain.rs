//! Retained messages: storing, replacing, removing, RETAIN on delivery, and
//! MQTT 5 Retain Handling / Retain As Published.

use super::raw::Publish;
use super::{conformance, mosquitto_deviates, Target};

conformance! {
    mqtt_3_3_1_6_a_new_subscription_gets_the_retained_message_with_retain_1 => retained_on_subscribe;
    mqtt_3_3_1_9_a_live_message_reaches_existing_subscribers_with_retain_0 => live_without_retain;
    mqtt_3_3_1_10_an_empty_retained_publish_removes_the_retained_message => empty_retained_removes;
    mqtt_3_3_1_12_a_retain_0_publish_neither_stores_nor_removes => retain_0_leaves_it;
    mqtt_3_8_4_3_subscribing_again_to_the_same_filter_resends_retained_messages => resubscribe_resends_v4;
    v5_3_8_3_1_retain_handling_0_sends_retained_messages_on_every_subscribe => handling_0;
    v5_3_8_3_1_retain_handling_1_sends_them_only_for_a_new_subscription => handling_1;
    v5_3_8_3_1_retain_handling_2_never_sends_them => handling_2;
    v5_3_8_3_1_retain_as_published_keeps_the_flag_on_live_messages => retain_as_published;
    mqtt_3_3_1_5_a_retained_message_goes_out_at_the_lower_of_its_and_the_granted_qos => retained_qos;
    mqtt_3_3_1_5_a_new_retained_message_replaces_the_old_one => retained_replaced;
}

// Mosquitto 2.0.11 sends retained messages when a shared subscription is made.
mosquitto_deviates! {
    v5_4_8_2_a_shared_subscription_gets_no_retained_messages => shared_no_retained;
}

async fn retained(t: &Target, name: &str, topic: &str, payload: &[u8], qos: u8) {
    // A witness subscribed before the publish: once the message reaches it live,
    // the server has routed it. A PUBACK (or a PINGRESP after QoS 0) only says
    // it was accepted; a subscriber that came right after could still get it
    // live as well, from the server's pipeline — not what these tests are about.
    let mut witness = t.client(&format!("{name}-w"), 5).await;
    witness.subscribe(&[(topic, 0)]).await;
    let mut p = t.client(name, 5).await;
    p.publish(topic, payload, qos, true).await;
    assert!(p.ping().await);
    loop {
        let m = witness.expect_publish().await;
        if !m.retain && m.payload == payload {
            break;
        }
    }
}

async fn one(sub: &mut super::raw::Raw) -> Publish {
    let m = sub.expect_publish().await;
    sub.ack_publish(&m).await;
    m
}

async fn retained_on_subscribe(t: &Target) {
    retained(t, "conf-r1-p", "conf/r1/a", b"kept", 1).await;
    for v in [4, 5] {
        let mut sub = t.client(&format!("conf-r1-s{v}"), v).await;
        sub.subscribe(&[("conf/r1/+", 1)]).await;
        let m = one(&mut sub).await;
        assert_eq!(
            (m.topic.as_str(), &m.payload[..], m.retain),
            ("conf/r1/a", &b"kept"[..], true)
        );
    }
}

async fn live_without_retain(t: &Target) {
    for v in [4, 5] {
        let mut sub = t.client(&format!("conf-r2-s{v}"), v).await;
        sub.subscribe(&[(&format!("conf/r2/{v}"), 1)]).await;
        retained(
            t,
            &format!("conf-r2-p{v}"),
            &format!("conf/r2/{v}"),
            b"live",
            1,
        )
        .await;
        let m = one(&mut sub).await;
        assert!(!m.retain, "v{v}: a live message arrived with RETAIN=1");
    }
}

async fn empty_retained_removes(t: &Target) {
    retained(t, "conf-r3-p", "conf/r3", b"old", 1).await;
    let mut live = t.client("conf-r3-live", 5).await;
    live.subscribe(&[("conf/r3", 1)]).await;
    assert_eq!(one(&mut live).await.payload, b"old");
    retained(t, "conf-r3-p", "conf/r3", b"", 1).await;
    // MQTT-3.3.1-10: processed as normal and sent to current subscribers …
    let m = one(&mut live).await;
    assert!(m.payload.is_empty());
    // … and MQTT-3.3.1-11: not stored, the old one gone.
    let mut late = t.client("conf-r3-late", 5).await;
    late.subscribe(&[("conf/r3", 1)]).await;
    assert!(late.quiet().await);
}

async fn retain_0_leaves_it(t: &Target) {
    retained(t, "conf-r4-p", "conf/r4", b"kept", 1).await;
    let mut p = t.client("conf-r4-p2", 5).await;
    p.publish("conf/r4", b"", 1, false).await;
    p.publish("conf/r4", b"not retained", 1, false).await;
    let mut late = t.client("conf-r4-late", 5).await;
    late.subscribe(&[("conf/r4", 1)]).await;
    let m = one(&mut late).await;
    assert_eq!((&m.payload[..], m.retain), (&b"kept"[..], true));
    // Nothing else retained. A live copy of the later publishes may still
    // come when the subscription overtook them on their way through the
    // node (the PUBACK is not the delivery), but never flagged as retained.
    while let Some(m) = late.publish_within(super::raw::QUIET).await {
        late.ack_publish(&m).await;
        assert!(!m.retain, "only one retained message: {m:?}");
    }
}

async fn resubscribe_resends_v4(t: &Target) {
    retained(t, "conf-r5-p", "conf/r5", b"kept", 1).await;
    let mut sub = t.client("conf-r5-s", 4).await;
    sub.subscribe(&[("conf/r5", 1)]).await;
    assert!(one(&mut sub).await.retain);
    sub.subscribe(&[("conf/r5", 1)]).await;
    let again = one(&mut sub).await;
    assert_eq!((&again.payload[..], again.retain), (&b"kept"[..], true));
}

async fn handling(t: &Target, rh: u8, tag: &str) -> (usize, usize) {
    let topic = format!("conf/rh{tag}");
    retained(t, &format!("conf-rh{tag}-p"), &topic, b"kept", 1).await;
    let mut sub = t.client(&format!("conf-rh{tag}-s"), 5).await;
    let mut counts = Vec::new();
    for _ in 0..2 {
        sub.subscribe(&[(&topic, 1 | (rh << 4))]).await;
        let mut n = 0;
        while let Some(m) = sub.publish_within(super::raw::QUIET).await {
            sub.ack_publish(&m).await;
            assert!(m.retain);
            n += 1;
        }
        counts.push(n);
    }
    (counts[0], counts[1])
}

async fn handling_0(t: &Target) {
    assert_eq!(handling(t, 0, "0").await, (1, 1));
}

async fn handling_1(t: &Target) {
    assert_eq!(handling(t, 1, "1").await, (1, 0));
}

async fn handling_2(t: &Target) {
    assert_eq!(handling(t, 2, "2").await, (0, 0));
}

async fn retain_as_published(t: &Target) {
    let mut rap = t.client("conf-rap-s", 5).await;
    rap.subscribe(&[("conf/rap", 1 | 0x08)]).await;
    let mut plain = t.client("conf-rap-plain", 5).await;
    plain.subscribe(&[("conf/rap", 1)]).await;
    retained(t, "conf-rap-p", "conf/rap", b"r", 1).await;
    assert!(one(&mut rap).await.retain);
    assert!(!one(&mut plain).await.retain);
    let mut p = t.client("conf-rap-p2", 5).await;
    p.publish("conf/rap", b"not", 1, false).await;
    assert!(!one(&mut rap).await.retain);
}

async fn shared_no_retained(t: &Target) {
    retained(t, "conf-share-p", "conf/share", b"kept", 1).await;
    let mut sub = t.client("conf-share-s", 5).await;
    sub.subscribe(&[("$share/g/conf/share", 1)]).await;
    assert!(sub.quiet().await);
    let mut p = t.client("conf-share-p2", 5).await;
    p.publish("conf/share", b"live", 1, false).await;
    assert_eq!(one(&mut sub).await.payload, b"live");
}

async fn retained_qos(t: &Target) {
    retained(t, "conf-rq-p0", "conf/rq/0", b"q0", 0).await;
    retained(t, "conf-rq-p1", "conf/rq/1", b"q1", 1).await;
    let mut sub = t.client("conf-rq-s", 5).await;
    sub.subscribe(&[("conf/rq/0", 1)]).await;
    assert_eq!(one(&mut sub).await.qos, 0);
    sub.subscribe(&[("conf/rq/1", 0)]).await;
    assert_eq!(one(&mut sub).await.qos, 0);
}

async fn retained_replaced(t: &Target) {
    // MQTT-3.3.1-5: the Server "MUST store the Application Message and its QoS,
    // so that it can be delivered to future subscribers"; a new one replaces
    // any existing retained message for that topic.
    retained(t, "conf-r6-p", "conf/r6", b"one", 1).await;
    retained(t, "conf-r6-p", "conf/r6", b"two", 1).await;
    for v in [4, 5] {
        let mut late = t.client(&format!("conf-r6-late{v}"), v).await;
        late.subscribe(&[("conf/r6", 1)]).await;
        let m = one(&mut late).await;
        assert_eq!((&m.payload[..], m.retain), (&b"two"[..], true), "v{v}");
        assert!(late.quiet().await, "v{v}");
    }
}
