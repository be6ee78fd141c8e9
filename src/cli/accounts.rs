//! `kumo users …`, `kumo tokens …` and `kumo devices …`: account administration
//! against the database a running `kumo up` uses (or `database.url`).
//!
//! Only wiring: the logic is `kumo_bridge::accounts` and `kumo_certs`.

use std::time::Duration;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use kumo_bridge::accounts::{self, DeviceKind};
use kumo_certs::files::PkiDir;
use kumo_contract::DeviceId;

use kumo_bridge::json::rfc3339;
use kumo_bridge::provision::codes;

use crate::database::Database;
use crate::settings::Settings;

/// `kumo users …`
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create an account and print its id.
    Create {
        /// Display name.
        #[arg(long)]
        nickname: String,
        /// Optional unique e-mail address.
        #[arg(long)]
        email: Option<String>,
    },
    /// List every account with its number of devices.
    List,
    /// First start: create an account and a token with every scope, and
    /// print both, unless an account exists already (then nothing changes).
    Bootstrap {
        /// Display name of the first account.
        #[arg(long, default_value = "admin")]
        nickname: String,
        /// Also make a claim code for the new account and write it to this
        /// file (mode 0600), for devices to enrol with, e.g. `kumo sim
        /// --claim-file`. Only when the account is created.
        #[arg(long, value_name = "PATH")]
        claim_code_file: Option<std::path::PathBuf>,
        /// How many devices the claim code enrols.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i32).range(1..=1000))]
        claim_uses: i32,
        /// How long the claim code stays valid, seconds (at most 7 days).
        #[arg(long, default_value_t = 7 * 24 * 3600, value_parser = clap::value_parser!(i64).range(60..=7 * 24 * 3600))]
        claim_expires_in: i64,
    },
}

/// `kumo tokens …`
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a bearer token for an account; it is printed once and stored hashed.
    Create {
        /// The account id.
        #[arg(long)]
        user: String,
        /// A scope (repeatable): basic, basic.read, basic.write, sendir, sendrawir, detectappliance, provision,
        /// echonetlite.*.read, echonetlite.*.write, home, home.read, home.write.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// A label to recognize the token by.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List an account's tokens (never the tokens themselves).
    List {
        /// The account id.
        #[arg(long)]
        user: String,
    },
    /// Revoke a token by its id (as `tokens list` shows it); it stops working at once.
    Revoke {
        /// The token's id.
        id: String,
    },
}

/// `kumo devices …`
#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Register a device to an account and issue its certificate.
    Add {
        /// The device id (its MQTT client id and certificate CN).
        id: DeviceId,
        /// The owning account id.
        #[arg(long)]
        user: String,
        /// What the device is.
        #[arg(long, value_enum, default_value = "remo")]
        kind: Kind,
        /// Display name.
        #[arg(long, default_value = "")]
        name: String,
        /// Only register; issue no certificate.
        #[arg(long)]
        no_cert: bool,
        /// Issue a new key and certificate even though the device has a valid
        /// one (the PKI directory's files are replaced; revoke the old one with
        /// `kumo certs revoke` if it must stop working).
        #[arg(long, conflicts_with = "no_cert")]
        new_cert: bool,
    },
    /// List devices: owner, kind, online, node, last seen.
    List {
        /// Only this account's devices.
        #[arg(long)]
        user: Option<String>,
    },
    /// Release a device from its account (its appliances go) and revoke its
    /// certificates, so it can no longer connect.
    Remove {
        /// The device id.
        id: DeviceId,
        /// Release only; leave its certificates valid.
        #[arg(long)]
        keep_cert: bool,
    },
}

/// Device kinds on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    Remo,
    SmartMeter,
}

/// `--new-database`, shared by the account commands.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct Target {
    /// Create a fresh private database when the data directory has none
    /// (without it, such a command refuses: it is almost always run from
    /// the wrong directory).
    #[arg(long, global = true)]
    pub new_database: bool,
}

/// Refuses to start a fresh private database where none exists, unless asked:
/// an admin command run from the wrong directory would otherwise create an
/// empty one there and report success against it.
fn check_data_dir(settings: &Settings, target: Target) -> anyhow::Result<()> {
    if settings.database.url.is_some() || target.new_database {
        return Ok(());
    }
    let cluster = settings
        .database
        .embedded
        .data_dir
        .clone()
        .unwrap_or_else(|| settings.data_dir.join("postgres"));
    if cluster.exists() {
        return Ok(());
    }
    anyhow::bail!(
        "no Kumo database in {}: this command would create a fresh, empty one there. \
         Run it in the directory where you run `kumo up` (its data directory is `.kumo`), \
         point it there with KUMO__DATA_DIR or use an external one with KUMO__DATABASE__URL; \
         or pass --new-database to create one here",
        cluster.display()
    )
}

pub(crate) async fn pool(
    settings: &Settings,
    target: Target,
) -> anyhow::Result<(Database, deadpool_postgres::Pool)> {
    check_data_dir(settings, target)?;
    let db = Database::open_or_attach(&settings.database).await?;
    db.migrate().await?;
    let pool = kumo_schema::connect_pool(
        db.url(),
        2,
        Duration::from_secs(settings.database.connect_timeout_secs),
    )
    .context("connecting to the database")?;
    Ok((db, pool))
}

pub async fn users(
    command: UsersCommand,
    target: Target,
    settings: Settings,
) -> anyhow::Result<()> {
    let (db, pool) = pool(&settings, target).await?;
    let result = match command {
        UsersCommand::Create { nickname, email } => {
            accounts::create_user(&pool, &nickname, email.as_deref())
                .await
                .map(|user| println!("created user {} ({})", user.id, user.nickname))
                .map_err(anyhow::Error::from)
        }
        UsersCommand::Bootstrap {
            nickname,
            claim_code_file,
            claim_uses,
            claim_expires_in,
        } => {
            let claim = claim_code_file.map(|path| FirstClaimCode {
                path,
                uses: claim_uses,
                ttl: time::Duration::seconds(claim_expires_in),
            });
            bootstrap(&pool, &nickname, claim.as_ref()).await
        }
        UsersCommand::List => accounts::list_users(&pool)
            .await
            .map(|users| {
                println!(
                    "{:<36}  {:>7}  {:<20}  NICKNAME (EMAIL)",
                    "ID", "DEVICES", "CREATED"
                );
                for u in users {
                    println!(
                        "{:<36}  {:>7}  {:<20}  {}{}",
                        u.id,
                        u.devices,
                        rfc3339(u.created_at),
                        u.nickname,
                        u.email.map(|e| format!(" ({e})")).unwrap_or_default()
                    );
                }
            })
            .map_err(anyhow::Error::from),
    };
    drop(pool);
    db.close().await;
    result
}

/// Where and how `users bootstrap` writes the first account's claim code.
struct FirstClaimCode {
    path: std::path::PathBuf,
    uses: i32,
    ttl: time::Duration,
}

/// `kumo users bootstrap`: idempotent, so a container can run it on every start.
async fn bootstrap(
    pool: &deadpool_postgres::Pool,
    nickname: &str,
    claim: Option<&FirstClaimCode>,
) -> anyhow::Result<()> {
    let existing = accounts::list_users(pool).await?;
    if !existing.is_empty() {
        println!(
            "{} account(s) exist already; bootstrap created nothing (see `kumo users list`)",
            existing.len()
        );
        if let Some(claim) = claim.filter(|c| !c.path.exists()) {
            eprintln!(
                "no claim code written to {}: it is made only with the first account \
                 (make one with POST /v1/claim_codes)",
                claim.path.display()
            );
        }
        return Ok(());
    }
    let user = accounts::create_user(pool, nickname, None).await?;
    let scopes = kumo_bridge::auth::ALL_SCOPES;
    let token = accounts::create_token(pool, &user.id, scopes, "bootstrap").await?;
    println!("created user {} ({})", user.id, user.nickname);
    println!("token (every scope; shown only once): {token}");
    if let Some(claim) = claim {
        let (listed, code) = codes::create(pool, &user.id, claim.uses, claim.ttl)
            .await
            .context("making the claim code")?;
        write_secret(&claim.path, &code)?;
        println!(
            "claim code for {} device(s) until {} written to {}",
            listed.uses,
            rfc3339(listed.expires_at),
            claim.path.display()
        );
    }
    Ok(())
}

/// Writes `text` to `path` readable by its owner only, replacing it whole
/// (a reader never sees half a code).
fn write_secret(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        writeln!(file, "{text}")?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().with_context(|| format!("writing {}", path.display()))
}

pub async fn tokens(
    command: TokensCommand,
    target: Target,
    settings: Settings,
) -> anyhow::Result<()> {
    let (db, pool) = pool(&settings, target).await?;
    let result = match command {
        TokensCommand::Create { user, scopes, name } => {
            accounts::create_token(&pool, &user, &scopes, &name)
                .await
                .map(|token| {
                    eprintln!(
                        "token for {user} with scopes {}; shown only once:",
                        scopes.join(" ")
                    );
                    println!("{token}");
                })
        }
        TokensCommand::List { user } => accounts::list_tokens(&pool, &user).await.map(|tokens| {
            println!(
                "{:<36}  {:<8}  {:<20}  SCOPES (NAME)",
                "ID", "STATE", "LAST USED"
            );
            for t in tokens {
                let state = match (t.revoked_at, t.expires_at) {
                    (Some(_), _) => "revoked",
                    (None, Some(e)) if e <= time::OffsetDateTime::now_utc() => "expired",
                    _ => "active",
                };
                println!(
                    "{:<36}  {:<8}  {:<20}  {}{}",
                    t.id,
                    state,
                    t.last_used_at
                        .map(rfc3339)
                        .unwrap_or_else(|| "never".into()),
                    t.scopes.join(" "),
                    if t.name.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", t.name)
                    }
                );
            }
        }),
        TokensCommand::Revoke { id } => match accounts::revoke_any_token(&pool, &id).await {
            Ok(Some(user)) => {
                println!("revoked token {id} of user {user}");
                Ok(())
            }
            Ok(None) => {
                drop(pool);
                db.close().await;
                anyhow::bail!("no token with id {id:?} (see `kumo tokens list --user <id>`)");
            }
            Err(e) => Err(e),
        },
    };
    drop(pool);
    db.close().await;
    Ok(result?)
}

pub async fn devices(
    command: DevicesCommand,
    target: Target,
    settings: Settings,
) -> anyhow::Result<()> {
    let (db, pool) = pool(&settings, target).await?;
    let result = match command {
        DevicesCommand::Add {
            id,
            user,
            kind,
            name,
            no_cert,
            new_cert,
        } => {
            let cert = match (no_cert, new_cert) {
                (true, _) => Cert::None,
                (_, true) => Cert::Replace,
                _ => Cert::IfMissing,
            };
            add_device(&settings, &pool, &id, &user, kind, &name, cert).await
        }
        DevicesCommand::List { user } => list_devices(&pool, user.as_deref()).await,
        DevicesCommand::Remove { id, keep_cert } => {
            remove_device(&settings, &pool, &id, keep_cert).await
        }
    };
    drop(pool);
    db.close().await;
    result
}

/// What `devices add` does about the device's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cert {
    None,
    /// Issue one unless a valid one exists.
    IfMissing,
    /// Issue one even if a valid one exists (`--new-cert`).
    Replace,
}

async fn add_device(
    settings: &Settings,
    pool: &deadpool_postgres::Pool,
    id: &DeviceId,
    user: &str,
    kind: Kind,
    name: &str,
    cert: Cert,
) -> anyhow::Result<()> {
    let kind = match kind {
        Kind::Remo => DeviceKind::Remo,
        Kind::SmartMeter => DeviceKind::SmartMeter,
    };
    accounts::register_device(pool, id, user, kind, name).await?;
    println!("registered device {id} to user {user}");
    if cert != Cert::None {
        let dir = settings.certs_dir();
        let pki = PkiDir::open_or_init(&dir)
            .with_context(|| format!("opening the PKI in {}", dir.display()))?;
        if cert == Cert::IfMissing {
            if let Some(current) = valid_device_cert(&pki, id)? {
                println!(
                    "  kept its valid certificate (serial {}, until {}): a device using it \
                     stays connected; --new-cert issues a new pair in its place",
                    current.serial,
                    current.not_after.date()
                );
                return Ok(());
            }
        }
        let issued = pki
            .issue_device(id)
            .with_context(|| format!("issuing a certificate in {}", dir.display()))?;
        println!("  certificate: {}", issued.cert.display());
        println!("  key:         {}", issued.key.display());
        println!("  serial:      {}", issued.serial);
    }
    Ok(())
}

async fn list_devices(pool: &deadpool_postgres::Pool, user: Option<&str>) -> anyhow::Result<()> {
    let devices = accounts::list_devices(pool, user).await?;
    println!(
        "{:<24}  {:<36}  {:<11}  {:<7}  {:<10}  {:<20}  NAME",
        "ID", "OWNER", "KIND", "ONLINE", "NODE", "LAST SEEN"
    );
    for d in devices {
        println!(
            "{:<24}  {:<36}  {:<11}  {:<7}  {:<10}  {:<20}  {}",
            d.id,
            d.user_id.as_deref().unwrap_or("-"),
            d.kind,
            if d.online { "yes" } else { "no" },
            d.node_id.as_deref().unwrap_or("-"),
            d.last_seen_at
                .map(rfc3339)
                .unwrap_or_else(|| "never".into()),
            d.name
        );
    }
    Ok(())
}

async fn remove_device(
    settings: &Settings,
    pool: &deadpool_postgres::Pool,
    id: &DeviceId,
    keep_cert: bool,
) -> anyhow::Result<()> {
    let released = accounts::release_device(pool, id.as_str(), None).await?;
    if released {
        println!("released device {id} (it belongs to no account now)");
    } else {
        println!("no device {id} is registered");
    }
    if keep_cert {
        return Ok(());
    }
    let dir = settings.certs_dir();
    let pki =
        PkiDir::open(&dir).with_context(|| format!("opening the PKI in {}", dir.display()))?;
    match pki.revoke(id.as_str(), Some("cessationOfOperation")) {
        Ok(serials) => {
            for serial in &serials {
                println!("revoked certificate {serial}");
            }
            if serials.is_empty() {
                println!("its certificates were already revoked");
            }
            println!(
                "CRL: {} (nodes pick it up within their poll interval)",
                pki.crl_path().display()
            );
            Ok(())
        }
        Err(kumo_certs::CertError::UnknownCertificate { .. }) if released => {
            println!("no certificate of {id} was issued in {}", dir.display());
            Ok(())
        }
        Err(e) => Err(e).context("revoking its certificates"),
    }
}

/// The device's newest valid certificate, if it has one.
fn valid_device_cert(
    pki: &PkiDir,
    id: &DeviceId,
) -> anyhow::Result<Option<kumo_certs::files::CertRecord>> {
    let records = pki.list().context("reading the PKI's certificates")?;
    Ok(records
        .into_iter()
        .filter(|r| {
            r.kind == kumo_certs::files::CertKind::Device
                && r.current
                && r.name == id.as_str()
                && r.status == kumo_certs::files::CertStatus::Valid
        })
        .max_by_key(|r| r.not_before))
}
