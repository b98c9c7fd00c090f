//! The retention task ("reaper"): one background task per server that, every
//! `--reaper-interval` (60 s by default), applies the time-based rules of the
//! session lifecycle on the manager's injectable clock:
//!
//! 1. **Auto-archive** — STOPPED sessions stopped longer than the resume window
//!    become ARCHIVED with `auto_archived = true` (the state machine's
//!    `ResumeWindowExpired` event; DESIGN.md §2).
//! 2. **Leftover worktrees** — DELETED worktree sessions whose worktree is still on
//!    disk (a delete interrupted by a crash, or one git refused) have it retired:
//!    changes saved on `refs/corral/<id>`, then removed.
//! 3. **Orphan worktrees** — a worktree whose create never finished (the server
//!    was killed between `git worktree add` and the row's insert: its create
//!    marker is still there and no session has its id) is retired like a deleted
//!    session's once the marker is [`ORPHAN_MIN_AGE`] old: changes saved on a
//!    ref, then removed.
//! 4. **Tombstones** — DELETED sessions past `purge_time` are deleted for good (their
//!    workers and labels cascade) with a SESSION_PURGED event.
//! 5. **Scrollback of deleted sessions** — the stored output of their workers is
//!    deleted at once, not with the tombstone: nothing reads it, and it is about a
//!    ring (1 MiB by default) per worker, for the 30 days a tombstone is kept.
//!    [`SCROLLBACK_BATCH`] workers' worth per pass.
//!
//! Other expiry duties (event log, checkpoints) belong here too: add each as a step
//! of [`Reaper::run_once`] and a count in [`Pass`] (see the marked place).
//!
//! Every step is idempotent and safe with several servers on one PostgreSQL
//! database: each row is changed by a conditional write or delete, so it is
//! handled once no matter how many passes race. Each step handles at most
//! [`BATCH`] rows per pass; the rest waits for the next pass. A failing step is
//! logged and does not keep the other steps from running. Each pass logs one line
//! with its counts. Tests call [`Reaper::run_once`] directly with a
//! [`ManualClock`](crate::clock::ManualClock)'s time.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Micros;
use crate::error::Result;
use crate::manager::Manager;

/// Most rows each step handles in one pass.
pub const BATCH: u64 = 500;

/// How old a create marker must be before its worktree is taken for an orphan:
/// far longer than any create takes.
pub const ORPHAN_MIN_AGE: Duration = Duration::from_secs(600);

/// Most workers whose stored scrollback (up to a ring each, in rows of at most
/// `--scrollback-flush-bytes`) one pass deletes, in one statement: small enough
/// that SQLite's single writer is not held for long.
pub const SCROLLBACK_BATCH: u64 = 50;

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// STOPPED sessions archived because their resume window ended.
    pub archived: u64,
    /// Worktrees of DELETED sessions removed (after saving their changes).
    pub worktrees_removed: u64,
    /// Orphan worktrees (no session row) removed (after saving their changes).
    pub orphan_worktrees_removed: u64,
    /// Tombstones purged.
    pub purged: u64,
    /// Checkpoints deleted: past their TTL, or of deleted sessions.
    pub checkpoints_expired: u64,
    /// Events deleted: older than the event retention.
    pub events_purged: u64,
    /// Stored scrollback rows deleted: those of workers of DELETED sessions.
    pub scrollback_rows_dropped: u64,
    /// Steps that failed (each is logged).
    pub failed_steps: u32,
}

/// The retention task over one manager.
#[derive(Clone, Debug)]
pub struct Reaper {
    manager: Arc<Manager>,
}

impl Reaper {
    /// A reaper for `manager`.
    pub fn new(manager: Arc<Manager>) -> Self {
        Reaper { manager }
    }

    /// Runs every step once, as of `now` (µs since the epoch), and logs one line
    /// with the counts. Never fails: a step's error is logged and counted in
    /// [`Pass::failed_steps`].
    pub async fn run_once(&self, now: Micros) -> Pass {
        let manager = &self.manager;
        let store = manager.store();
        let mut failed = 0;
        let archived = step(
            "auto-archive",
            Box::pin(manager.archive_expired(now, BATCH)),
            &mut failed,
        )
        .await;
        let (worktrees_removed, _kept) = step(
            "leftover worktrees",
            Box::pin(manager.retire_leftover_worktrees(BATCH)),
            &mut failed,
        )
        .await;
        let orphan_worktrees_removed = step(
            "orphan worktrees",
            Box::pin(manager.retire_orphan_worktrees(ORPHAN_MIN_AGE, BATCH)),
            &mut failed,
        )
        .await;
        let purged = step(
            "purge tombstones",
            Box::pin(manager.purge_tombstones(now, BATCH)),
            &mut failed,
        )
        .await;
        let checkpoints_expired = step(
            "expire checkpoints",
            Box::pin(store.expire_checkpoints(now)),
            &mut failed,
        )
        .await;
        let events_purged = step(
            "purge events",
            Box::pin(manager.purge_expired_events(now)),
            &mut failed,
        )
        .await;
        let scrollback_rows_dropped = step(
            "scrollback of deleted sessions",
            Box::pin(store.drop_deleted_scrollback(SCROLLBACK_BATCH)),
            &mut failed,
        )
        .await;
        let pass = Pass {
            archived,
            worktrees_removed,
            orphan_worktrees_removed,
            purged,
            checkpoints_expired,
            events_purged,
            scrollback_rows_dropped,
            failed_steps: failed,
        };
        tracing::info!(
            archived = pass.archived,
            worktrees_removed = pass.worktrees_removed,
            orphan_worktrees_removed = pass.orphan_worktrees_removed,
            purged = pass.purged,
            checkpoints_expired = pass.checkpoints_expired,
            events_purged = pass.events_purged,
            scrollback_rows_dropped = pass.scrollback_rows_dropped,
            failed_steps = pass.failed_steps,
            "retention pass"
        );
        pass
    }

    /// Starts the background task: a pass right away (catching up after downtime),
    /// then one every `interval`, on the manager's clock. It stops at `shutdown`,
    /// between passes (a pass in progress is finished, so no git command is cut
    /// short).
    pub fn spawn(self, interval: Duration, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                self.run_once(self.manager.now()).await;
            }
        })
    }
}

/// One step's work. Boxed: the steps' futures (git runs, nested transactions)
/// are large in debug builds, and inline in `run_once`'s future they overflowed
/// the 2 MiB stack of a test thread that awaits a pass directly.
type Step<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send + 'a>>;

/// Runs one step; logs its error, counts it in `failed` and returns the
/// default (nothing done) instead.
async fn step<T: Default>(name: &str, work: Step<'_, T>, failed: &mut u32) -> T {
    match work.await {
        Ok(value) => value,
        Err(err) => {
            tracing::error!(step = name, %err, "retention step failed");
            *failed += 1;
            T::default()
        }
    }
}
