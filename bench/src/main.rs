//! `kumo-bench`: the load tool behind `bench/broker/run.sh`.
//!
//! `rate` measures connect rates (a full-handshake pass, then optionally a
//! resumed pass over the same devices); `hold` connects its devices and keeps
//! them idle until SIGTERM, for memory measurements. Each prints one JSON line
//! per pass on stdout. For the bridge benchmark, `publish` connects devices
//! that publish QoS 1 sensor readings at a target rate, and `commands` sends
//! REST light commands at a target rate and reports round-trip latencies.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use kumo_bench::devices;
use kumo_bench::load::{self, PassReport, Target};
use rustls_pki_types::ServerName;

#[derive(Debug, Parser)]
#[command(name = "kumo-bench", about = "mTLS MQTT connection load tool")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Full-handshake connect pass, then (with --resume) a resumed pass.
    Rate(Common),
    /// Connect and hold the connections idle until SIGTERM or Ctrl-C.
    Hold(Common),
    /// Connect, then publish QoS 1 sensor readings at a target rate.
    Publish(PublishArgs),
    /// Send REST light commands at a target rate and time their round trips.
    Commands(CommandArgs),
    /// Time readings and commands between an integration and devices on its
    /// own node and on a peer node.
    PeerHop(PeerHopArgs),
    /// Count the sensor and meter readings every node accepts (a service
    /// subscriber per node), cumulative per node each second, into a CSV file.
    Tap(TapArgs),
    /// Send mutated MQTT 3.1.1 and 5 streams, cut into random TLS records,
    /// from devices with valid certificates, reconnecting whenever the node
    /// closes the connection (bench/fuzz-live/run.sh).
    Fuzz(FuzzArgs),
    /// The CPU floor of a device connection: in-memory mutual-TLS
    /// handshakes, full and resumed, timed on the device and node sides.
    TlsCost(TlsCostArgs),
    /// Forward TCP connections to an upstream; on SIGUSR1 close every
    /// connection and turn new ones away for --cut-secs (bench/chaos/run.sh).
    Proxy(ProxyArgs),
}

#[derive(Debug, Args)]
struct TlsCostArgs {
    /// Kumo PKI directory (its CA issues the devices and a server certificate).
    #[arg(long)]
    pki: PathBuf,
    /// Handshakes of each kind.
    #[arg(long, default_value_t = 2_000)]
    count: u32,
    /// Device id prefix of the certificates issued for the run.
    #[arg(long, default_value = "tls-cost")]
    prefix: String,
}

#[derive(Debug, Args)]
struct ProxyArgs {
    /// Address to listen on (127.0.0.1 only in the scripts).
    #[arg(long)]
    listen: SocketAddr,
    /// Where to forward connections.
    #[arg(long)]
    upstream: SocketAddr,
    /// How long one cut (SIGUSR1) lasts, in s.
    #[arg(long, default_value_t = 10.0)]
    cut_secs: f64,
}

#[derive(Debug, Args)]
struct FuzzArgs {
    /// Node MQTT/TLS address (127.0.0.1 only in the scripts).
    #[arg(long, default_value = "127.0.0.1:8883")]
    addr: SocketAddr,
    /// Kumo PKI directory (its CA issues the fuzzing devices' certificates).
    #[arg(long)]
    pki: PathBuf,
    /// Device id prefix of the fuzzing devices (never an honest device's).
    #[arg(long, default_value = "fuzz")]
    prefix: String,
    /// Connections at once, each its own device.
    #[arg(long, default_value_t = 8)]
    connections: u32,
    /// Stop after this many packets.
    #[arg(long, default_value_t = 1_000_000)]
    packets: u64,
    /// Stop after this many seconds at the latest.
    #[arg(long, default_value_t = 300)]
    duration: u64,
    /// Packets per second over all connections (0 = as fast as possible).
    #[arg(long, default_value_t = 5_000.0)]
    rate: f64,
    /// Share of packets mutated (each may end its session).
    #[arg(long, default_value_t = 0.02)]
    mutate: f64,
    /// Share of sessions on MQTT 5.
    #[arg(long, default_value_t = 0.5)]
    v5_share: f64,
    /// No fuzzing, a control: sessions of this many valid packets (CONNECT,
    /// SUBSCRIBE, PINGREQs) ended with DISCONNECT, at the same rate.
    #[arg(long)]
    churn: Option<u32>,
    /// Seed (a run is reproducible up to the node's timing).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Name checked against the node certificate.
    #[arg(long, default_value = "localhost")]
    server_name: String,
}

#[derive(Debug, Args)]
struct TapArgs {
    /// Kumo PKI directory (its CA issues the tap's service certificate).
    #[arg(long)]
    pki: PathBuf,
    /// Every node, `host:port`, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<String>,
    /// CSV file to write.
    #[arg(long)]
    out: PathBuf,
    /// Stop after this many seconds (or at SIGTERM / Ctrl-C).
    #[arg(long, default_value_t = 3_600)]
    duration: u64,
}

#[derive(Debug, Args)]
struct PeerHopArgs {
    /// Kumo PKI directory (its CA issues every certificate in-process).
    #[arg(long)]
    pki: PathBuf,
    /// The integration's node, `host:port` (the name is checked against its certificate).
    #[arg(long)]
    local: String,
    /// A peer of it, `host:port`.
    #[arg(long)]
    remote: String,
    /// Messages per second on each path and direction.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Seconds to measure.
    #[arg(long, default_value_t = 30)]
    duration: u64,
}

#[derive(Debug, Args)]
struct PublishArgs {
    #[command(flatten)]
    common: Common,
    /// Publishes per second over all devices.
    #[arg(long, default_value_t = 60_000.0)]
    rate: f64,
    /// Seconds to publish.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Timer granularity of each device, in ms.
    #[arg(long, default_value_t = 20)]
    tick_ms: u64,
    /// Unacknowledged publishes one device may have.
    #[arg(long, default_value_t = 1_000)]
    max_inflight: u64,
    /// Seconds to wait for outstanding PUBACKs after publishing.
    #[arg(long, default_value_t = 10)]
    drain: u64,
}

#[derive(Debug, Args)]
struct CommandArgs {
    /// Bridge base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Bearer token (scopes basic and sendir).
    #[arg(long, env = "KUMO_BENCH_TOKEN")]
    token: String,
    /// File with one LIGHT appliance id per line.
    #[arg(long)]
    appliances: PathBuf,
    /// Requests per second.
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Seconds to send.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// `Prefer: wait=N`.
    #[arg(long, default_value_t = 5)]
    wait: u64,
    /// Client deadline of one request, in s.
    #[arg(long, default_value_t = 15)]
    timeout: u64,
    /// Most requests (HTTP connections) open at once.
    #[arg(long, default_value_t = 512)]
    max_in_flight: usize,
    /// Also write one CSV line per request (scheduled Unix time, latency,
    /// outcome) to this file.
    #[arg(long)]
    samples: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct Common {
    /// Broker MQTT/TLS address.
    #[arg(long, default_value = "127.0.0.1:8883")]
    addr: SocketAddr,
    /// Kumo PKI directory (its CA issues the device certificates in-process).
    #[arg(long)]
    pki: PathBuf,
    /// Device id prefix; ids are `<prefix>-<index:06>`.
    #[arg(long, default_value = "bench")]
    prefix: String,
    /// First device index.
    #[arg(long, default_value_t = 0)]
    first: u32,
    /// Number of devices.
    #[arg(long, default_value_t = 5_000)]
    count: u32,
    /// Connects in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Local address to connect from.
    #[arg(long, default_value = "127.0.0.1")]
    source_ip: IpAddr,
    /// Name checked against the broker certificate.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// MQTT keepalive in CONNECT, in s.
    #[arg(long, default_value_t = 900)]
    keepalive: u16,
    /// Deadline of one connect, in s.
    #[arg(long, default_value_t = 30)]
    connect_timeout: u64,
    /// Stop starting connects after this many s of a pass.
    #[arg(long)]
    time_limit: Option<u64>,
    /// Broker pid, to report its CPU time per connect.
    #[arg(long)]
    broker_pid: Option<String>,
    /// (rate) Run a second, resumed pass over the same devices.
    #[arg(long)]
    resume: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    match cli.command {
        Command::Rate(args) => runtime.block_on(rate(args)),
        Command::Hold(args) => runtime.block_on(hold(args)),
        Command::Publish(args) => runtime.block_on(publish(args)),
        Command::Commands(args) => runtime.block_on(commands(args)),
        Command::PeerHop(args) => runtime.block_on(peer_hop(args)),
        Command::Tap(args) => runtime.block_on(tap(args)),
        Command::Fuzz(args) => runtime.block_on(fuzz(args)),
        Command::TlsCost(args) => {
            let report = kumo_bench::tls_cost::measure(&args.pki, &args.prefix, args.count)?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Proxy(args) => runtime.block_on(proxy(args)),
    }
}

async fn proxy(args: ProxyArgs) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let proxy = kumo_bench::proxy::Proxy::new(listener, args.upstream);
    let cutter = proxy.cutter();
    let mut task = tokio::spawn(proxy.run());
    let mut usr1 = signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let period = Duration::from_secs_f64(args.cut_secs.max(0.0));
    eprintln!("proxy {} -> {}", args.listen, args.upstream);
    loop {
        tokio::select! {
            _ = usr1.recv() => {
                let live = cutter.cut(period);
                eprintln!("cut: closed {live} connections; turning new ones away for {:.1} s", period.as_secs_f64());
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            r = &mut task => {
                r.context("the proxy task panicked")?.context("accepting")?;
                break;
            }
        }
    }
    task.abort();
    Ok(())
}

async fn fuzz(args: FuzzArgs) -> anyhow::Result<()> {
    let devices = devices::issue(&args.pki, &args.prefix, 0, args.connections.max(1), false)
        .context("preparing the fuzzing devices' certificates")?;
    let target = Target {
        addr: args.addr,
        source_ip: args.addr.ip(),
        server_name: ServerName::try_from(args.server_name.clone())
            .context("--server-name is not a DNS name or IP address")?,
        keepalive_secs: 60,
        connect_timeout: Duration::from_secs(10),
    };
    let plan = kumo_bench::fuzz::Plan {
        packets: args.packets,
        duration: Duration::from_secs(args.duration),
        rate: args.rate,
        mutate: args.mutate.clamp(0.0, 1.0),
        v5_share: args.v5_share.clamp(0.0, 1.0),
        churn: args.churn.map(|n| n.max(2)),
        seed: args.seed,
    };
    let report = kumo_bench::fuzz::run(Arc::new(target), devices, plan).await;
    println!(
        "{}",
        serde_json::to_string(&report).context("encoding the report")?
    );
    Ok(())
}

fn host_port(s: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .with_context(|| format!("{s} is not host:port"))?;
    Ok((
        host.to_string(),
        port.parse().with_context(|| format!("port of {s}"))?,
    ))
}

async fn tap(args: TapArgs) -> anyhow::Result<()> {
    let nodes = args
        .nodes
        .iter()
        .map(|n| host_port(n))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let stop = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let plan = kumo_bench::tap::Plan {
        nodes,
        out: args.out,
        duration: Duration::from_secs(args.duration),
    };
    let (sensors, meter) = kumo_bench::tap::run(&args.pki, plan, stop).await?;
    println!("{{\"sensor_msgs\":{sensors},\"meter_readings\":{meter}}}");
    Ok(())
}

async fn peer_hop(args: PeerHopArgs) -> anyhow::Result<()> {
    let plan = kumo_bench::peer_hop::Plan {
        local: host_port(&args.local)?,
        remote: host_port(&args.remote)?,
        rate: args.rate,
        duration: Duration::from_secs(args.duration),
    };
    let report = kumo_bench::peer_hop::run(&args.pki, plan).await?;
    println!(
        "{}",
        serde_json::to_string(&report).context("encoding the report")?
    );
    Ok(())
}

async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let (target, devices) = prepare(&args.common, false)?;
    let sem = Arc::new(tokio::sync::Semaphore::new(args.common.concurrency.max(1)));
    let tasks: Vec<_> = devices
        .iter()
        .cloned()
        .map(|device| {
            let (target, sem) = (target.clone(), sem.clone());
            tokio::spawn(async move {
                let _permit = sem.acquire_owned().await;
                load::connect_one(&target, &device)
                    .await
                    .map(|conn| (device.id, conn))
            })
        })
        .collect();
    let (mut conns, mut ids, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for task in tasks {
        match task.await.context("a connect task panicked")? {
            Ok((id, conn)) => {
                ids.push(id);
                conns.push(conn);
            }
            Err(e) => failed.push(e),
        }
    }
    eprintln!(
        "connected {} devices ({} failed{})",
        conns.len(),
        failed.len(),
        failed
            .first()
            .map(|e| format!(", first: {e}"))
            .unwrap_or_default()
    );
    anyhow::ensure!(!conns.is_empty(), "no device connected");
    let plan = kumo_bench::publish::PublishPlan {
        rate: args.rate,
        duration: Duration::from_secs(args.duration),
        tick: Duration::from_millis(args.tick_ms.max(1)),
        max_inflight: args.max_inflight.max(1),
        drain: Duration::from_secs(args.drain),
    };
    let report = kumo_bench::publish::run(conns, ids, plan).await;
    println!(
        "{}",
        serde_json::to_string(&report).context("encoding the report")?
    );
    Ok(())
}

async fn commands(args: CommandArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.appliances)
        .with_context(|| format!("reading {}", args.appliances.display()))?;
    let appliances: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    anyhow::ensure!(!appliances.is_empty(), "no appliance ids in the file");
    let plan = kumo_bench::commands::CommandPlan {
        base: args.url.trim_end_matches('/').to_string(),
        token: args.token,
        appliances,
        rate: args.rate,
        duration: Duration::from_secs(args.duration),
        wait_secs: args.wait,
        timeout: Duration::from_secs(args.timeout),
        max_in_flight: args.max_in_flight,
        samples: args.samples,
    };
    let report = kumo_bench::commands::run(plan).await?;
    println!(
        "{}",
        serde_json::to_string(&report).context("encoding the report")?
    );
    Ok(())
}

async fn rate(args: Common) -> anyhow::Result<()> {
    let (target, devices) = prepare(&args, args.resume)?;
    let (full, conns) = pass("full", &args, &target, &devices).await;
    print(&full)?;
    load::disconnect_all(conns).await;
    if args.resume {
        // Let the broker finish the disconnects so the resumed pass meets no takeovers.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (resumed, conns) = pass("resumed", &args, &target, &devices).await;
        print(&resumed)?;
        load::disconnect_all(conns).await;
    }
    Ok(())
}

async fn hold(args: Common) -> anyhow::Result<()> {
    let (target, devices) = prepare(&args, false)?;
    let (report, conns) = pass("hold", &args, &target, &devices).await;
    print(&report)?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    load::disconnect_all(conns).await;
    Ok(())
}

fn prepare(
    args: &Common,
    resumption: bool,
) -> anyhow::Result<(Arc<Target>, Arc<Vec<devices::Device>>)> {
    let devices = devices::issue(&args.pki, &args.prefix, args.first, args.count, resumption)
        .context("preparing device certificates")?;
    let target = Target {
        addr: args.addr,
        source_ip: args.source_ip,
        server_name: ServerName::try_from(args.server_name.clone())
            .context("--server-name is not a DNS name or IP address")?,
        keepalive_secs: args.keepalive,
        connect_timeout: Duration::from_secs(args.connect_timeout),
    };
    Ok((Arc::new(target), Arc::new(devices)))
}

async fn pass(
    name: &str,
    args: &Common,
    target: &Arc<Target>,
    devices: &Arc<Vec<devices::Device>>,
) -> (PassReport, Vec<load::Conn>) {
    let stop_at = args
        .time_limit
        .map(|s| Instant::now() + Duration::from_secs(s));
    load::run_pass(
        name,
        target.clone(),
        devices.clone(),
        args.concurrency,
        stop_at,
        args.broker_pid.as_deref(),
    )
    .await
}

fn print(report: &PassReport) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string(report).context("encoding the report")?
    );
    Ok(())
}
