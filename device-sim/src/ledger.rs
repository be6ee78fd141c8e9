//! The fleet's own record of what the cloud confirmed (`sim.ledger_dir`), for
//! the chaos benchmark's ledger check (`bench/chaos/check.py`).
//!
//! Two append-only CSV files per process, named after its first device index
//! so that the workers of one fleet never share a file:
//!
//! - `readings-{first}.csv`: `device_id,ts_ms,sensors` — one line per sensor
//!   report the node acknowledged with a PUBACK (QoS 1 telemetry only);
//!   `sensors` lists the sensor codes the report carried (`te hu il mo`), each
//!   of which the cloud must store exactly once at `ts_ms`;
//! - `sessions-{first}.csv`: `unix_ms,device_id,up|down` — a session began
//!   (CONNACK accepted) or ended (clean DISCONNECT sent, or the connection was
//!   lost), so the device's presence at any moment is its last line's.
//!
//! Lines are buffered and flushed by the fleet every second and at the end; a
//! process killed abruptly loses at most its last second. This module only
//! records: it never decides what counts as a discrepancy.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kumo_contract::DeviceId;

use crate::error::SimError;

/// The two ledger files of one process.
pub struct Ledger {
    readings: Mutex<BufWriter<File>>,
    sessions: Mutex<BufWriter<File>>,
}

impl Ledger {
    /// Opens (appending, creating `dir` if needed) the files of the process
    /// whose first device index is `first_index`.
    pub fn open(dir: &Path, first_index: u64) -> Result<Ledger, SimError> {
        std::fs::create_dir_all(dir).map_err(|e| ledger_error(dir, e))?;
        let open = |name: String| -> Result<Mutex<BufWriter<File>>, SimError> {
            let path = dir.join(name);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| ledger_error(&path, e))?;
            Ok(Mutex::new(BufWriter::new(file)))
        };
        Ok(Ledger {
            readings: open(format!("readings-{first_index}.csv"))?,
            sessions: open(format!("sessions-{first_index}.csv"))?,
        })
    }

    /// Records that a node acknowledged `device`'s report of `sensors` taken at `ts_ms`.
    pub fn reading(&self, device: &DeviceId, ts_ms: u64, sensors: &str) {
        append(&self.readings, format_args!("{device},{ts_ms},{sensors}\n"));
    }

    /// Records that `device`'s session began (`up`) or ended.
    pub fn session(&self, device: &DeviceId, up: bool) {
        let event = if up { "up" } else { "down" };
        let now = crate::runtime::now_ms();
        append(&self.sessions, format_args!("{now},{device},{event}\n"));
    }

    /// Writes what is buffered to the files.
    pub fn flush(&self) {
        for file in [&self.readings, &self.sessions] {
            if let Ok(mut f) = file.lock() {
                if let Err(e) = f.flush() {
                    tracing::warn!(error = %e, "ledger not written");
                }
            }
        }
    }
}

fn append(file: &Mutex<BufWriter<File>>, line: std::fmt::Arguments<'_>) {
    // A poisoned lock means a writer panicked mid-line; the ledger is then
    // untrustworthy anyway, and the check will find the gap.
    if let Ok(mut f) = file.lock() {
        if let Err(e) = f.write_fmt(line) {
            tracing::warn!(error = %e, "ledger line not written");
        }
    }
}

fn ledger_error(path: &Path, e: std::io::Error) -> SimError {
    SimError::Write {
        path: PathBuf::from(path),
        source: e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_records_acknowledged_readings_and_sessions_per_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = DeviceId::parse("sim-000007").expect("id");
        let ledger = Ledger::open(dir.path(), 7).expect("open");
        ledger.session(&id, true);
        ledger.reading(&id, 1_700_000_000_123, "te hu il");
        ledger.session(&id, false);
        ledger.flush();
        let readings =
            std::fs::read_to_string(dir.path().join("readings-7.csv")).expect("readings");
        assert_eq!(readings, "sim-000007,1700000000123,te hu il\n");
        let sessions =
            std::fs::read_to_string(dir.path().join("sessions-7.csv")).expect("sessions");
        let events: Vec<&str> = sessions
            .lines()
            .map(|l| l.split(',').nth(2).expect("event"))
            .collect();
        assert_eq!(events, ["up", "down"]);
    }
}
