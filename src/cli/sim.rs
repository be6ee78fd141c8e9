//! `kumo sim`: runs a simulated device fleet against one or more broker nodes.
//!
//! Small fleets run in this process. Larger ones are split into shares of at most
//! `--per-process` devices (the per-process open-file limit caps one process just
//! under 20,000 connections), each run by a worker process of this executable
//! (`kumo sim --worker`); their progress is merged into one line on stderr and
//! their summaries into one JSON document on stdout. Device certificates come
//! from the PKI directory, issued up front where missing.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context};
use kumo_sim::progress::Progress;
use kumo_sim::worker::{self, WorkerReport, WorkerSpec, MAX_DEVICES_PER_PROCESS};
use kumo_sim::{Protocol, Provisioning, Summary};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::default_help;
use crate::settings::Settings;

/// The built-in `[sim]` settings, for `--help`.
static SIM: std::sync::LazyLock<kumo_sim::Settings> =
    std::sync::LazyLock::new(kumo_sim::Settings::default);

/// Arguments of `kumo sim`; each overrides the `[sim]` setting of the same name.
/// Their help shows the built-in default and the setting that changes it.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    #[arg(long, help = default_help("Devices to simulate", "sim.devices", SIM.devices))]
    devices: Option<u64>,
    #[arg(long, value_delimiter = ',', help = default_help(
        "Broker nodes as host:port, comma-separated; devices are spread round-robin",
        "sim.nodes",
        SIM.nodes.join(","),
    ))]
    nodes: Vec<String>,
    #[arg(long, value_parser = ["v4", "v5"], help = default_help(
        "MQTT version: v4 (3.1.1) or v5",
        "sim.protocol",
        match SIM.protocol { Protocol::V4 => "v4", Protocol::V5 => "v5" },
    ))]
    protocol: Option<String>,
    #[arg(long, help = default_help(
        "New connections per second across the whole fleet; 0 = no limit",
        "sim.ramp_per_sec",
        SIM.ramp_per_sec,
    ))]
    ramp: Option<f64>,
    #[arg(long, help = default_help(
        "Stop after this many seconds; 0 = run until Ctrl-C",
        "sim.duration_secs",
        SIM.duration_secs,
    ))]
    duration: Option<u64>,
    #[arg(long, help = default_help(
        "Telemetry period per device, ms",
        "sim.report_interval_ms",
        SIM.report_interval_ms,
    ))]
    report_interval_ms: Option<u64>,
    #[arg(long, value_name = "DAYS", help = default_help(
        "Before going live, each smart-meter gateway reports this many past days of its \
         meter, simulated in accelerated time and stamped in the past",
        "sim.backfill_days",
        SIM.backfill_days,
    ))]
    backfill_days: Option<u32>,
    /// Most devices per worker process.
    #[arg(long, default_value_t = MAX_DEVICES_PER_PROCESS)]
    per_process: u64,
    /// Also write the final JSON summary to this file.
    #[arg(long)]
    summary_file: Option<PathBuf>,
    /// Every device enrols itself with this claim code through the
    /// provisioning listener (its own key and CSR; Kumo assigns its id and
    /// registers it to the code's account), keeping its key and certificate
    /// in `sim.device_cert_dir` (default `<data_dir>/sim-devices`). A second
    /// run reuses them. The code must allow as many uses as devices.
    #[arg(long, value_name = "CODE")]
    claim: Option<String>,
    /// As `--claim`, with the code read from this file (surrounding
    /// whitespace ignored), so it stays out of the process list: `kumo users
    /// bootstrap --claim-code-file` writes one.
    #[arg(long, value_name = "PATH", conflicts_with = "claim")]
    claim_file: Option<PathBuf>,
    #[arg(long, value_name = "HOST:PORT", help = default_help(
        "The provisioning listener, host:port",
        "sim.provision_addr",
        &SIM.provision_addr,
    ))]
    provision: Option<String>,
    /// Issue (or enrol) the certificates devices lack, then exit without
    /// connecting, so a later run's CPU figures are the devices' alone.
    #[arg(long)]
    provision_only: bool,
    /// Internal: run one share for a parent `kumo sim` (spec on stdin, reports on stdout).
    #[arg(long, hide = true)]
    worker: bool,
}

/// Runs `kumo sim` until the fleet's duration passes or Ctrl-C / SIGTERM.
pub async fn run(args: SimArgs, settings: Settings) -> anyhow::Result<()> {
    let shutdown = crate::cli::shutdown_token();
    if args.worker {
        return worker::run_worker(tokio::io::stdin(), tokio::io::stdout(), shutdown)
            .await
            .context("talking to the parent kumo sim");
    }
    let sim = sim_settings(&args, &settings)?;
    let ca_pem = ca_and_certificates(&sim, &settings).await?;
    if args.provision_only {
        eprintln!("certificates ready for {} devices", sim.devices);
        return Ok(());
    }
    if sim.backfill_days > 0 {
        let done = kumo_sim::backfill::run(sim.clone(), ca_pem.clone(), shutdown.clone()).await?;
        eprintln!(
            "backfilled {} simulated days of {} gateways: {} meter reports ({} gateways failed)",
            sim.backfill_days, done.gateways, done.reports, done.failed
        );
    }
    let shares = worker::split(&sim, args.per_process);
    let summary = if shares.len() == 1 {
        kumo_sim::run_fleet(sim, ca_pem, shutdown).await?
    } else {
        tracing::info!(
            devices = sim.devices,
            workers = shares.len(),
            "starting worker processes"
        );
        run_workers(shares, ca_pem, shutdown, sim.progress_interval_ms).await?
    };
    let json = worker::summary_json(&summary);
    println!("{json}");
    if let Some(path) = &args.summary_file {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn sim_settings(args: &SimArgs, settings: &Settings) -> anyhow::Result<kumo_sim::Settings> {
    let mut sim = settings.sim.clone();
    if let Some(n) = args.devices {
        sim.devices = n;
    }
    if !args.nodes.is_empty() {
        sim.nodes = args.nodes.clone();
    }
    if let Some(p) = &args.protocol {
        sim.protocol = if p == "v5" {
            Protocol::V5
        } else {
            Protocol::V4
        };
    }
    if let Some(r) = args.ramp {
        sim.ramp_per_sec = r;
    }
    if let Some(d) = args.duration {
        sim.duration_secs = d;
    }
    if let Some(ms) = args.report_interval_ms {
        sim.report_interval_ms = ms;
    }
    if let Some(days) = args.backfill_days {
        sim.backfill_days = days;
    }
    let from_file = match &args.claim_file {
        Some(path) => Some(read_claim_code(path)?),
        None => None,
    };
    if let Some(code) = args.claim.as_ref().or(from_file.as_ref()) {
        sim.provisioning = Provisioning::Claim;
        sim.claim_code = Some(code.clone());
        if sim.device_cert_dir.is_none() {
            sim.device_cert_dir = Some(settings.data_dir.join("sim-devices"));
        }
    }
    if let Some(addr) = &args.provision {
        sim.provision_addr = addr.clone();
    }
    if sim.device_cert_dir.is_none() && sim.pki_dir.is_none() {
        sim.pki_dir = Some(settings.certs_dir());
    }
    sim.validate()
        .map_err(|e| anyhow!("invalid configuration: {e}"))?;
    Ok(sim)
}

/// The claim code kept in `path`: one line, not empty.
fn read_claim_code(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the claim code from {}", path.display()))?;
    let code = text.trim();
    if code.is_empty() || code.contains(char::is_whitespace) {
        anyhow::bail!(
            "{} does not hold a claim code (one line, no spaces)",
            path.display()
        );
    }
    Ok(code.to_string())
}

/// The CA devices trust. Unless certificates were provisioned beforehand (or
/// devices enrol themselves with a claim code), every device without one gets
/// it first (issued, or enrolled by CSR).
async fn ca_and_certificates(
    sim: &kumo_sim::Settings,
    settings: &Settings,
) -> anyhow::Result<String> {
    let pki_dir = sim.pki_dir.clone().unwrap_or_else(|| settings.certs_dir());
    let held_by_devices = matches!(sim.provisioning, Provisioning::Issue | Provisioning::Claim);
    if sim.device_cert_dir.is_some() && held_by_devices {
        let ca = pki_dir.join("ca.pem");
        return std::fs::read_to_string(&ca).with_context(|| format!("reading {}", ca.display()));
    }
    let share = sim.clone();
    let provisioned =
        tokio::task::spawn_blocking(move || kumo_sim::provision::provision(&pki_dir, &share))
            .await
            .context("certificate provisioning stopped")??;
    if provisioned.issued > 0 {
        tracing::info!(issued = provisioned.issued, "issued device certificates");
    }
    Ok(provisioned.ca_pem)
}

/// Runs one worker process per share and merges what they report.
async fn run_workers(
    shares: Vec<kumo_sim::Settings>,
    ca_pem: String,
    shutdown: CancellationToken,
    progress_ms: u64,
) -> anyhow::Result<Summary> {
    let exe = std::env::current_exe().context("locating the kumo executable")?;
    let latest: Arc<Mutex<Vec<Option<Summary>>>> = Arc::new(Mutex::new(vec![None; shares.len()]));
    let mut workers = tokio::task::JoinSet::new();
    for (i, settings) in shares.into_iter().enumerate() {
        let spec = WorkerSpec {
            settings,
            ca_pem: ca_pem.clone(),
        };
        let child = Command::new(&exe)
            .args(["sim", "--worker"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting worker {i}"))?;
        workers.spawn(drive_worker(
            i,
            child,
            spec,
            latest.clone(),
            shutdown.clone(),
        ));
    }

    let mut progress = Progress::new();
    let mut tick = tokio::time::interval(Duration::from_millis(progress_ms.max(1)));
    let mut summaries = Vec::new();
    let mut errors = Vec::new();
    loop {
        tokio::select! {
            done = workers.join_next() => match done {
                None => break,
                Some(Ok(Ok(summary))) => summaries.push(summary),
                Some(Ok(Err(e))) => errors.push(format!("{e:#}")),
                Some(Err(e)) => errors.push(format!("worker task failed: {e}")),
            },
            _ = tick.tick(), if progress_ms > 0 => {
                let merged = merge(latest.lock().map(|l| l.iter().flatten().cloned().collect()).unwrap_or_default());
                progress.print(&merged);
            }
        }
    }
    progress.finish();
    for e in &errors {
        tracing::error!(error = %e, "worker failed");
    }
    if summaries.is_empty() {
        return Err(anyhow!("every worker failed: {}", errors.join("; ")));
    }
    Ok(merge(summaries))
}

fn merge(summaries: Vec<Summary>) -> Summary {
    let mut total = Summary::default();
    for s in &summaries {
        total.merge(s);
    }
    total
}

/// Feeds one worker its spec, records its progress, returns its final summary.
/// Closing its stdin (on shutdown, or once it is done) is how it is told to stop.
async fn drive_worker(
    i: usize,
    mut child: Child,
    spec: WorkerSpec,
    latest: Arc<Mutex<Vec<Option<Summary>>>>,
    shutdown: CancellationToken,
) -> anyhow::Result<Summary> {
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(anyhow!("worker {i} has no stdin/stdout pipes"));
    };
    let line = spec.to_line().context("encoding the worker spec")?;
    stdin
        .write_all(line.as_bytes())
        .await
        .context("sending the worker spec")?;
    stdin.flush().await.context("sending the worker spec")?;
    let mut stdin = Some(stdin);
    let mut lines = BufReader::new(stdout).lines();
    let mut result = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled(), if stdin.is_some() => stdin = None,
            line = lines.next_line() => match line.context("reading worker output")? {
                None => break,
                Some(line) => match WorkerReport::parse(&line) {
                    Some(WorkerReport::Progress { summary }) => {
                        if let Ok(mut l) = latest.lock() {
                            l[i] = Some(summary);
                        }
                    }
                    Some(WorkerReport::Done { summary }) => {
                        result = Some(Ok(summary));
                        stdin = None;
                    }
                    Some(WorkerReport::Failed { error }) => {
                        result = Some(Err(anyhow!("worker {i}: {error}")));
                        stdin = None;
                    }
                    None => {}
                },
            },
        }
    }
    drop(stdin);
    let status = child.wait().await.context("waiting for a worker")?;
    result.unwrap_or_else(|| Err(anyhow!("worker {i} exited ({status}) without a summary")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SimArgs {
        SimArgs {
            devices: None,
            nodes: vec![],
            protocol: None,
            ramp: None,
            duration: None,
            report_interval_ms: None,
            backfill_days: None,
            per_process: MAX_DEVICES_PER_PROCESS,
            summary_file: None,
            claim: None,
            claim_file: None,
            provision: None,
            provision_only: false,
            worker: false,
        }
    }

    #[test]
    fn help_shows_default_values_and_the_settings_that_change_them() {
        use clap::{Args as _, Command};
        let help = SimArgs::augment_args(Command::new("sim"))
            .render_help()
            .to_string();
        for line in [
            "[default: 10; setting sim.devices]",
            "[default: 127.0.0.1:8883; setting sim.nodes]",
            "[default: v4; setting sim.protocol]",
            "[default: 60000; setting sim.report_interval_ms]",
            "[default: localhost:8443; setting sim.provision_addr]",
        ] {
            assert!(help.contains(line), "{line} in {help}");
        }
        assert!(!help.contains("[default: sim."), "{help}");
    }

    #[test]
    fn a_claim_code_makes_devices_enrol_themselves_and_keep_their_keys_under_the_data_dir() {
        let settings = Settings::default();
        let sim = sim_settings(
            &SimArgs {
                claim: Some("AAAAA-BBBBB".into()),
                provision: Some("kumo.example:9443".into()),
                ..args()
            },
            &settings,
        )
        .expect("valid");
        assert_eq!(sim.provisioning, Provisioning::Claim);
        assert_eq!(sim.claim_code.as_deref(), Some("AAAAA-BBBBB"));
        assert_eq!(sim.provision_addr, "kumo.example:9443");
        assert_eq!(
            sim.device_cert_dir,
            Some(settings.data_dir.join("sim-devices"))
        );
    }

    #[test]
    fn a_claim_code_file_is_read_trimmed_and_an_empty_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("claim-code");
        std::fs::write(&path, "CCCCC-DDDDD\n").expect("write");
        let sim = sim_settings(
            &SimArgs {
                claim_file: Some(path.clone()),
                ..args()
            },
            &Settings::default(),
        )
        .expect("valid");
        assert_eq!(sim.provisioning, Provisioning::Claim);
        assert_eq!(sim.claim_code.as_deref(), Some("CCCCC-DDDDD"));

        for bad in ["", " \n", "two words"] {
            std::fs::write(&path, bad).expect("write");
            let err = sim_settings(
                &SimArgs {
                    claim_file: Some(path.clone()),
                    ..args()
                },
                &Settings::default(),
            )
            .expect_err("refused");
            assert!(err.to_string().contains("claim code"), "{err}");
        }
        let missing = dir.path().join("none");
        let err = sim_settings(
            &SimArgs {
                claim_file: Some(missing),
                ..args()
            },
            &Settings::default(),
        )
        .expect_err("refused");
        assert!(
            format!("{err:#}").contains("reading the claim code"),
            "{err:#}"
        );
    }

    #[test]
    fn command_line_flags_override_sim_settings_and_the_pki_defaults_to_certs_dir() {
        let settings = Settings::default();
        let sim = sim_settings(
            &SimArgs {
                devices: Some(25),
                nodes: vec!["a:1".into(), "b:2".into()],
                protocol: Some("v5".into()),
                ramp: Some(7.0),
                ..args()
            },
            &settings,
        )
        .expect("valid");
        assert_eq!(sim.devices, 25);
        assert_eq!(sim.nodes, vec!["a:1".to_string(), "b:2".to_string()]);
        assert_eq!(sim.protocol, Protocol::V5);
        assert_eq!(sim.ramp_per_sec, 7.0);
        assert_eq!(sim.pki_dir, Some(settings.certs_dir()));
    }

    #[test]
    fn an_invalid_flag_value_names_the_setting() {
        let err = sim_settings(
            &SimArgs {
                devices: Some(0),
                ..args()
            },
            &Settings::default(),
        )
        .expect_err("zero devices");
        assert!(format!("{err}").contains("sim.devices"), "{err}");
    }
}
