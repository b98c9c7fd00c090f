//! Scrollback that survives a restart: each running worker has a persister task
//! that copies its output into `scrollback_chunks` in batches, and a worker the
//! supervisor does not know yet (after a restart) gets its ring back from there
//! before it starts.
//!
//! The persister is an observer of the worker's ring (not an attached client) with
//! its own cursor. Only the first output after a write wakes it; from then on the
//! output waits in the ring and the persister looks at it on its own schedule:
//! every [`MIN_WRITE_GAP`], at the batch's deadline, and at once when the run ends.
//! Each output then wakes the worker's attached clients alone — a second task to
//! schedule per output cost a keystroke's echo a wake-up of the runtime's other
//! thread (see BENCHMARKS.md). A look reads everything the ring holds after the
//! cursor, and writes the batch when `flush_bytes` are pending or the oldest
//! pending byte is `flush_interval` old, and a last one when the run ends (a stop,
//! an exit, or the server's shutdown, which stops every worker); but never sooner
//! than [`MIN_WRITE_GAP`] after the previous write. Output faster than a ring per
//! gap is therefore stored as the last ring of each gap, not byte for byte — the
//! rest had left the ring, so no restore could have brought it back. A kill -9
//! loses at most the output since the last write (in a flood, a gap's worth and
//! the write's own time; a `flush_interval`'s worth otherwise). Each write also
//! deletes the worker's chunks that fell out of the ring's capacity, and rows
//! hold at most `flush_bytes`, so storage stays at about one ring per worker.
//!
//! Runs of one worker are persisted one after the other: the persister of a new
//! run first waits for the previous one to finish its last write, then continues
//! from the end of what is stored. If the database is slow the persister falls
//! behind like a slow client; if it falls out of the ring the stored history has a
//! gap, and a restore keeps the newest contiguous part, which after a write is the
//! whole ring at that time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::Manager;
use crate::clock::Clock;
use crate::store::Store;
use crate::store::entities::{scrollback_chunk, worker};
use crate::supervisor::{Next, ReplayFrom, Subscription, WindowSize, WorkerHandle};

/// Attempts per batch before it is given up (logged; the stored history then has
/// a gap).
const WRITE_ATTEMPTS: u32 = 3;

/// The shortest time from the start of one write to the start of the next, unless
/// the run ended. A flood (say 100 MiB/s through a 1 MiB ring) is then stored as
/// at most one ring per gap, not byte for byte: the store's work no longer grows
/// with the output rate, and what a restore brings back (the last ring) is the
/// same.
const MIN_WRITE_GAP: Duration = Duration::from_millis(100);

/// When batches are written.
#[derive(Clone, Copy, Debug)]
pub struct FlushPolicy {
    /// Pending bytes that trigger a write.
    pub bytes: usize,
    /// Age of the oldest pending byte that triggers a write.
    pub interval: Duration,
    /// The ring's capacity: chunks ending before `end - capacity` are deleted.
    pub capacity: usize,
}

/// The persisters of every running worker.
#[derive(Debug)]
pub struct Persisters {
    policy: FlushPolicy,
    /// Per worker, its persisters that have not ended: the run of each and its
    /// task (several when a run starts while the previous run's persister is
    /// still writing its last batch), and when the newest one ends. A std mutex:
    /// held only to swap entries, never across an `.await`.
    live: Mutex<HashMap<Uuid, Runs>>,
    tasks: TaskTracker,
}

/// The live persisters of one worker.
#[derive(Debug)]
struct Runs {
    /// Run (generation) and task of each, oldest first.
    tasks: Vec<(u64, JoinHandle<()>)>,
    /// Resolves (with an error: its sender is dropped) when the newest persister
    /// ends, finished or aborted; the next run's persister waits for it.
    newest_ended: oneshot::Receiver<()>,
}

impl Persisters {
    /// No persisters yet.
    pub fn new(policy: FlushPolicy) -> Self {
        Persisters {
            policy,
            live: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Runs>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts persisting run `generation` of the worker behind `handle`, after
    /// the persister of its previous run (if any) is done. `stored_end`: one past
    /// the last stored byte, when the caller has just read it (else it is read).
    pub fn start(
        self: &Arc<Self>,
        store: Store,
        clock: Arc<dyn Clock>,
        handle: WorkerHandle,
        generation: u64,
        stored_end: Option<u64>,
    ) {
        let worker_id = handle.worker_id();
        let (ended, newest_ended) = oneshot::channel::<()>();
        let mut live = self.live();
        let previous_ended = match live.get_mut(&worker_id) {
            Some(runs) => Some(std::mem::replace(&mut runs.newest_ended, newest_ended)),
            None => {
                live.insert(
                    worker_id,
                    Runs {
                        tasks: Vec::new(),
                        newest_ended,
                    },
                );
                None
            }
        };
        let persisters = Arc::clone(self);
        let task = self.tasks.spawn(async move {
            // Dropped when this task ends or is aborted: the next run goes on then.
            let _ended = ended;
            if let Some(previous) = previous_ended {
                let _ = previous.await;
            }
            persist_run(
                &store,
                clock.as_ref(),
                &handle,
                persisters.policy,
                stored_end,
            )
            .await;
            let mut live = persisters.live();
            if let Some(runs) = live.get_mut(&worker_id) {
                runs.tasks.retain(|(g, _)| *g != generation);
                if runs.tasks.is_empty() {
                    live.remove(&worker_id);
                }
            }
        });
        if let Some(runs) = live.get_mut(&worker_id) {
            runs.tasks.push((generation, task));
        }
    }

    /// Stops persisting worker `worker_id` (being deleted): its persisters, that
    /// of the current run and any earlier one still writing its last batch, are
    /// cancelled, and its output not yet written is dropped with the worker. Once
    /// this returns, nothing writes the worker's scrollback, so deleting its row
    /// cannot race a write (which failed on the foreign key and was logged as an
    /// error after two retries).
    pub async fn cancel(&self, worker_id: Uuid) {
        let runs = self.live().remove(&worker_id);
        let Some(runs) = runs else {
            return;
        };
        for (_, task) in &runs.tasks {
            task.abort();
        }
        for (_, task) in runs.tasks {
            let _ = task.await;
        }
    }

    /// Whether a persister of worker `worker_id` is running (for tests).
    pub fn is_persisting(&self, worker_id: Uuid) -> bool {
        self.live().contains_key(&worker_id)
    }

    /// Waits (at most `timeout`) until every persister has written its last batch.
    /// Call after every worker was stopped.
    pub async fn drain(&self, timeout: Duration) {
        self.tasks.close();
        if tokio::time::timeout(timeout, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "scrollback persisters did not finish in time; their last output is not saved"
            );
        }
    }
}

/// Persists one run of a worker until it ends, from `stored_end` (read from the
/// store when `None`).
async fn persist_run(
    store: &Store,
    clock: &dyn Clock,
    handle: &WorkerHandle,
    policy: FlushPolicy,
    stored_end: Option<u64>,
) {
    let worker_id = handle.worker_id().to_string();
    let from = match stored_end {
        Some(end) => end,
        None => match store.scrollback_end(&worker_id).await {
            Ok(end) => end.unwrap_or(0),
            Err(err) => {
                tracing::warn!(%worker_id, %err, "reading the stored scrollback end; persisting what the ring holds");
                0
            }
        },
    };
    let Ok((mut subscription, _, _)) = handle.observe(ReplayFrom::Offset(from)) else {
        return;
    };
    let mut batch = Batch {
        start: subscription.cursor(),
        data: BytesMut::new(),
        deadline: None,
        earliest: Instant::now(),
    };
    loop {
        if batch.data.is_empty() {
            // Nothing pending: the first output after a write wakes the persister.
            let next = subscription.next(policy.bytes).await;
            if batch.take(next, &worker_id, policy) {
                batch.write(store, clock, &worker_id, policy).await;
                return;
            }
            continue;
        }
        // A batch is pending: the ring is looked at again on the batch's own
        // schedule or when the run ends, not at every output, so that each output
        // wakes the worker's clients and not this task too.
        tokio::select! {
            () = tokio::time::sleep_until(batch.next_look()) => {}
            () = subscription.run_changed() => {}
        }
        let ended = batch.drain(&mut subscription, &worker_id, policy);
        if ended || batch.is_due(policy, Instant::now()) {
            batch.write(store, clock, &worker_id, policy).await;
        }
        if ended {
            return;
        }
    }
}

/// Output not yet written: `data` starts at absolute offset `start`.
struct Batch {
    start: u64,
    data: BytesMut,
    /// When the batch must be written at the latest.
    deadline: Option<Instant>,
    /// When the next write may start at the earliest (`MIN_WRITE_GAP` after the
    /// previous one started).
    earliest: Instant,
}

impl Batch {
    /// Appends output read at `offset`, keeping at most the ring's capacity (older
    /// bytes have left the ring: a restore could not bring them back).
    fn push(&mut self, offset: u64, data: &[u8], policy: FlushPolicy) {
        if self.data.is_empty() {
            self.start = offset;
            self.deadline = Some(Instant::now() + policy.interval);
        }
        self.data.extend_from_slice(data);
        let excess = self.data.len().saturating_sub(policy.capacity);
        if excess > 0 {
            self.data.advance(excess);
            self.start += excess as u64;
        }
    }

    /// The reader was moved past output that left the ring before it was read.
    /// What is pending is older still: the next write's trim to the ring would
    /// delete it, so it is dropped now.
    fn skip_to(&mut self, worker_id: &str, to: u64) {
        tracing::debug!(%worker_id, resumed_at = to, "scrollback persister skipped output that left the ring");
        self.data.clear();
        self.start = to;
    }

    /// Reads everything the ring holds after the cursor into the batch, without
    /// waiting. Returns true when the run ended and all of its output was read.
    fn drain(
        &mut self,
        subscription: &mut Subscription,
        worker_id: &str,
        policy: FlushPolicy,
    ) -> bool {
        loop {
            // Reads of at most a batch are mostly zero-copy slices of one ring
            // chunk: a longer range would be copied under the ring's lock, which
            // the worker's actor needs for every read from the PTY.
            let Some(next) = subscription.try_next(policy.bytes) else {
                return false;
            };
            if self.take(next, worker_id, policy) {
                return true;
            }
        }
    }

    /// Takes one reading of the ring into the batch. Returns true when it is
    /// the end of the run (all of its output was read).
    fn take(&mut self, next: Next, worker_id: &str, policy: FlushPolicy) -> bool {
        match next {
            Next::Data { offset, data } => self.push(offset, &data, policy),
            Next::Skipped { to, .. } => self.skip_to(worker_id, to),
            Next::Exited(_) => return true,
        }
        false
    }

    /// When a pending batch next looks at the ring: at its deadline, and at
    /// least every [`MIN_WRITE_GAP`] before it (to see whether `flush_bytes` are
    /// pending); looking more often could not write a flood any sooner.
    fn next_look(&self) -> Instant {
        let look = Instant::now() + MIN_WRITE_GAP;
        self.deadline.map_or(look, |deadline| deadline.min(look))
    }

    /// Whether the batch is written at `now`: its oldest byte reached the
    /// deadline, or `flush_bytes` are pending and the gap after the previous
    /// write has passed.
    fn is_due(&self, policy: FlushPolicy, now: Instant) -> bool {
        let full = self.data.len() >= policy.bytes && now >= self.earliest;
        full || self.deadline.is_some_and(|deadline| now >= deadline)
    }

    /// Writes the batch (retrying a little), then starts an empty one after it.
    async fn write(
        &mut self,
        store: &Store,
        clock: &dyn Clock,
        worker_id: &str,
        policy: FlushPolicy,
    ) {
        self.deadline = None;
        self.earliest = Instant::now() + MIN_WRITE_GAP;
        if self.data.is_empty() {
            return;
        }
        let data = self.data.split().freeze();
        let start = self.start;
        let end = start + data.len() as u64;
        self.start = end;
        let keep_from = end.saturating_sub(policy.capacity as u64);
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=WRITE_ATTEMPTS {
            match store
                .append_scrollback(
                    worker_id,
                    start,
                    &data,
                    policy.bytes,
                    keep_from,
                    clock.now(),
                )
                .await
            {
                Ok(()) => return,
                Err(err) if attempt == WRITE_ATTEMPTS => {
                    tracing::error!(%worker_id, start, bytes = data.len(), %err, "scrollback batch not saved");
                }
                Err(err) => {
                    tracing::warn!(%worker_id, start, %err, attempt, "saving scrollback; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                }
            }
        }
    }
}

/// The newest contiguous run of stored chunks: its first offset and its bytes,
/// oldest first. Overlapping bytes (none in normal operation) are taken once; a
/// gap starts the run again after it.
pub fn contiguous_tail(chunks: Vec<scrollback_chunk::Model>) -> Option<(u64, Vec<Bytes>)> {
    let mut start: Option<u64> = None;
    let mut end = 0u64;
    let mut parts: Vec<Bytes> = Vec::new();
    for chunk in chunks {
        let (Ok(chunk_start), Ok(chunk_end)) = (
            u64::try_from(chunk.start_offset),
            u64::try_from(chunk.end_offset),
        ) else {
            continue;
        };
        if chunk_end.saturating_sub(chunk_start) != chunk.data.len() as u64 {
            continue;
        }
        let data = Bytes::from(chunk.data);
        match start {
            Some(_) if chunk_start == end => {}
            Some(_) if chunk_start < end => {
                if chunk_end <= end {
                    continue;
                }
                parts.push(data.slice((end - chunk_start) as usize..));
                end = chunk_end;
                continue;
            }
            _ => {
                start = Some(chunk_start);
                parts.clear();
            }
        }
        parts.push(data);
        end = chunk_end;
    }
    start.map(|start| (start, parts))
}

impl Manager {
    /// Gives a worker the supervisor does not know yet its stored scrollback, so
    /// it continues at the same offsets. Does nothing for a known worker or one
    /// with nothing stored. Returns one past the last stored byte (0: nothing
    /// stored) when it read the store, for [`persist_scrollback`](Self::persist_scrollback).
    pub(super) async fn restore_scrollback(&self, model: &worker::Model) -> Option<u64> {
        let (Ok(session_id), Ok(worker_id)) = (
            Uuid::try_parse(&model.session_id),
            Uuid::try_parse(&model.id),
        ) else {
            return None;
        };
        if self.supervisor.handle(worker_id).is_some() {
            return None;
        }
        if model.start_time.is_none() {
            // Never started: nothing of it can be stored (a lifecycle cycle saves
            // this read; BENCHMARKS.md).
            return Some(0);
        }
        let end = match self.store.scrollback_end(&model.id).await {
            Ok(end) => end.unwrap_or(0),
            Err(err) => {
                tracing::warn!(worker_id = %model.id, %err, "reading the stored scrollback end");
                return None;
            }
        };
        if end == 0 {
            return Some(0);
        }
        let capacity = self.supervisor.config().scrollback_bytes;
        let chunks = match self.store.load_scrollback(&model.id, end, capacity).await {
            Ok(chunks) => chunks,
            Err(err) => {
                tracing::warn!(worker_id = %model.id, %err, "loading stored scrollback");
                return None;
            }
        };
        let Some((start, parts)) = contiguous_tail(chunks) else {
            return Some(end);
        };
        let size = WindowSize {
            rows: u16::try_from(model.rows).unwrap_or(24),
            cols: u16::try_from(model.cols).unwrap_or(80),
        };
        let restored = self
            .supervisor
            .restore(session_id, worker_id, start, parts, size);
        if restored {
            tracing::info!(worker_id = %model.id, start, "scrollback restored from storage");
        }
        Some(end)
    }

    /// Starts persisting the current run of a worker that was just started;
    /// `stored_end` as [`restore_scrollback`](Self::restore_scrollback) returned it.
    pub(super) fn persist_scrollback(&self, handle: &WorkerHandle, stored_end: Option<u64>) {
        let generation = handle.run().generation;
        self.persisters.start(
            self.store.clone(),
            self.clock.clone(),
            handle.clone(),
            generation,
            stored_end,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::{Program, SpawnSpec, Supervisor, SupervisorConfig};

    /// Cancelling a worker's persisters ends every one of them: the current
    /// run's, and the previous run's that it waits for. Run 1's persister here
    /// runs as long as its (still live) run; the cancel used to abort only run
    /// 2's, leaving run 1's writing after the worker was deleted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancel_ends_the_persisters_of_earlier_runs_too() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
        let store = Store::connect(&url).await.unwrap();
        let (events, _events) = tokio::sync::mpsc::channel(4);
        let supervisor = Supervisor::new(SupervisorConfig::default(), events);
        let spec = SpawnSpec {
            program: Program::Argv(vec!["sleep".into(), "1000".into()]),
            cwd: std::env::temp_dir(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            size: WindowSize::default(),
        };
        let handle = supervisor
            .start(Uuid::new_v4(), Uuid::new_v4(), spec, "")
            .await
            .unwrap();
        let persisters = Arc::new(Persisters::new(policy(1 << 20)));
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::SystemClock);
        for generation in [1, 2] {
            persisters.start(
                store.clone(),
                clock.clone(),
                handle.clone(),
                generation,
                Some(0),
            );
        }
        assert_eq!(persisters.tasks.len(), 2);
        persisters.cancel(handle.worker_id()).await;
        assert!(!persisters.is_persisting(handle.worker_id()));
        assert_eq!(
            persisters.tasks.len(),
            0,
            "a persister of the deleted worker is still running"
        );
        handle.stop(Duration::ZERO).await;
    }

    fn chunk(start: i64, data: &[u8]) -> scrollback_chunk::Model {
        scrollback_chunk::Model {
            worker_id: "w".into(),
            start_offset: start,
            end_offset: start + data.len() as i64,
            data: data.to_vec(),
            write_time: 0,
        }
    }

    fn joined(tail: Option<(u64, Vec<Bytes>)>) -> Option<(u64, Vec<u8>)> {
        tail.map(|(start, parts)| (start, parts.concat()))
    }

    fn policy(capacity: usize) -> FlushPolicy {
        FlushPolicy {
            bytes: 4,
            interval: Duration::from_secs(1),
            capacity,
        }
    }

    fn batch() -> Batch {
        Batch {
            start: 0,
            data: BytesMut::new(),
            deadline: None,
            earliest: Instant::now(),
        }
    }

    #[tokio::test]
    async fn a_batch_keeps_the_last_ring_of_what_it_reads() {
        let mut batch = batch();
        batch.push(100, b"abcd", policy(6));
        assert_eq!((batch.start, &batch.data[..]), (100, &b"abcd"[..]));
        assert!(batch.deadline.is_some(), "the first byte starts the clock");
        batch.push(104, b"efgh", policy(6));
        assert_eq!((batch.start, &batch.data[..]), (102, &b"cdefgh"[..]));
    }

    #[tokio::test]
    async fn a_skip_drops_what_is_pending() {
        let mut batch = batch();
        batch.push(0, b"old", policy(16));
        batch.skip_to("w", 50);
        assert!(batch.data.is_empty());
        batch.push(50, b"new", policy(16));
        assert_eq!((batch.start, &batch.data[..]), (50, &b"new"[..]));
    }

    #[tokio::test]
    async fn a_batch_is_due_at_its_deadline_or_when_full_after_the_gap() {
        let policy = policy(1 << 20);
        let mut batch = batch();
        batch.push(0, b"ab", policy);
        let deadline = batch.deadline.unwrap();
        batch.earliest = Instant::now() + Duration::from_millis(500);
        let now = Instant::now();
        assert!(!batch.is_due(policy, now), "neither full nor old");
        assert!(batch.is_due(policy, deadline), "the oldest byte is old");
        batch.push(2, b"cd", policy);
        assert!(!batch.is_due(policy, now), "full, but inside the gap");
        assert!(batch.is_due(policy, batch.earliest), "full, after the gap");
    }

    #[tokio::test]
    async fn a_pending_batch_looks_again_within_the_gap_and_by_its_deadline() {
        let mut batch = batch();
        batch.push(0, b"ab", policy(1 << 20));
        let before = Instant::now();
        let look = batch.next_look();
        assert!(look <= Instant::now() + MIN_WRITE_GAP && look > before);
        let soon = Instant::now() + Duration::from_millis(1);
        batch.deadline = Some(soon);
        assert_eq!(batch.next_look(), soon);
    }

    #[test]
    fn contiguous_chunks_are_joined() {
        let tail = contiguous_tail(vec![chunk(10, b"abc"), chunk(13, b"def")]);
        assert_eq!(joined(tail), Some((10, b"abcdef".to_vec())));
        assert_eq!(contiguous_tail(Vec::new()), None);
    }

    #[test]
    fn a_gap_keeps_the_newest_part() {
        let tail = contiguous_tail(vec![
            chunk(0, b"old"),
            chunk(100, b"new"),
            chunk(103, b"er"),
        ]);
        assert_eq!(joined(tail), Some((100, b"newer".to_vec())));
    }

    #[test]
    fn overlaps_are_taken_once_and_bad_rows_skipped() {
        let mut bad = chunk(3, b"xyz");
        bad.end_offset = 99;
        let tail = contiguous_tail(vec![
            chunk(0, b"abc"),
            bad,
            chunk(2, b"cde"),
            chunk(3, b"d"),
            chunk(5, b"f"),
        ]);
        assert_eq!(joined(tail), Some((0, b"abcdef".to_vec())));
    }
}
