//! `kumo db …`: database administration.

use clap::Subcommand;

use crate::database::Database;
use crate::settings::Settings;

/// Database subcommands.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply pending migrations (starting the private server if no URL is set).
    Migrate,
    /// List the migrations this build knows and whether each is applied.
    Status,
}

pub async fn run(command: DbCommand, settings: Settings) -> anyhow::Result<()> {
    let db = Database::open_or_attach(&settings.database).await?;
    let result = match command {
        DbCommand::Migrate => migrate(&db).await,
        DbCommand::Status => status(&db).await,
    };
    db.close().await;
    result
}

async fn migrate(db: &Database) -> anyhow::Result<()> {
    let report = db.migrate().await?;
    if report.applied.is_empty() {
        println!(
            "database is up to date ({} migrations)",
            report.already.len()
        );
    } else {
        println!(
            "applied migrations {:?}; {} were already applied",
            report.applied,
            report.already.len()
        );
    }
    Ok(())
}

async fn status(db: &Database) -> anyhow::Result<()> {
    let client = db.client().await?;
    let applied: Vec<i64> = match client
        .query("SELECT version FROM schema_migrations", &[])
        .await
    {
        Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
        Err(_) => Vec::new(), // no migrations table yet: nothing applied
    };
    for m in kumo_schema::MIGRATIONS {
        let state = if applied.contains(&m.version) {
            "applied"
        } else {
            "pending"
        };
        println!("{:>4}  {:<40} {state}", m.version, m.name);
    }
    Ok(())
}
