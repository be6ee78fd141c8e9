//! This process's memory and CPU use, from `/proc/self` (zeros elsewhere).

/// Resident memory and CPU time consumed so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessUsage {
    pub rss_bytes: u64,
    pub cpu_secs: f64,
}

/// Clock ticks per second of `/proc/<pid>/stat`; 100 on every mainstream Linux
/// (reading it via `sysconf` would need `unsafe`).
const CLK_TCK: f64 = 100.0;

/// Reads the current usage; missing `/proc` gives zeros.
pub fn read() -> ProcessUsage {
    ProcessUsage {
        rss_bytes: std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| vm_rss_bytes(&s))
            .unwrap_or(0),
        cpu_secs: std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| cpu_secs(&s))
            .unwrap_or(0.0),
    }
}

fn vm_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn cpu_secs(stat: &str) -> Option<f64> {
    // The command name (field 2) may contain spaces; fields after its ')' are fixed.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 overall, 12 and 13 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLK_TCK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_formats() {
        assert_eq!(
            vm_rss_bytes("Name:\tx\nVmRSS:\t  2048 kB\n"),
            Some(2 * 1024 * 1024)
        );
        let stat = "42 (my proc) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0";
        assert_eq!(cpu_secs(stat), Some(2.0));
    }

    #[test]
    fn this_process_uses_some_memory_and_cpu() {
        if cfg!(target_os = "linux") {
            let mut x = 0u64;
            let t = std::time::Instant::now();
            while t.elapsed().as_millis() < 100 {
                x = x.wrapping_add(std::hint::black_box(1));
            }
            let usage = read();
            assert!(usage.rss_bytes > 0);
            assert!(usage.cpu_secs > 0.0, "{usage:?} after {x} spins");
        }
    }
}
