//! CPU time and resident memory of a process, from `/proc/<pid>/stat` and
//! `/proc/<pid>/status`. Linux only.

use std::path::PathBuf;

use crate::BenchError;

/// Clock ticks per second of `/proc` time fields; Linux fixes USER_HZ at 100
/// for every architecture the benchmark runs on.
const TICKS_PER_SEC: f64 = 100.0;

/// User + system CPU seconds used so far by all threads of `pid` (`self` for
/// this process).
pub fn cpu_seconds(pid: &str) -> Result<f64, BenchError> {
    let path = PathBuf::from(format!("/proc/{pid}/stat"));
    let text = read(&path)?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| malformed(&path))?;
    // After the name: state is field 3, utime field 14, stime field 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Result<f64, BenchError> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .map(|t| t as f64)
            .ok_or_else(|| malformed(&path))
    };
    Ok((tick(11)? + tick(12)?) / TICKS_PER_SEC)
}

/// Resident set size of `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: &str) -> Result<u64, BenchError> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let text = read(&path)?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| malformed(&path))
}

fn read(path: &PathBuf) -> Result<String, BenchError> {
    std::fs::read_to_string(path).map_err(|e| BenchError::Proc {
        path: path.clone(),
        message: e.to_string(),
    })
}

fn malformed(path: &std::path::Path) -> BenchError {
    BenchError::Proc {
        path: path.to_path_buf(),
        message: "unexpected format".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_resident_memory() {
        assert!(cpu_seconds("self").expect("stat parses") >= 0.0);
        assert!(rss_kib("self").expect("status parses") > 0);
    }
}
