//! The database a `kumo` command uses: the configured server, or the private one.

use std::time::Duration;

use anyhow::Context;
use kumo_schema::{
    running_server_url, DatabaseSettings, EmbeddedOptions, EmbeddedPostgres, MigrationReport,
};

/// A reachable PostgreSQL database, plus the private server if Kumo started one.
/// Dropping it stops the private server.
pub struct Database {
    url: String,
    embedded: Option<EmbeddedPostgres>,
    attached: bool,
}

impl Database {
    /// Connects to `database.url`, or starts the private server when it is unset.
    pub async fn open(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        Self::open_with(settings, false).await
    }

    /// Like [`Database::open`], but an admin command uses the private server a
    /// running `kumo up` already started on the same data instead of failing.
    pub async fn open_or_attach(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        Self::open_with(settings, true).await
    }

    async fn open_with(settings: &DatabaseSettings, attach: bool) -> anyhow::Result<Self> {
        match &settings.url {
            Some(url) => {
                let db = Self {
                    url: url.clone(),
                    embedded: None,
                    attached: false,
                };
                db.client()
                    .await
                    .context("connecting to database.url (KUMO__DATABASE__URL)")?;
                Ok(db)
            }
            None => {
                let opts = EmbeddedOptions::from_settings(&settings.embedded);
                if attach {
                    if let Some(url) = running_server_url(&opts) {
                        return Ok(Self {
                            url,
                            embedded: None,
                            attached: true,
                        });
                    }
                }
                let server = EmbeddedPostgres::start(opts)
                    .await
                    .context("starting the private PostgreSQL")?;
                Ok(Self {
                    url: server.url(),
                    embedded: Some(server),
                    attached: false,
                })
            }
        }
    }

    /// One short-lived connection (for migrations and admin commands).
    pub async fn client(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .context("connecting to PostgreSQL")?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::warn!(error = %e, "database connection ended");
            }
        });
        Ok(client)
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> anyhow::Result<MigrationReport> {
        let mut client = self.client().await?;
        kumo_schema::migrate(&mut client)
            .await
            .context("applying database migrations")
    }

    /// Resolves when the private server has exited; never, for an external one.
    pub async fn died(&self) {
        match &self.embedded {
            Some(server) => {
                while server.exit_status().is_none() {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
            None => std::future::pending().await,
        }
    }

    /// A connection pool sized by `database.pool_size`.
    pub fn pool(&self, settings: &DatabaseSettings) -> anyhow::Result<deadpool_postgres::Pool> {
        kumo_schema::connect_pool(
            &self.url,
            settings.pool_size,
            Duration::from_secs(settings.connect_timeout_secs),
        )
        .context("building the database pool")
    }

    /// The bridge's pools: `database.pool_size` connections for its own work
    /// and, unless `api_pool_size` is 0, that many for its REST API.
    pub fn bridge_pools(
        &self,
        settings: &DatabaseSettings,
        api_pool_size: usize,
    ) -> anyhow::Result<kumo_bridge::Pools> {
        let api = (api_pool_size > 0)
            .then(|| {
                kumo_schema::connect_pool(
                    &self.url,
                    api_pool_size,
                    Duration::from_secs(settings.connect_timeout_secs),
                )
                .context("building the REST API's database pool")
            })
            .transpose()?;
        Ok(kumo_bridge::Pools::new(self.pool(settings)?, api).listening_on(&self.url))
    }

    /// The connection string.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A one-line description for the start-up summary.
    pub fn describe(&self) -> String {
        match &self.embedded {
            Some(s) => format!(
                "private PostgreSQL (pid {}), data in {}, socket in {}",
                s.pid(),
                s.data_dir().display(),
                s.socket_dir().display()
            ),
            None if self.attached => "private PostgreSQL started by another kumo process".into(),
            None => "external PostgreSQL (database.url)".to_string(),
        }
    }

    /// Stops the private server, if any, waiting for it to exit.
    pub async fn close(mut self) {
        if let Some(server) = self.embedded.take() {
            server.stop().await;
        }
    }
}
