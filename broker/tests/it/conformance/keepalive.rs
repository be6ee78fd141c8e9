//! Keepalive: the 1.5× rule, PINGREQ, 3.1.1's keepalive 0, MQTT 5 Server Keep Alive.

use std::time::Duration;

use super::raw::{self, Props};
use super::{code, conformance, connack_props, mosquitto_deviates, Target, MAX_KEEPALIVE};

conformance! {
    mqtt_3_1_2_23_pingreq_keeps_the_connection_alive => pings_keep_it, kumo: |s: &mut kumo_broker::Settings| s.min_keepalive_secs = 1;
    mqtt_3_1_2_10_keepalive_0_means_no_keepalive_in_3_1_1 => keepalive_zero, kumo: |s: &mut kumo_broker::Settings| { s.min_keepalive_secs = 1; s.max_keepalive_secs = 2; };
    v5_3_2_2_3_14_server_keep_alive_is_announced_when_the_server_changes_it => server_keep_alive;
}

// Mosquitto 2.0.11 closes a silent keepalive-2 client after about 6 s, not 3.
mosquitto_deviates! {
    mqtt_3_1_2_24_a_client_silent_for_one_and_a_half_keepalives_is_disconnected => silent_client, kumo: |s: &mut kumo_broker::Settings| s.min_keepalive_secs = 1;
}

async fn connected(t: &Target, name: &str, v: u8, keepalive: u16) -> raw::Raw {
    let mut c = t.open(name, v).await;
    let ack = c
        .connect(name, true, keepalive, &Props::default(), None)
        .await;
    assert_eq!(code(&ack), 0);
    c
}

async fn silent_client(t: &Target) {
    let mut c = connected(t, "conf-ka-silent", 4, 2).await;
    let start = std::time::Instant::now();
    let (closed, _) = c.closed_within(Duration::from_secs(6)).await;
    let after = start.elapsed();
    assert!(closed, "still open after 6 s");
    assert!(
        (Duration::from_millis(2_500)..Duration::from_millis(4_500)).contains(&after),
        "closed after {after:?}, expected about 3 s"
    );
}

async fn pings_keep_it(t: &Target) {
    let mut c = connected(t, "conf-ka-ping", 4, 1).await;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(c.ping().await);
    }
}

async fn keepalive_zero(t: &Target) {
    // Kumo's ceiling is 2 s in this check: a 3.1.1 keepalive 0 must not be replaced by it.
    let mut c = connected(t, "conf-ka-zero", 4, 0).await;
    let (closed, _) = c.closed_within(Duration::from_secs(4)).await;
    assert!(!closed, "keepalive 0 connection closed");
    assert!(c.ping().await);
}

async fn server_keep_alive(t: &Target) {
    let mut c = t.open("conf-ka-ska", 5).await;
    let ack = c
        .connect("conf-ka-ska", true, 3_600, &Props::default(), None)
        .await;
    assert_eq!(code(&ack), 0);
    assert_eq!(
        connack_props(&ack).num(raw::SERVER_KEEP_ALIVE),
        Some(u32::from(MAX_KEEPALIVE))
    );
}
