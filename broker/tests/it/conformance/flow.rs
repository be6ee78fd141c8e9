//! Flow control and what CONNACK announces (MQTT 5): Receive Maximum both
//! ways, Maximum Packet Size, and the optional features a client may rely
//! on only as announced — subscription identifiers, topic aliases, QoS.

use super::raw::{self, Packet, Props, Val};
use super::{code, conformance, connack_props, mosquitto_deviates, Target};

conformance! {
    v5_3_2_2_3_3_connack_announces_a_receive_maximum => receive_maximum_announced;
    v5_3_3_4_the_server_never_exceeds_the_clients_receive_maximum => client_receive_maximum;
    v5_3_1_2_11_4_a_message_larger_than_the_clients_maximum_packet_size_is_not_sent => client_max_packet;
    v5_3_2_2_3_12_subscription_identifiers_work_as_announced => subscription_ids;
    v5_3_2_2_3_8_topic_aliases_work_as_announced => topic_aliases;
    v5_3_2_2_3_4_qos_2_works_as_announced => maximum_qos;
    v5_3_2_2_3_11_wildcard_subscriptions_work_as_announced => wildcards_announced;
    v5_3_2_2_3_13_shared_subscriptions_work_as_announced => shared_announced;
}

// Mosquitto 2.0.11
// - announces a Receive Maximum of 20 and keeps accepting unanswered QoS 2
//   publishes past it (§4.9: DISCONNECT 0x93);
// - measures a packet as 1 + Remaining Length, without the Remaining Length
//   bytes themselves: it takes packets up to 3 bytes over the Maximum Packet
//   Size it announced (with a 3-byte length) before it sends 0x95.
mosquitto_deviates! {
    v5_4_9_more_unanswered_publishes_than_the_servers_receive_maximum_get_disconnect_0x93 => server_receive_maximum;
    v5_3_2_2_3_6_a_packet_over_the_servers_maximum_packet_size_gets_disconnect_0x95 => server_max_packet;
}

async fn connack(t: &Target, name: &str, props: &Props) -> (raw::Raw, Props) {
    let mut c = t.open(name, 5).await;
    let ack = c.connect(name, true, 60, props, None).await;
    assert_eq!(code(&ack), 0, "{ack:?}");
    let props = connack_props(&ack);
    (c, props)
}

async fn receive_maximum_announced(t: &Target) {
    let (_, props) = connack(t, "conf-rm", &Props::default()).await;
    let rm = props
        .num(raw::RECEIVE_MAXIMUM)
        .expect("Receive Maximum in CONNACK");
    assert!(rm > 0);
    // Retained messages are offered (absent means available, §3.2.2.3.5).
    assert_ne!(props.num(raw::RETAIN_AVAILABLE), Some(0));
}

async fn client_receive_maximum(t: &Target) {
    let (mut sub, _) = connack(
        t,
        "conf-crm",
        &Props::default().with(raw::RECEIVE_MAXIMUM, Val::U16(2)),
    )
    .await;
    sub.subscribe(&[("conf/crm", 1)]).await;
    let mut p = t.client("conf-crm-p", 5).await;
    for i in 0..5u8 {
        p.publish("conf/crm", &[i], 1, false).await;
    }
    let a = sub.expect_publish().await;
    let _b = sub.expect_publish().await;
    assert!(
        sub.quiet().await,
        "a third message while two were unacknowledged"
    );
    sub.ack_publish(&a).await;
    let c = sub.expect_publish().await;
    assert_eq!(c.payload, [2]);
}

async fn client_max_packet(t: &Target) {
    let (mut sub, _) = connack(
        t,
        "conf-cmp",
        &Props::default().with(raw::MAXIMUM_PACKET_SIZE, Val::U32(64)),
    )
    .await;
    sub.subscribe(&[("conf/cmp", 1)]).await;
    let mut p = t.client("conf-cmp-p", 5).await;
    p.publish("conf/cmp", &[b'x'; 200], 1, false).await;
    p.publish("conf/cmp", b"small", 1, false).await;
    let m = sub.expect_publish().await;
    assert_eq!(m.payload, b"small");
}

async fn subscription_ids(t: &Target) {
    let (mut c, props) = connack(t, "conf-sid", &Props::default()).await;
    let with_id = Props::default().with(raw::SUBSCRIPTION_ID, Val::Var(7));
    if props.num(raw::SUBSCRIPTION_IDS_AVAILABLE) == Some(0) {
        // §3.2.2.3.12: then a SUBSCRIBE with one is answered with DISCONNECT 0xA1.
        c.send(&raw::subscribe(5, 1, &[("conf/sid", 1)], &with_id))
            .await;
        let (closed, reason) = c.closed_within(std::time::Duration::from_secs(2)).await;
        assert!(closed);
        assert_eq!(reason, Some(0xA1));
    } else {
        c.subscribe_with(&[("conf/sid", 1)], &with_id).await;
        let mut p = t.client("conf-sid-p", 5).await;
        p.publish("conf/sid", b"x", 1, false).await;
        assert_eq!(
            c.expect_publish().await.props.num(raw::SUBSCRIPTION_ID),
            Some(7)
        );
    }
}

async fn topic_aliases(t: &Target) {
    let (mut c, props) = connack(t, "conf-alias", &Props::default()).await;
    let alias = Props::default().with(raw::TOPIC_ALIAS, Val::U16(1));
    let publish = raw::publish(5, "conf/alias", b"x", 1, false, false, 1, &alias);
    match props.num(raw::TOPIC_ALIAS_MAXIMUM).unwrap_or(0) {
        0 => {
            // §3.3.2.3.4: an alias above the maximum (0 when absent) is 0x94.
            c.send(&publish).await;
            let (closed, reason) = c.closed_within(std::time::Duration::from_secs(2)).await;
            assert!(closed);
            assert_eq!(reason, Some(0x94));
        }
        _ => {
            c.send(&publish).await;
            // Success, or 0x10 No matching subscribers (also a success).
            assert!(matches!(c.recv().await, Some(Packet::PubAck(1, r)) if r < 0x80));
        }
    }
}

async fn maximum_qos(t: &Target) {
    let (mut c, props) = connack(t, "conf-mq", &Props::default()).await;
    let max = props.num(raw::MAXIMUM_QOS).unwrap_or(2) as u8;
    // The grant never exceeds the announcement, and a QoS up to it is accepted.
    assert_eq!(c.subscribe(&[("conf/mq", 2)]).await, [max]);
    let mut p = t.client("conf-mq-p", 5).await;
    p.publish("conf/mq", b"x", max, false).await;
    let m = c.expect_publish().await;
    assert_eq!(m.qos, max);
}

async fn server_receive_maximum(t: &Target) {
    let (mut c, props) = connack(t, "conf-srm", &Props::default()).await;
    let max = props.num(raw::RECEIVE_MAXIMUM).unwrap_or(65_535) as u16;
    // QoS 2 publishes left without PUBREL stay unanswered (no PUBCOMP).
    for pkid in 1..=max {
        c.send(&raw::publish(
            5,
            "conf/srm",
            b"x",
            2,
            false,
            false,
            pkid,
            &Props::default(),
        ))
        .await;
        match c.recv().await {
            Some(Packet::PubRec(p, r)) if p == pkid && r < 0x80 => {}
            other => panic!("PUBLISH {pkid} of {max}: expected PUBREC, got {other:?}"),
        }
    }
    c.send(&raw::publish(
        5,
        "conf/srm",
        b"x",
        2,
        false,
        false,
        max + 1,
        &Props::default(),
    ))
    .await;
    let (closed, reason) = c.closed_within(std::time::Duration::from_secs(2)).await;
    assert!(
        closed,
        "one publish over the Receive Maximum of {max} was accepted"
    );
    assert_eq!(reason, Some(0x93));
}

/// SUBSCRIBE `filter` (QoS 1) where the server announced `available`: granted
/// if available, else refused with `refusal` in SUBACK or DISCONNECT.
async fn works_as_announced(c: &mut raw::Raw, filter: &str, available: bool, refusal: u8) -> bool {
    c.send(&raw::subscribe(5, 3, &[(filter, 1)], &Props::default()))
        .await;
    match c.recv().await {
        Some(Packet::SubAck { pkid: 3, codes, .. }) if available => {
            assert_eq!(codes, [1], "{filter}: announced available");
            true
        }
        Some(Packet::SubAck { pkid: 3, codes, .. }) => {
            assert_eq!(codes, [refusal], "{filter}: announced unavailable");
            false
        }
        Some(Packet::Disconnect { reason, .. }) if !available => {
            assert_eq!(reason, refusal, "{filter}: announced unavailable");
            false
        }
        other => panic!("{filter}: expected SUBACK 3, got {other:?}"),
    }
}

async fn wildcards_announced(t: &Target) {
    // §3.2.2.3.11: absent or 1, Wildcard Subscriptions are supported; "If the
    // Server receives a SUBSCRIBE packet containing a Wildcard Subscription and
    // it does not support Wildcard Subscriptions, this is a Protocol Error"
    // (0xA2 Wildcard Subscriptions not supported).
    let (mut c, props) = connack(t, "conf-wsa", &Props::default()).await;
    let available = props.num(raw::WILDCARD_SUBS_AVAILABLE) != Some(0);
    if works_as_announced(&mut c, "conf/wsa/#", available, 0xA2).await {
        let mut p = t.client("conf-wsa-p", 5).await;
        p.publish("conf/wsa/a/b", b"x", 1, false).await;
        assert_eq!(c.expect_publish().await.topic, "conf/wsa/a/b");
    }
}

async fn shared_announced(t: &Target) {
    // §3.2.2.3.13: absent or 1, Shared Subscriptions are supported; otherwise
    // a SUBSCRIBE with one is a Protocol Error (0x9E Shared Subscriptions not
    // supported).
    let (mut c, props) = connack(t, "conf-ssa", &Props::default()).await;
    let available = props.num(raw::SHARED_SUBS_AVAILABLE) != Some(0);
    if works_as_announced(&mut c, "$share/g/conf/ssa", available, 0x9E).await {
        let mut p = t.client("conf-ssa-p", 5).await;
        p.publish("conf/ssa", b"x", 1, false).await;
        assert_eq!(c.expect_publish().await.topic, "conf/ssa");
    }
}

async fn server_max_packet(t: &Target) {
    // §3.2.2.3.6: "If a Server receives a packet whose size exceeds this limit,
    // this is a Protocol Error, the Server uses DISCONNECT with Reason Code 0x95
    // (Packet too large)". Both servers are configured to announce one.
    let (mut c, props) = connack(t, "conf-smp", &Props::default()).await;
    let max = props
        .num(raw::MAXIMUM_PACKET_SIZE)
        .expect("Maximum Packet Size in CONNACK") as usize;
    let topic = "conf/smp";
    let sized = |n: usize| {
        raw::publish(
            5,
            topic,
            &vec![b'x'; n],
            0,
            false,
            false,
            0,
            &Props::default(),
        )
    };
    // The payload that makes the whole packet max + 1 bytes long.
    let overhead = sized(max).len() - max;
    let packet = sized(max + 1 - overhead);
    assert_eq!(packet.len(), max + 1);
    c.send(&packet).await;
    let (closed, reason) = c.closed_within(std::time::Duration::from_secs(3)).await;
    assert!(
        closed,
        "a packet of {} bytes over the announced {max} was accepted",
        max + 1
    );
    assert_eq!(reason, Some(0x95));
}
