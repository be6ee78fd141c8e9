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

/// QoS 1 telemetry a device sent in its current session and the node has not
/// acknowledged yet: packet id, report time and sensor codes. Forgotten when
/// the session ends — an unacknowledged report may or may not have arrived,
/// so the ledger claims nothing about it.
#[derive(Debug, Default)]
pub struct Unconfirmed(Vec<(u16, u64, String)>);

impl Unconfirmed {
    /// Remembers a report sent with packet id `pkid`.
    pub fn sent(&mut self, pkid: u16, ts_ms: u64, sensors: String) {
        // Packet ids are reused only after their PUBACK; a stale entry with the
        // same id (its PUBACK lost with a broken session) would be wrong now.
        self.0.retain(|(p, _, _)| *p != pkid);
        self.0.push((pkid, ts_ms, sensors));
    }

    /// The report acknowledged by a PUBACK of `pkid`, if it was one.
    pub fn acked(&mut self, pkid: u16) -> Option<(u64, String)> {
        let i = self.0.iter().position(|(p, _, _)| *p == pkid)?;
        let (_, ts, sensors) = self.0.swap_remove(i);
        Some((ts, sensors))
    }

    /// Forgets everything (a new session).
    pub fn clear(&mut self) {
        self.0 = Vec::new();
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

    #[test]
    fn only_reports_the_node_acknowledged_leave_the_unconfirmed_set() {
        let mut u = Unconfirmed::default();
        u.sent(1, 10, "te".into());
        u.sent(2, 20, "hu".into());
        assert_eq!(u.acked(3), None, "a PUBACK of something else");
        assert_eq!(u.acked(2), Some((20, "hu".into())));
        assert_eq!(u.acked(2), None, "acknowledged once");
        u.sent(1, 30, "il".into());
        assert_eq!(
            u.acked(1),
            Some((30, "il".into())),
            "a reused id is the newest report"
        );
        u.sent(4, 40, "te".into());
        u.clear();
        assert_eq!(u.acked(4), None, "a new session forgets the old one");
    }
}
