//! The lifecycle actions besides create/delete: what each does to processes after
//! the state machine allowed it.

use uuid::Uuid;

use super::sessions::{parse_id, within_resume_window};
use super::workers::worker_state;
use super::{Manager, SessionView};
use crate::domain::names::Ref;
use crate::domain::state::{Action, Event, State};
use crate::error::{Error, Result};

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
            Action::Delete => self.delete_session(session, etag).await,
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
                self.drop_checkpoints(&row.model.id).await?;
                self.forget_workers(&row.model.id).await?;
                self.view(row).await
            }
        }
    }

    async fn forget_workers(&self, session_id: &str) -> Result<()> {
        for worker in self.store.list_workers(session_id).await? {
            if let Ok(id) = Uuid::try_parse(&worker.id) {
                self.supervisor.forget(id);
            }
        }
        Ok(())
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
                            "session {:?} was stopped more than {} ago and can no longer be resumed; archive it and reopen it from the archive",
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

    /// ERROR → STARTING → ACTIVE; when the last allowed retry fails too, the
    /// session is discarded (DELETED, the reason kept in `last_error`).
    async fn retry_session(&self, session: &Ref, etag: &str) -> Result<SessionView> {
        let (_, row) = self
            .act(session, Action::Retry, etag, |_, _| Ok(()))
            .await?;
        let id = row.model.id.clone();
        let retries = row.model.retry_count;
        let view = self.launch(row).await?;
        if view.state() == State::Error && retries >= self.settings.max_retries as i32 {
            let reason = format!(
                "discarded after {retries} failed retries; last error: {}",
                view.row.model.last_error
            );
            if let Some(row) = self
                .automatic(&id, Event::RetriesExhausted, &reason)
                .await?
            {
                self.drop_checkpoints(&id).await?;
                self.forget_workers(&id).await?;
                return self.view(row).await;
            }
        }
        let row = self.load(&Ref::Id(parse_id(&id)?)).await?;
        self.view(row).await
    }
}
