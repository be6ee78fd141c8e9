//! Test support shared by every crate's integration tests.
//!
//! One private PostgreSQL server per test process (started on first use with the
//! same launcher `kumo up` uses, in a throwaway no-fsync cluster), a fresh
//! database per test, and free loopback ports. Tests never depend on a server
//! that is already running.

pub mod fuzz;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use kumo_schema::{EmbeddedOptions, EmbeddedPostgres};
use tokio::sync::OnceCell;

static SERVER: OnceCell<EmbeddedPostgres> = OnceCell::const_new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);
const DIR_PREFIX: &str = "kumo-testpg-";

/// A database of its own for one test.
#[derive(Debug, Clone)]
pub struct TestDb {
    /// Database name.
    pub name: String,
    /// Connection string (unix socket).
    pub url: String,
}

impl TestDb {
    /// A new connection to this database; the connection task runs in the background.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }
}

/// Opens a connection to `url`, panicking with the reason on failure (test-only).
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to test database: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// The process-wide test server, started on first use.
pub async fn server() -> &'static EmbeddedPostgres {
    SERVER
        .get_or_init(|| async {
            remove_stale_clusters();
            let data_dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}", std::process::id()));
            let opts = EmbeddedOptions {
                bin_dir: std::env::var_os("KUMO_TEST_PG_BIN_DIR").map(PathBuf::from),
                data_dir,
                run_as: "postgres".into(),
                port: 5432,
                start_timeout: Duration::from_secs(60),
                database: "postgres".into(),
                ephemeral: true,
                server_settings: Vec::new(),
            };
            EmbeddedPostgres::start(opts)
                .await
                .unwrap_or_else(|e| panic!("starting the test PostgreSQL: {e}"))
        })
        .await
}

/// A fresh, empty database (no migrations applied).
pub async fn empty_db() -> TestDb {
    let server = server().await;
    let name = format!(
        "t{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    server
        .ensure_database(&name)
        .await
        .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
    TestDb {
        url: server.url_for(&name),
        name,
    }
}

/// A fresh database with every migration applied.
pub async fn migrated_db() -> TestDb {
    let db = empty_db().await;
    let mut client = db.client().await;
    kumo_schema::migrate(&mut client)
        .await
        .unwrap_or_else(|e| panic!("migrating test database {}: {e}", db.name));
    db
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    free_addr().port()
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("finding a free port: {e}"))
}

/// Removes clusters left by earlier test processes that have exited.
fn remove_stale_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(DIR_PREFIX)
            .map(|rest| rest.trim_end_matches(".log"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}
