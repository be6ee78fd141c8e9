//! SUBSCRIBE and UNSUBSCRIBE: SUBACK codes, No Local, overlapping
//! subscriptions and the topic filter matching rules.

use super::raw::{self, Packet};
use super::{conformance, Target};

conformance! {
    mqtt_3_9_3_1_suback_codes_follow_the_order_of_the_filters => suback_order;
    v5_3_8_3_1_no_local_keeps_a_clients_own_messages_from_it => no_local;
    mqtt_3_3_5_1_overlapping_subscriptions_deliver_at_the_highest_granted_qos => overlapping;
    mqtt_3_10_4_4_after_unsubscribe_nothing_more_arrives_and_unsuback_answers => unsubscribe;
    mqtt_4_7_1_2_the_multi_level_wildcard_also_matches_the_parent_level => multi_level;
    mqtt_4_7_1_3_the_single_level_wildcard_matches_exactly_one_level => single_level;
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
            Some(Packet::UnsubAck { pkid: 77, codes, .. }) => {
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
