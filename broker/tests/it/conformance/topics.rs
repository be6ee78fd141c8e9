//! Topic names and filters the server must refuse.

use std::time::Duration;

use super::raw::{self, Props};
use super::{conformance, Target};

conformance! {
    mqtt_3_3_2_2_a_wildcard_in_a_topic_name_closes_the_connection => wildcard_in_topic;
    mqtt_4_7_3_1_an_empty_topic_name_closes_the_connection => empty_topic;
    mqtt_1_5_3_1_a_topic_that_is_not_utf_8_closes_the_connection => bad_utf8;
    mqtt_3_8_3_3_a_subscribe_without_filters_closes_the_connection => empty_subscribe;
    mqtt_4_7_1_2_a_filter_with_a_misplaced_wildcard_is_refused => bad_filter;
    mqtt_1_5_3_2_a_topic_containing_u_0000_closes_the_connection => null_char;
    mqtt_4_7_1_3_a_single_level_wildcard_not_filling_its_level_is_refused => partial_plus;
}

async fn closes_after(t: &Target, name: &str, bytes: &[u8]) {
    let mut c = t.client(name, 4).await;
    c.send(bytes).await;
    let (closed, _) = c.closed_within(Duration::from_secs(3)).await;
    assert!(closed, "{name}: the connection stayed open");
}

async fn wildcard_in_topic(t: &Target) {
    for topic in ["conf/+/x", "conf/#"] {
        let p = raw::publish(4, topic, b"x", 0, false, false, 0, &Props::default());
        closes_after(t, "conf-topic-wild", &p).await;
    }
}

async fn empty_topic(t: &Target) {
    let p = raw::publish(4, "", b"x", 0, false, false, 0, &Props::default());
    closes_after(t, "conf-topic-empty", &p).await;
}

async fn bad_utf8(t: &Target) {
    // "conf/\xFF": the topic's length prefix is 6.
    let p = [
        0x30, 0x09, 0x00, 0x06, b'c', b'o', b'n', b'f', b'/', 0xFF, b'x',
    ];
    closes_after(t, "conf-topic-utf8", &p).await;
}

async fn empty_subscribe(t: &Target) {
    closes_after(t, "conf-sub-empty", &[0x82, 0x02, 0x00, 0x01]).await;
}

async fn bad_filter(t: &Target) {
    let mut c = t.client("conf-filter-bad", 4).await;
    c.send(&raw::subscribe(4, 5, &[("conf/#/x", 0)], &Props::default()))
        .await;
    // 3.1.1 leaves the choice: SUBACK 0x80 for the filter, or closing the connection.
    match c.recv_within(Duration::from_secs(2)).await {
        Some(raw::Packet::SubAck { pkid: 5, codes, .. }) => assert_eq!(codes, [0x80]),
        None => {}
        Some(other) => panic!("unexpected {other:?}"),
    }
}

async fn null_char(t: &Target) {
    // MQTT-1.5.3-2: "A UTF-8 encoded string MUST NOT include an encoding of the
    // null character U+0000. If a receiver (Server or Client) receives a
    // Control Packet containing U+0000 it MUST close the Network Connection."
    let p = raw::publish(
        4,
        "conf/\u{0}x",
        b"x",
        0,
        false,
        false,
        0,
        &Props::default(),
    );
    closes_after(t, "conf-topic-null", &p).await;
}

async fn partial_plus(t: &Target) {
    // MQTT-4.7.1-3: the single-level wildcard "MUST occupy an entire level of
    // the filter" (and MQTT-4.7.1-2: `#` must follow a separator). 3.1.1 lets
    // the server refuse the filter (SUBACK 0x80) or close the connection.
    for filter in ["conf/a+", "conf/+a/b", "conf/x#"] {
        let mut c = t.client("conf-filter-partial", 4).await;
        c.send(&raw::subscribe(4, 6, &[(filter, 0)], &Props::default()))
            .await;
        match c.recv_within(Duration::from_secs(2)).await {
            Some(raw::Packet::SubAck { pkid: 6, codes, .. }) => {
                assert_eq!(codes, [0x80], "{filter}")
            }
            None => {}
            Some(other) => panic!("{filter}: unexpected {other:?}"),
        }
    }
}
