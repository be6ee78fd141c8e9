//! `GET /v1/events`: per-account Server-Sent Events with ids, ordering,
//! `Last-Event-ID` resumption and an explicit reset when events were lost.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::common::{start, start_with, test_settings, Harness};
use kumo_bridge::live::LiveEvent;
use kumo_bridge::DeviceKind;
use serde_json::{json, Value};
use time::OffsetDateTime;

/// One parsed SSE message.
#[derive(Debug, Clone)]
struct Frame {
    id: Option<u64>,
    event: String,
    data: Value,
}

/// Reads SSE messages off a streaming response, skipping keep-alive comments.
struct SseReader {
    response: reqwest::Response,
    buf: String,
}

impl SseReader {
    async fn open(h: &Harness, token: &str, last_event_id: Option<u64>) -> Self {
        let mut req = h
            .http
            .get(format!("{}/v1/events", h.base))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let response = req.send().await.unwrap();
        assert_eq!(response.status(), 200);
        crate::common::assert_standard_headers(response.headers());
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Self {
            response,
            buf: String::new(),
        }
    }

    async fn next(&mut self) -> Frame {
        tokio::time::timeout(Duration::from_secs(10), self.next_inner())
            .await
            .expect("an SSE event within 10 s")
    }

    async fn next_inner(&mut self) -> Frame {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                if let Some(frame) = parse(&block) {
                    return frame;
                }
                continue;
            }
            let chunk = self.response.chunk().await.unwrap().expect("stream open");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next `n` frames.
    async fn take(&mut self, n: usize) -> Vec<Frame> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.next().await);
        }
        out
    }
}

fn parse(block: &str) -> Option<Frame> {
    let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
    let mut any = false;
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("id:") {
            id = Some(v.trim().parse().unwrap());
        } else if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_string();
            any = true;
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
            any = true;
        }
    }
    any.then(|| Frame {
        id,
        event,
        data: serde_json::from_str(&data).unwrap(),
    })
}

fn reading(device: &str, val: f64) -> LiveEvent {
    LiveEvent::Reading {
        device: crate::common::dev(device),
        sensor: "te",
        val,
        at: OffsetDateTime::now_utc(),
    }
}

fn live(h: &Harness) -> kumo_bridge::live::LiveFeed {
    h.bridge.as_ref().unwrap().commands().live().clone()
}

fn hub(h: &Harness) -> kumo_bridge::events::EventHub {
    h.bridge.as_ref().unwrap().events()
}

#[tokio::test]
async fn the_stream_delivers_device_command_and_rule_events_in_order() {
    let h = start().await;
    h.add_device("dev-a", DeviceKind::Remo).await;
    let mut sse = SseReader::open(&h, &h.token, None).await;
    let feed = live(&h);
    feed.publish(reading("dev-a", 21.5));
    feed.publish(LiveEvent::Command {
        device: "dev-a".into(),
        user: Some(h.user_id.clone()),
        command_id: uuid::Uuid::new_v4(),
        appliance: None,
        status: "sent",
        at: OffsetDateTime::now_utc(),
    });
    feed.publish(LiveEvent::Presence {
        device: "dev-a".into(),
        online: false,
        node: Some("n1".into()),
        at: OffsetDateTime::now_utc(),
    });
    // The rules publish through the hub directly, a separate producer: wait
    // for the routed events first so the expected order is defined.
    let frames = sse.take(3).await;
    hub(&h).publish(&h.user_id, "rule_event", json!({"name": "hello"}));
    let rule = sse.next().await;

    let kinds: Vec<_> = frames.iter().map(|f| f.event.as_str()).collect();
    assert_eq!(kinds, ["reading", "command", "presence"]);
    assert_eq!(frames[0].data["device_id"], "dev-a");
    assert_eq!(frames[0].data["sensor"], "te");
    assert_eq!(frames[0].data["val"], 21.5);
    let at = frames[0].data["created_at"].as_str().unwrap();
    OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(frames[1].data["status"], "sent");
    assert_eq!(frames[2].data["online"], false);
    assert_eq!(rule.event, "rule_event");
    assert_eq!(rule.data["name"], "hello");
    let ids: Vec<u64> = frames
        .iter()
        .chain([&rule])
        .map(|f| f.id.unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "ids {ids:?}");
    h.stop().await;
}

#[tokio::test]
async fn resuming_with_last_event_id_replays_exactly_the_missed_events() {
    let h = start().await;
    let hub = hub(&h);
    let ids: Vec<u64> = (0..5)
        .map(|i| hub.publish(&h.user_id, "rule_event", json!({ "n": i })))
        .collect();
    let mut sse = SseReader::open(&h, &h.token, Some(ids[1])).await;
    let replayed = sse.take(3).await;
    assert_eq!(
        replayed.iter().map(|f| f.id.unwrap()).collect::<Vec<_>>(),
        ids[2..]
    );
    assert_eq!(replayed[0].data["n"], 2);
    // Then live events continue the sequence.
    let next = hub.publish(&h.user_id, "rule_event", json!({"n": 5}));
    let frame = sse.next().await;
    assert_eq!(frame.id, Some(next));
    assert_eq!(next, ids[4] + 1);

    // The query parameter works like the header.
    let resp = h
        .http
        .get(format!("{}/v1/events?last_event_id={}", h.base, ids[3]))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap();
    let mut by_query = SseReader {
        response: resp,
        buf: String::new(),
    };
    assert_eq!(by_query.take(2).await[0].id, Some(ids[4]));
    h.stop().await;
}

#[tokio::test]
async fn an_id_older_than_the_backlog_gets_a_reset_before_what_is_left() {
    let mut settings = test_settings();
    settings.events.backlog = 3;
    let h = start_with(settings).await;
    let hub = hub(&h);
    let ids: Vec<u64> = (0..6)
        .map(|i| hub.publish(&h.user_id, "rule_event", json!({ "n": i })))
        .collect();
    let mut sse = SseReader::open(&h, &h.token, Some(ids[0])).await;
    let reset = sse.next().await;
    assert_eq!(reset.event, "reset");
    assert_eq!(reset.id, None);
    assert_eq!(reset.data["reason"], "backlog_gap");
    assert_eq!(reset.data["oldest_event_id"], ids[3]);
    let rest = sse.take(3).await;
    assert_eq!(
        rest.iter().map(|f| f.id.unwrap()).collect::<Vec<_>>(),
        ids[3..]
    );
    h.stop().await;
}

#[tokio::test]
async fn another_accounts_events_never_appear() {
    let h = start().await;
    h.add_device("mine", DeviceKind::Remo).await;
    let (bob, bob_token) = h.other_user().await;
    h.give_device("bobs", &bob).await;
    let mut alice = SseReader::open(&h, &h.token, None).await;
    let mut bobs = SseReader::open(&h, &bob_token, None).await;
    let feed = live(&h);
    feed.publish(reading("bobs", 1.0));
    hub(&h).publish(&bob, "rule_event", json!({"secret": "bob's"}));
    feed.publish(reading("mine", 2.0));
    let first = alice.next().await;
    assert_eq!(first.data["device_id"], "mine");
    hub(&h).publish(&h.user_id, "marker", json!({}));
    assert_eq!(
        alice.next().await.event,
        "marker",
        "nothing of Bob's in between"
    );
    // Bob gets both (the feed and direct publishes are separate producers,
    // so their relative order is not defined).
    let mut bob_kinds: Vec<_> = bobs.take(2).await.into_iter().map(|f| f.event).collect();
    bob_kinds.sort();
    assert_eq!(bob_kinds, ["reading", "rule_event"]);
    h.stop().await;
}

#[tokio::test]
async fn the_stream_needs_basic_read_and_a_numeric_last_event_id() {
    let h = start().await;
    let url = format!("{}/v1/events", h.base);
    h.send(h.http.get(&url)).await.assert_error(401001);
    let sendir = h.token_with(&["sendir"]).await;
    h.send(h.http.get(&url).bearer_auth(&sendir))
        .await
        .assert_error(403001);
    h.send(
        h.http
            .get(&url)
            .bearer_auth(&h.token)
            .header("Last-Event-ID", "yesterday"),
    )
    .await
    .assert_error(400001);
    h.send(
        h.http
            .get(format!("{url}?last_event_id=-1"))
            .bearer_auth(&h.token),
    )
    .await
    .assert_error(400001);
    h.stop().await;
}

#[tokio::test]
async fn a_slow_client_is_cut_off_and_resumes_where_it_stopped() {
    let mut settings = test_settings();
    settings.events.subscriber_buffer = 4;
    settings.events.backlog = 1000;
    let h = start_with(settings).await;
    let hub = hub(&h);
    let mut sse = SseReader::open(&h, &h.token, None).await;
    // Far more than the buffer (and the socket) hold while nobody reads.
    let payload = "x".repeat(4096);
    let ids: Vec<u64> = (0..400)
        .map(|i| hub.publish(&h.user_id, "rule_event", json!({ "n": i, "pad": payload })))
        .collect();
    // Read what was sent before the cut; the stream then ends.
    let mut last = None;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), sse.response.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                sse.buf.push_str(std::str::from_utf8(&chunk).unwrap());
                while let Some(end) = sse.buf.find("\n\n") {
                    let block: String = sse.buf.drain(..end + 2).collect();
                    if let Some(f) = parse(&block) {
                        last = f.id.or(last);
                    }
                }
            }
            Ok(Ok(None)) | Ok(Err(_)) => break,
            Err(_) => panic!("the slow stream was not closed"),
        }
    }
    let last = last.expect("some events arrived before the cut");
    assert!(last < ids[399], "the stream was cut before the end");
    let mut resumed = SseReader::open(&h, &h.token, Some(last)).await;
    let next = resumed.next().await;
    assert_eq!(
        next.id,
        Some(last + 1),
        "resumes right after the last event seen"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_command_sent_through_rest_shows_each_status_change_on_the_stream() {
    let h = start().await;
    h.add_device("remo-1", DeviceKind::Remo).await;
    let light = h
        .add_appliance("remo-1", "kumo-light-generic", "LIGHT")
        .await;
    let mut sse = SseReader::open(&h, &h.token, None).await;
    let id = h
        .post(&format!("/1/appliances/{light}/light"), &[("button", "on")])
        .await
        .command_id();
    let log = h.bridge.as_ref().unwrap().commands();
    assert!(log.mark_sent(id, Some("node-a")).await.unwrap());
    let ack = kumo_bridge::Ack {
        ok: true,
        result: None,
        error: None,
        state: None,
    };
    log.complete(&crate::common::dev("remo-1"), id, ack)
        .await
        .unwrap()
        .unwrap();
    let frames = sse.take(3).await;
    let statuses: Vec<_> = frames.iter().map(|f| f.data["status"].clone()).collect();
    assert_eq!(statuses, [json!("queued"), json!("sent"), json!("acked")]);
    for f in &frames {
        assert_eq!(f.event, "command");
        assert_eq!(f.data["command_id"], id.to_string());
        assert_eq!(f.data["device_id"], "remo-1");
        assert_eq!(f.data["appliance_id"], light);
    }
    h.stop().await;
}

#[tokio::test]
async fn a_device_that_changes_hands_streams_to_its_new_owner_at_once() {
    let h = start().await;
    assert_eq!(test_settings().events.owner_refresh_secs, 30);
    h.add_device("moving", DeviceKind::Remo).await;
    let (bob, bob_token) = h.other_user().await;
    let mut alice = SseReader::open(&h, &h.token, None).await;
    let mut bobs = SseReader::open(&h, &bob_token, None).await;
    let feed = live(&h);
    feed.publish(reading("moving", 1.0));
    assert_eq!(alice.next().await.data["device_id"], "moving");
    h.client()
        .await
        .execute(
            "UPDATE devices SET user_id = $1 WHERE id = 'moving'",
            &[&bob],
        )
        .await
        .unwrap();
    // The router learns it from the ownership log, not at the next 30 s reload.
    let moved = std::time::Instant::now();
    while hub(&h)
        .viewers_of("moving")
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        != [bob.clone()]
    {
        assert!(
            moved.elapsed() < Duration::from_secs(10),
            "the move never reached the event router"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    feed.publish(reading("moving", 2.0));
    let got = bobs.next().await;
    assert_eq!(
        (got.event.as_str(), &got.data["device_id"]),
        ("reading", &json!("moving"))
    );
    hub(&h).publish(&h.user_id, "marker", json!({}));
    assert_eq!(
        alice.next().await.event,
        "marker",
        "the old owner no longer sees the device"
    );
    h.stop().await;
}
