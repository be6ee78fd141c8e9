//! Connecting and sessions: CONNACK, Session Present, clean session / Clean
//! Start with Session Expiry Interval, takeover.

use std::time::Duration;

use super::raw::{self, Packet, Props, Val, WAIT};
use super::{code, conformance, connack_props, kumo_only, session_present, Target};

conformance! {
    mqtt_3_2_2_1_a_clean_session_gets_session_present_0 => clean_session_has_no_session;
    mqtt_3_1_3_8_an_empty_client_id_with_clean_session_0_is_refused_with_0x02 => empty_id_persistent;
    mqtt_3_2_2_2_a_kept_session_is_present_with_its_subscriptions_and_queued_messages => kept_session_v4;
    v5_3_1_2_11_2_session_expiry_0_ends_the_session_with_the_connection => expiry_zero_ends;
    v5_3_1_2_11_2_clean_start_1_with_an_expiry_keeps_the_session_after_the_connection => clean_start_with_expiry_keeps;
    v5_3_1_2_4_clean_start_1_discards_a_kept_session => clean_start_discards;
    v5_3_2_2_3_7_an_empty_client_id_is_assigned_one => assigned_client_id;
    v5_3_14_2_2_2_a_disconnect_cannot_give_a_session_that_was_ending_an_expiry => disconnect_cannot_raise_zero;
    mqtt_3_1_4_2_a_second_connection_with_the_same_client_id_takes_over => takeover;
    mqtt_3_1_2_2_an_unsupported_protocol_level_gets_connack_0x01_and_is_closed => unsupported_level;
    mqtt_3_1_0_1_a_first_packet_other_than_connect_closes_the_connection => connect_first;
    mqtt_3_1_0_2_a_second_connect_closes_the_connection => second_connect;
    v5_3_14_2_2_2_a_disconnect_with_session_expiry_0_ends_a_kept_session => disconnect_ends_session;
    mqtt_3_1_4_packets_sent_with_the_connect_before_its_connack_are_processed => sent_before_connack;
    mqtt_3_1_4_5_nothing_sent_after_a_refused_connect_is_processed => nothing_after_refusal;
}

kumo_only! {
    kumo_the_client_id_must_be_the_certificates_identity => client_id_is_the_certificate;
    kumo_a_device_never_keeps_a_session => device_session_not_kept;
}

fn expiry(secs: u32) -> Props {
    Props::default().with(raw::SESSION_EXPIRY, Val::U32(secs))
}

async fn clean_session_has_no_session(t: &Target) {
    for v in [4, 5] {
        let mut c = t.open("conf-clean", v).await;
        let ack = c
            .connect("conf-clean", true, 60, &Props::default(), None)
            .await;
        assert_eq!(code(&ack), 0);
        assert!(!session_present(&ack), "v{v}: {ack:?}");
        c.disconnect().await;
    }
}

async fn empty_id_persistent(t: &Target) {
    let mut c = t.open("conf-empty", 4).await;
    let ack = c.connect("", false, 60, &Props::default(), None).await;
    assert_eq!(code(&ack), 0x02, "{ack:?}");
    assert!(c.closed_within(Duration::from_secs(2)).await.0);
}

async fn kept_session_v4(t: &Target) {
    let (mut c, ack) = t.reconnect("conf-keep", 4, false, &Props::default()).await;
    assert_eq!(code(&ack), 0);
    c.subscribe(&[("conf/keep/#", 1)]).await;
    c.send(&raw::disconnect(4, 0, &Props::default())).await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut p = t.client("conf-keep-pub", 4).await;
    p.publish("conf/keep/a", b"while away", 1, false).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // MQTT-3.2.2-2: Session Present 1 when a session was kept.
    let (mut c, ack) = t.reconnect("conf-keep", 4, false, &Props::default()).await;
    assert!(session_present(&ack), "{ack:?}");
    let m = c.expect_publish().await;
    assert_eq!(
        (m.topic.as_str(), &m.payload[..], m.qos),
        ("conf/keep/a", &b"while away"[..], 1)
    );
    c.ack_publish(&m).await;
    // The subscription was kept too.
    p.publish("conf/keep/b", b"live", 1, false).await;
    assert_eq!(c.expect_publish().await.topic, "conf/keep/b");
}

async fn expiry_zero_ends(t: &Target) {
    // Clean Start 0 without a Session Expiry Interval: the session ends with the connection.
    let (mut c, _) = t.reconnect("conf-ex0", 5, true, &Props::default()).await;
    c.disconnect().await;
    let (mut c, ack) = t.reconnect("conf-ex0", 5, false, &Props::default()).await;
    assert_eq!(code(&ack), 0);
    c.subscribe(&[("conf/ex0/#", 1)]).await;
    c.disconnect().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut p = t.client("conf-ex0-pub", 5).await;
    p.publish("conf/ex0/a", b"lost", 1, false).await;
    let (mut c, ack) = t.reconnect("conf-ex0", 5, false, &Props::default()).await;
    assert!(!session_present(&ack), "{ack:?}");
    assert!(c.quiet().await);
}

async fn clean_start_with_expiry_keeps(t: &Target) {
    let (mut c, ack) = t.reconnect("conf-ex300", 5, true, &expiry(300)).await;
    assert!(!session_present(&ack));
    c.subscribe(&[("conf/ex300/#", 1)]).await;
    c.disconnect().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut p = t.client("conf-ex300-pub", 5).await;
    p.publish("conf/ex300/a", b"queued", 1, false).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut c, ack) = t.reconnect("conf-ex300", 5, false, &expiry(300)).await;
    assert!(session_present(&ack), "{ack:?}");
    let m = c.expect_publish().await;
    assert_eq!((&m.payload[..], m.qos), (&b"queued"[..], 1));
}

async fn clean_start_discards(t: &Target) {
    let (mut c, _) = t.reconnect("conf-discard", 5, true, &expiry(300)).await;
    c.subscribe(&[("conf/discard/#", 1)]).await;
    c.disconnect().await;
    let (mut c, ack) = t.reconnect("conf-discard", 5, true, &expiry(300)).await;
    assert!(!session_present(&ack), "{ack:?}");
    let mut p = t.client("conf-discard-pub", 5).await;
    p.publish("conf/discard/a", b"x", 1, false).await;
    assert!(c.quiet().await, "the old subscription survived Clean Start");
}

async fn assigned_client_id(t: &Target) {
    let mut c = t.open("conf-assigned", 5).await;
    let ack = c.connect("", true, 60, &Props::default(), None).await;
    assert_eq!(code(&ack), 0, "{ack:?}");
    match connack_props(&ack).get(raw::ASSIGNED_CLIENT_ID) {
        Some(Val::Str(id)) => assert!(!id.is_empty()),
        other => panic!("no Assigned Client Identifier: {other:?}"),
    }
    assert!(c.ping().await);
}

async fn disconnect_cannot_raise_zero(t: &Target) {
    // §3.14.2.2.2: with 0 in CONNECT, a non-zero expiry in DISCONNECT is a Protocol Error.
    let mut c = t.client("conf-raise", 5).await;
    c.send(&raw::disconnect(5, 0, &expiry(300))).await;
    let (closed, reason) = c.closed_within(Duration::from_secs(2)).await;
    assert!(closed);
    assert!(matches!(reason, None | Some(0x82)), "{reason:?}");
    // And no session was kept.
    let (_, ack) = t.reconnect("conf-raise", 5, false, &Props::default()).await;
    assert!(!session_present(&ack), "{ack:?}");
}

async fn takeover(t: &Target) {
    let mut first = t.client("conf-twice", 5).await;
    let mut second = t.client("conf-twice", 5).await;
    // MQTT-3.1.4-3: the existing connection is closed (MQTT 5: a DISCONNECT
    // before it, if any, says 0x8E Session taken over).
    let (closed, reason) = first.closed_within(Duration::from_secs(3)).await;
    assert!(closed);
    assert!(matches!(reason, None | Some(0x8E)), "{reason:?}");
    assert!(second.ping().await);
}

async fn client_id_is_the_certificate(t: &Target) {
    for (v, refused) in [(4, 0x02), (5, 0x85)] {
        let mut c = t.open("conf-cert", v).await;
        let ack = c
            .connect("someone-else", true, 60, &Props::default(), None)
            .await;
        assert_eq!(code(&ack), refused, "v{v}: {ack:?}");
    }
    // An empty id gets the certificate's.
    let mut c = t.open("conf-cert", 5).await;
    let ack = c.connect("", true, 60, &Props::default(), None).await;
    assert_eq!(
        connack_props(&ack).get(raw::ASSIGNED_CLIENT_ID),
        Some(&Val::Str("conf-cert".into()))
    );
}

async fn device_session_not_kept(t: &Target) {
    let mut d = t.open_device("remo-conf", 4).await;
    let ack = d
        .connect("remo-conf", false, 60, &Props::default(), None)
        .await;
    assert!(!session_present(&ack));
    d.disconnect().await;
    let mut d = t.open_device("remo-conf", 4).await;
    let ack = d
        .connect("remo-conf", false, 60, &Props::default(), None)
        .await;
    assert_eq!(code(&ack), 0);
    assert!(!session_present(&ack), "{ack:?}");
    // MQTT 5 is told: Session Expiry Interval 0 in CONNACK.
    let mut d = t.open_device("remo-conf", 5).await;
    let ack = d.connect("remo-conf", false, 60, &expiry(300), None).await;
    assert_eq!(connack_props(&ack).num(raw::SESSION_EXPIRY), Some(0));
    assert!(matches!(ack, Packet::ConnAck { .. }));
}

async fn unsupported_level(t: &Target) {
    // MQTT-3.1.2-2: "The Server MUST respond to the CONNECT Packet with a CONNACK
    // return code 0x01 (unacceptable protocol level) and then disconnect the
    // Client if the Protocol Level is not supported by the Server." (An MQTT 5
    // server may say 0x84 instead, §3.1.2.2.)
    let mut c = t.open("conf-level", 4).await;
    let mut bytes = raw::connect(4, "conf-level", true, 60, &Props::default(), None);
    // Fixed header (2), "MQTT" (6), then the level.
    bytes[8] = 6;
    c.send(&bytes).await;
    match c.recv_within(WAIT).await {
        Some(Packet::ConnAck { code, .. }) => assert!(matches!(code, 0x01 | 0x84), "{code:#04x}"),
        other => panic!("expected CONNACK 0x01, got {other:?}"),
    }
    assert!(c.closed_within(Duration::from_secs(2)).await.0);
}

async fn connect_first(t: &Target) {
    // MQTT-3.1.0-1: "the first Packet sent from the Client to the Server MUST be
    // a CONNECT Packet"; MQTT-4.8.0-1: on a protocol violation the receiver
    // "MUST close the Network Connection".
    let mut c = t.open("conf-first", 4).await;
    c.send(&raw::pingreq()).await;
    let (closed, _) = c.closed_within(Duration::from_secs(2)).await;
    assert!(closed, "a PINGREQ before CONNECT left the connection open");
}

async fn second_connect(t: &Target) {
    // MQTT-3.1.0-2: "The Server MUST process a second CONNECT Packet sent from a
    // Client as a protocol violation and disconnect the Client."
    for v in [4, 5] {
        let name = format!("conf-second-{v}");
        let mut c = t.client(&name, v).await;
        c.send(&raw::connect(v, &name, true, 60, &Props::default(), None))
            .await;
        let (closed, reason) = c.closed_within(Duration::from_secs(2)).await;
        assert!(closed, "v{v}: a second CONNECT left the connection open");
        assert!(matches!(reason, None | Some(0x82)), "v{v}: {reason:?}");
    }
}

async fn disconnect_ends_session(t: &Target) {
    // §3.14.2.2.2: the DISCONNECT's Session Expiry Interval replaces CONNECT's;
    // §3.1.2.11.2: "If the Session Expiry Interval is 0 […] the Session ends
    // when the Network Connection is closed."
    let (mut c, _) = t.reconnect("conf-dx0", 5, true, &expiry(300)).await;
    c.subscribe(&[("conf/dx0/#", 1)]).await;
    c.send(&raw::disconnect(5, 0, &expiry(0))).await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut p = t.client("conf-dx0-pub", 5).await;
    p.publish("conf/dx0/a", b"lost", 1, false).await;
    let (mut c, ack) = t.reconnect("conf-dx0", 5, false, &expiry(300)).await;
    assert_eq!(code(&ack), 0);
    assert!(!session_present(&ack), "{ack:?}");
    assert!(c.quiet().await, "a message for the ended session arrived");
}

async fn sent_before_connack(t: &Target) {
    // §3.1.4: "Clients are allowed to send further Control Packets
    // immediately after sending a CONNECT Packet; Clients need not wait for
    // a CONNACK Packet to arrive from the Server." (MQTT 5 §3.1.4 likewise.)
    // Kumo's simulated devices send their subscription and state this way.
    for v in [4, 5] {
        let name = format!("conf-early-{v}");
        let topic = format!("conf/early/{v}");
        let mut witness = t.client(&format!("conf-early-w{v}"), v).await;
        witness.subscribe(&[(topic.as_str(), 1)]).await;
        let mut c = t.open(&name, v).await;
        // One write: CONNECT, SUBSCRIBE (packet id 1), PUBLISH QoS 1 (id 2).
        let mut early = raw::connect(v, &name, true, 60, &Props::default(), None);
        early.extend(raw::subscribe(
            v,
            1,
            &[(&format!("{topic}/in"), 1)],
            &Props::default(),
        ));
        early.extend(raw::publish(
            v,
            &topic,
            b"before the connack",
            1,
            false,
            false,
            2,
            &Props::default(),
        ));
        c.send(&early).await;
        let ack = c.recv().await.expect("a CONNACK");
        assert_eq!(code(&ack), 0, "v{v}: the CONNACK comes first: {ack:?}");
        let mut acks = Vec::new();
        for _ in 0..2 {
            acks.push(c.recv().await.expect("SUBACK and PUBACK"));
        }
        assert!(
            acks.iter()
                .any(|p| matches!(p, Packet::SubAck { pkid: 1, codes, .. } if codes == &[1])),
            "v{v}: {acks:?}"
        );
        assert!(
            acks.iter().any(|p| matches!(p, Packet::PubAck(2, 0))),
            "v{v}: {acks:?}"
        );
        let m = witness.expect_publish().await;
        assert_eq!(&m.payload[..], b"before the connack", "v{v}");
        witness.ack_publish(&m).await;
        witness
            .publish(
                &format!("{topic}/in"),
                b"to the early subscription",
                1,
                false,
            )
            .await;
        let m = c.expect_publish().await;
        assert_eq!(&m.payload[..], b"to the early subscription", "v{v}");
        c.ack_publish(&m).await;
    }
}

async fn nothing_after_refusal(t: &Target) {
    // MQTT-3.1.4-5: "If the Server rejects the CONNECT, it MUST NOT process
    // any data sent by the Client after the CONNECT Packet." Refused here for
    // an empty client id with CleanSession 0 (MQTT-3.1.3-8, 0x02), with a
    // retained PUBLISH in the same write.
    let mut c = t.open("conf-refused", 4).await;
    let mut early = raw::connect(4, "", false, 60, &Props::default(), None);
    early.extend(raw::publish(
        4,
        "conf/refused",
        b"after a refused connect",
        0,
        true,
        false,
        0,
        &Props::default(),
    ));
    c.send(&early).await;
    let ack = c.recv().await.expect("a CONNACK");
    assert_eq!(code(&ack), 0x02, "{ack:?}");
    assert!(c.closed_within(Duration::from_secs(2)).await.0);
    // Nothing was retained (and nothing published).
    let mut witness = t.client("conf-refused-w", 4).await;
    witness.subscribe(&[("conf/refused", 1)]).await;
    witness.no_publish(raw::QUIET).await;
}
