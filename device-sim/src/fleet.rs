//! Runs one process's share of a fleet: ramps devices up at a controlled rate,
//! drives reconnect bursts, reports progress and returns the summary.
//!
//! Devices stop on the shutdown token, after `duration_secs`, or never; the
//! summary describes the fleet as it stood just before it was stopped.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{sleep, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::error::SimError;
use crate::ledger::Ledger;
use crate::link::Endpoint;
use crate::model::{CommandPolicy, DeviceModel, SimRng};
use crate::progress::Progress;
use crate::renew::Renewal;
use crate::runtime::{self, Device, Shared};
use crate::settings::{Provisioning, Settings};
use crate::stats::{Stats, Summary};
use crate::tls::{CredentialSource, TlsContext};
use kumo_contract::payload::DeviceKind;

/// Runs the fleet the settings describe, printing live progress to stderr, until
/// `shutdown` is cancelled (or `duration_secs` passes).
pub async fn run_fleet(
    settings: Settings,
    ca_pem: String,
    shutdown: CancellationToken,
) -> Result<Summary, SimError> {
    let mut progress = Progress::new();
    let summary = run_fleet_with(settings, ca_pem, shutdown, |s| progress.print(s)).await;
    progress.finish();
    summary
}

/// [`run_fleet`] with the progress snapshots handed to `on_progress` instead.
pub async fn run_fleet_with<F>(
    settings: Settings,
    ca_pem: String,
    shutdown: CancellationToken,
    mut on_progress: F,
) -> Result<Summary, SimError>
where
    F: FnMut(&Summary) + Send,
{
    settings.validate().map_err(SimError::InvalidSettings)?;
    let tls = Arc::new(TlsContext::from_ca_pem(&ca_pem)?.with_resumption(settings.tls_resumption));
    let source = Arc::new(CredentialSource::from_settings(&settings)?);
    let stats = Arc::new(Stats::new());
    stats.devices.store(settings.devices, Relaxed);
    // Not a child of `shutdown`: devices keep running until the summary is taken.
    let stop = CancellationToken::new();
    let (burst_tx, burst_rx) = watch::channel(0u64);
    let mut endpoints = Vec::with_capacity(settings.nodes.len());
    for node in &settings.nodes {
        endpoints.push(Endpoint::resolve(node).await?);
    }
    let shared = Arc::new(Shared {
        settings: settings.clone(),
        stats: stats.clone(),
        stop: stop.clone(),
        burst: burst_rx,
        endpoints,
        trust: crate::renew::Trust::new(ca_pem.clone(), tls.clone()),
        cert_dir: match source.as_ref() {
            CredentialSource::Dir(dir) => Some(dir.clone()),
            CredentialSource::Pki(_) => None,
        },
        ledger: match &settings.ledger_dir {
            Some(dir) => Some(Ledger::open(dir, settings.first_index)?),
            None => None,
        },
        connect_gate: Shared::connect_gate(&settings),
        on_time: watch::channel(true).0,
    });

    let started = Instant::now();
    let deadline =
        (settings.duration_secs > 0).then(|| started + Duration::from_secs(settings.duration_secs));
    let mut progress =
        tokio::time::interval(Duration::from_millis(settings.progress_interval_ms.max(1)));
    progress.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let burst_every = Duration::from_secs(settings.chaos.burst_every_secs.max(1));
    let mut burst = tokio::time::interval_at(started + burst_every, burst_every);
    let mut flush = tokio::time::interval(Duration::from_secs(1));
    // How long this process's runtime keeps a woken task waiting (a starved
    // simulator's devices miss their reports and keepalives, and the nodes
    // are right to end them).
    let mut probe = tokio::time::interval(Duration::from_millis(100));
    probe.set_missed_tick_behavior(MissedTickBehavior::Delay);

    let mut rate = RecentRate::default();
    let mut devices = JoinSet::new();
    let mut spawned = 0u64;
    loop {
        spawned = spawn_due(
            &settings,
            started,
            spawned,
            &mut devices,
            &shared,
            &tls,
            &source,
        );
        let ramping = spawned < settings.devices;
        if !ramping && devices.is_empty() {
            break; // every device gave up (credential errors)
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = sleep_until_opt(deadline) => break,
            _ = sleep(Duration::from_millis(10)), if ramping => {}
            _ = progress.tick(), if settings.progress_interval_ms > 0 => {
                on_progress(&rate.snapshot(&stats));
            }
            _ = burst.tick(), if settings.chaos.burst_every_secs > 0 => {
                burst_tx.send_modify(|n| *n += 1);
            }
            _ = flush.tick(), if shared.ledger.is_some() => {
                if let Some(ledger) = &shared.ledger {
                    ledger.flush();
                }
            }
            due = probe.tick() => {
                let late = due.elapsed();
                stats.stall_max_ms.fetch_max(late.as_millis() as u64, Relaxed);
                shared.on_time.send_if_modified(|on_time| {
                    let now = late < LATE_LIMIT;
                    std::mem::replace(on_time, now) != now
                });
            }
            Some(_) = devices.join_next() => {}
        }
    }

    let summary = stats.snapshot();
    stop.cancel();
    let grace = Duration::from_millis(settings.shutdown_timeout_ms) + Duration::from_secs(1);
    let drained = tokio::time::timeout(grace, async {
        while devices.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tracing::warn!(
            left = devices.len(),
            "devices did not stop in time; aborting them"
        );
        devices.shutdown().await;
    }
    if let Some(ledger) = &shared.ledger {
        ledger.flush();
    }
    Ok(summary)
}

/// How late a process's timers may run before it starts no new connection
/// attempt (its connected devices' reports and keepalives come first).
const LATE_LIMIT: Duration = Duration::from_secs(1);

/// Publish rate between successive progress snapshots.
#[derive(Default)]
struct RecentRate {
    last: Option<(Instant, u64)>,
}

impl RecentRate {
    fn snapshot(&mut self, stats: &Stats) -> Summary {
        let mut s = stats.snapshot();
        let now = Instant::now();
        if let Some((at, published)) = self.last {
            let dt = now.duration_since(at).as_secs_f64();
            if dt > 0.0 {
                s.recent_msgs_per_sec = s.published.saturating_sub(published) as f64 / dt;
            }
        }
        self.last = Some((now, s.published));
        s
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Spawns the devices the ramp and the in-flight limit allow by now; returns the
/// new spawned count. Devices count as connecting only once their credentials
/// are loaded, so one 10 ms tick can overshoot the limit by what it spawns.
fn spawn_due(
    settings: &Settings,
    started: Instant,
    spawned: u64,
    devices: &mut JoinSet<()>,
    shared: &Arc<Shared>,
    tls: &Arc<TlsContext>,
    source: &Arc<CredentialSource>,
) -> u64 {
    let due = if settings.ramp_per_sec > 0.0 {
        let allowed = (started.elapsed().as_secs_f64() * settings.ramp_per_sec).floor() as u64 + 1;
        allowed.min(settings.devices)
    } else {
        settings.devices
    };
    let due = match settings.max_connecting {
        0 => due,
        max => {
            let room = max.saturating_sub(shared.stats.connecting.load(Relaxed));
            due.min(spawned + room)
        }
    };
    for n in spawned..due {
        let index = settings.first_index + n;
        devices.spawn(start_device(
            index,
            shared.clone(),
            tls.clone(),
            source.clone(),
        ));
    }
    due.max(spawned)
}

/// Loads the device's credentials, builds its model and runs it.
pub(crate) async fn start_device(
    index: u64,
    shared: Arc<Shared>,
    tls: Arc<TlsContext>,
    source: Arc<CredentialSource>,
) {
    let s = &shared.settings;
    // Boxed: the preparation's future (~3 KB: provisioning, claiming) is
    // needed once, and inline it would size the device's task for its life.
    let device = match Box::pin(prepare(index, s, &tls, &source, &shared.stop)).await {
        Ok(d) => d,
        Err(e) => {
            shared.stats.credential_errors.fetch_add(1, Relaxed);
            tracing::error!(error = %e, "device cannot start");
            return;
        }
    };
    runtime::run(Box::new(device), shared).await;
}

pub(crate) async fn prepare(
    index: u64,
    s: &Settings,
    tls: &TlsContext,
    source: &Arc<CredentialSource>,
    stop: &CancellationToken,
) -> Result<Device, SimError> {
    let slot = s.device_id(index)?;
    let id = match (s.provisioning, &s.claim_code, &s.device_cert_dir) {
        (Provisioning::Claim, Some(code), Some(dir)) => {
            let claim = crate::claim::Claim {
                code,
                addr: &s.provision_addr,
                dir,
            };
            crate::claim::identity(&claim, &slot, tls, stop).await?
        }
        _ => slot,
    };
    let load_id = id.clone();
    let load_source = source.clone();
    // File reads (and, from a PKI, possibly issuing) must not block a worker thread.
    let creds = tokio::task::spawn_blocking(move || load_source.load(&load_id))
        .await
        .map_err(|e| SimError::Ca(format!("credential loader panicked: {e}")))??;
    let renewal = match creds.chain.first() {
        Some(leaf) => Renewal::for_certificate(leaf.as_ref(), s.renew_at_percent),
        None => Renewal::default(),
    };
    let tls = tls.client_config(&id, creds)?;
    let mut rng = SimRng::for_device(s.seed, index);
    let kind = if rng.chance(s.meter_fraction) {
        DeviceKind::Meter
    } else {
        DeviceKind::Hub
    };
    let policy = CommandPolicy {
        failure_rate: s.command_failure_rate,
        ignore_rate: s.command_ignore_rate,
    };
    let mut model = DeviceModel::new(kind, SimRng::new(rng.next_u64()), policy);
    model.household_habits(s.aircon_in_use_fraction);
    Ok(Device {
        index,
        id,
        tls,
        model,
        rng,
        renewal,
        outbox: Default::default(),
    })
}
