//! Ordered SQL migrations, each applied once inside its own transaction.
//!
//! Applied versions are recorded in `schema_migrations` with a checksum, so an
//! edited migration is caught instead of silently diverging. A session-level
//! advisory lock serializes concurrent migrators (two `kumo` processes starting
//! at once): the second waits, then finds nothing left to do.

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

/// One migration file, compiled into the binary.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migration {
    ($version:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../migrations/", $name, ".sql")),
        }
    };
}

/// Every migration, in the order it is applied. Add new files at the end.
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_core"),
    migration!(2, "0002_bridge"),
    migration!(3, "0003_rules"),
    migration!(4, "0004_webhooks"),
    migration!(5, "0005_device_ownership"),
    migration!(6, "0006_readings_once"),
    migration!(7, "0007_rule_state"),
    migration!(8, "0008_device_owner_since"),
    migration!(9, "0009_command_expected_state"),
    migration!(10, "0010_claim_codes"),
    migration!(11, "0011_echonet_control"),
    migration!(12, "0012_newest_events_from_readings"),
    migration!(13, "0013_homes"),
    migration!(14, "0014_energy"),
    migration!(15, "0015_ble_and_projector_kinds"),
    migration!(16, "0016_demand_response"),
    migration!(17, "0017_dr_expected_reduction"),
];

/// Arbitrary constant naming Kumo's migration lock among advisory locks.
const LOCK_KEY: i64 = 0x6b75_6d6f_6d69_6772; // "kumomigr"

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("database error while migrating: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("migration {version} ({name}) failed: {source}")]
    Failed {
        version: i64,
        name: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "migration {version} ({name}) was changed after it was applied \
         (recorded checksum {recorded}, this build has {current})"
    )]
    Changed {
        version: i64,
        name: String,
        recorded: String,
        current: String,
    },
    #[error("the database has migration {version}, which this build does not know; is it older than the one that migrated it?")]
    Unknown { version: i64 },
}

/// What a call to [`migrate`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this call, in order.
    pub applied: Vec<i64>,
    /// Versions that were already present.
    pub already: Vec<i64>,
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Applies every pending migration in [`MIGRATIONS`].
pub async fn migrate(client: &mut Client) -> Result<MigrationReport, MigrateError> {
    migrate_with(client, MIGRATIONS).await
}

/// [`migrate`] with an explicit list (tests use this to exercise failures).
pub async fn migrate_with(
    client: &mut Client,
    migrations: &[Migration],
) -> Result<MigrationReport, MigrateError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let result = apply_pending(client, migrations).await;
    // Unlock even on failure; if the connection is gone the lock went with it.
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    let report = result?;
    unlock?;
    Ok(report)
}

async fn apply_pending(
    client: &mut Client,
    migrations: &[Migration],
) -> Result<MigrationReport, MigrateError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    bigint PRIMARY KEY,
                name       text NOT NULL,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await?;
    let rows = client
        .query("SELECT version, name, checksum FROM schema_migrations", &[])
        .await?;
    let mut report = MigrationReport::default();
    for row in &rows {
        let version: i64 = row.get(0);
        let Some(known) = migrations.iter().find(|m| m.version == version) else {
            return Err(MigrateError::Unknown { version });
        };
        let recorded: String = row.get(2);
        let current = checksum(known.sql);
        if recorded != current {
            return Err(MigrateError::Changed {
                version,
                name: row.get(1),
                recorded,
                current,
            });
        }
    }
    for m in migrations {
        if rows.iter().any(|r| r.get::<_, i64>(0) == m.version) {
            report.already.push(m.version);
            continue;
        }
        let tx = client.transaction().await?;
        let failed = |source| MigrateError::Failed {
            version: m.version,
            name: m.name,
            source,
        };
        tx.batch_execute(m.sql).await.map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &checksum(m.sql)],
        )
        .await?;
        tx.commit().await.map_err(failed)?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
        report.applied.push(m.version);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_listed_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .expect("migrations dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS
            .iter()
            .map(|m| format!("{}.sql", m.name))
            .collect();
        assert_eq!(files, listed);
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "versions are consecutive");
            assert!(m.name.starts_with(&format!("{:04}_", m.version)));
        }
    }
}
