//! Past days of a gateway's meter, produced fast: before a fleet goes live
//! (`sim.backfill_days`, `kumo sim --backfill-days`), each smart-meter
//! gateway connects as itself, reports its meter as it would have over the
//! last days — its household model stepped every `sim.backfill_step_secs` in
//! accelerated time, reports stamped in the past (`ts`) — and disconnects.
//! The data is simulated, like everything a `kumo sim` device sends, and
//! arrives through the ordinary path (`devices/{id}/meter`, QoS 1, paced by
//! the node's acknowledgements), so the cloud stores it as any gateway's
//! late upload. The backfill ends where the live meter starts: the counters
//! are wound back by what the backfilled days use, so history continues
//! without a jump. Hubs are skipped.

use std::sync::Arc;
use std::time::Duration;

use kumo_contract::payload::MeterReport;
use kumo_contract::topic::{device_topic, Leaf};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::error::SimError;
use crate::link::{Endpoint, Link};
use crate::model::{meter_report, DeviceModel, Telemetry};
use crate::runtime::{local_hour, now_ms, Device};
use crate::settings::Settings;
use crate::tls::{CredentialSource, TlsContext};

/// Gateways backfilled at once.
const CONCURRENCY: usize = 16;
/// Longest wait for the node's next acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// What a backfill did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackfillSummary {
    /// Gateways that reported their past days.
    pub gateways: u64,
    /// Meter reports acknowledged by the nodes.
    pub reports: u64,
    /// Gateways that could not (connection or credentials); logged.
    pub failed: u64,
}

/// A gateway's past reports, oldest first, one every `step_ms`, the last
/// one `step_ms` before `end_ms`.
pub struct PastReports {
    model: DeviceModel,
    settings: Settings,
    next_ms: u64,
    end_ms: u64,
    step_ms: u64,
}

impl PastReports {
    /// The `days` before `end_ms` of `model` (`None` for a hub), its meter
    /// wound back so that the last report leads into `model` as it is.
    pub fn new(model: &DeviceModel, settings: &Settings, end_ms: u64) -> Option<Self> {
        let step_ms = settings.backfill_step_secs.max(1) * 1000;
        let span_ms = u64::from(settings.backfill_days) * 86_400_000;
        let start_ms = end_ms.saturating_sub(span_ms);
        // A dry run measures what the days use; the same steps from the
        // same state draw the same randomness, so the real run uses it too.
        let mut dry = model.clone();
        let before = dry.meter_totals()?;
        let mut at = start_ms;
        while at < end_ms {
            dry.step(local_hour(settings, at), (step_ms / 1000) as f64);
            at += step_ms;
        }
        let after = dry.meter_totals()?;
        let mut model = model.clone();
        model.rewind_meter(after.0 - before.0, after.1 - before.1);
        Some(Self {
            model,
            settings: settings.clone(),
            next_ms: start_ms,
            end_ms,
            step_ms,
        })
    }
}

impl Iterator for PastReports {
    type Item = MeterReport;

    fn next(&mut self) -> Option<MeterReport> {
        if self.next_ms >= self.end_ms {
            return None;
        }
        let at = self.next_ms;
        self.next_ms += self.step_ms;
        let hour = local_hour(&self.settings, at);
        match self.model.step(hour, (self.step_ms / 1000) as f64) {
            // Stamped at the end of the step, as a live report is.
            Telemetry::Meter(r) => Some(meter_report(&r, at + self.step_ms)),
            Telemetry::Sensors(_) => None,
        }
    }
}

/// Backfills every gateway of the fleet `settings` describes; stops early
/// when `stop` is cancelled.
pub async fn run(
    settings: Settings,
    ca_pem: String,
    stop: CancellationToken,
) -> Result<BackfillSummary, SimError> {
    settings.validate().map_err(SimError::InvalidSettings)?;
    let tls = Arc::new(TlsContext::from_ca_pem(&ca_pem)?);
    let source = Arc::new(CredentialSource::from_settings(&settings)?);
    let mut endpoints = Vec::with_capacity(settings.nodes.len());
    for node in &settings.nodes {
        endpoints.push(Endpoint::resolve(node).await?);
    }
    let endpoints = Arc::new(endpoints);
    let settings = Arc::new(settings);
    let end_ms = now_ms();
    let mut summary = BackfillSummary::default();
    let mut running = JoinSet::new();
    let indices = settings.first_index..settings.first_index + settings.devices;
    for index in indices {
        if running.len() >= CONCURRENCY {
            collect(running.join_next().await, &mut summary);
        }
        if stop.is_cancelled() {
            break;
        }
        let (s, tls, source) = (settings.clone(), tls.clone(), source.clone());
        let (endpoints, stop) = (endpoints.clone(), stop.clone());
        running.spawn(async move {
            let dev = crate::fleet::prepare(index, &s, &tls, &source, &stop).await?;
            let endpoint = &endpoints[(index % endpoints.len() as u64) as usize];
            backfill_device(dev, &s, endpoint, end_ms, &stop).await
        });
    }
    while let Some(done) = running.join_next().await {
        collect(Some(done), &mut summary);
    }
    Ok(summary)
}

type Outcome = Result<Option<u64>, SimError>;

fn collect(done: Option<Result<Outcome, tokio::task::JoinError>>, summary: &mut BackfillSummary) {
    match done {
        Some(Ok(Ok(Some(reports)))) => {
            summary.gateways += 1;
            summary.reports += reports;
        }
        Some(Ok(Ok(None))) | None => {}
        Some(Ok(Err(e))) => {
            summary.failed += 1;
            tracing::warn!(error = %e, "a gateway's backfill failed");
        }
        Some(Err(e)) => {
            summary.failed += 1;
            tracing::warn!(error = %e, "a gateway's backfill stopped");
        }
    }
}

/// Connects as `dev`, publishes its past reports at QoS 1 as fast as the
/// node acknowledges them, and disconnects; `None` for a hub.
async fn backfill_device(
    dev: Device,
    s: &Settings,
    endpoint: &Endpoint,
    end_ms: u64,
    stop: &CancellationToken,
) -> Outcome {
    let Some(mut reports) = PastReports::new(&dev.model, s, end_ms) else {
        return Ok(None);
    };
    let fail = |reason: String| SimError::Node {
        node: endpoint.addr.to_string(),
        reason: format!("backfilling {}: {reason}", dev.id),
    };
    let mut link = Link::connect(crate::runtime::link_options(&dev, s, endpoint))
        .await
        .map_err(|e| fail(e.detail))?;
    let topic = device_topic(&dev.id, Leaf::Meter);
    let (mut sent, mut more) = (0u64, true);
    loop {
        while more && link.can_publish_qos1() {
            match reports.next() {
                Some(r) => {
                    let payload = serde_json::to_vec(&r).map_err(|e| fail(e.to_string()))?;
                    link.publish(&topic, true, false, payload);
                    sent += 1;
                }
                None => more = false,
            }
        }
        if !more && link.unacked() == 0 {
            break;
        }
        tokio::select! {
            () = stop.cancelled() => break,
            polled = timeout(ACK_TIMEOUT, link.poll()) => match polled {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(fail(e.detail)),
                Err(_) => return Err(fail("no acknowledgement in 30 s".into())),
            },
        }
    }
    let acked = sent - u64::from(link.unacked());
    link.disconnect();
    // The next poll writes the DISCONNECT and ends the link with an error.
    let _ = timeout(Duration::from_secs(5), link.poll()).await;
    tracing::info!(device_id = %dev.id, reports = acked, "backfilled the meter's past days");
    Ok(Some(acked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CommandPolicy, SimRng};
    use kumo_contract::payload::DeviceKind;

    fn count_of(r: &MeterReport, epc: u8) -> i64 {
        r.echonetlite_properties
            .iter()
            .find(|p| p.epc == epc)
            .and_then(|p| p.val.parse().ok())
            .unwrap_or(-1)
    }

    #[test]
    fn past_reports_cover_the_days_and_lead_into_the_live_meter() {
        let settings = Settings {
            backfill_days: 2,
            backfill_step_secs: 300,
            ..Settings::default()
        };
        let end_ms = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        for seed in 0..8 {
            let model = DeviceModel::new(
                DeviceKind::Meter,
                SimRng::new(seed),
                CommandPolicy::default(),
            );
            let past: Vec<MeterReport> = PastReports::new(&model, &settings, end_ms)
                .expect("a gateway")
                .collect();
            assert_eq!(past.len(), 2 * 288);
            assert_eq!(past.last().and_then(|r| r.ts), Some(end_ms));
            assert_eq!(past[0].ts, Some(end_ms - 2 * 86_400_000 + 300_000));
            for pair in past.windows(2) {
                assert!(count_of(&pair[1], 0xE0) >= count_of(&pair[0], 0xE0));
                assert!(count_of(&pair[1], 0xE3) >= count_of(&pair[0], 0xE3));
            }
            // Two days of a household: a few kWh at least.
            let used = count_of(&past[575], 0xE0) - count_of(&past[0], 0xE0);
            assert!(used >= 20, "seed {seed}: {used} counts");
            let mut live = model.clone();
            let Telemetry::Meter(first) = live.step(9.0, 0.0) else {
                panic!("meter")
            };
            let last = past.last().expect("reports");
            for (epc, now) in [(0xE0, first.bought_count), (0xE3, first.sold_count)] {
                let gap = now as i64 - count_of(last, epc);
                assert!(
                    (0..=1).contains(&gap),
                    "seed {seed} epc {epc:#x}: {gap} counts"
                );
            }
        }
    }

    #[test]
    fn hubs_have_no_past_meter_reports() {
        let hub = DeviceModel::new(DeviceKind::Hub, SimRng::new(1), CommandPolicy::default());
        assert!(PastReports::new(&hub, &Settings::default(), 1_000_000).is_none());
    }
}
