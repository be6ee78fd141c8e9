//! `kumo certs …`: PKI administration on the directory given by `--dir` or
//! `certs.dir` (default `<data_dir>/pki`).
//!
//! Only wiring and printing: every decision lives in `kumo_certs::files`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use kumo_certs::files::{CertRecord, IssuedPaths, PkiDir};
use kumo_certs::time::OffsetDateTime;
use kumo_certs::{AccountId, DeviceId, KeyAlgorithm};

use super::default_help;
use crate::settings::Settings;

/// The built-in settings, for `--help`.
static DEFAULTS: std::sync::LazyLock<Settings> = std::sync::LazyLock::new(Settings::default);

/// Arguments of `kumo certs`.
#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    /// PKI directory (default: `certs.dir` from the settings, else `<data_dir>/pki`).
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: CertsCommand,
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// Create a new CA, an empty CRL and the revocation state.
    Init {
        /// CA key type: ecdsa-p256 (default), ed25519 or rsa2048.
        #[arg(long, default_value = "ecdsa-p256")]
        algorithm: KeyAlgorithm,
    },
    /// Issue a device certificate and key (CN = device id).
    IssueDevice {
        /// The device id.
        id: DeviceId,
    },
    /// Issue a broker node server certificate and key.
    IssueNode {
        /// The node id (certificate CN).
        node_id: String,
        /// A DNS name or IP address clients use to reach the node (repeatable).
        #[arg(long = "san", required = true, value_name = "NAME_OR_IP")]
        sans: Vec<String>,
    },
    /// Issue a service client certificate and key (e.g. `bridge`).
    IssueService {
        /// The service name.
        name: String,
    },
    /// Issue an integration client certificate and key bound to one account.
    IssueIntegration {
        /// The integration name.
        name: String,
        /// The account whose devices it may reach.
        #[arg(long)]
        account: AccountId,
    },
    /// Sign a device's CSR; the subject is forced to the device id.
    SignCsr {
        /// The CSR file (PEM).
        file: PathBuf,
        /// The device id the certificate is issued to.
        #[arg(long)]
        device: DeviceId,
    },
    /// Revoke a certificate by serial, or every certificate of a device by its id,
    /// and rewrite the CRL.
    Revoke {
        /// A serial number (hex, colons allowed) or a device id.
        target: String,
        /// Why (e.g. keyCompromise, superseded, cessationOfOperation).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Create whatever the stack needs and is missing (CA, CRL, the node's server
    /// certificate, the bridge's service certificate); idempotent, for deployments.
    EnsureStack {
        #[arg(long, help = default_help(
            "The broker node id",
            "broker.node_id",
            &DEFAULTS.broker.node_id,
        ))]
        node_id: Option<String>,
        #[arg(long = "san", value_name = "NAME_OR_IP", help = default_help(
            "Names the node is reached by (repeatable)",
            "certs.node_sans",
            DEFAULTS.certs.node_sans.join(","),
        ))]
        sans: Vec<String>,
    },
    /// Re-sign the CRL with a new number and a fresh next-update.
    Crl,
    /// Replace the issuing CA without cutting devices off: `begin` (a new CA
    /// issues, both are trusted), `status`, `finish` (the old CA is retired).
    #[command(subcommand)]
    Rollover(RolloverCommand),
    /// List issued certificates with status and expiry; each identity's
    /// certificates in issue order (old → new, later ones marked `↳`).
    List,
}

#[derive(Debug, Subcommand)]
enum RolloverCommand {
    /// Create a new CA that signs every certificate from now on; the current
    /// one stays trusted (nodes accept both) until `finish`. Devices move over
    /// when they renew.
    Begin {
        /// The new CA's key type: ecdsa-p256 (default), ed25519 or rsa2048.
        #[arg(long, default_value = "ecdsa-p256")]
        algorithm: KeyAlgorithm,
    },
    /// Which CA issues, which are being retired, and how many devices have moved.
    Status,
    /// Retire the old CA: re-issue node, service and integration certificates
    /// from the new one and trust only it. Refused while devices still hold
    /// only an old certificate, unless --force.
    Finish {
        /// Retire the old CA even though some devices have not renewed (they
        /// can no longer connect).
        #[arg(long)]
        force: bool,
    },
}

/// Runs one `kumo certs` subcommand.
pub fn run(args: CertsArgs, settings: &Settings) -> anyhow::Result<()> {
    let dir = args.dir.unwrap_or_else(|| settings.certs_dir());
    let open =
        || PkiDir::open(&dir).with_context(|| format!("opening the PKI in {}", dir.display()));
    match args.command {
        CertsCommand::Init { algorithm } => {
            let pki = PkiDir::init(&dir, algorithm).context("initializing the PKI")?;
            println!("created a CA ({algorithm}) in {}", dir.display());
            println!("  CA certificate: {}", pki.ca_path().display());
            println!("  CRL:            {}", pki.crl_path().display());
            let fingerprint = kumo_certs::fingerprint_of_der(&pki.ca().cert_der());
            println!("  fingerprint:    {fingerprint}");
        }
        CertsCommand::IssueDevice { id } => {
            print_issued(&format!("device {id}"), &open()?.issue_device(&id)?)
        }
        CertsCommand::IssueNode { node_id, sans } => print_issued(
            &format!("node {node_id} ({})", sans.join(", ")),
            &open()?.issue_node(&node_id, &sans)?,
        ),
        CertsCommand::IssueService { name } => {
            print_issued(&format!("service {name}"), &open()?.issue_service(&name)?)
        }
        CertsCommand::IssueIntegration { name, account } => print_issued(
            &format!("integration {name} for account {account}"),
            &open()?.issue_integration(&name, &account)?,
        ),
        CertsCommand::SignCsr { file, device } => print_issued(
            &format!("device {device} from {}", file.display()),
            &open()?.sign_device_csr(&file, &device)?,
        ),
        CertsCommand::Revoke { target, reason } => {
            let pki = open()?;
            let serials = pki.revoke(&target, reason.as_deref())?;
            if serials.is_empty() {
                println!("nothing new to revoke for {target}: already revoked");
            }
            for serial in &serials {
                println!("revoked {serial}");
            }
            println!("CRL: {}", pki.crl_path().display());
        }
        CertsCommand::EnsureStack { node_id, sans } => {
            let node_id = node_id.unwrap_or_else(|| settings.broker.node_id.clone());
            let sans = if sans.is_empty() {
                settings.certs.node_sans.clone()
            } else {
                sans
            };
            let stack = PkiDir::open_or_init(&dir)
                .and_then(|pki| pki.ensure_stack(&node_id, &sans))
                .with_context(|| format!("preparing the PKI in {}", dir.display()))?;
            println!("PKI ready in {}", dir.display());
            println!("  CA:          {}", stack.ca.display());
            println!("  CRL:         {}", stack.crl.display());
            println!(
                "  node {node_id}: {} ({})",
                stack.node_cert.display(),
                sans.join(", ")
            );
            println!("  bridge:      {}", stack.bridge_cert.display());
        }
        CertsCommand::Crl => println!("CRL: {}", open()?.write_crl()?.display()),
        CertsCommand::Rollover(command) => rollover(open()?, command)?,
        CertsCommand::List => print_table(&open()?.list()?),
    }
    Ok(())
}

fn rollover(mut pki: PkiDir, command: RolloverCommand) -> anyhow::Result<()> {
    let status = match command {
        RolloverCommand::Begin { algorithm } => {
            pki.rollover_begin(algorithm)
                .context("starting the CA rollover")?;
            println!("a new CA ({algorithm}) issues every certificate from now on;");
            println!("nodes trust it and the old one (ca.pem) once they reload (within their poll interval)");
            pki.rollover_status()?
        }
        RolloverCommand::Status => pki.rollover_status()?,
        RolloverCommand::Finish { force } => {
            let status = pki.rollover_finish(force).context("retiring the old CA")?;
            println!("the old CA is retired: nodes, services and integrations have certificates from the new CA,");
            println!("and ca.pem trusts only it (nodes reload within their poll interval; restart the bridge to reload its own)");
            status
        }
    };
    println!("issuing CA: {}", status.issuing);
    for old in &status.retiring {
        println!("retiring:   {old}");
    }
    println!(
        "devices:    {} on the issuing CA, {} still only on a retiring one",
        status.devices_moved,
        status.devices_left.len()
    );
    for id in status.devices_left.iter().take(20) {
        println!("  {id}");
    }
    Ok(())
}

fn print_issued(what: &str, paths: &IssuedPaths) {
    println!("issued {what}, serial {}", paths.serial);
    println!("  certificate: {}", paths.cert.display());
    if paths.key.as_os_str().is_empty() {
        println!("  key:         (stays on the device)");
    } else {
        println!("  key:         {}", paths.key.display());
    }
}

fn print_table(records: &[CertRecord]) {
    if records.is_empty() {
        println!("no certificates issued yet");
        return;
    }
    let now = OffsetDateTime::now_utc();
    let rows: Vec<[String; 5]> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            // Records come in chains (old → new per identity): a record of the
            // same identity as the one above it replaced that one.
            let renewed = i > 0 && records[i - 1].label() == r.label();
            let arrow = if renewed { "  ↳ " } else { "" };
            let replaced = if r.current { "" } else { " (replaced)" };
            let name = format!("{arrow}{}{replaced}", r.label());
            let status = match (r.status, r.revoke_at) {
                (kumo_certs::files::CertStatus::Valid, Some(at)) => {
                    format!(
                        "valid, revoked at {}",
                        at.replace_nanosecond(0).unwrap_or(at)
                    )
                }
                (status, _) => status.as_str().to_string(),
            };
            let days = (r.not_after - now).whole_days();
            [
                name,
                r.serial.clone(),
                status,
                r.not_after.date().to_string(),
                if days >= 0 {
                    format!("{days}d")
                } else {
                    format!("{}d ago", -days)
                },
            ]
        })
        .collect();
    let header = ["CERTIFICATE", "SERIAL", "STATUS", "EXPIRES", "LEFT"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 5]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_stack_help_shows_default_values_and_the_settings_that_change_them() {
        use clap::{Args as _, Command};
        let mut certs = CertsArgs::augment_args(Command::new("certs"));
        let help = certs
            .find_subcommand_mut("ensure-stack")
            .expect("ensure-stack")
            .render_help()
            .to_string();
        for line in [
            "[default: node-1; setting broker.node_id]",
            "[default: localhost,127.0.0.1; setting certs.node_sans]",
        ] {
            assert!(help.contains(line), "{line} in {help}");
        }
    }
}
