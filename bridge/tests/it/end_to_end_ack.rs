//! A device's QoS 1 reading is acknowledged to the device only once the
//! bridge has committed it: the node holds the device's PUBACK until the
//! bridge's (see `broker/src/confirm.rs`), which the bridge sends after the
//! insert. Before, the node acknowledged on routing, and a node crash between
//! its PUBACK and the bridge's commit lost a reading the device had been told
//! was safe.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::stack::{slow_inserts, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos1_reading_is_acknowledged_to_the_device_only_once_it_is_stored() {
    let s = Stack::start(|_| {}).await;
    let device = s.device("remo-1").await;
    let db = s.h.client().await;
    // Every insert into `readings` takes a second before it commits.
    slow_inserts(&db, 1.0).await;

    let started = Instant::now();
    // mosquitto_pub -q 1 exits once its PUBACK has arrived.
    let status = tokio::time::timeout(
        Duration::from_secs(30),
        device
            .mosquitto_pub("devices/remo-1/sensors/te")
            .args(["-q", "1", "-m", r#"{"val":21.5}"#])
            .status(),
    )
    .await
    .expect("mosquitto_pub finished")
    .unwrap();
    assert!(status.success());
    let stored: i64 = db
        .query_one(
            "SELECT count(*) FROM readings WHERE device_id = 'remo-1' AND sensor = 'te'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored, 1,
        "the device was acknowledged before the reading was stored"
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
}
