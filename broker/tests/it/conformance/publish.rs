//! PUBLISH and its QoS flows: delivered QoS, the QoS 2 exchange towards a
//! subscriber, redelivery on resume, order, and MQTT 5 properties.

use std::time::Duration;

use super::raw::{self, Packet, Props, Val};
use super::{conformance, kumo_only, session_present, Target};

conformance! {
    mqtt_3_8_4_8_the_delivered_qos_is_the_lower_of_published_and_granted_in_3_1_1 => delivered_qos_v4;
    v5_3_8_4_the_delivered_qos_is_the_lower_of_published_and_granted => delivered_qos_v5;
    mqtt_4_3_3_a_qos_2_message_reaches_a_qos_2_subscriber_with_the_four_packet_exchange => qos2_to_subscriber;
    mqtt_4_4_0_1_an_unacknowledged_message_is_sent_again_with_dup_and_its_packet_id_on_resume => redelivery_on_resume;
    mqtt_4_6_0_2_messages_from_one_publisher_arrive_in_order => ordered;
    v5_3_3_2_3_publish_properties_reach_the_subscriber_intact => properties_intact;
    mqtt_3_3_4_1_a_qos_1_publish_is_answered_with_puback_and_a_qos_2_one_with_pubrec => acks_to_publisher;
    v5_4_4_0_1_an_unacknowledged_message_is_sent_again_with_dup_and_its_packet_id_on_resume => redelivery_on_resume_v5;
    mqtt_4_4_0_1_an_unanswered_pubrel_is_sent_again_on_resume => pubrel_on_resume;
    mqtt_4_3_3_2_a_qos_2_publish_sent_again_before_pubrel_is_delivered_once => qos2_resent_once;
}

// Devices subscribe only to their own commands (Kumo's ACL): the same rules
// on the device path, where commands come through the node's demultiplexer.
kumo_only! {
    kumo_a_device_gets_its_commands_by_the_same_qos_and_retain_rules => device_path;
}

async fn delivered(t: &Target, v: u8, granted: u8, published: u8, tag: &str) -> u8 {
    let mut sub = t.client(&format!("conf-dq-s{v}{tag}"), v).await;
    let topic = format!("conf/dq/{v}/{tag}");
    assert_eq!(sub.subscribe(&[(&topic, granted)]).await, [granted]);
    let mut p = t.client(&format!("conf-dq-p{v}{tag}"), v).await;
    p.publish(&topic, b"x", published, false).await;
    let m = sub.expect_publish().await;
    sub.ack_publish(&m).await;
    m.qos
}

async fn delivered_qos(t: &Target, v: u8) {
    for (granted, published) in [(1, 0), (2, 0), (0, 1), (2, 1), (0, 2), (1, 2), (2, 2)] {
        let tag = format!("{granted}{published}");
        let got = delivered(t, v, granted, published, &tag).await;
        assert_eq!(
            got,
            granted.min(published),
            "v{v} granted {granted}, published {published}"
        );
    }
}

async fn delivered_qos_v4(t: &Target) {
    delivered_qos(t, 4).await;
}

async fn delivered_qos_v5(t: &Target) {
    delivered_qos(t, 5).await;
}

async fn qos2_to_subscriber(t: &Target) {
    for v in [4, 5] {
        let mut sub = t.client(&format!("conf-q2-s{v}"), v).await;
        sub.subscribe(&[("conf/q2", 2)]).await;
        let mut p = t.client(&format!("conf-q2-p{v}"), v).await;
        p.publish("conf/q2", b"once", 2, false).await;
        let m = sub.expect_publish().await;
        assert_eq!((m.qos, m.dup), (2, false));
        // PUBREC → PUBREL (flags 0b0010) → PUBCOMP; then nothing more.
        sub.ack_publish(&m).await;
        assert!(sub.quiet().await, "v{v}: the message came twice");
    }
}

/// A session that survives the connection: 3.1.1 CleanSession=0, MQTT 5
/// Clean Start=0 with a Session Expiry Interval.
async fn resume(t: &Target, name: &str, v: u8) -> (raw::Raw, Packet) {
    let props = if v == 5 {
        Props::default().with(raw::SESSION_EXPIRY, Val::U32(300))
    } else {
        Props::default()
    };
    t.reconnect(name, v, false, &props).await
}

async fn redelivery(t: &Target, v: u8) {
    // MQTT-4.4.0-1: "When a Client reconnects with CleanSession set to 0, both
    // the Client and Server MUST re-send any unacknowledged PUBLISH Packets
    // (where QoS > 0) and PUBREL Packets using their original Packet Identifiers."
    let name = format!("conf-redo-{v}");
    let (mut c, _) = resume(t, &name, v).await;
    c.subscribe(&[("conf/redo", 1)]).await;
    let mut p = t.client(&format!("conf-redo-pub-{v}"), v).await;
    p.publish("conf/redo", b"ack me", 1, false).await;
    let first = c.expect_publish().await;
    assert!(!first.dup);
    // Gone without acknowledging.
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut c, ack) = resume(t, &name, v).await;
    assert!(session_present(&ack));
    let again = c.expect_publish().await;
    // MQTT-3.3.1-1: DUP=1 when it "might be re-delivery of an earlier attempt".
    assert_eq!(
        (again.pkid, again.dup, &again.payload[..]),
        (first.pkid, true, &b"ack me"[..])
    );
    c.ack_publish(&again).await;
}

async fn redelivery_on_resume(t: &Target) {
    redelivery(t, 4).await;
}

async fn redelivery_on_resume_v5(t: &Target) {
    redelivery(t, 5).await;
}

async fn pubrel_on_resume(t: &Target) {
    // MQTT-4.4.0-1 (both versions): unacknowledged PUBREL Packets are re-sent
    // with their original Packet Identifiers; the PUBLISH is not (it was
    // acknowledged by the PUBREC).
    for v in [4, 5] {
        let name = format!("conf-prl-{v}");
        let (mut c, _) = resume(t, &name, v).await;
        c.subscribe(&[("conf/prl", 2)]).await;
        let mut p = t.client(&format!("conf-prl-pub-{v}"), v).await;
        p.publish("conf/prl", b"x", 2, false).await;
        let m = c.expect_publish().await;
        assert_eq!(m.qos, 2);
        c.send(&raw::ack(v, 5, m.pkid, 0)).await;
        match c.recv().await {
            Some(Packet::PubRel(id, 0)) if id == m.pkid => {}
            other => panic!("v{v}: expected PUBREL {}, got {other:?}", m.pkid),
        }
        // Gone without PUBCOMP.
        drop(c);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (mut c, ack) = resume(t, &name, v).await;
        assert!(session_present(&ack), "v{v}: {ack:?}");
        match c.recv().await {
            Some(Packet::PubRel(id, 0)) if id == m.pkid => {}
            other => panic!("v{v}: expected PUBREL {} again, got {other:?}", m.pkid),
        }
        c.send(&raw::ack(v, 7, m.pkid, 0)).await;
        assert!(c.quiet().await, "v{v}");
    }
}

async fn qos2_resent_once(t: &Target) {
    // MQTT-4.3.3-2: until it has received the PUBREL, the receiver "MUST
    // acknowledge any subsequent PUBLISH Packet with the same Packet Identifier
    // by sending a PUBREC. It MUST NOT cause duplicate messages to be delivered
    // to any onward recipients in this case."
    for v in [4, 5] {
        let topic = format!("conf/q2dup/{v}");
        let mut sub = t.client(&format!("conf-q2dup-s{v}"), v).await;
        sub.subscribe(&[(&topic, 2)]).await;
        let mut p = t.client(&format!("conf-q2dup-p{v}"), v).await;
        for dup in [false, true] {
            p.send(&raw::publish(
                v,
                &topic,
                b"once",
                2,
                false,
                dup,
                9,
                &Props::default(),
            ))
            .await;
            match p.recv().await {
                Some(Packet::PubRec(9, r)) if r < 0x80 => {}
                other => panic!("v{v}: expected PUBREC 9 (dup {dup}), got {other:?}"),
            }
        }
        p.send(&raw::ack(v, 6, 9, 0)).await;
        assert!(
            matches!(p.recv().await, Some(Packet::PubComp(9, 0))),
            "v{v}"
        );
        let m = sub.expect_publish().await;
        assert_eq!(m.payload, b"once");
        sub.ack_publish(&m).await;
        assert!(sub.quiet().await, "v{v}: the message came twice");
    }
}

async fn ordered(t: &Target) {
    for v in [4, 5] {
        let mut sub = t.client(&format!("conf-order-s{v}"), v).await;
        sub.subscribe(&[("conf/order/#", 1)]).await;
        let mut p = t.client(&format!("conf-order-p{v}"), v).await;
        for i in 0..20u8 {
            let topic = format!("conf/order/{}", i % 3);
            p.publish(&topic, &[i], 1, false).await;
        }
        for i in 0..20u8 {
            let m = sub.expect_publish().await;
            assert_eq!(m.payload, [i], "v{v}");
            sub.ack_publish(&m).await;
        }
    }
}

async fn properties_intact(t: &Target) {
    let mut sub = t.client("conf-props-s", 5).await;
    sub.subscribe(&[("conf/props", 1)]).await;
    let mut p = t.client("conf-props-p", 5).await;
    let props = Props::default()
        .with(raw::PAYLOAD_FORMAT, Val::Byte(1))
        .with(raw::CONTENT_TYPE, Val::Str("application/json".into()))
        .with(raw::RESPONSE_TOPIC, Val::Str("conf/props/reply".into()))
        .with(raw::CORRELATION_DATA, Val::Bin(vec![0, 1, 2, 255]))
        .with(raw::USER_PROPERTY, Val::Pair("b".into(), "2".into()))
        .with(raw::USER_PROPERTY, Val::Pair("a".into(), "1".into()))
        .with(raw::USER_PROPERTY, Val::Pair("b".into(), "3".into()));
    p.publish_with("conf/props", br#"{"x":1}"#, 1, false, &props)
        .await;
    let m = sub.expect_publish().await;
    let got = &m.props;
    assert_eq!(got.num(raw::PAYLOAD_FORMAT), Some(1));
    assert_eq!(got.get(raw::CONTENT_TYPE), props.get(raw::CONTENT_TYPE));
    assert_eq!(got.get(raw::RESPONSE_TOPIC), props.get(raw::RESPONSE_TOPIC));
    assert_eq!(
        got.get(raw::CORRELATION_DATA),
        props.get(raw::CORRELATION_DATA)
    );
    // MQTT-3.3.2-18: user properties forwarded unaltered, order kept.
    assert_eq!(got.user(), props.user());
}

async fn acks_to_publisher(t: &Target) {
    for v in [4, 5] {
        let mut p = t.client(&format!("conf-acks-{v}"), v).await;
        p.send(&raw::publish(
            v,
            "conf/acks",
            b"1",
            1,
            false,
            false,
            7,
            &Props::default(),
        ))
        .await;
        // MQTT 5 may say 0x10 No matching subscribers, still a success (< 0x80).
        assert!(matches!(p.recv().await, Some(Packet::PubAck(7, r)) if r < 0x80));
        p.send(&raw::publish(
            v,
            "conf/acks",
            b"2",
            2,
            false,
            false,
            8,
            &Props::default(),
        ))
        .await;
        assert!(matches!(p.recv().await, Some(Packet::PubRec(8, r)) if r < 0x80));
        p.send(&raw::ack(v, 6, 8, 0)).await;
        assert!(matches!(p.recv().await, Some(Packet::PubComp(8, 0))));
    }
}

async fn device_path(t: &Target) {
    // A witness subscribed before the retained publish: once it has the message
    // live, the node has routed it, and the device (subscribing later) gets it
    // from the retained store only — not a second time from the node's pipeline.
    let mut witness = t.client("conf-cloud-w", 5).await;
    witness.subscribe(&[("devices/remo-dp/commands", 0)]).await;
    let mut cloud = t.client("conf-cloud", 5).await;
    cloud
        .publish("devices/remo-dp/commands", b"retained", 1, true)
        .await;
    loop {
        let m = witness.expect_publish().await;
        if !m.retain && m.payload == b"retained" {
            break;
        }
    }
    let mut dev = t.open_device("remo-dp", 5).await;
    let ack = dev
        .connect("remo-dp", true, 60, &Props::default(), None)
        .await;
    assert_eq!(super::code(&ack), 0);
    assert_eq!(dev.subscribe(&[("devices/remo-dp/commands", 1)]).await, [1]);
    let r = dev.expect_publish().await;
    assert_eq!(
        (&r.payload[..], r.retain, r.qos),
        (&b"retained"[..], true, 1)
    );
    dev.ack_publish(&r).await;
    cloud
        .publish("devices/remo-dp/commands", b"q0", 0, false)
        .await;
    let m = dev.expect_publish().await;
    assert_eq!((&m.payload[..], m.qos, m.retain), (&b"q0"[..], 0, false));
    let props = Props::default().with(raw::CORRELATION_DATA, Val::Bin(b"cmd-1".to_vec()));
    cloud
        .publish_with("devices/remo-dp/commands", b"q2", 2, false, &props)
        .await;
    let m = dev.expect_publish().await;
    assert_eq!(
        (m.qos, m.props.get(raw::CORRELATION_DATA)),
        (1, props.get(raw::CORRELATION_DATA))
    );
    dev.ack_publish(&m).await;
}
