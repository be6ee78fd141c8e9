//! One simulated device on the network: connect, report, obey commands, survive.
//!
//! Owns the connection lifecycle — TLS + MQTT connect with a deadline, command
//! subscription, retained state, telemetry on its interval, acks, reconnect with
//! exponential backoff and jitter, chaos faults and a clean DISCONNECT on shutdown.
//! Behaviour (what to report, how to answer) belongs to [`crate::model`].

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kumo_contract::topic::{device_topic, Leaf};
use kumo_contract::DeviceId;
use rustls::ClientConfig;
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, timeout, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::link::{loopback_source, Endpoint, Link, LinkError, LinkEvent, LinkOptions};
use crate::model::{CommandOutcome, DeviceModel, SimRng};
use crate::renew::{Outcome, Renewal};
use crate::settings::Settings;
use crate::stats::Stats;
use kumo_contract::payload::{AckResult, StateReport};

/// What every device of a fleet shares.
pub struct Shared {
    pub settings: Settings,
    pub stats: Arc<Stats>,
    pub stop: CancellationToken,
    /// Bumped by the fleet on every reconnect burst.
    pub burst: watch::Receiver<u64>,
    /// The settings' nodes, resolved once (in the same order).
    pub endpoints: Vec<Endpoint>,
    /// Builds a device's TLS configuration again after it renews (with the
    /// CA bundle the answer brought).
    pub trust: crate::renew::Trust,
    /// Where devices keep their own certificate and key, if they do
    /// (`sim.device_cert_dir`): a renewed pair is written back there.
    pub cert_dir: Option<std::path::PathBuf>,
    /// What the cloud confirmed, when `sim.ledger_dir` is set.
    pub ledger: Option<crate::ledger::Ledger>,
    /// Every connection attempt of this process, first or retry, holds one
    /// of `sim.max_connecting` permits (none: no limit). Real devices each
    /// have their own CPU; simulated ones share a thread, and thousands of
    /// retries' handshakes queued ahead of a connected device's timers kept
    /// it from its reports and keepalives for over 90 s (fleet runs 29–32:
    /// the nodes then rightly end it).
    pub connect_gate: Option<tokio::sync::Semaphore>,
    /// Whether this process keeps its devices' time: `false` while the
    /// fleet's probe finds its timers running a second or more late. No new
    /// connection attempt starts then; the connected come first.
    pub on_time: watch::Sender<bool>,
}

impl Shared {
    /// The gate for `settings.max_connecting` (0: none).
    pub fn connect_gate(settings: &Settings) -> Option<tokio::sync::Semaphore> {
        match settings.max_connecting {
            0 => None,
            n => Some(tokio::sync::Semaphore::new(
                usize::try_from(n)
                    .unwrap_or(usize::MAX)
                    .min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
        }
    }
}

/// Counts a connection attempt in flight while it lives (also when dropped
/// mid-attempt).
struct Connecting<'a>(&'a Stats);

impl<'a> Connecting<'a> {
    fn new(stats: &'a Stats) -> Self {
        stats.connecting.fetch_add(1, Relaxed);
        Self(stats)
    }
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        self.0.connecting.fetch_sub(1, Relaxed);
    }
}

/// A place among the process's connection attempts (none without a gate),
/// once its timers run on time.
async fn wait_for_place<'a>(
    gate: Option<&'a tokio::sync::Semaphore>,
    on_time: &watch::Sender<bool>,
) -> Option<tokio::sync::SemaphorePermit<'a>> {
    // The semaphore is never closed.
    let permit = match gate {
        Some(gate) => gate.acquire().await.ok(),
        None => None,
    };
    // Waits holding the place, so at most the gate's worth of attempts
    // start at once when the process catches up. The sender outlives this.
    let _ = on_time.subscribe().wait_for(|on_time| *on_time).await;
    permit
}

/// One connection attempt, once the process's gate lets it through; `None`
/// if the fleet stops first. The device's subscriptions and state report
/// leave with its CONNECT ([`first_packets`]); whether the report was queued
/// comes back with the link. Once started, an attempt runs to its end (at
/// most the connect deadline) even if the fleet stops meanwhile: the node
/// may already have taken the device's state, and the session that follows
/// ends with a DISCONNECT instead of a dropped socket (and a last will).
async fn connect_gated(
    dev: &Device,
    shared: &Shared,
    endpoint: &Endpoint,
) -> Option<Result<(Box<Link>, bool), LinkError>> {
    let _permit = tokio::select! {
        _ = shared.stop.cancelled() => return None,
        permit = wait_for_place(shared.connect_gate.as_ref(), &shared.on_time) => permit,
    };
    let _counted = Connecting::new(&shared.stats);
    // Boxed, like every part of a device's life that is big and passing:
    // the task keeps only what a connected device needs. The link goes to
    // the heap too: moved through this result, it was laid out twice in
    // the device's task.
    let options = link_options(dev, &shared.settings, endpoint);
    Box::pin(Link::connect_then(options, |link| {
        first_packets(dev, &shared.settings, link)
    }))
    .await
    .map(|(link, state_queued)| (Box::new(link), state_queued))
    .into()
}

/// What a device sends first on every connection: its subscriptions, then
/// its state (retained). Returns whether the state report was queued.
fn first_packets(dev: &Device, s: &Settings, link: &mut Link) -> bool {
    link.subscribe(&device_topic(&dev.id, Leaf::Commands));
    if s.renew_at_percent > 0 {
        link.subscribe(&device_topic(&dev.id, Leaf::CertResponse));
    }
    queue_state(dev, link)
}

/// Per-device constant data.
pub struct Device {
    pub index: u64,
    pub id: DeviceId,
    pub tls: Arc<ClientConfig>,
    pub model: DeviceModel,
    pub rng: SimRng,
    /// When to renew the certificate, and the request in flight.
    pub renewal: Renewal,
    /// QoS 1 telemetry awaiting its PUBACK, sent again after a reconnect.
    pub outbox: crate::outbox::Outbox,
}

/// How a connected session ended.
enum End {
    Shutdown,
    Dropped(LinkError),
    ChaosDisconnect,
    ChaosKill,
    Burst,
    /// A new certificate came: reconnect with it now.
    Renewed,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs the device until the fleet stops.
pub async fn run(mut dev: Box<Device>, shared: Arc<Shared>) {
    let s = &shared.settings;
    let stats = &shared.stats;
    let mut burst = shared.burst.clone();
    let mut attempt: u32 = 0;
    let mut first = true;
    // Device i starts at node i mod n; after a failed attempt or a lost
    // connection it moves to another node of the list, picked at random so
    // that a dead node's devices spread over the others instead of all
    // landing on its neighbour, and stays wherever it connected.
    let mut offset: u64 = 0;
    let nodes = shared.endpoints.len() as u64;
    loop {
        if shared.stop.is_cancelled() {
            return;
        }
        let which =
            (dev.index.wrapping_add(offset) % shared.endpoints.len().max(1) as u64) as usize;
        let Some(endpoint) = shared.endpoints.get(which) else {
            return; // the fleet resolves at least one node before any device starts
        };
        let node = s.node_for(dev.index.wrapping_add(offset));
        if !first || attempt > 0 {
            stats.retries.fetch_add(1, Relaxed);
        }
        let connected = connect_gated(&dev, &shared, endpoint).await;
        let pause = match connected {
            None => return,
            Some(Err(e)) => {
                stats.failed(e.reason);
                tracing::debug!(device_id = %dev.id, node = %node, reason = e.reason.as_str(), error = %e.detail, "connect failed");
                attempt = attempt.saturating_add(1);
                offset = failover(offset, nodes, &mut dev.rng, stats);
                backoff(s, attempt, &mut dev.rng)
            }
            Some(Ok((mut link, state_queued))) => {
                stats.on_connected(first);
                count_publish(stats, state_queued);
                if link.resumed {
                    stats.tls_resumed.fetch_add(1, Relaxed);
                }
                first = false;
                if let Some(ledger) = &shared.ledger {
                    ledger.session(&dev.id, true);
                }
                dev.outbox.reconnected();
                let resent = dev.outbox.resend(&dev.id, &mut link);
                stats.resent.fetch_add(resent, Relaxed);
                // A session that got this far resets the backoff.
                attempt = 0;
                let end = session(&mut dev, &mut link, &shared, &mut burst).await;
                if matches!(end, End::Dropped(_)) {
                    offset = failover(offset, nodes, &mut dev.rng, stats);
                }
                let pause = Box::pin(after_session(end, &mut dev, &mut link, s, stats, node)).await;
                stats.connected.fetch_sub(1, Relaxed);
                if let Some(ledger) = &shared.ledger {
                    ledger.session(&dev.id, false);
                }
                // Dropping the link closes the socket; with no DISCONNECT sent,
                // the broker publishes the last will.
                drop(link);
                match pause {
                    Some(pause) => pause,
                    None => return,
                }
            }
        };
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = sleep(pause) => {}
        }
    }
}

/// The offset of another node than the current one, chosen at random.
fn failover(offset: u64, nodes: u64, rng: &mut SimRng, stats: &Stats) -> u64 {
    if nodes < 2 {
        return offset;
    }
    stats.failovers.fetch_add(1, Relaxed);
    offset.wrapping_add(1 + rng.below(nodes - 1))
}

/// Counts how a session ended and returns the pause before reconnecting, or
/// `None` once the device has disconnected for good.
async fn after_session(
    end: End,
    dev: &mut Device,
    link: &mut Link,
    s: &Settings,
    stats: &Stats,
    node: &str,
) -> Option<Duration> {
    let grace = Duration::from_millis(s.shutdown_timeout_ms);
    Some(match end {
        End::Shutdown => {
            disconnect(link, grace).await;
            return None;
        }
        End::Dropped(e) => {
            stats.dropped(e.reason);
            tracing::debug!(device_id = %dev.id, node = %node, error = %e.detail, "connection lost");
            backoff(s, 1, &mut dev.rng)
        }
        End::ChaosDisconnect => {
            stats.chaos_disconnects.fetch_add(1, Relaxed);
            disconnect(link, grace).await;
            offline_pause(s, &mut dev.rng)
        }
        End::ChaosKill => {
            stats.chaos_kills.fetch_add(1, Relaxed);
            offline_pause(s, &mut dev.rng)
        }
        End::Burst => {
            stats.burst_drops.fetch_add(1, Relaxed);
            Duration::ZERO
        }
        End::Renewed => {
            disconnect(link, grace).await;
            Duration::ZERO
        }
    })
}

/// Sends DISCONNECT and drives the link until the broker closes it or time is up.
async fn disconnect(link: &mut Link, deadline: Duration) {
    if !link.disconnect() {
        return;
    }
    let _ = timeout(deadline, async { while link.poll().await.is_ok() {} }).await;
}

fn backoff(s: &Settings, attempt: u32, rng: &mut SimRng) -> Duration {
    let exp = s
        .reconnect_min_ms
        .saturating_mul(1u64 << attempt.min(20).saturating_sub(1));
    let cap = exp.min(s.reconnect_max_ms) as f64;
    // Full jitter: anywhere up to the step, so the devices one storm knocked
    // off come back spread over the whole step instead of in waves.
    Duration::from_millis(rng.range(0.0, cap) as u64)
}

fn offline_pause(s: &Settings, rng: &mut SimRng) -> Duration {
    let max = match s.chaos.offline_max_ms {
        0 => 5_000,
        ms => ms,
    };
    Duration::from_millis(rng.below(max + 1))
}

/// How `dev` connects to `endpoint` under the fleet's settings.
pub(crate) fn link_options<'a>(
    dev: &'a Device,
    s: &Settings,
    endpoint: &'a Endpoint,
) -> LinkOptions<'a> {
    LinkOptions {
        protocol: s.protocol,
        client_id: dev.id.as_str(),
        endpoint,
        source: loopback_source(dev.index, endpoint.addr),
        tls: dev.tls.clone(),
        keep_alive: Duration::from_secs(s.keep_alive_secs.into()),
        connect_timeout: Duration::from_millis(s.connect_timeout_ms),
        will: will(dev),
    }
}

pub(crate) fn will(dev: &Device) -> (String, Vec<u8>) {
    let report = StateReport {
        online: false,
        appliances: None,
        ..dev.model.state(now_ms())
    };
    let payload = serde_json::to_vec(&report).unwrap_or_default();
    (device_topic(&dev.id, Leaf::State), payload)
}

/// Local hour of day (0–24) in the simulated homes' time zone.
pub(crate) fn local_hour(s: &Settings, now_ms: u64) -> f64 {
    let secs = now_ms as f64 / 1000.0 + s.utc_offset_hours * 3600.0;
    secs.rem_euclid(86_400.0) / 3600.0
}

async fn session(
    dev: &mut Device,
    link: &mut Link,
    shared: &Shared,
    burst: &mut watch::Receiver<u64>,
) -> End {
    let s = &shared.settings;
    let stats = &shared.stats;
    let commands = device_topic(&dev.id, Leaf::Commands);
    let cert_responses = device_topic(&dev.id, Leaf::CertResponse);
    let renew_retry = Duration::from_millis(s.renew_retry_ms);
    // Subscribed and reported with the CONNECT (`first_packets`).
    dev.model.connected();

    let period = Duration::from_millis(s.report_interval_ms);
    // A random phase spreads a fleet's reports over the whole period.
    let phase = Duration::from_millis(dev.rng.below(s.report_interval_ms.max(1)));
    let mut report = tokio::time::interval_at(Instant::now() + phase, period);
    report.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_step = Instant::now();
    let chaos_rate = (s.chaos.disconnects_per_hour + s.chaos.kills_per_hour) / 3600.0;
    let chaos_at = (chaos_rate > 0.0).then(|| {
        let wait = -(1.0 - dev.rng.unit()).ln() / chaos_rate;
        Instant::now() + Duration::from_secs_f64(wait.min(86_400.0 * 365.0))
    });
    let mut burst_open = s.chaos.burst_every_secs > 0;
    burst.mark_unchanged();

    loop {
        tokio::select! {
            biased;
            _ = shared.stop.cancelled() => return End::Shutdown,
            changed = burst.changed(), if burst_open => match changed {
                Ok(()) if dev.rng.chance(s.chaos.burst_fraction) => return End::Burst,
                Ok(()) => {}
                Err(_) => burst_open = false,
            },
            _ = sleep_until(chaos_at.unwrap_or_else(Instant::now)), if chaos_at.is_some() => {
                let kill_share = s.chaos.kills_per_hour / (chaos_rate * 3600.0);
                return if dev.rng.chance(kill_share) { End::ChaosKill } else { End::ChaosDisconnect };
            }
            _ = sleep(dev.renewal.wait().unwrap_or_default()), if dev.renewal.wait().is_some() => {
                if dev.renewal.request(&dev.id, link, renew_retry) {
                    tracing::debug!(device_id = %dev.id, "certificate renewal requested");
                } else {
                    // No room on the link now: try again shortly.
                    sleep(Duration::from_millis(100)).await;
                }
            }
            event = link.poll() => match event {
                Ok(LinkEvent::Message { topic, payload, response }) if topic == commands => {
                    handle_command(dev, link, stats, &payload, response);
                }
                Ok(LinkEvent::Message { topic, payload, .. }) if topic == cert_responses => {
                    if renewed(dev, shared, &payload) {
                        return End::Renewed;
                    }
                }
                Ok(LinkEvent::PubAck(pkid)) => {
                    if let (Some((ts, sensors)), Some(ledger)) = (dev.outbox.acked(pkid), &shared.ledger) {
                        if !sensors.is_empty() {
                            ledger.reading(&dev.id, ts, &sensors);
                        }
                    }
                }
                Ok(LinkEvent::Subscribed(false)) => {
                    tracing::warn!(device_id = %dev.id, topic = %commands, "command subscription refused");
                }
                Ok(_) => {}
                Err(e) => return End::Dropped(e),
            },
            due = report.tick() => {
                stats.report_ran(due.elapsed());
                let dt = last_step.elapsed().as_secs_f64();
                last_step = Instant::now();
                crate::telemetry::publish(dev, link, shared, dt);
            }
        }
    }
}

/// Handles an answer to a renewal request; `true` once the device holds a
/// new certificate (its TLS configuration already rebuilt around it).
fn renewed(dev: &mut Device, shared: &Shared, payload: &[u8]) -> bool {
    let stats = &shared.stats;
    match dev
        .renewal
        .on_response(payload, shared.settings.renew_at_percent)
    {
        Outcome::Renewed(new) => {
            if let Some(dir) = &shared.cert_dir {
                if let Err(e) = crate::renew::persist(dir, &dev.id, &new) {
                    tracing::warn!(device_id = %dev.id, error = %e, "renewed certificate not saved");
                }
            }
            let config = shared
                .trust
                .context(new.ca.as_deref())
                .and_then(|ctx| ctx.client_config(&dev.id, new.creds));
            match config {
                Ok(tls) => {
                    dev.tls = tls;
                    stats.renewals.fetch_add(1, Relaxed);
                    tracing::debug!(device_id = %dev.id, "certificate renewed");
                    true
                }
                Err(e) => {
                    stats.renewals_failed.fetch_add(1, Relaxed);
                    tracing::warn!(device_id = %dev.id, error = %e, "renewed certificate unusable");
                    false
                }
            }
        }
        Outcome::Failed(reason) => {
            stats.renewals_failed.fetch_add(1, Relaxed);
            tracing::warn!(device_id = %dev.id, reason, "certificate renewal refused");
            false
        }
        Outcome::Ignored => false,
    }
}

/// Counts a queued publish, or a drop when the request buffer was full.
pub(crate) fn count_publish(stats: &Stats, queued: bool) {
    if queued {
        stats.published.fetch_add(1, Relaxed);
    } else {
        stats.publish_dropped.fetch_add(1, Relaxed);
    }
}

fn publish_state(dev: &Device, link: &mut Link, stats: &Stats) {
    count_publish(stats, queue_state(dev, link));
}

/// Queues the device's state report (QoS 1, retained); whether it was.
fn queue_state(dev: &Device, link: &mut Link) -> bool {
    let payload = serde_json::to_vec(&dev.model.state(now_ms())).unwrap_or_default();
    link.publish(&device_topic(&dev.id, Leaf::State), true, true, payload)
}

fn handle_command(
    dev: &mut Device,
    link: &mut Link,
    stats: &Stats,
    payload: &[u8],
    response: Option<crate::link::Response>,
) {
    stats.commands_received.fetch_add(1, Relaxed);
    let now = now_ms();
    match dev.model.handle_command(payload, now) {
        CommandOutcome::Ack {
            ack,
            state_changed,
            issued_at,
        } => {
            if let Some(ts) = issued_at {
                stats.record_latency(now.saturating_sub(ts));
            }
            if ack.result == AckResult::Failed {
                stats.commands_failed.fetch_add(1, Relaxed);
            }
            tracing::debug!(device_id = %dev.id, command_id = %ack.id, result = ?ack.result, "command handled");
            if state_changed {
                publish_state(dev, link, stats);
            }
            let body = serde_json::to_vec(&ack).unwrap_or_default();
            let queued = match &response {
                Some(r) => link.respond(r, body),
                None => link.publish(&device_topic(&dev.id, Leaf::Acks), true, false, body),
            };
            count_publish(stats, queued);
            if queued {
                stats.acks_sent.fetch_add(1, Relaxed);
            }
        }
        CommandOutcome::Ignored { id } => {
            stats.commands_ignored.fetch_add(1, Relaxed);
            tracing::debug!(device_id = %dev.id, command_id = %id, "command ignored (chaos)");
        }
        CommandOutcome::Unparseable => {
            stats.commands_unparseable.fetch_add(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection attempt starts only with a place among the gate's and
    /// while the process's timers run on time.
    #[tokio::test]
    async fn an_attempt_waits_for_a_place_and_for_the_process_to_be_on_time() {
        let gate = tokio::sync::Semaphore::new(1);
        let on_time = Arc::new(watch::channel(true).0);
        let held = wait_for_place(Some(&gate), &on_time).await;
        assert!(held.is_some());
        let short = Duration::from_millis(100);
        assert!(
            timeout(short, wait_for_place(Some(&gate), &on_time))
                .await
                .is_err(),
            "the only place is taken"
        );
        drop(held);
        on_time.send_replace(false);
        let next = tokio::spawn({
            let on_time = Arc::clone(&on_time);
            async move {
                let gate = tokio::sync::Semaphore::new(1);
                let placed = wait_for_place(Some(&gate), &on_time).await.is_some();
                placed
            }
        });
        sleep(short).await;
        assert!(!next.is_finished(), "a late process starts no attempt");
        on_time.send_replace(true);
        let placed = timeout(Duration::from_secs(5), next)
            .await
            .expect("placed once on time")
            .expect("task");
        assert!(placed);
        // No gate: only the clock.
        assert!(wait_for_place(None, &on_time).await.is_none());
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_ceiling_with_full_jitter() {
        let s = Settings {
            reconnect_min_ms: 100,
            reconnect_max_ms: 1_000,
            ..Default::default()
        };
        let mut rng = SimRng::new(3);
        // Full jitter: uniform in [0, min(ceiling, floor × 2^(attempt-1))).
        let mut steps = |attempt: u32| {
            let d: Vec<u128> = (0..2000)
                .map(|_| backoff(&s, attempt, &mut rng).as_millis())
                .collect();
            (
                *d.iter().min().expect("samples"),
                *d.iter().max().expect("samples"),
                d.iter().sum::<u128>() / 2000,
            )
        };
        let (min1, max1, mean1) = steps(1);
        assert!(
            min1 < 10 && max1 < 100 && (40..60).contains(&mean1),
            "{min1} {max1} {mean1}"
        );
        let (_, max3, mean3) = steps(3);
        assert!(
            max3 < 400 && max3 > 350 && (170..230).contains(&mean3),
            "{max3} {mean3}"
        );
        for attempt in [5, 20, 40, u32::MAX] {
            let (min, max, mean) = steps(attempt);
            assert!(
                min < 20 && max < 1000 && max > 950 && (450..550).contains(&mean),
                "{attempt}: {min} {max} {mean}"
            );
        }
    }

    #[test]
    fn failover_spreads_a_nodes_devices_over_every_other_node() {
        let stats = Stats::new();
        let mut rng = SimRng::new(5);
        let mut landed = [0u32; 4];
        for index in (0..4000u64).filter(|i| i % 4 == 1) {
            let offset = failover(0, 4, &mut rng, &stats);
            landed[((index + offset) % 4) as usize] += 1;
        }
        assert_eq!(landed[1], 0, "never back to the node it left");
        for n in [0, 2, 3] {
            assert!((250..420).contains(&landed[n]), "{landed:?}");
        }
        assert_eq!(failover(7, 1, &mut rng, &stats), 7, "one node: stay");
    }

    #[test]
    fn local_hour_follows_the_configured_time_zone() {
        let s = Settings {
            utc_offset_hours: 9.0,
            ..Default::default()
        };
        // 2024-01-01T00:00:00Z is 09:00 in Tokyo.
        let h = local_hour(&s, 1_704_067_200_000);
        assert!((h - 9.0).abs() < 1e-9, "{h}");
    }

    /// The size of the future a closure would return, without calling it.
    fn future_size<F>(_: &impl Fn() -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every simulated device is one task whose future lives as long as the
    /// device: its size is paid 250,000 times. What is big and passing goes
    /// to the heap: the link (moved through the connect's result, it was laid
    /// out twice: 5,400 bytes before, 3,024 after), the preparation (2,984
    /// bytes, inline in the task that is spawned: 3,048 before), the device
    /// (an async fn's argument is laid out twice too: 1,856 before), a
    /// closing link's read buffer. The hub's appliance states wait on the
    /// heap for a first command (`Device` was 896 bytes).
    #[test]
    #[allow(unreachable_code)]
    fn a_devices_task_is_small_and_holds_its_link_on_the_heap() {
        let task = future_size(&|| {
            crate::fleet::start_device(
                unreachable!(),
                unreachable!(),
                unreachable!(),
                unreachable!(),
            )
        });
        let connect =
            future_size(&|| connect_gated(unreachable!(), unreachable!(), unreachable!()));
        assert!(connect < std::mem::size_of::<Link>(), "connect {connect}");
        assert!(
            std::mem::size_of::<Device>() <= 320,
            "a device is {} bytes",
            std::mem::size_of::<Device>()
        );
        assert!(task <= 1_300, "a device's task is {task} bytes");
    }
}
