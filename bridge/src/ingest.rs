//! The reading writer: bounded buffering, batched multi-row inserts into the
//! partitioned `readings` table (Nature's `newest_events` are read from it).
//!
//! A reading is stored once: `(device_id, sensor, at, val)` is unique, and a
//! batch holding a repeat (QoS 1 redelivery after a restart or a device's
//! reconnect) is written again skipping what is already stored. The plain insert stays
//! the fast path while repeats are rare; after a batch held one, batches are
//! written skipping repeats until one comes without: in a reconnect storm most
//! batches hold a device's resend, and a plain insert that fails at its first
//! repeat is wasted work (fleet run 42: 368 of 594 batches).
//!
//! Producers (the MQTT subscriber) `push` a message's readings together and
//! wait when the buffer is full — back-pressure reaches the broker instead of
//! memory growing. They may carry one completion that fires only after the
//! batch holding all of them committed (a message's readings are never split
//! across batches), so a QoS 1 message can be acknowledged once it is durable.
//! A failed write is retried with backoff, never dropped.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool};
use kumo_contract::DeviceId;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_util::sync::CancellationToken;

use crate::db::{DbError, Held};

/// Longest pause between write retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One sensor or meter value.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub device_id: DeviceId,
    /// `te`, `hu`, `il`, `mo`, or a meter quantity (`power`, `energy`):
    /// one of the contract's names, never allocated per reading.
    pub sensor: &'static str,
    pub val: f64,
    /// When the device measured it.
    pub at: OffsetDateTime,
}

/// Tunables of the writer.
#[derive(Debug, Clone, Copy)]
pub struct IngestOptions {
    /// Readings buffered before `push` waits.
    pub buffer: usize,
    /// Most readings per insert.
    pub batch_size: usize,
    /// Longest a reading waits for its batch to fill.
    pub flush_after: Duration,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            buffer: 65_536,
            batch_size: 5_000,
            flush_after: Duration::from_millis(50),
        }
    }
}

/// One message's readings and what fires once they are committed.
type Item = (Vec<Reading>, Option<oneshot::Sender<()>>);

/// What the writer has done (for `/metrics`).
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Readings committed (repeats skipped are not counted).
    pub stored: AtomicU64,
    /// Inserts that committed them.
    pub batches: AtomicU64,
    /// Microseconds from a batch being full (or its flush timer) to its
    /// commit: waiting for a connection, retries and repeats included.
    pub write_micros: AtomicU64,
    /// Batches that held readings already stored.
    pub repeat_batches: AtomicU64,
}

/// Handle for pushing readings; cheap to clone.
#[derive(Debug, Clone)]
pub struct ReadingWriter {
    tx: mpsc::Sender<Item>,
    /// Room left in the buffer, in readings (the channel counts messages).
    room: Arc<Room>,
    stats: Arc<IngestStats>,
}

/// The buffer's free space, in readings; closed when the writer ends, so no
/// producer waits for room that will never come.
#[derive(Debug)]
struct Room {
    free: Semaphore,
    capacity: usize,
}

impl Room {
    /// What `n` readings take of the buffer: a message larger than the whole
    /// buffer takes all of it rather than waiting forever.
    fn take(&self, n: usize) -> u32 {
        u32::try_from(n.clamp(1, self.capacity)).unwrap_or(u32::MAX)
    }

    /// Frees what `item` took, as the writer takes it off the channel;
    /// returns how many readings it holds.
    fn give_back(&self, item: &Item) -> usize {
        let n = item.0.len();
        self.free.add_permits(self.take(n) as usize);
        n
    }
}

/// Why a push was refused.
#[derive(Debug, thiserror::Error)]
#[error("the reading writer has stopped")]
pub struct WriterStopped;

impl ReadingWriter {
    /// Starts the writer task. It drains what was pushed before `shutdown`
    /// and then ends.
    pub fn start(
        pool: Pool,
        options: IngestOptions,
        shutdown: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        // At most one message per reading: the channel itself never waits.
        let capacity = options.buffer.clamp(1, Semaphore::MAX_PERMITS);
        let (tx, rx) = mpsc::channel(capacity);
        let room = Arc::new(Room {
            free: Semaphore::new(capacity),
            capacity,
        });
        let stats = Arc::new(IngestStats::default());
        let task = tokio::spawn(run(
            pool,
            options,
            rx,
            room.clone(),
            stats.clone(),
            shutdown,
        ));
        (Self { tx, room, stats }, task)
    }

    /// The writer's counters.
    pub fn stats(&self) -> &Arc<IngestStats> {
        &self.stats
    }

    /// Queues `readings` (one message's), waiting while the buffer is full.
    /// `durable` fires after all of them are committed.
    pub async fn push(
        &self,
        readings: Vec<Reading>,
        durable: Option<oneshot::Sender<()>>,
    ) -> Result<(), WriterStopped> {
        let permits = self.room.take(readings.len());
        self.room
            .free
            .acquire_many(permits)
            .await
            .map_err(|_| WriterStopped)?
            .forget();
        // The room taken comes back when the writer takes the message off
        // the channel (or never, if it has stopped: nothing needs it then).
        self.tx
            .send((readings, durable))
            .await
            .map_err(|_| WriterStopped)
    }
}

/// Closes the buffer's room when the writer ends, however it ends.
struct CloseRoom(Arc<Room>);

impl Drop for CloseRoom {
    fn drop(&mut self) {
        self.0.free.close();
    }
}

async fn run(
    pool: Pool,
    options: IngestOptions,
    mut rx: mpsc::Receiver<Item>,
    room: Arc<Room>,
    stats: Arc<IngestStats>,
    shutdown: CancellationToken,
) {
    let room = CloseRoom(room);
    let batch_size = options.batch_size.max(1);
    let mut batch: Vec<Item> = Vec::with_capacity(batch_size);
    // While readings keep coming, the writer keeps its connection: they never
    // wait behind REST calls and report transactions for a free one from the
    // shared pool. It gives the connection back once idle for `Held::IDLE`.
    let mut writer = Writer {
        pool: &pool,
        conn: Held::default(),
        stats: &stats,
        skipping: false,
    };
    loop {
        let first = tokio::select! {
            item = writer.conn.next(&mut rx) => item,
            () = shutdown.cancelled() => { rx.close(); rx.recv().await }
        };
        let Some(first) = first else { return };
        // Readings in the batch; it ends with the message that reaches `batch_size`.
        let mut readings = room.0.give_back(&first);
        batch.push(first);
        let deadline = tokio::time::Instant::now() + options.flush_after;
        while readings < batch_size {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(item)) => {
                    readings += room.0.give_back(&item);
                    batch.push(item);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let written = writer.write_with_retry(&batch, &shutdown).await;
        for (_, durable) in batch.drain(..) {
            // Dropping the sender tells the producer the reading is not durable.
            if let (true, Some(durable)) = (written, durable) {
                let _ = durable.send(());
            }
        }
    }
}

/// The writer's connection and what it has learnt about repeats.
struct Writer<'a> {
    pool: &'a Pool,
    conn: Held,
    stats: &'a IngestStats,
    /// The last batch held a repeat: skip repeats on the first attempt.
    skipping: bool,
}

impl Writer<'_> {
    /// Writes until it succeeds; gives up only at shutdown, leaving unacknowledged
    /// readings to be redelivered by the broker. Returns whether the batch is stored.
    async fn write_with_retry(&mut self, batch: &[Item], shutdown: &CancellationToken) -> bool {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        let stored = loop {
            match self.write(batch).await {
                Ok(()) => break true,
                Err(e) => {
                    tracing::warn!(error = %e, readings = count(batch),
                        "writing readings failed; retrying");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => {
                    // One last attempt before the process goes away.
                    break match self.write(batch).await {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::error!(error = %e, readings = count(batch),
                                "readings not written at shutdown; they stay unacknowledged");
                            false
                        }
                    };
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        };
        if stored {
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.stats.write_micros.fetch_add(micros, Relaxed);
            self.stats.batches.fetch_add(1, Relaxed);
        }
        stored
    }

    /// Writes `batch` on the writer's held connection.
    async fn write(&mut self, batch: &[Item]) -> Result<(), DbError> {
        let skipping = self.skipping;
        let inserted = self
            .conn
            .run(self.pool, async |client| {
                if skipping {
                    return Ok(write_on(client, batch, true).await?);
                }
                match write_on(client, batch, false).await {
                    Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                        tracing::debug!(
                            readings = count(batch),
                            "batch repeats stored readings; skipping them"
                        );
                        Ok(write_on(client, batch, true).await?)
                    }
                    other => Ok(other?),
                }
            })
            .await?;
        let repeats = inserted < count(batch) as u64;
        if repeats {
            self.stats.repeat_batches.fetch_add(1, Relaxed);
        }
        self.skipping = repeats;
        self.stats.stored.fetch_add(inserted, Relaxed);
        Ok(())
    }
}

/// The readings in `batch`.
fn count(batch: &[Item]) -> usize {
    batch.iter().map(|(readings, _)| readings.len()).sum()
}

/// Inserts `batch` (skipping readings already stored with `skip_repeats`);
/// returns how many rows it inserted.
async fn write_on(
    client: &mut Object,
    batch: &[Item],
    skip_repeats: bool,
) -> Result<u64, tokio_postgres::Error> {
    let all = || batch.iter().flat_map(|(readings, _)| readings);
    let devices: Vec<&str> = all().map(|r| r.device_id.as_str()).collect();
    let sensors: Vec<&str> = all().map(|r| r.sensor).collect();
    let vals: Vec<f64> = all().map(|r| r.val).collect();
    let ats: Vec<OffsetDateTime> = all().map(|r| r.at).collect();
    // One statement: atomic without a transaction of its own.
    let insert = client
        .prepare_cached(if skip_repeats {
            "INSERT INTO readings (device_id, sensor, val, at)
             SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::timestamptz[])
             ON CONFLICT DO NOTHING"
        } else {
            "INSERT INTO readings (device_id, sensor, val, at)
             SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::timestamptz[])"
        })
        .await?;
    client
        .execute(&insert, &[&devices, &sensors, &vals, &ats])
        .await
}

/// Creates next month's `readings` partition ahead of time, so readings never
/// pile up in the default partition.
pub async fn ensure_partitions(pool: &Pool) -> Result<(), DbError> {
    let client = pool.get().await?;
    client
        .batch_execute(
            "SELECT kumo_ensure_readings_partition(now());
             SELECT kumo_ensure_readings_partition(now() + interval '1 month');",
        )
        .await?;
    Ok(())
}

/// Which readings [`buckets`] summarises: `[since, to)`, in buckets of
/// `step_secs` aligned on `from`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    pub step_secs: f64,
    pub since: OffsetDateTime,
}

/// One bucket of history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub start: OffsetDateTime,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
    pub count: i64,
}

/// A device's readings of `sensor` in `w`, bucketed, oldest first (empty buckets left out).
pub async fn buckets(
    pool: &Pool,
    device: &str,
    sensor: &str,
    w: &Window,
) -> Result<Vec<Bucket>, DbError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT date_bin(make_interval(secs => $5), at, $3) AS bucket,
                    avg(val), min(val), max(val), count(*)
             FROM readings
             WHERE device_id = $1 AND sensor = $2 AND at >= $6 AND at < $4
             GROUP BY bucket ORDER BY bucket",
            &[&device, &sensor, &w.from, &w.to, &w.step_secs, &w.since],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Bucket {
            start: r.get(0),
            avg: r.get(1),
            min: r.get(2),
            max: r.get(3),
            count: r.get(4),
        })
        .collect())
}
