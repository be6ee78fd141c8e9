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
}

/// `kumo tokens …`
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a bearer token for an account; it is printed once and stored hashed.
    Create {
        /// The account id.
        #[arg(long)]
        user: String,
        /// A scope (repeatable): basic, basic.read, basic.write, sendir, sendrawir, detectappliance.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// A label to recognize the token by.
        #[arg(long, default_value = "")]
        name: String,
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
    },
}

/// Device kinds on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    Remo,
    SmartMeter,
}

async fn pool(settings: &Settings) -> anyhow::Result<(Database, deadpool_postgres::Pool)> {
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

pub async fn users(command: UsersCommand, settings: Settings) -> anyhow::Result<()> {
    let (db, pool) = pool(&settings).await?;
    let result = match command {
        UsersCommand::Create { nickname, email } => {
            accounts::create_user(&pool, &nickname, email.as_deref())
                .await
                .map(|user| println!("created user {} ({})", user.id, user.nickname))
        }
    };
    drop(pool);
    db.close().await;
    Ok(result?)
}

pub async fn tokens(command: TokensCommand, settings: Settings) -> anyhow::Result<()> {
    let (db, pool) = pool(&settings).await?;
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
    };
    drop(pool);
    db.close().await;
    Ok(result?)
}

pub async fn devices(command: DevicesCommand, settings: Settings) -> anyhow::Result<()> {
    let (db, pool) = pool(&settings).await?;
    let result = match command {
        DevicesCommand::Add {
            id,
            user,
            kind,
            name,
            no_cert,
        } => add_device(&settings, &pool, &id, &user, kind, &name, no_cert).await,
    };
    drop(pool);
    db.close().await;
    result
}

async fn add_device(
    settings: &Settings,
    pool: &deadpool_postgres::Pool,
    id: &DeviceId,
    user: &str,
    kind: Kind,
    name: &str,
    no_cert: bool,
) -> anyhow::Result<()> {
    let kind = match kind {
        Kind::Remo => DeviceKind::Remo,
        Kind::SmartMeter => DeviceKind::SmartMeter,
    };
    accounts::register_device(pool, id, user, kind, name).await?;
    println!("registered device {id} to user {user}");
    if !no_cert {
        let dir = settings.certs_dir();
        let issued = PkiDir::open_or_init(&dir)
            .and_then(|pki| pki.issue_device(id))
            .with_context(|| format!("issuing a certificate in {}", dir.display()))?;
        println!("  certificate: {}", issued.cert.display());
        println!("  key:         {}", issued.key.display());
        println!("  serial:      {}", issued.serial);
    }
    Ok(())
}
