//! The private PostgreSQL server: `initdb` on first run, start on a unix socket,
//! wait until it accepts connections, stop cleanly.
//!
//! The server must never outlive Kumo. It runs in its own process group (a
//! terminal's Ctrl-C reaches Kumo, which then stops it in order) with a
//! parent-death signal, so if Kumo panics or is killed the kernel tells the
//! postmaster to shut down. The signal is tied to the *thread* that forked the
//! child, so a dedicated supervisor thread forks it and lives exactly as long.
//! PostgreSQL refuses to run as root; as root we run it as an unprivileged user.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{Pid, User};
use sha2::{Digest, Sha256};

use crate::settings::EmbeddedSettings;

/// Where distributions install versioned server binaries.
pub const DEFAULT_BIN_ROOT: &str = "/usr/lib/postgresql";
/// The superuser `initdb` creates; trust auth over a socket only we can reach.
pub const SUPERUSER: &str = "kumo";
/// Longest socket directory that leaves room for `/.s.PGSQL.NNNNN` in `sun_path`.
const MAX_SOCKET_DIR_LEN: usize = 90;

/// Why the private server could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) were not found {searched}. \
         Install them (Debian/Ubuntu: `apt-get install postgresql`), set \
         database.embedded.bin_dir (KUMO__DATABASE__EMBEDDED__BIN_DIR) to their directory, \
         or point Kumo at an existing server with KUMO__DATABASE__URL=postgres://user:password@host:5432/kumo"
    )]
    BinariesNotFound { searched: String },
    #[error(
        "PostgreSQL refuses to run as root and the user {user:?} does not exist; create it \
         (`useradd --system {user}`) or set database.embedded.run_as to an unprivileged user"
    )]
    NoSuchUser { user: String },
    #[error("user {user:?} cannot enter {dir}: make it traversable (chmod o+x) or set database.embedded.data_dir elsewhere")]
    NotTraversable { user: String, dir: PathBuf },
    #[error("{dir} exists but is not a PostgreSQL data directory (no PG_VERSION); move it away or set database.embedded.data_dir")]
    NotACluster { dir: PathBuf },
    #[error("{dir} holds a PostgreSQL {found} cluster but the binaries in {bin_dir} are version {binaries}")]
    VersionMismatch {
        dir: PathBuf,
        found: String,
        binaries: String,
        bin_dir: PathBuf,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("initdb failed for {dir}: {output}")]
    Initdb { dir: PathBuf, output: String },
    #[error(
        "the PostgreSQL server exited during start-up ({status}); last lines of {log}:\n{tail}"
    )]
    Exited {
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("the PostgreSQL server did not accept connections within {secs} s; last lines of {log}:\n{tail}")]
    StartTimeout {
        secs: u64,
        log: PathBuf,
        tail: String,
    },
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> EmbeddedError {
    let path = path.to_path_buf();
    move |source| EmbeddedError::Io {
        action,
        path,
        source,
    }
}

/// How to run the private server.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    pub bin_dir: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub run_as: String,
    pub port: u16,
    pub start_timeout: Duration,
    pub database: String,
    /// Trade durability for speed (no fsync): for throwaway test clusters only.
    pub ephemeral: bool,
    /// Server settings passed as `-c name=value` (memory sizes and the like).
    pub server_settings: Vec<(String, String)>,
}

impl EmbeddedOptions {
    /// Options from `[database.embedded]`; `data_dir` must have been resolved.
    pub fn from_settings(s: &EmbeddedSettings) -> Self {
        Self {
            bin_dir: s.bin_dir.clone(),
            data_dir: s
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(".kumo/postgres")),
            run_as: s.run_as.clone(),
            port: s.port,
            start_timeout: Duration::from_secs(s.start_timeout_secs),
            database: s.database.clone(),
            ephemeral: false,
            server_settings: [
                ("shared_buffers".into(), s.shared_buffers.clone()),
                ("max_wal_size".into(), s.max_wal_size.clone()),
                ("random_page_cost".into(), s.random_page_cost.to_string()),
            ]
            .into_iter()
            .chain((!s.shared_preload_libraries.is_empty()).then(|| {
                (
                    "shared_preload_libraries".into(),
                    s.shared_preload_libraries.join(","),
                )
            }))
            .collect(),
        }
    }
}

/// Finds the directory holding `initdb` and `postgres`: the configured one, else
/// the first on `path_var`, else the newest `<fallback_root>/<version>/bin`.
pub fn find_bin_dir(
    configured: Option<&Path>,
    path_var: Option<OsString>,
    fallback_root: &Path,
) -> Result<PathBuf, EmbeddedError> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(dir) = configured {
        return if has_both(dir) {
            Ok(dir.to_path_buf())
        } else {
            Err(EmbeddedError::BinariesNotFound {
                searched: format!("in database.embedded.bin_dir = {}", dir.display()),
            })
        };
    }
    if let Some(found) = path_var
        .iter()
        .flat_map(std::env::split_paths)
        .find(|d| has_both(d))
    {
        return Ok(found);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(fallback_root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_both(bin))
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| EmbeddedError::BinariesNotFound {
            searched: format!("on PATH or in {}/*/bin", fallback_root.display()),
        })
}

/// The account the server runs as: `None` means "as ourselves" (not root).
fn server_user(run_as: &str) -> Result<Option<User>, EmbeddedError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match User::from_name(run_as) {
        Ok(Some(user)) => Ok(Some(user)),
        _ => Err(EmbeddedError::NoSuchUser {
            user: run_as.to_string(),
        }),
    }
}

/// Checks that `user` can reach `dir` through every existing ancestor.
fn check_traversable(user: &User, dir: &Path) -> Result<(), EmbeddedError> {
    for ancestor in dir.ancestors().skip(1) {
        let Ok(meta) = fs::metadata(ancestor) else {
            continue;
        };
        let mode = meta.mode();
        let ok = if meta.uid() == user.uid.as_raw() {
            mode & 0o100 != 0
        } else if meta.gid() == user.gid.as_raw() {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !ok {
            return Err(EmbeddedError::NotTraversable {
                user: user.name.clone(),
                dir: ancestor.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Creates `dir` (mode 0700) owned by `user`.
fn make_private_dir(dir: &Path, user: Option<&User>) -> Result<(), EmbeddedError> {
    fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    if let Some(u) = user {
        nix::unistd::chown(dir, Some(u.uid), Some(u.gid))
            .map_err(|e| io_err("changing the owner of", dir)(e.into()))?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err("setting permissions on", dir))
}

/// Makes `cmd` run as `user` and die with the thread that spawns it.
fn prepare(cmd: &mut Command, user: Option<&User>) {
    if let Some(u) = user {
        cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
    }
    let parent = nix::unistd::getpid();
    #[allow(unsafe_code)]
    // SAFETY: the hook runs in the forked child just before exec (after std has
    // switched uid/gid, so the credential change cannot clear the signal). It only
    // calls prctl(2) and getppid(2), which are async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGINT)
                .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
            // The parent may have died before the signal was armed.
            if nix::unistd::getppid() != parent {
                return Err(io::Error::from_raw_os_error(
                    nix::errno::Errno::ESRCH as i32,
                ));
            }
            Ok(())
        });
    }
}

fn binaries_version(bin_dir: &Path) -> String {
    Command::new(bin_dir.join("postgres"))
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.split_whitespace()
                .last()
                .and_then(|v| v.split('.').next())
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Quotes a value for a libpq key/value connection string.
fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The connection string of a server already running on `opts.data_dir` (started
/// by another Kumo process, e.g. `kumo up`), read from its `postmaster.pid`.
/// Admin commands use it instead of starting a second server on the same data.
pub fn running_server_url(opts: &EmbeddedOptions) -> Option<String> {
    let pid_file = fs::read_to_string(opts.data_dir.join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = pid_file.lines().collect();
    let pid: i32 = lines.first()?.trim().parse().ok()?;
    let port: u16 = lines.get(3)?.trim().parse().ok()?;
    let socket_dir = lines.get(4)?.trim();
    // A stale pid file (crash, reboot) names a process that is gone or not postgres.
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    if !comm.trim().starts_with("postgres") || socket_dir.is_empty() {
        return None;
    }
    Some(format!(
        "host={} port={port} user={SUPERUSER} dbname={}",
        quote(socket_dir),
        quote(&opts.database)
    ))
}

/// A running private PostgreSQL server. Dropping it stops the server (blocking).
#[derive(Debug)]
pub struct EmbeddedPostgres {
    pid: Pid,
    exit: Arc<Mutex<Option<ExitStatus>>>,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    database: String,
    stopped: bool,
}

impl EmbeddedPostgres {
    /// Initializes the cluster if needed, starts the server, waits until it
    /// accepts connections and makes sure the database exists.
    pub async fn start(opts: EmbeddedOptions) -> Result<Self, EmbeddedError> {
        let bin_dir = find_bin_dir(
            opts.bin_dir.as_deref(),
            std::env::var_os("PATH"),
            Path::new(DEFAULT_BIN_ROOT),
        )?;
        let user = server_user(&opts.run_as)?;
        let data_dir =
            std::path::absolute(&opts.data_dir).map_err(io_err("resolving", &opts.data_dir))?;
        if let Some(u) = &user {
            check_traversable(u, &data_dir)?;
        }
        let log_path = data_dir.with_extension("log");
        let blocking = {
            let (bin_dir, data_dir, user) = (bin_dir.clone(), data_dir.clone(), user.clone());
            let ephemeral = opts.ephemeral;
            move || init_cluster(&bin_dir, &data_dir, user.as_ref(), ephemeral)
        };
        tokio::task::spawn_blocking(blocking)
            .await
            .map_err(|e| io_err("initializing", &data_dir)(io::Error::other(e)))??;
        let socket_dir = socket_dir_for(&data_dir);
        if socket_dir != data_dir {
            make_private_dir(&socket_dir, user.as_ref())?;
        }
        let mut cmd = Command::new(bin_dir.join("postgres"));
        cmd.arg("-D")
            .arg(&data_dir)
            .arg("-k")
            .arg(&socket_dir)
            .arg("-p")
            .arg(opts.port.to_string())
            .args([
                "-c",
                "listen_addresses=",
                "-c",
                "unix_socket_permissions=0700",
            ])
            .args(["-c", "max_connections=200"]);
        for (name, value) in &opts.server_settings {
            cmd.arg("-c").arg(format!("{name}={value}"));
        }
        if opts.ephemeral {
            cmd.args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off"]);
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_err("opening", &log_path))?;
        let log2 = log.try_clone().map_err(io_err("opening", &log_path))?;
        cmd.stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0);
        prepare(&mut cmd, user.as_ref());
        let (pid, exit) = spawn_supervised(cmd).map_err(io_err("starting", &bin_dir))?;
        let server = Self {
            pid,
            exit,
            data_dir,
            socket_dir,
            log_path,
            port: opts.port,
            database: opts.database.clone(),
            stopped: false,
        };
        server.wait_ready(opts.start_timeout).await?;
        server.ensure_database(&opts.database).await?;
        tracing::info!(
            pid = pid.as_raw(),
            data_dir = %server.data_dir.display(),
            socket_dir = %server.socket_dir.display(),
            "private PostgreSQL is ready"
        );
        Ok(server)
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<(), EmbeddedError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Err(EmbeddedError::Exited {
                    status: status.to_string(),
                    log: self.log_path.clone(),
                    tail: tail(&self.log_path, 20),
                });
            }
            let url = self.url_for("postgres");
            let probe = tokio_postgres::connect(&url, tokio_postgres::NoTls);
            if let Ok(Ok((client, conn))) =
                tokio::time::timeout(Duration::from_secs(2), probe).await
            {
                drop(client);
                let _ = conn.await;
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(EmbeddedError::StartTimeout {
                    secs: timeout.as_secs(),
                    log: self.log_path.clone(),
                    tail: tail(&self.log_path, 20),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates `name` unless it exists (concurrent creators are fine).
    pub async fn ensure_database(&self, name: &str) -> Result<(), EmbeddedError> {
        let (client, conn) =
            tokio_postgres::connect(&self.url_for("postgres"), tokio_postgres::NoTls).await?;
        let conn = tokio::spawn(conn);
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await?
            .is_some();
        if !exists {
            // The name is validated by settings (letters, digits, '_').
            let created = client
                .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .await;
            match created {
                Err(e)
                    if e.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) =>
                {
                    return Err(e.into())
                }
                _ => {}
            }
        }
        drop(client);
        let _ = conn.await;
        Ok(())
    }

    /// Connection string for the configured database.
    pub fn url(&self) -> String {
        self.url_for(&self.database)
    }

    /// Connection string for database `dbname` on this server.
    pub fn url_for(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user={SUPERUSER} dbname={}",
            quote(&self.socket_dir.to_string_lossy()),
            self.port,
            quote(dbname)
        )
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw().unsigned_abs()
    }

    /// Directory holding the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The cluster directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// `Some` once the server process has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.exit.lock().map(|g| *g).unwrap_or(None)
    }

    /// Fast shutdown (SIGINT); escalates to SIGQUIT, then SIGKILL, if it hangs.
    pub async fn stop(mut self) {
        self.stopped = true;
        for (signal, wait) in [
            (Signal::SIGINT, Duration::from_secs(20)),
            (Signal::SIGQUIT, Duration::from_secs(5)),
            (Signal::SIGKILL, Duration::from_secs(5)),
        ] {
            if self.exit_status().is_some() {
                break;
            }
            let _ = kill(self.pid, signal);
            let deadline = Instant::now() + wait;
            while self.exit_status().is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        tracing::info!(pid = self.pid.as_raw(), "private PostgreSQL stopped");
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if self.stopped || self.exit_status().is_some() {
            return;
        }
        let _ = kill(self.pid, Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.exit_status().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Forks `cmd` from a dedicated thread that then waits for it, so the child's
/// parent-death signal stays armed exactly as long as the child runs.
fn spawn_supervised(mut cmd: Command) -> io::Result<(Pid, Arc<Mutex<Option<ExitStatus>>>)> {
    let exit = Arc::new(Mutex::new(None));
    let exit2 = Arc::clone(&exit);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("postgres-supervisor".into())
        .spawn(move || match cmd.spawn() {
            Ok(mut child) => {
                let _ = tx.send(Ok(child.id()));
                let status = child.wait();
                if let (Ok(status), Ok(mut slot)) = (status, exit2.lock()) {
                    *slot = Some(status);
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        })?;
    let pid = rx
        .recv()
        .map_err(|_| io::Error::other("supervisor thread ended before reporting"))??;
    let pid = i32::try_from(pid).map_err(io::Error::other)?;
    Ok((Pid::from_raw(pid), exit))
}

/// Runs `initdb` unless `data_dir` already holds a cluster of the right version.
fn init_cluster(
    bin_dir: &Path,
    data_dir: &Path,
    user: Option<&User>,
    ephemeral: bool,
) -> Result<(), EmbeddedError> {
    let version_file = data_dir.join("PG_VERSION");
    if version_file.is_file() {
        let found = fs::read_to_string(&version_file)
            .map_err(io_err("reading", &version_file))?
            .trim()
            .to_string();
        let binaries = binaries_version(bin_dir);
        if !binaries.is_empty() && binaries != found {
            return Err(EmbeddedError::VersionMismatch {
                dir: data_dir.to_path_buf(),
                found,
                binaries,
                bin_dir: bin_dir.to_path_buf(),
            });
        }
        return Ok(());
    }
    let non_empty = fs::read_dir(data_dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if non_empty {
        return Err(EmbeddedError::NotACluster {
            dir: data_dir.to_path_buf(),
        });
    }
    make_private_dir(data_dir, user)?;
    let mut cmd = Command::new(bin_dir.join("initdb"));
    cmd.arg("-D")
        .arg(data_dir)
        .args([
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ])
        .arg("--no-instructions")
        .stdin(Stdio::null());
    if ephemeral {
        cmd.arg("--no-sync");
    }
    prepare(&mut cmd, user);
    tracing::info!(data_dir = %data_dir.display(), "initializing a new PostgreSQL cluster");
    let out = cmd.output().map_err(io_err("running initdb in", bin_dir))?;
    if !out.status.success() {
        return Err(EmbeddedError::Initdb {
            dir: data_dir.to_path_buf(),
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// The data directory itself when short enough for a socket path, else a short
/// per-cluster directory under the system temp dir.
fn socket_dir_for(data_dir: &Path) -> PathBuf {
    if data_dir.as_os_str().len() <= MAX_SOCKET_DIR_LEN {
        return data_dir.to_path_buf();
    }
    let digest = hex::encode(Sha256::digest(data_dir.as_os_str().as_encoded_bytes()));
    std::env::temp_dir().join(format!("kumo-pg-{}", &digest[..12]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_give_one_clear_message() {
        let empty = tempfile::tempdir().expect("tempdir");
        let err = find_bin_dir(None, Some(empty.path().into()), &empty.path().join("none"))
            .expect_err("nothing to find");
        let msg = err.to_string();
        assert!(msg.contains("apt-get install postgresql"), "{msg}");
        assert!(msg.contains("KUMO__DATABASE__URL"), "{msg}");
    }

    #[test]
    fn a_configured_bin_dir_without_binaries_is_named_in_the_error() {
        let empty = tempfile::tempdir().expect("tempdir");
        let err = find_bin_dir(Some(empty.path()), None, Path::new("/nonexistent"))
            .expect_err("nothing to find");
        assert!(
            err.to_string().contains("database.embedded.bin_dir"),
            "{err}"
        );
    }

    #[test]
    fn the_newest_versioned_directory_wins() {
        let root = tempfile::tempdir().expect("tempdir");
        for v in ["9.6", "15", "13"] {
            let bin = root.path().join(v).join("bin");
            fs::create_dir_all(&bin).expect("mkdir");
            fs::write(bin.join("initdb"), "").expect("write");
            fs::write(bin.join("postgres"), "").expect("write");
        }
        let found = find_bin_dir(None, None, root.path()).expect("found");
        assert_eq!(found, root.path().join("15").join("bin"));
    }

    #[test]
    fn long_data_dirs_get_a_short_socket_dir() {
        let long = PathBuf::from(format!("/{}", "x".repeat(120)));
        let s = socket_dir_for(&long);
        assert!(s.as_os_str().len() <= MAX_SOCKET_DIR_LEN, "{}", s.display());
        assert_eq!(
            socket_dir_for(Path::new("/srv/kumo/pg")),
            PathBuf::from("/srv/kumo/pg")
        );
    }

    #[test]
    fn connection_strings_quote_paths() {
        assert_eq!(quote("/a b/it's"), "'/a b/it\\'s'");
    }
}
