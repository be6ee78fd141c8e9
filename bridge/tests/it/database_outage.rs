//! The database goes away under a running bridge — every connection cut, new
//! ones refused, as during a PostgreSQL restart — and comes back: the REST API
//! answers 503 in Nature's error shape meanwhile (no hang, no 500), readiness
//! says why, QoS 1 readings published during the outage are all stored once
//! afterwards, and commands work again. (Its own test binary: the outage is
//! made on the test server's database of this one test.)
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::stack::Stack;

const SEC: Duration = Duration::from_secs(1);

async fn stored(s: &Stack, device: &str) -> i64 {
    s.h.client()
        .await
        .query_one(
            "SELECT count(*) FROM readings WHERE device_id = $1",
            &[&device],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_loses_no_reading_and_the_api_says_503_meanwhile() {
    let s = Stack::start(|_| {}).await;
    let hub = s.device("remo-1").await;
    let sensor = s.device("remo-2").await;
    let ac = s.h.add_appliance("remo-1", "kumo-ac-generic", "AC").await;
    let mut dev = hub.connect(&[]).await;
    let db: String =
        s.h.client()
            .await
            .query_one("SELECT current_database()", &[])
            .await
            .unwrap()
            .get(0);
    let admin = kumo_testkit::connect(&kumo_testkit::server().await.url()).await;

    // The database goes away: connections cut, new ones refused.
    admin
        .batch_execute(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS false"))
        .await
        .unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&db],
        )
        .await
        .unwrap();

    let n = 300;
    let mut publisher = sensor
        .connect(&["--readings", &n.to_string(), "--interval-ms", "5"])
        .await;
    let started = std::time::Instant::now();
    let r = s.h.get("/1/devices").await;
    r.assert_error(503001);
    let r =
        s.h.post(
            &format!("/1/appliances/{ac}/aircon_settings"),
            &[("operation_mode", "cool"), ("temperature", "24")],
        )
        .await;
    r.assert_error(503001);
    assert!(started.elapsed() < 15 * SEC, "the API answered promptly");
    let (status, body) = s.readyz().await;
    assert_eq!(status, 503, "{body}");

    // Back after a few seconds, as after a restart.
    tokio::time::sleep(3 * SEC).await;
    admin
        .batch_execute(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS true"))
        .await
        .unwrap();

    publisher.expect_line("SENT", 60 * SEC).await;
    let deadline = std::time::Instant::now() + 60 * SEC;
    while stored(&s, "remo-2").await < n {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} readings stored",
            stored(&s, "remo-2").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stored(&s, "remo-2").await, n, "each reading once");

    // Everything works again: readiness, reads, a command round trip.
    s.wait_ready().await;
    let devices = s.h.get("/1/devices").await.ok();
    assert_eq!(devices.as_array().unwrap().len(), 2);
    assert_eq!(
        s.h.command_count().await,
        0,
        "the refused command left nothing"
    );
    let r =
        s.h.send(
            s.h.http
                .post(format!("{}/1/appliances/{ac}/aircon_settings", s.h.base))
                .bearer_auth(&s.h.token)
                .header("prefer", "wait=10")
                .form(&[("operation_mode", "cool"), ("temperature", "24")]),
        )
        .await;
    assert_eq!(r.headers["x-kumo-command-status"], "acked", "{:?}", r.body);
    assert_eq!(
        dev.next_command(5 * SEC).await.unwrap()["id"],
        r.command_id().to_string()
    );
    publisher.disconnect().await;
    dev.disconnect().await;
    s.stop().await;
}
