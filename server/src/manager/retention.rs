//! The manager's part of the retention task (`crate::reaper`): archiving STOPPED
//! sessions past their resume window and purging tombstones past their purge time.
//!
//! Each session is handled with a conditional write (the state machine's
//! `ResumeWindowExpired` event applied with optimistic concurrency on `version`)
//! or a conditional delete (`… WHERE state = 'DELETED' AND purge_time <= now`), so
//! several servers sharing one PostgreSQL database may run the same pass at once:
//! each row is handled exactly once, and a session resumed meanwhile is left alone.

use super::Manager;
use super::sessions::within_resume_window;
use crate::clock::{Micros, micros_of};
use crate::domain::state::Event;
use crate::error::Result;

impl Manager {
    /// Archives (automatically: `auto_archived = true`) STOPPED sessions whose
    /// resume window ended before `now`; at most `limit` per call. Returns how many
    /// were archived by this call.
    ///
    /// Errors: the database's (INTERNAL, or UNAVAILABLE when it cannot be reached).
    pub async fn archive_expired(&self, now: Micros, limit: u64) -> Result<u64> {
        let window = self.settings.resume_window;
        let stopped_before = now.saturating_sub(micros_of(window));
        let reason = format!(
            "stopped for longer than the resume window ({}); archived automatically",
            humantime::format_duration(window)
        );
        let mut archived = 0;
        for id in self.store.stopped_before(stopped_before, limit).await? {
            let done = self
                .automatic_if(&id, Event::ResumeWindowExpired, &reason, now, |row| {
                    !within_resume_window(row, now, window)
                })
                .await?;
            if done.is_some() {
                archived += 1;
            }
        }
        Ok(archived)
    }

    /// Purges tombstones whose `purge_time` is at or before `now` (the row goes;
    /// its workers and labels cascade); at most `limit` per call. A worktree
    /// session's worktree is retired first, and a tombstone whose worktree could
    /// not be removed is kept for a later pass. Returns how many rows this call
    /// deleted.
    ///
    /// Errors: the database's (INTERNAL, or UNAVAILABLE when it cannot be reached).
    pub async fn purge_tombstones(&self, now: Micros, limit: u64) -> Result<u64> {
        let mut purged = 0;
        for row in self.store.tombstones_due(now, limit).await? {
            let path = row.model.worktree_path.clone();
            let row = self.retire_worktree(row, false).await?;
            if let Some(path) = path
                && tokio::fs::try_exists(&path).await.unwrap_or(false)
            {
                tracing::warn!(session_id = %row.model.id, worktree = %path, "tombstone kept: its worktree is still there");
                continue;
            }
            if self.store.purge_session(&row.model.id, now).await? {
                purged += 1;
            }
        }
        Ok(purged)
    }
}
