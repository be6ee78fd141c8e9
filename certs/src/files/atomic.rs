//! Crash-safe file writes: write a temporary file next to the target, flush it to
//! disk, then rename it over the target, so a reader (the broker reloading
//! `crl.pem`) sees either the old file or the new one, never half of one.
//!
//! Private files get mode 0600 from the moment they exist; directories 0700.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::CertError;

/// Whether a file holds a secret (private key) and must be owner-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Public,
    Private,
}

/// Whether a write must survive a power cut once `write` returns. Readers never
/// see half a file either way (that is the rename's job); flushing costs ~1 ms
/// per file, which matters when a simulator issues 100k device certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// fsync the file and its directory: the CA, the state, the CRL.
    Flush,
    /// Leave flushing to the OS: issued leaf certificates and keys, which can be
    /// re-issued if a crash loses them.
    Lazy,
}

/// Atomically and durably replaces `path` with `contents`.
pub(crate) fn write(path: &Path, contents: &[u8], mode: Mode) -> Result<(), CertError> {
    write_with(path, contents, mode, Durability::Flush)
}

/// Atomically replaces `path` with `contents`, flushing as `durability` says.
pub(crate) fn write_with(
    path: &Path,
    contents: &[u8],
    mode: Mode,
    durability: Durability,
) -> Result<(), CertError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_dir(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    let tmp = dir.join(format!(".{name}.tmp-{}-{nanos}", std::process::id()));
    let result = write_new(&tmp, contents, mode, durability)
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| CertError::io("renaming into", path, e)));
    if result.is_err() {
        // Best effort: a leftover temp file is harmless but untidy.
        let _ = fs::remove_file(&tmp);
    }
    result?;
    if durability == Durability::Flush {
        sync_dir(dir);
    }
    Ok(())
}

fn write_new(
    tmp: &Path,
    contents: &[u8],
    mode: Mode,
    durability: Durability,
) -> Result<(), CertError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(match mode {
            Mode::Private => 0o600,
            Mode::Public => 0o644,
        });
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(tmp)
        .map_err(|e| CertError::io("creating", tmp, e))?;
    file.write_all(contents)
        .and_then(|()| match durability {
            Durability::Flush => file.sync_all(),
            Durability::Lazy => Ok(()),
        })
        .map_err(|e| CertError::io("writing", tmp, e))
}

/// Makes the rename durable; failure only weakens crash safety, so it is ignored.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Creates `dir` and its parents, owner-only where newly created.
pub(crate) fn create_dir(dir: &Path) -> Result<(), CertError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| CertError::io("creating directory", dir, e))
}

/// Reads a UTF-8 file.
pub(crate) fn read(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|e| CertError::io("reading", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("crl.pem");
        write(&path, b"one", Mode::Public).expect("first write");
        write(&path, b"two", Mode::Public).expect("second write");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        let names: Vec<_> = fs::read_dir(path.parent().expect("parent"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("crl.pem")]);
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key.pem");
        write(&path, b"secret", Mode::Private).expect("write");
        let mode = fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
