//! Batched provisioning-record writes, off the handshake path.
//!
//! Connections hand each provisioning step to [`RecordWriter::record_step`], which never blocks:
//! the event goes into a bounded queue ([`super::queue`], which wakes the writer only when it has
//! to act), or is dropped (and counted) when the queue is full. One
//! background thread merges the events into their records (read-modify-write) and commits them
//! in batches, one transaction per batch of up to [`BATCH_MAX`] events or [`BATCH_WINDOW`].
//! Identities issued since the last batch are written in the same transaction.
//!
//! An answer that hands a device something the server must remember (an identity certificate)
//! goes through [`RecordWriter::record_durable`] instead: it waits until its event and the
//! identity are committed (redb fsyncs every commit). Such a wait does not hold its batch open:
//! the writer commits at once with whatever else is queued by then (group commit), so the
//! answers arriving during one commit share the next one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::backend::Store;
use super::event::{IdentityOutcome, StepEvent};
use super::queue::{BatchQueue, PushError};
use crate::provision::Identities;
use crate::records::StoreError;

/// Most events committed in one transaction.
pub const BATCH_MAX: usize = 256;
/// Longest an event waits for its batch to fill before the batch is committed.
pub const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Events queued at most; beyond, events are dropped (and counted) rather than blocking a device.
pub const QUEUE_CAPACITY: usize = 65_536;

/// Counters of the writer.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Events accepted into the queue.
    pub queued: AtomicU64,
    /// Events dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Events committed.
    pub written: AtomicU64,
    /// Events lost because their batch failed to commit.
    pub failed: AtomicU64,
    /// Transactions committed.
    pub batches: AtomicU64,
}

type FlushReply = tokio::sync::oneshot::Sender<Result<(), StoreError>>;

enum Msg {
    Step(Box<StepEvent>),
    /// A step whose answer waits until it is committed.
    Durable(Box<StepEvent>, FlushReply),
    Flush(FlushReply),
}

impl Msg {
    /// Does it take a place in a batch of events?
    fn is_event(&self) -> bool {
        !matches!(self, Msg::Flush(_))
    }

    /// Does somebody wait on its commit?
    fn is_urgent(&self) -> bool {
        !matches!(self, Msg::Step(_))
    }
}

type Queue = BatchQueue<Msg>;

struct Shared {
    queue: Arc<Queue>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stats: Arc<WriterStats>,
}

impl Drop for Shared {
    /// The last handle is gone: close the queue, let the thread commit what is left, and wait
    /// for it, so the database is closed when this returns.
    fn drop(&mut self) {
        self.queue.close();
        let handle = self
            .thread
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

/// A handle to the background record writer; cheap to clone. When the last handle is dropped
/// the writer commits what is queued and stops.
#[derive(Clone)]
pub struct RecordWriter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RecordWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordWriter")
            .field("stats", &self.shared.stats)
            .finish()
    }
}

fn stopped() -> StoreError {
    StoreError::Database("the record writer has stopped".into())
}

impl RecordWriter {
    /// Start the writer thread over `store`; it also persists the identities marked dirty in
    /// `identities`.
    pub fn start(store: Arc<Store>, identities: Arc<Identities>) -> Result<Self, StoreError> {
        Self::start_with_capacity(store, identities, QUEUE_CAPACITY)
    }

    /// As [`RecordWriter::start`] with a queue of `capacity` events.
    pub(crate) fn start_with_capacity(
        store: Arc<Store>,
        identities: Arc<Identities>,
        capacity: usize,
    ) -> Result<Self, StoreError> {
        if store.is_shared() {
            identities.track_bases();
        }
        let queue = Arc::new(Queue::new(capacity, BATCH_MAX));
        let rx = queue.clone();
        let stats = Arc::new(WriterStats::default());
        let thread_stats = stats.clone();
        let handle = std::thread::Builder::new()
            .name("dps-record-writer".into())
            .spawn(move || run(&rx, &store, &identities, &thread_stats))
            .map_err(|e| StoreError::Database(format!("cannot start the record writer: {e}")))?;
        Ok(Self {
            shared: Arc::new(Shared {
                queue,
                thread: Mutex::new(Some(handle)),
                stats,
            }),
        })
    }

    /// Queue one step for its record. Never blocks: `false` when the event was dropped because
    /// the queue is full (counted in [`WriterStats::dropped`]) or the writer has stopped.
    pub fn record_step(&self, event: StepEvent) -> bool {
        let stats = &self.shared.stats;
        match self.shared.queue.push(Msg::Step(Box::new(event))) {
            Ok(()) => {
                stats.queued.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(PushError::Full) => {
                if stats.dropped.fetch_add(1, Ordering::Relaxed) % 10_000 == 0 {
                    tracing::warn!("record writer queue full; dropping provisioning events");
                }
                false
            }
            Err(PushError::Closed) => false,
        }
    }

    /// Wait until every event queued before this call (and every identity issued before it) is
    /// committed. The error is the failure of the batch that held them.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.send_and_wait(Msg::Flush).await
    }

    /// Queue one step and wait until it (with every identity issued before it) is committed:
    /// for answers the device must be able to rely on after a crash. Never dropped for room (a
    /// full queue of ordinary steps does not refuse it). The error is the failure of its batch.
    pub async fn record_durable(&self, event: StepEvent) -> Result<(), StoreError> {
        let event = Box::new(event);
        self.shared.stats.queued.fetch_add(1, Ordering::Relaxed);
        self.send_and_wait(|reply| Msg::Durable(event, reply)).await
    }

    async fn send_and_wait(&self, msg: impl FnOnce(FlushReply) -> Msg) -> Result<(), StoreError> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.shared
            .queue
            .push_urgent(msg(reply))
            .map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }

    /// The writer's counters.
    pub fn stats(&self) -> &WriterStats {
        &self.shared.stats
    }
}

/// What one batch collected.
#[derive(Default)]
struct Batch {
    events: Vec<StepEvent>,
    /// Waiters answered once the batch is committed (flushes and durable steps, with the device
    /// id a durable step issued).
    waiting: Vec<(Option<uuid::Uuid>, FlushReply)>,
}

impl Batch {
    fn push(&mut self, msg: Msg) {
        match msg {
            Msg::Step(e) => self.events.push(*e),
            Msg::Durable(e, reply) => {
                let device = e.issued.map(|i| i.device_id);
                self.events.push(*e);
                self.waiting.push((device, reply));
            }
            Msg::Flush(reply) => self.waiting.push((None, reply)),
        }
    }
}

/// The next batch off the queue: until [`BATCH_WINDOW`] has passed or the batch is full, or, once
/// somebody waits on it, only what is already queued (see [`BatchQueue::next_batch`]). `None`
/// once the queue is closed and drained.
fn collect(rx: &Queue) -> Option<Batch> {
    let msgs = rx.next_batch(BATCH_WINDOW, Msg::is_event, Msg::is_urgent)?;
    let mut batch = Batch::default();
    for msg in msgs {
        batch.push(msg);
    }
    Some(batch)
}

fn run(rx: &Queue, store: &Store, identities: &Identities, stats: &WriterStats) {
    while let Some(batch) = collect(rx) {
        let result = commit(store, identities, stats, &batch.events);
        for (device, reply) in batch.waiting {
            let answer = match &result {
                Ok(refused) => match device.filter(|d| refused.contains(d)) {
                    Some(d) => Err(StoreError::Refused(format!(
                        "device uuid:{d} was taken meanwhile through another replica"
                    ))),
                    None => Ok(()),
                },
                Err(e) => Err(e.clone()),
            };
            let _ = reply.send(answer);
        }
    }
    let _ = commit(store, identities, stats, &[]);
}

/// Commit `events` and the dirty identities in one transaction; the device ids refused (taken
/// meanwhile through another replica of a shared store).
fn commit(
    store: &Store,
    identities: &Identities,
    stats: &WriterStats,
    events: &[StepEvent],
) -> Result<Vec<uuid::Uuid>, StoreError> {
    let dirty = identities.take_dirty_with_base();
    if events.is_empty() && dirty.is_empty() {
        return Ok(Vec::new());
    }
    let n = events.len() as u64;
    let devices: Vec<uuid::Uuid> = dirty.iter().map(|d| d.device).collect();
    match store.commit_batch(events, dirty) {
        Ok(outcomes) => {
            stats.written.fetch_add(n, Ordering::Relaxed);
            stats.batches.fetch_add(1, Ordering::Relaxed);
            Ok(settle(identities, outcomes))
        }
        Err(e) => {
            identities.mark_dirty(devices);
            stats.failed.fetch_add(n, Ordering::Relaxed);
            tracing::error!(error = %e, events = n, "cannot commit provisioning records");
            Err(e)
        }
    }
}

/// Bring the in-memory identities in line with what the batch stored; the refused device ids.
/// Only a shared store can have stored something else than this server's holders: the embedded
/// one's outcomes are the holders as given, and are already in memory.
fn settle(identities: &Identities, outcomes: Vec<IdentityOutcome>) -> Vec<uuid::Uuid> {
    if !identities.tracks_bases() {
        return Vec::new();
    }
    let mut refused = Vec::new();
    for o in outcomes {
        if o.refused {
            tracing::info!(device = %o.device, "device id taken meanwhile through another replica");
            refused.push(o.device);
        }
        identities.set_from_store(o.device, o.holders.clone());
        identities.stored(o.device, &o.holders);
    }
    refused
}
