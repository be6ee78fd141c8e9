//! The command line: one subcommand per component, plus `up` for the whole stack.
//!
//! Owns argument parsing, loading settings once and installing the shutdown signal
//! handlers (Ctrl-C and SIGTERM). Each subcommand module only wires settings into
//! its component's library.

mod accounts;
mod aggregators;
mod bridge;
mod broker;
mod certs;
mod db;
mod sim;
mod up;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::settings::Settings;

/// Kumo: an open-source device cloud.
#[derive(Debug, Parser)]
#[command(name = "kumo", version, about, propagate_version = true)]
pub struct Cli {
    /// Configuration file (default: `kumo.toml` in the current directory, if present).
    #[arg(long, short, global = true, env = "KUMO_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole stack on this machine (private PostgreSQL unless a URL is set).
    Up(up::UpArgs),
    /// Run one broker node.
    Broker(broker::BrokerArgs),
    /// Run the REST bridge.
    Bridge(bridge::BridgeArgs),
    /// Run a simulated device fleet.
    Sim(sim::SimArgs),
    /// Manage the PKI: CA, certificates, revocation.
    Certs(certs::CertsArgs),
    /// Database administration.
    Db {
        #[command(subcommand)]
        command: db::DbCommand,
    },
    /// Accounts.
    Users {
        #[command(subcommand)]
        command: accounts::UsersCommand,
        #[command(flatten)]
        target: accounts::Target,
    },
    /// Bearer tokens for the REST API.
    Tokens {
        #[command(subcommand)]
        command: accounts::TokensCommand,
        #[command(flatten)]
        target: accounts::Target,
    },
    /// Demand-response aggregators and their tokens.
    Aggregators {
        #[command(subcommand)]
        command: aggregators::AggregatorsCommand,
        #[command(flatten)]
        target: accounts::Target,
    },
    /// Configuration: every key with its default.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Device registration.
    Devices {
        #[command(subcommand)]
        command: accounts::DevicesCommand,
        #[command(flatten)]
        target: accounts::Target,
    },
}

/// `kumo config …`
#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print a `kumo.toml` holding every key at its built-in default, each
    /// with its description (`--markdown`: the reference table of docs/config.md).
    Defaults {
        #[arg(long)]
        markdown: bool,
    },
}

/// Loads settings, sets up tracing and runs the chosen subcommand to completion.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // Defaults are the same whatever is configured here: no settings needed.
    if let Command::Config {
        command: ConfigCommand::Defaults { markdown },
    } = cli.command
    {
        let text = if markdown {
            crate::config_doc::reference_markdown()
        } else {
            crate::config_doc::defaults_toml()
        };
        print!("{text}");
        return Ok(());
    }
    let settings = Settings::load(cli.config.as_deref())?;
    crate::logging::init(&settings.log);
    match cli.command {
        // The PKI commands are synchronous file work; no runtime needed.
        Command::Certs(args) => certs::run(args, &settings),
        Command::Up(args) => block_on(up::run(args, settings)),
        Command::Broker(args) => block_on(broker::run(args, settings)),
        Command::Bridge(args) => block_on(bridge::run(args, settings)),
        Command::Sim(args) => block_on(sim::run(args, settings)),
        Command::Db { command } => block_on(db::run(command, settings)),
        Command::Users { command, target } => block_on(accounts::users(command, target, settings)),
        Command::Tokens { command, target } => {
            block_on(accounts::tokens(command, target, settings))
        }
        Command::Devices { command, target } => {
            block_on(accounts::devices(command, target, settings))
        }
        Command::Aggregators { command, target } => {
            block_on(aggregators::run(command, target, settings))
        }
        Command::Config { .. } => Ok(()),
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(f)
}

/// A token cancelled on the first Ctrl-C or SIGTERM. Only the CLI installs handlers.
/// `what [default: value; setting key]`: the value a flag takes when neither
/// it nor the configuration says otherwise.
fn default_help(what: &str, key: &str, value: impl std::fmt::Display) -> String {
    format!("{what} [default: {value}; setting {key}]")
}

pub fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await
                }
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!("Ctrl-C received; shutting down"),
            _ = term => tracing::info!("SIGTERM received; shutting down"),
        }
        trigger.cancel();
    });
    token
}
