use super::*;

fn hub(backlog: usize, buffer: usize) -> EventHub {
    EventHub::new(EventSettings {
        backlog,
        subscriber_buffer: buffer,
        ..EventSettings::default()
    })
}

fn ids(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.id).collect()
}

#[test]
fn publish_assigns_increasing_ids_per_account() {
    let hub = hub(8, 8);
    let a1 = hub.publish("a", "x", Value::Null);
    let a2 = hub.publish("a", "x", Value::Null);
    assert_eq!(a2, a1 + 1);
    assert!(a1 > 1_600_000_000_000_000, "ids start at unix ms x 1000");
}

#[tokio::test]
async fn a_subscriber_gets_live_events_in_order_and_only_its_accounts() {
    let hub = hub(8, 8);
    let mut sub = hub.subscribe("a", None).unwrap();
    hub.publish("a", "one", Value::from(1));
    hub.publish("b", "other", Value::from(2));
    hub.publish("a", "two", Value::from(3));
    let first = sub.live.recv().await.unwrap();
    let second = sub.live.recv().await.unwrap();
    assert_eq!(first.event.kind, "one");
    assert_eq!(second.event.kind, "two");
    assert_eq!(second.id, first.id + 1);
    assert!(sub.live.try_recv().is_err());
}

#[test]
fn resuming_replays_exactly_the_missed_events() {
    let hub = hub(8, 8);
    let first = hub.publish("a", "x", Value::Null);
    hub.publish("a", "x", Value::Null);
    hub.publish("a", "x", Value::Null);
    let sub = hub.subscribe("a", Some(first)).unwrap();
    assert!(!sub.gap);
    assert_eq!(ids(&sub.replay), [first + 1, first + 2]);
}

#[test]
fn resuming_from_an_evicted_id_reports_a_gap() {
    let hub = hub(2, 8);
    let first = hub.publish("a", "x", Value::Null);
    for _ in 0..4 {
        hub.publish("a", "x", Value::Null);
    }
    let sub = hub.subscribe("a", Some(first)).unwrap();
    assert!(sub.gap);
    assert_eq!(ids(&sub.replay), [first + 3, first + 4]);
}

#[tokio::test]
async fn a_slow_subscriber_is_cut_off_without_blocking_others() {
    let hub = hub(64, 2);
    let mut slow = hub.subscribe("a", None).unwrap();
    let mut fast = hub.subscribe("a", None).unwrap();
    for i in 0..5 {
        hub.publish("a", "x", Value::from(i));
        let _ = fast.live.recv().await.unwrap();
    }
    // The slow one keeps what fit in its buffer, then its stream ends.
    assert!(slow.live.recv().await.is_some());
    assert!(slow.live.recv().await.is_some());
    assert!(slow.live.recv().await.is_none());
    assert_eq!(hub.subscriber_count(), 1);
}

#[test]
fn device_events_are_kept_only_for_watched_accounts() {
    let hub = hub(8, 8);
    assert_eq!(hub.offer_device_event("a", "reading", Value::Null), None);
    let _sub = hub.subscribe("a", None).unwrap();
    assert!(hub
        .offer_device_event("a", "reading", Value::Null)
        .is_some());
}

#[test]
fn an_account_may_hold_only_so_many_streams() {
    let hub = EventHub::new(EventSettings {
        max_streams_per_account: 2,
        ..EventSettings::default()
    });
    let first = hub.subscribe("a", None).unwrap();
    let _second = hub.subscribe("a", None).unwrap();
    assert!(hub.subscribe("a", None).is_none());
    assert!(
        hub.subscribe("b", None).is_some(),
        "other accounts are unaffected"
    );
    drop(first);
    assert!(
        hub.subscribe("a", None).is_some(),
        "a closed stream frees its slot"
    );
}
