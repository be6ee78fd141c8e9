//! SUBSCRIBE and UNSUBSCRIBE: SUBACK codes, No Local, overlapping
//! subscriptions and the topic filter matching rules.

use std::time::Duration;

use super::raw::{self, Packet, Props};
use super::{conformance, mosquitto_deviates, Target};

conformance! {
    mqtt_3_9_3_1_suback_codes_follow_the_order_of_the_filters => suback_order;
    v5_3_8_3_1_no_local_keeps_a_clients_own_messages_from_it => no_local;
    mqtt_3_3_5_1_overlapping_subscriptions_deliver_at_the_highest_granted_qos => overlapping;
    mqtt_3_10_4_4_after_unsubscribe_nothing_more_arrives_and_unsuback_answers => unsubscribe;
    mqtt_4_7_1_2_the_multi_level_wildcard_also_matches_the_parent_level => multi_level;
    mqtt_4_7_1_3_the_single_level_wildcard_matches_exactly_one_level => single_level;
    mqtt_4_7_2_1_wildcards_at_the_first_level_do_not_match_dollar_topics => dollar_topics;
    mqtt_3_8_4_3_a_subscribe_to_an_existing_filter_replaces_its_subscription => resubscribe_replaces;
    mqtt_3_10_4_1_unsubscribe_compares_filters_character_by_character => unsubscribe_exact;
    mqtt_3_10_4_5_an_unsubscribe_that_removes_nothing_is_still_answered => unsubscribe_unknown;
    mqtt_3_8_1_1_a_subscribe_with_wrong_reserved_flags_closes_the_connection => subscribe_flags;
    mqtt_3_8_3_4_a_subscribe_with_qos_3_or_reserved_bits_closes_the_connection => subscribe_bad_options_v4;
    v5_3_8_3_1_a_subscribe_with_qos_3_retain_handling_3_or_reserved_bits_closes_the_connection => subscribe_bad_options_v5;
}

// Mosquitto 2.0.11 grants a shared subscription with No Local=1 (SUBACK 0x01).
mosquitto_deviates! {
    v5_3_8_3_1_no_local_on_a_shared_subscription_is_a_protocol_error => no_local_shared;
}

async fn suback_order(t: &Target) {
    for v in [4, 5] {
        let mut c = t.client(&format!("conf-suback-{v}"), v).await;
        let codes = c
            .subscribe(&[("conf/s/2", 2), ("conf/s/0", 0), ("conf/s/1", 1)])
            .await;
        assert_eq!(codes, [2, 0, 1], "v{v}");
    }
}

async fn no_local(t: &Target) {
    let mut me = t.client("conf-nl-me", 5).await;
    me.subscribe(&[("conf/nl", 1 | 0x04)]).await;
    me.publish("conf/nl", b"mine", 1, false).await;
    assert!(me.quiet().await, "own message delivered despite No Local");
    let mut other = t.client("conf-nl-other", 5).await;
    other.publish("conf/nl", b"theirs", 1, false).await;
    let m = me.expect_publish().await;
    assert_eq!(m.payload, b"theirs");
}

async fn overlapping(t: &Target) {
    for v in [4, 5] {
        let mut sub = t.client(&format!("conf-ov-s{v}"), v).await;
        sub.subscribe(&[("conf/ov/#", 0), ("conf/ov/+", 1)]).await;
        let mut p = t.client(&format!("conf-ov-p{v}"), v).await;
        p.publish("conf/ov/a", b"x", 1, false).await;
        // One copy or several, but one at the highest granted QoS (MQTT-3.3.5-1).
        let mut best = 0;
        while let Some(m) = sub.publish_within(raw::QUIET).await {
            sub.ack_publish(&m).await;
            best = best.max(m.qos);
        }
        assert_eq!(best, 1, "v{v}");
    }
}

async fn unsubscribe(t: &Target) {
    for v in [4, 5] {
        let mut c = t.client(&format!("conf-unsub-{v}"), v).await;
        c.subscribe(&[("conf/unsub", 1)]).await;
        c.send(&raw::unsubscribe(v, 77, &["conf/unsub"])).await;
        match c.recv().await {
            Some(Packet::UnsubAck {
                pkid: 77, codes, ..
            }) => {
                if v == 5 {
                    assert_eq!(codes, [0]);
                }
            }
            other => panic!("v{v}: expected UNSUBACK 77, got {other:?}"),
        }
        let mut p = t.client(&format!("conf-unsub-p{v}"), v).await;
        p.publish("conf/unsub", b"x", 1, false).await;
        assert!(c.quiet().await, "v{v}");
    }
}

async fn matched(t: &Target, filter: &str, topics: &[&str]) -> Vec<String> {
    let mut sub = t.client("conf-match-s", 4).await;
    sub.subscribe(&[(filter, 0)]).await;
    let mut p = t.client("conf-match-p", 4).await;
    for topic in topics {
        p.publish(topic, b"x", 1, false).await;
    }
    let mut got = Vec::new();
    while let Some(m) = sub.publish_within(raw::QUIET).await {
        got.push(m.topic);
    }
    got
}

async fn multi_level(t: &Target) {
    let got = matched(
        t,
        "conf/ml/#",
        &["conf/ml", "conf/ml/a", "conf/ml/a/b", "conf/mlx"],
    )
    .await;
    assert_eq!(got, ["conf/ml", "conf/ml/a", "conf/ml/a/b"]);
}

async fn single_level(t: &Target) {
    let got = matched(
        t,
        "conf/sl/+/end",
        &[
            "conf/sl/a/end",
            "conf/sl//end",
            "conf/sl/a/b/end",
            "conf/sl/end",
        ],
    )
    .await;
    assert_eq!(got, ["conf/sl/a/end", "conf/sl//end"]);
}

async fn dollar_topics(t: &Target) {
    // MQTT-4.7.2-1: "The Server MUST NOT match Topic Filters starting with a
    // wildcard character (# or +) with Topic Names beginning with a $ character."
    let mut all = t.client("conf-dollar-all", 5).await;
    all.subscribe(&[("#", 0)]).await;
    let mut plus = t.client("conf-dollar-plus", 5).await;
    plus.subscribe(&[("+/dollar/x", 0)]).await;
    // Where the server lets a client use `$` topics at all, show it was sent.
    let mut named = t.client("conf-dollar-named", 5).await;
    let named_ok = named.subscribe(&[("$conf/dollar/x", 0)]).await[0] < 0x80;
    let mut p = t.client("conf-dollar-p", 5).await;
    p.send(&raw::publish(
        5,
        "$conf/dollar/x",
        b"$",
        1,
        false,
        false,
        1,
        &Props::default(),
    ))
    .await;
    let accepted = match p.recv().await {
        Some(Packet::PubAck(1, r)) => r < 0x80,
        other => panic!("expected PUBACK 1, got {other:?}"),
    };
    if named_ok && accepted {
        assert_eq!(named.expect_publish().await.payload, b"$");
    }
    // Then one on an ordinary topic: whatever either wildcard got before it
    // (a server's own topics, say) has no `$` topic among it.
    p.publish("conf/dollar/x", b"plain", 1, false).await;
    for (filter, sub) in [("#", &mut all), ("+/dollar/x", &mut plus)] {
        loop {
            let m = sub.expect_publish().await;
            assert!(!m.topic.starts_with('$'), "`{filter}` matched {}", m.topic);
            if m.topic == "conf/dollar/x" {
                break;
            }
        }
    }
}

async fn resubscribe_replaces(t: &Target) {
    // MQTT-3.8.4-3: a SUBSCRIBE with a Topic Filter identical to an existing
    // Subscription's "MUST completely replace that existing Subscription".
    for v in [4, 5] {
        let mut sub = t.client(&format!("conf-rsub-s{v}"), v).await;
        assert_eq!(sub.subscribe(&[("conf/rsub", 1)]).await, [1]);
        assert_eq!(sub.subscribe(&[("conf/rsub", 0)]).await, [0]);
        let mut p = t.client(&format!("conf-rsub-p{v}"), v).await;
        p.publish("conf/rsub", b"x", 1, false).await;
        let m = sub.expect_publish().await;
        assert_eq!(m.qos, 0, "v{v}: the QoS 1 subscription was not replaced");
        assert!(
            sub.quiet().await,
            "v{v}: two subscriptions, not one replaced"
        );
    }
}

async fn unsubscribe_exact(t: &Target) {
    // MQTT-3.10.4-1: the filters in UNSUBSCRIBE "MUST be compared
    // character-by-character with the current set of Topic Filters held by the
    // Server"; `conf/uc/+` does not remove `conf/uc/a`.
    for v in [4, 5] {
        let mut c = t.client(&format!("conf-uc-{v}"), v).await;
        c.subscribe(&[("conf/uc/a", 1)]).await;
        c.send(&raw::unsubscribe(v, 21, &["conf/uc/+"])).await;
        match c.recv().await {
            Some(Packet::UnsubAck { pkid: 21, .. }) => {}
            other => panic!("v{v}: expected UNSUBACK 21, got {other:?}"),
        }
        let mut p = t.client(&format!("conf-uc-p{v}"), v).await;
        p.publish("conf/uc/a", b"still", 1, false).await;
        assert_eq!(c.expect_publish().await.payload, b"still", "v{v}");
    }
}

async fn unsubscribe_unknown(t: &Target) {
    // MQTT-3.10.4-5: "Even where no Topic Filters are deleted, the Server MUST
    // respond with an UNSUBACK." (MQTT 5: 0x00, or 0x11 No subscription existed.)
    for v in [4, 5] {
        let mut c = t.client(&format!("conf-unone-{v}"), v).await;
        c.send(&raw::unsubscribe(v, 78, &["conf/never"])).await;
        match c.recv().await {
            Some(Packet::UnsubAck {
                pkid: 78, codes, ..
            }) => {
                if v == 5 {
                    assert!(matches!(codes[..], [0x00] | [0x11]), "{codes:?}");
                }
            }
            other => panic!("v{v}: expected UNSUBACK 78, got {other:?}"),
        }
    }
}

async fn closes_on(t: &Target, name: &str, v: u8, bytes: &[u8]) {
    let mut c = t.client(name, v).await;
    c.send(bytes).await;
    let (closed, reason) = c.closed_within(Duration::from_secs(2)).await;
    assert!(closed, "{name}: the connection stayed open");
    // MQTT 5: a DISCONNECT first, if any, says Malformed Packet or Protocol Error.
    assert!(
        matches!(reason, None | Some(0x81 | 0x82)),
        "{name}: {reason:?}"
    );
}

async fn subscribe_flags(t: &Target) {
    // MQTT-3.8.1-1: the SUBSCRIBE fixed header's reserved bits "MUST be set to
    // 0,0,1 and 0 respectively. The Server MUST treat any other value as
    // malformed and close the Network Connection."
    let mut bytes = raw::subscribe(4, 1, &[("conf/flags", 0)], &Props::default());
    bytes[0] = 0x80;
    closes_on(t, "conf-sub-flags", 4, &bytes).await;
}

async fn subscribe_bad_options_v4(t: &Target) {
    // MQTT-3.8.3-4: "The Server MUST treat a SUBSCRIBE packet as malformed and
    // close the Network Connection if any of Reserved bits in the payload are
    // non-zero, or QoS is not 0,1 or 2."
    for (tag, options) in [("qos3", 0x03), ("reserved", 0x04)] {
        let bytes = raw::subscribe(4, 1, &[("conf/opts", options)], &Props::default());
        closes_on(t, &format!("conf-sub-{tag}"), 4, &bytes).await;
    }
}

async fn subscribe_bad_options_v5(t: &Target) {
    // §3.8.3.1: "It is a Protocol Error if the Maximum QoS field has the value
    // 3", "It is a Protocol Error to send a Retain Handling value of 3", and
    // MQTT-3.8.3-5: "The Server MUST treat a SUBSCRIBE packet as malformed if
    // any of Reserved bits in the Payload are non-zero."
    for (tag, options) in [("qos3", 0x03), ("rh3", 0x31), ("reserved", 0x41)] {
        let bytes = raw::subscribe(5, 1, &[("conf/opts", options)], &Props::default());
        closes_on(t, &format!("conf-sub5-{tag}"), 5, &bytes).await;
    }
}

async fn no_local_shared(t: &Target) {
    // MQTT-3.8.3-4 (MQTT 5): "It is a Protocol Error to set the No Local bit to
    // 1 on a Shared Subscription."
    let bytes = raw::subscribe(5, 1, &[("$share/g/conf/nls", 0x04 | 1)], &Props::default());
    closes_on(t, "conf-nl-shared", 5, &bytes).await;
}
