//! The live progress line: connections, failures by reason, message rate and
//! command latency, one line per period.
//!
//! Rendering is pure (tests check it); the caller decides where it goes. On a
//! terminal the line rewrites itself; otherwise each period is its own line.

use std::io::{IsTerminal, Write};

use crate::stats::Summary;

/// Renders summaries as progress lines.
#[derive(Debug, Default)]
pub struct Progress {}

impl Progress {
    /// A renderer with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// One line describing `s`.
    pub fn render(&mut self, s: &Summary) -> String {
        let failures = if s.failures.is_empty() {
            "0".to_owned()
        } else {
            let parts: Vec<String> = s.failures.iter().map(|(k, v)| format!("{k} {v}")).collect();
            format!("{} ({})", s.failed_total(), parts.join(", "))
        };
        let latency = match (
            s.command_latency.quantile_ms(0.5),
            s.command_latency.quantile_ms(0.99),
        ) {
            (Some(p50), Some(p99)) => format!("p50≤{p50}ms p99≤{p99}ms"),
            (Some(p50), None) => format!("p50≤{p50}ms p99>10s"),
            _ if s.command_latency.total() > 0 => "p50>10s".to_owned(),
            _ => "-".to_owned(),
        };
        format!(
            "[{:>6.1}s] connected {}/{}  connecting {}  failed {}  drops {}  msgs/s {:.0}  cmds {} acks {} latency {}  rss {:.1} MiB ({:.1} KiB/device)",
            s.elapsed_secs,
            s.connected,
            s.devices,
            s.connecting,
            failures,
            s.drops,
            s.recent_msgs_per_sec,
            s.commands_received,
            s.acks_sent,
            latency,
            s.rss_bytes as f64 / 1_048_576.0,
            s.rss_per_device_bytes as f64 / 1024.0,
        )
    }

    /// Writes the line for `s` to stderr.
    pub fn print(&mut self, s: &Summary) {
        let line = self.render(s);
        let mut err = std::io::stderr().lock();
        let _ = if err.is_terminal() {
            write!(err, "\r\x1b[2K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }

    /// Ends a self-rewriting line so later output starts fresh.
    pub fn finish(&self) {
        let mut err = std::io::stderr().lock();
        if err.is_terminal() {
            let _ = writeln!(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_connections_failures_and_latency() {
        let mut s = Summary {
            devices: 10,
            connected: 7,
            connecting: 2,
            ..Default::default()
        };
        s.failures.insert("tls".into(), 1);
        s.command_latency.counts = vec![0, 0, 0, 4];
        let line = Progress::new().render(&s);
        assert!(line.contains("connected 7/10"), "{line}");
        assert!(line.contains("failed 1 (tls 1)"), "{line}");
        assert!(line.contains("p50≤10ms"), "{line}");
    }
}
