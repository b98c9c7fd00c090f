//! The lifecycle actions besides create/delete: what each does to processes after
//! the state machine allowed it.

use uuid::Uuid;

use super::sessions::within_resume_window;
use super::workers::{worker_kind, worker_state};
use super::{Manager, SessionView};
use crate::domain::names::Ref;
use crate::domain::state::{Action, Event, State};
use crate::error::{Error, Result};
use crate::store::entities::worker;

impl Manager {
    /// Runs a lifecycle action and what it implies for the processes; returns the
    /// session afterwards.
    ///
    /// Errors: NOT_FOUND, FAILED_PRECONDITION (the state does not allow the action;
    /// a STOPPED session past its resume window), ABORTED (stale etag).
    pub async fn session_action(
        &self,
        session: &Ref,
        action: Action,
        etag: &str,
    ) -> Result<SessionView> {
        match action {
            Action::Start => self.start_session(session, etag).await,
            Action::Stop => self.stop_session(session, etag, None).await,
            Action::Delete => self.delete_session(session, etag, false).await,
            Action::Pause => self.pause_session(session, etag).await,
            Action::Resume => self.resume_session(session, etag).await,
            Action::Restart => {
                let (_, row) = self.act(session, action, etag, |_, _| Ok(())).await?;
                self.stop_workers(&row.model.id, self.settings.stop_grace)
                    .await?;
                self.launch(row).await
            }
            Action::Retry => self.retry_session(session, etag).await,
            Action::Archive | Action::Reopen => {
                let (_, row) = self.act(session, action, etag, |_, _| Ok(())).await?;
                self.view(row).await
            }
            Action::Discard => {
                let (_, row) = self.act(session, action, etag, |_, _| Ok(())).await?;
                let workers = self.forget_workers(&row.model.id).await?;
                let row = self.retire_worktree(row, false).await?;
                Ok(self.view_with(row, workers))
            }
        }
    }

    /// For a session that is gone (DELETED, discarded): drops the supervisor's
    /// state (scrollback) and the agent runtime's of every worker, and the stored
    /// checkpoints. Returns the workers (read once, for the response).
    pub(super) async fn forget_workers(&self, session_id: &str) -> Result<Vec<worker::Model>> {
        let workers = self.store.list_workers(session_id).await?;
        for worker in &workers {
            if let Ok(id) = Uuid::try_parse(&worker.id) {
                self.forget_worker(id);
                if worker.kind == worker_kind::AGENT {
                    self.agents.forget(id);
                }
            }
        }
        // Only agents are checkpointed, and deleting an agent worker deletes its
        // checkpoints: a session without one has none to delete (and should one
        // be left, the reaper deletes those of DELETED sessions).
        if workers.iter().any(|w| w.kind == worker_kind::AGENT) {
            self.store
                .delete_checkpoints(&crate::store::checkpoints::CheckpointScope {
                    session_id,
                    worker_id: None,
                })
                .await?;
        }
        Ok(workers)
    }

    /// ACTIVE → PAUSED: SIGSTOP to every process of every worker.
    async fn pause_session(&self, session: &Ref, etag: &str) -> Result<SessionView> {
        let (_, row) = self
            .act(session, Action::Pause, etag, |_, _| Ok(()))
            .await?;
        for worker in self.store.list_workers(&row.model.id).await? {
            let Some(handle) = Uuid::try_parse(&worker.id)
                .ok()
                .and_then(|id| self.supervisor.handle(id))
            else {
                continue;
            };
            if handle.pause().await.is_ok() && worker.state == worker_state::RUNNING {
                let mut new = worker.clone();
                new.state = worker_state::PAUSED.into();
                self.store
                    .update_worker(&worker, &new, self.now(), Vec::new())
                    .await?;
            }
        }
        self.view(row).await
    }

    /// PAUSED → ACTIVE (SIGCONT), or STOPPED → STARTING → ACTIVE within the resume
    /// window (the workers start again in the same directory, same ids and names,
    /// their scrollback kept after a separator).
    async fn resume_session(&self, session: &Ref, etag: &str) -> Result<SessionView> {
        let now = self.now();
        let window = self.settings.resume_window;
        let (from, row) = self
            .act(session, Action::Resume, etag, |row, from| {
                if from == State::Stopped && !within_resume_window(row, now, window) {
                    return Err(Error::precondition(
                        "RESUME_WINDOW_EXPIRED",
                        format!(
                            "session {:?} was stopped more than {} ago (the resume window) and can no longer be resumed; it must be reopened from the archive: archive it (ArchiveSession), reopen it (ReopenSession), then resume it",
                            row.model.display_name,
                            humantime::format_duration(window)
                        ),
                    ));
                }
                Ok(())
            })
            .await?;
        if from == State::Stopped {
            return self.launch(row).await;
        }
        for worker in self.store.list_workers(&row.model.id).await? {
            let Some(handle) = Uuid::try_parse(&worker.id)
                .ok()
                .and_then(|id| self.supervisor.handle(id))
            else {
                continue;
            };
            if handle.resume().await.is_ok() && worker.state == worker_state::PAUSED {
                let mut new = worker.clone();
                new.state = worker_state::RUNNING.into();
                self.store
                    .update_worker(&worker, &new, self.now(), Vec::new())
                    .await?;
            }
        }
        self.view(row).await
    }

    /// ERROR → STARTING → ACTIVE. When this retry fails too and it was the last
    /// one allowed, the session is discarded (see [`Manager::fail`]).
    async fn retry_session(&self, session: &Ref, etag: &str) -> Result<SessionView> {
        let (_, row) = self
            .act(session, Action::Retry, etag, |_, _| Ok(()))
            .await?;
        self.launch(row).await
    }

    /// An automatic failure of session `session_id`: → ERROR with `reason` as
    /// `last_error`. When the session has used every retry it is allowed
    /// (`retry_count >= --max-retries`, counted over its life: "attempt 1/3 … 3/3"
    /// in seed 000), it is discarded at once: → DELETED, the reason kept in
    /// `last_error` and `state_reason`, its worktree retired.
    pub(super) async fn fail(&self, session_id: &str, reason: &str) -> Result<()> {
        let Some(row) = self.automatic(session_id, Event::Failed, reason).await? else {
            return Ok(());
        };
        let max = self.settings.max_retries;
        if i64::from(row.model.retry_count) < i64::from(max) {
            return Ok(());
        }
        let why = format!(
            "discarded automatically: {} of {max} retries failed; last error: {reason}",
            row.model.retry_count
        );
        if let Some(row) = self
            .automatic(session_id, Event::RetriesExhausted, &why)
            .await?
        {
            self.forget_workers(session_id).await?;
            self.retire_worktree(row, false).await?;
        }
        Ok(())
    }
}
