//! The live fuzzer (`kumo-bench fuzz`, `bench/fuzz-live/run.sh`): devices
//! with valid certificates that connect to a running node and send mutated
//! MQTT 3.1.1 and 5 streams, each batch cut into TLS records at random
//! points, reconnecting whenever the node closes the connection — until a
//! packet count or a deadline.
//!
//! It reports what it sent and how the node answered (CONNACK and DISCONNECT
//! codes, other packets by type, closes and resets); whether the node stayed
//! healthy is the script's business (its process, RSS, metrics, and honest
//! devices). It must only ever target the address it is given.

pub mod packets;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::devices::Device;
use crate::load::Target;
use packets::{Rng, Version};

/// How long and how hard to fuzz.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Stop after this many packets (the stream's, CONNECTs included).
    pub packets: u64,
    /// Stop after this long at the latest.
    pub duration: Duration,
    /// Packets per second over all connections (a token bucket).
    pub rate: f64,
    /// Share of packets mutated.
    pub mutate: f64,
    /// Share of sessions on MQTT 5 (the rest 3.1.1).
    pub v5_share: f64,
    /// A control instead of fuzzing: sessions of this many packets (CONNECT,
    /// a SUBSCRIBE to the device's commands, PINGREQs), each ended with
    /// DISCONNECT — the connection churn of a fuzz run without its content.
    pub churn: Option<u32>,
    /// Seed of the run (each connection derives its own).
    pub seed: u64,
}

/// What was sent and how the node answered.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    /// Packets written (CONNECTs included), mutated or not.
    pub packets_sent: u64,
    /// Of those, mutated.
    pub mutated_sent: u64,
    /// MQTT bytes written.
    pub bytes_sent: u64,
    /// Writes of one piece each: at least one TLS record apiece.
    pub records_written: u64,
    /// Sessions (connections) that spoke MQTT 3.1.1 …
    pub sessions_v4: u64,
    /// … and MQTT 5.
    pub sessions_v5: u64,
    /// Connects that failed at TCP …
    pub connect_failed_tcp: u64,
    /// … in the TLS handshake …
    pub connect_failed_tls: u64,
    /// … or took longer than the deadline.
    pub connect_timeouts: u64,
    /// The node closed the connection (EOF) …
    pub closed_by_node: u64,
    /// … or reset it (a read or write error).
    pub reset_by_node: u64,
    /// Packets the node sent, by type (`connack:<code>`, `disconnect:<code>`, `puback`, …).
    pub answers: BTreeMap<String, u64>,
    /// Wall time of the run.
    pub secs: f64,
    /// `packets_sent / secs`.
    pub packets_per_s: f64,
}

/// Counters shared by the connection tasks.
#[derive(Default)]
struct Shared {
    packets: AtomicU64,
    mutated: AtomicU64,
    bytes: AtomicU64,
    records: AtomicU64,
    v4: AtomicU64,
    v5: AtomicU64,
    failed_tcp: AtomicU64,
    failed_tls: AtomicU64,
    timeouts: AtomicU64,
    closed: AtomicU64,
    reset: AtomicU64,
    answers: Mutex<BTreeMap<String, u64>>,
}

/// Runs one connection task per device until the plan is done.
pub async fn run(target: Arc<Target>, devices: Vec<Device>, plan: Plan) -> Report {
    let shared = Arc::new(Shared::default());
    let started = Instant::now();
    let deadline = started + plan.duration;
    let tasks: Vec<_> = devices
        .into_iter()
        .enumerate()
        .map(|(i, device)| {
            let (target, shared, plan) = (target.clone(), shared.clone(), plan.clone());
            let rng = Rng::new(plan.seed ^ ((i as u64 + 1) << 32));
            tokio::spawn(async move {
                let mut worker = Worker {
                    target,
                    device,
                    shared,
                    plan,
                    rng,
                    started,
                    deadline,
                };
                worker.run().await;
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let s = &shared;
    let secs = started.elapsed().as_secs_f64();
    let packets = s.packets.load(Relaxed);
    let answers = s.answers.lock().await.clone();
    Report {
        packets_sent: packets,
        mutated_sent: s.mutated.load(Relaxed),
        bytes_sent: s.bytes.load(Relaxed),
        records_written: s.records.load(Relaxed),
        sessions_v4: s.v4.load(Relaxed),
        sessions_v5: s.v5.load(Relaxed),
        connect_failed_tcp: s.failed_tcp.load(Relaxed),
        connect_failed_tls: s.failed_tls.load(Relaxed),
        connect_timeouts: s.timeouts.load(Relaxed),
        closed_by_node: s.closed.load(Relaxed),
        reset_by_node: s.reset.load(Relaxed),
        answers,
        secs,
        packets_per_s: packets as f64 / secs.max(1e-9),
    }
}

struct Worker {
    target: Arc<Target>,
    device: Device,
    shared: Arc<Shared>,
    plan: Plan,
    rng: Rng,
    started: Instant,
    deadline: Instant,
}

/// How a session ended.
enum End {
    /// The plan is done.
    Done,
    /// The node closed or reset it: reconnect.
    Closed,
}

impl Worker {
    fn done(&self) -> bool {
        Instant::now() >= self.deadline || self.shared.packets.load(Relaxed) >= self.plan.packets
    }

    async fn run(&mut self) {
        while !self.done() {
            let Some(tls) = self.connect().await else {
                // A node refusing connections is an answer too; do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            if let End::Done = self.session(tls).await {
                break;
            }
        }
    }

    async fn connect(&mut self) -> Option<TlsStream<TcpStream>> {
        let t = &self.target;
        let attempt = async {
            let tcp = TcpStream::connect(t.addr)
                .await
                .map_err(|_| &self.shared.failed_tcp)?;
            let _ = tcp.set_nodelay(true);
            TlsConnector::from(self.device.tls.clone())
                .connect(t.server_name.clone(), tcp)
                .await
                .map_err(|_| &self.shared.failed_tls)
        };
        match tokio::time::timeout(t.connect_timeout, attempt).await {
            Ok(Ok(tls)) => Some(tls),
            Ok(Err(counter)) => {
                counter.fetch_add(1, Relaxed);
                None
            }
            Err(_) => {
                self.shared.timeouts.fetch_add(1, Relaxed);
                None
            }
        }
    }

    /// One session: CONNECT, then batches of packets until the node closes
    /// the connection or the plan is done.
    async fn session(&mut self, tls: TlsStream<TcpStream>) -> End {
        let version = if self.rng.chance(self.plan.v5_share) {
            self.shared.v5.fetch_add(1, Relaxed);
            Version::V5
        } else {
            self.shared.v4.fetch_add(1, Relaxed);
            Version::V4
        };
        let (rd, mut wr) = tokio::io::split(tls);
        let closed = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(read_answers(rd, closed.clone(), self.shared.clone()));
        let (mut pkid, mut sent) = (0u16, 0u32);
        let mut first = Some(packets::connect(version, &self.device.id, 60));
        let end = loop {
            if self.done() {
                break End::Done;
            }
            if closed.load(Relaxed) {
                break End::Closed;
            }
            let n = 1 + self.rng.below(48);
            self.pace(n as u64).await;
            let mut batch = Vec::new();
            for _ in 0..n {
                let packet = first.take().unwrap_or_else(|| match self.plan.churn {
                    Some(_) => packets::churn_packet(version, &self.device.id, &mut pkid),
                    None => {
                        packets::next_packet(&mut self.rng, version, &self.device.id, &mut pkid)
                    }
                });
                if self.plan.churn.is_none() && self.rng.chance(self.plan.mutate) {
                    batch.extend(packets::mutate(&mut self.rng, &packet));
                    self.shared.mutated.fetch_add(1, Relaxed);
                } else {
                    batch.extend(packet);
                }
            }
            sent += n as u32;
            let ending = self.plan.churn.is_some_and(|len| sent >= len);
            if ending {
                batch.extend([0xe0, 0x00]); // DISCONNECT
            }
            match self.write_split(&mut wr, &batch).await {
                Ok(()) if ending => {
                    self.shared.packets.fetch_add(n as u64 + 1, Relaxed);
                    self.shared.bytes.fetch_add(batch.len() as u64, Relaxed);
                    break End::Closed;
                }
                Ok(()) => {
                    self.shared.packets.fetch_add(n as u64, Relaxed);
                    self.shared.bytes.fetch_add(batch.len() as u64, Relaxed);
                }
                Err(_) => {
                    closed.store(true, Relaxed);
                    break End::Closed;
                }
            }
        };
        // Stop writing; the reader sees the node's close (or gives up).
        let _ = wr.shutdown().await;
        let eof = tokio::time::timeout(Duration::from_secs(2), reader)
            .await
            .ok()
            .and_then(Result::ok);
        match eof {
            Some(true) => self.shared.closed.fetch_add(1, Relaxed),
            _ => self.shared.reset.fetch_add(1, Relaxed),
        };
        end
    }

    /// Writes `bytes` in random pieces, each its own write (so its own TLS
    /// record or records): single bytes, short runs, or the rest at once.
    async fn write_split(
        &mut self,
        wr: &mut tokio::io::WriteHalf<TlsStream<TcpStream>>,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        let mut at = 0;
        while at < bytes.len() {
            let left = bytes.len() - at;
            let n = match self.rng.below(10) {
                0 | 1 => 1 + self.rng.below(8.min(left)),
                2..=6 => 1 + self.rng.below(512.min(left)),
                _ => left,
            };
            wr.write_all(&bytes[at..at + n]).await?;
            self.shared.records.fetch_add(1, Relaxed);
            at += n;
        }
        wr.flush().await
    }

    /// Waits until `n` more packets fit the plan's rate since the start.
    async fn pace(&self, n: u64) {
        if self.plan.rate <= 0.0 {
            return;
        }
        let sent = self.shared.packets.load(Relaxed) + n;
        let due = self.started + Duration::from_secs_f64(sent as f64 / self.plan.rate);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep((due - now).min(Duration::from_secs(1))).await;
        }
    }
}

/// Reads what the node sends until it closes; counts packets by type.
/// `true` if the node closed cleanly (EOF), `false` on an error.
async fn read_answers(
    mut rd: ReadHalf<TlsStream<TcpStream>>,
    closed: Arc<AtomicBool>,
    shared: Arc<Shared>,
) -> bool {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 8192];
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let eof = loop {
        match rd.read(&mut chunk).await {
            Ok(0) => break true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break false,
        }
        while let Some((kind, len)) = crate::mqtt::packet_at(&buf) {
            *counts.entry(answer_name(kind, &buf[..len])).or_default() += 1;
            buf.drain(..len);
        }
    };
    closed.store(true, Relaxed);
    let mut all = shared.answers.lock().await;
    for (k, v) in counts {
        *all.entry(k).or_default() += v;
    }
    eof
}

/// `connack:<code>`, `disconnect:<code>` (MQTT 5 reason, `0x00` if absent)
/// or the packet type's name.
fn answer_name(kind: u8, packet: &[u8]) -> String {
    let body_at = 1 + packet[1..]
        .iter()
        .take(4)
        .position(|b| b & 0x80 == 0)
        .map_or(1, |i| i + 1);
    match kind {
        2 => format!(
            "connack:0x{:02x}",
            packet.get(body_at + 1).copied().unwrap_or(0)
        ),
        14 => format!(
            "disconnect:0x{:02x}",
            packet.get(body_at).copied().unwrap_or(0)
        ),
        3 => "publish".into(),
        4 => "puback".into(),
        5 => "pubrec".into(),
        7 => "pubcomp".into(),
        9 => "suback".into(),
        11 => "unsuback".into(),
        13 => "pingresp".into(),
        other => format!("type:{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_named_by_type_and_code() {
        assert_eq!(answer_name(2, &[0x20, 0x02, 0x00, 0x87]), "connack:0x87");
        assert_eq!(answer_name(14, &[0xe0, 0x01, 0x81]), "disconnect:0x81");
        assert_eq!(answer_name(14, &[0xe0, 0x00]), "disconnect:0x00");
        assert_eq!(answer_name(13, &[0xd0, 0x00]), "pingresp");
    }
}
