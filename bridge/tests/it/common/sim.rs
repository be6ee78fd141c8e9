//! Kumo's own simulator playing one device against a [`Stack`].
#![allow(dead_code, clippy::unwrap_used)]

use tokio_util::sync::CancellationToken;

use crate::stack::Stack;

/// The simulated device `sim-000000` on the stack's `node-1`, with its
/// certificate issued from the stack's PKI; stops when dropped.
pub struct SimulatedDevice {
    stop: CancellationToken,
    _fleet: tokio::task::JoinHandle<Result<kumo_sim::Summary, kumo_sim::SimError>>,
}

impl Drop for SimulatedDevice {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Stack {
    /// Starts one simulated IR hub reporting every 300 ms; `tweak` changes
    /// its settings first (a meter gateway, failing commands, …).
    pub fn simulate(&self, tweak: impl FnOnce(&mut kumo_sim::Settings)) -> SimulatedDevice {
        let mut settings = kumo_sim::Settings {
            nodes: vec![format!("127.0.0.1:{}", self.port)],
            devices: 1,
            meter_fraction: 0.0,
            report_interval_ms: 300,
            progress_interval_ms: 0,
            pki_dir: Some(self.pki.dir().to_path_buf()),
            ..kumo_sim::Settings::default()
        };
        tweak(&mut settings);
        let ca = std::fs::read_to_string(self.pki.ca_path()).unwrap();
        let stop = CancellationToken::new();
        let fleet = tokio::spawn(kumo_sim::run_fleet_with(settings, ca, stop.clone(), |_| {}));
        SimulatedDevice {
            stop,
            _fleet: fleet,
        }
    }
}
