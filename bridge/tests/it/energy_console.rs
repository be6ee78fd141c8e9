//! The console draws a smart meter's energy per half hour, in a real
//! headless Chromium, from a simulated gateway's backfilled day.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::json;

use crate::common::browser::Browser;
use crate::console::sign_in;
use crate::stack::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_sees_a_meters_energy_per_half_hour_with_its_gaps() {
    let stack = Stack::start(|_| {}).await;
    stack.wait_ready().await;
    let h = &stack.h;
    h.add_device("sim-000000", kumo_bridge::DeviceKind::SmartMeter)
        .await;
    let settings = kumo_sim::Settings {
        nodes: vec![format!("127.0.0.1:{}", stack.port)],
        devices: 1,
        meter_fraction: 1.0,
        backfill_days: 1,
        pki_dir: Some(stack.pki.dir().to_path_buf()),
        ..kumo_sim::Settings::default()
    };
    let ca = std::fs::read_to_string(stack.pki.ca_path()).unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let done = kumo_sim::backfill::run(settings, ca, stop).await.unwrap();
    assert_eq!(done.reports, 288);
    let b = Browser::start().await;
    tokio::time::timeout(Duration::from_secs(240), async {
        sign_in(&b, &h.base, &h.token).await;
        b.click("a.name").await;
        let chart = "svg.chart[data-sensor=kwh]";
        b.find(chart).await;
        // The stored readings arrive while the page may already be open:
        // reload the range until the day is there.
        let bars =
            "return document.querySelectorAll('svg.chart[data-sensor=kwh] rect.bought').length";
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while b.eval(bars, json!([])).await.as_u64().unwrap() < 40 {
            assert!(tokio::time::Instant::now() < deadline, "no day of bars");
            b.click("button[data-range='24h']").await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let slots = b
            .eval(
                "return Number(document.querySelector(arguments[0]).dataset.slots)",
                json!([chart]),
            )
            .await;
        assert_eq!(slots, json!(49), "a day of half hours, both ends partial");
        let gaps = b
            .eval(
                "return document.querySelectorAll('svg.chart[data-sensor=kwh] rect.gap').length",
                json!([]),
            )
            .await;
        assert!(
            (1..=3).contains(&gaps.as_u64().unwrap()),
            "the partial slots are shaded, not drawn as zero: {gaps}"
        );
        assert!(b.text("main").await.contains("Energy"));
        b.screenshot("20-meter-energy").await;
        let errors = b.console_errors().await;
        assert!(errors.is_empty(), "{errors:?}");
    })
    .await
    .expect("the journey finished in time");
    b.quit().await;
    stack.stop().await;
}
