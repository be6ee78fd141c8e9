//! Opt-outs racing the dispatch: twenty units opt out at the moment their
//! event starts. Whichever way each race goes, no unit stays commanded past
//! its opt-out: it is either never commanded, or its restore is due no later
//! than the opt-out.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::common::*;
use kumo_bridge::DeviceKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opt_outs_racing_the_dispatch_never_leave_a_unit_commanded() {
    let mut settings = test_settings();
    settings.demand_response.stagger_secs = 1;
    settings.demand_response.poll_interval_ms = 50;
    let h = start_with(settings).await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let mut units = Vec::new();
    for _ in 0..20 {
        units.push(h.add_appliance("remo-1", "kumo-ac-generic", "AC").await);
    }
    let on = serde_json::json!({"temp": "25", "temp_unit": "c", "mode": "cool",
                                "vol": "", "dir": "", "dirh": "", "button": ""});
    h.client()
        .await
        .execute("UPDATE appliances SET settings = $1", &[&on])
        .await
        .unwrap();
    let (_, agg) = kumo_bridge::demand::principal::create(&h.pool, "Grid Co")
        .await
        .unwrap();
    let prg = h
        .post_as(&agg, "/v1/aggregator/programs", &[("name", "Peaks")])
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let enrol = format!("/v1/programs/{prg}/enrolments");
    for u in &units {
        let r = h
            .post(&enrol, &[("appliance", u), ("max_setpoint_change", "2")])
            .await;
        assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);
    }
    let start = OffsetDateTime::now_utc() + time::Duration::seconds(1);
    let fmt = |t: OffsetDateTime| t.format(&Rfc3339).unwrap();
    let end = fmt(start + time::Duration::seconds(60));
    let r = h
        .post_as(
            &agg,
            &format!("/v1/aggregator/programs/{prg}/events"),
            &[
                ("start", &fmt(start)),
                ("end", &end),
                ("target", "setpoint"),
                ("setpoint_change", "2"),
            ],
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);
    // Into the stagger: some units are commanded already, some not yet.
    let wait = start + time::Duration::milliseconds(500) - OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
    let outs = units.iter().map(|u| {
        let req = h
            .http
            .post(format!("{}{enrol}/{u}/opt_out", h.base))
            .bearer_auth(&h.token);
        async move { req.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures_util::future::join_all(outs).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let rows = h
        .client()
        .await
        .query(
            "SELECT d.state, d.reason, d.restore_at <= e.opted_out_at + interval '1 second',
                    EXISTS (SELECT 1 FROM commands c
                            WHERE c.idempotency_key = 'dr:' || d.event_id || ':' || d.appliance_id)
             FROM dr_dispatches d JOIN dr_enrolments e USING (program_id, appliance_id)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 20);
    let (mut skipped, mut commanded) = (0, 0);
    for r in &rows {
        let (state, reason, restore_due, queued): (String, Option<String>, bool, bool) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        match state.as_str() {
            // Skipped means never commanded: a command queued while the
            // opt-out came must be recorded, with its restore.
            "skipped" => {
                assert_eq!(reason.as_deref(), Some("opted out"));
                assert!(!queued, "skipped, but its command was queued");
                skipped += 1;
            }
            // Its command is still queued (no device here): the restore
            // waits for it, but was made due at the opt-out.
            "dispatched" | "restored" | "restore_skipped" => {
                assert!(restore_due, "{state} with its restore after the opt-out");
                commanded += 1;
            }
            other => panic!("a unit left {other} after its opt-out"),
        }
    }
    assert_eq!(skipped + commanded, 20);
    h.stop().await;
}
