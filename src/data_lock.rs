//! One `kumo up` per data directory: an exclusive `flock` on
//! `{data_dir}/kumo.lock`, held while `up` runs and released by the kernel
//! when the process ends, however it ends. The file names the holder's pid.
//!
//! Owns only the lock; what runs in the directory is `cli/up.rs`'s business.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "kumo.lock";

/// Why the data directory could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "Kumo is already running with the data directory {dir} (pid {pid}); stop it first, \
         or give this one another data_dir (KUMO__DATA_DIR)"
    )]
    InUse { dir: PathBuf, pid: String },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Held for as long as the data directory is ours.
#[derive(Debug)]
pub struct DataLock {
    _lock: Flock<File>,
}

/// Takes the data directory or says who has it.
pub fn lock(data_dir: &Path) -> Result<DataLock, LockError> {
    let path = data_dir.join(LOCK_FILE);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(LockError::InUse {
                dir: data_dir.to_path_buf(),
                pid: if pid.is_empty() { "unknown" } else { pid }.to_string(),
            });
        }
        Err((_, errno)) => return Err(io(errno.into())),
    };
    lock.set_len(0).map_err(io)?;
    lock.rewind().map_err(io)?;
    writeln!(lock, "{}", std::process::id()).map_err(io)?;
    Ok(DataLock { _lock: lock })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_told_the_directory_is_in_use_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path()).unwrap();
        let err = lock(dir.path()).unwrap_err().to_string();
        assert!(err.contains("already running"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        lock(dir.path()).unwrap();
    }
}
