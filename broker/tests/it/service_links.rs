//! A service session's router link must survive the quirks of rumqttd's
//! `LinkRx::next`, which yields `Ok(None)` when a wake-up finds its buffer
//! already drained. The node once took that for the end of the link and dropped
//! the service, so every reconnecting subscriber saw its retained messages
//! again and again (found with mosquitto_sub, which reconnects on its own).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::{doc, TestNode};
use rumqttd::protocol::QoS;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resubscribing_service_gets_retained_state_once_and_stays_connected() {
    let node = TestNode::start().await;
    let mut dev = node.device("remo-r", 4).await;
    dev.publish("devices/remo-r/state", &doc::state("1.0"), true)
        .await;
    // Let the retained state reach the router before anyone subscribes.
    tokio::time::sleep(Duration::from_millis(200)).await;

    for round in 0..3 {
        let mut bridge = node.service(4).await;
        assert_eq!(
            bridge
                .subscribe(&["devices/remo-r/#"], QoS::AtLeastOnce)
                .await,
            vec![1],
            "round {round}"
        );
        assert_eq!(
            bridge.expect_publish("devices/remo-r/state").await.unwrap(),
            doc::state("1.0"),
            "round {round}: retained state arrives"
        );
        assert!(
            bridge
                .no_publish_on("devices/remo-r/state", Duration::from_millis(1500))
                .await,
            "round {round}: retained state arrives once"
        );
        assert!(
            !bridge.closed_within(Duration::from_millis(200)).await,
            "round {round}: the service stays connected"
        );
        dev.publish("devices/remo-r/sensors/te", br#"{"val":20}"#, false)
            .await;
        assert_eq!(
            bridge
                .expect_publish("devices/remo-r/sensors/te")
                .await
                .unwrap(),
            br#"{"val":20}"#,
            "round {round}: live traffic still flows"
        );
    }
}
