//! CheckpointService: listing, reading and deleting checkpoints, and resuming an
//! agent from one (the checkpoints themselves are written by `agents.rs`).

use super::agents::{Restore, StartCause};
use super::sessions::{page_size, parse_id, state_of};
use super::workers::worker_kind;
use super::{Manager, SessionView};
use crate::domain::names::{self, Ref};
use crate::domain::state::{Action, State};
use crate::error::{Error, Result, not_in_state};
use crate::store::checkpoints::{CheckpointScope, checkpoint};

/// Room kept in a gRPC message for everything but a checkpoint's large fields.
const MESSAGE_OVERHEAD_BYTES: usize = 64 * 1024;

fn checkpoint_not_found(name: &str) -> Error {
    Error::NotFound {
        kind: "checkpoint",
        name: name.to_owned(),
    }
}

impl Manager {
    /// ListCheckpoints of `sessions/{s}` or `sessions/{s}/workers/{w}`, newest
    /// first; with `full`, the transcript copies and scrollback too.
    ///
    /// Errors: INVALID_ARGUMENT (bad parent or token), NOT_FOUND.
    pub async fn list_checkpoints(
        &self,
        parent: &str,
        page: i32,
        token: &str,
        full: bool,
    ) -> Result<(Vec<checkpoint::Model>, String)> {
        let (session, worker) = if parent.contains("/workers/") {
            let (session, worker) = names::parse_worker_name("parent", parent)?;
            (session, Some(worker))
        } else {
            (names::parse_session_name("parent", parent)?, None)
        };
        let (row, worker_id) = match &worker {
            Some(worker) => {
                let (row, model) = self.load_worker(&session, worker).await?;
                (row, Some(model.id))
            }
            None => (self.load(&session).await?, None),
        };
        let size = page_size(page, 50)?;
        let scope_text = format!(
            "ListCheckpoints\n{}\n{}\n{full}",
            row.model.id,
            worker_id.as_deref().unwrap_or_default()
        );
        let offset: u64 = if token.is_empty() {
            0
        } else {
            self.store.page_tokens().decode(&scope_text, token)?
        };
        let scope = CheckpointScope {
            session_id: &row.model.id,
            worker_id: worker_id.as_deref(),
        };
        let mut rows = self
            .store
            .list_checkpoints(&scope, offset, size + 1, full)
            .await?;
        let next = if rows.len() as u64 > size {
            rows.truncate(size as usize);
            self.store
                .page_tokens()
                .encode(&scope_text, &(offset + size))
        } else {
            String::new()
        };
        Ok((rows, next))
    }

    /// Resolves a checkpoint name to its session, worker and version.
    async fn find_checkpoint(
        &self,
        name: &str,
    ) -> Result<(
        crate::store::SessionRow,
        crate::store::entities::worker::Model,
        i64,
    )> {
        let (session, worker, version) = names::parse_checkpoint_name("name", name)?;
        let (row, model) = self.load_worker(&session, &worker).await?;
        Ok((row, model, version))
    }

    /// GetCheckpoint; `full` adds the transcript copy and scrollback tail.
    ///
    /// Errors: INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED (the FULL view does
    /// not fit in one gRPC message).
    pub async fn get_checkpoint(&self, name: &str, full: bool) -> Result<checkpoint::Model> {
        let (_, model, version) = self.find_checkpoint(name).await?;
        if !full {
            return self
                .store
                .get_checkpoint_meta(&model.id, version)
                .await?
                .map(|meta| meta.into_model())
                .ok_or_else(|| checkpoint_not_found(name));
        }
        let found = self
            .store
            .get_checkpoint(&model.id, version)
            .await?
            .ok_or_else(|| checkpoint_not_found(name))?;
        let size = found.transcript_delta.len() + found.scrollback_tail.len();
        let limit = self
            .agents
            .settings
            .max_message_bytes
            .saturating_sub(MESSAGE_OVERHEAD_BYTES);
        if size > limit {
            return Err(Error::ResourceExhausted {
                limit: "max_message_bytes",
                value: self.agents.settings.max_message_bytes as u64,
                message: format!(
                    "checkpoint {name} holds {size} bytes of transcript and scrollback, more than fits in one response; ask for the BASIC view or raise --max-message-bytes"
                ),
            });
        }
        Ok(found)
    }

    /// DeleteCheckpoint. Errors: INVALID_ARGUMENT, NOT_FOUND.
    pub async fn delete_checkpoint(&self, name: &str) -> Result<()> {
        let (_, model, version) = self.find_checkpoint(name).await?;
        let meta = self
            .store
            .get_checkpoint_meta(&model.id, version)
            .await?
            .ok_or_else(|| checkpoint_not_found(name))?;
        if !self.store.delete_checkpoint(&meta.id).await? {
            return Err(checkpoint_not_found(name));
        }
        tracing::info!(checkpoint = %name, "checkpoint deleted");
        Ok(())
    }

    /// ResumeFromCheckpoint: rebuilds the checkpoint's transcript if it is gone,
    /// points the worker at the checkpoint's conversation, and starts the agent:
    /// by resuming the session (STOPPED), retrying it (ERROR), or starting just
    /// this worker (ACTIVE with the worker not running). Returns the session and
    /// what was done, in words.
    ///
    /// Errors: INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION (another state, the
    /// worker is running, the resume window is over, the agent could not start).
    pub async fn resume_from_checkpoint(&self, name: &str) -> Result<(SessionView, String)> {
        let (row, model, version) = self.find_checkpoint(name).await?;
        let meta = self
            .store
            .get_checkpoint_meta(&model.id, version)
            .await?
            .filter(|_| model.kind == worker_kind::AGENT)
            .ok_or_else(|| checkpoint_not_found(name))?;
        let state = state_of(&row)?;
        let worker_id = parse_id(&model.id)?;
        let running = self
            .supervisor
            .handle(worker_id)
            .is_some_and(|h| h.is_running());
        match state {
            State::Active if running => {
                return Err(Error::precondition(
                    "WORKER_RUNNING",
                    format!(
                        "agent worker {:?} is running; stop the session before resuming it from a checkpoint",
                        model.display_name
                    ),
                ));
            }
            State::Active | State::Stopped | State::Error => {}
            _ => {
                return Err(not_in_state(
                    "SESSION_NOT_RESUMABLE",
                    &row.model.display_name,
                    state,
                    "an agent can be resumed from a checkpoint",
                    "only while the session is STOPPED, ERROR, or ACTIVE with that worker not running",
                ));
            }
        }
        let mut notes = Vec::new();
        match self.restore_transcript(&model.id, Some(version)).await {
            Ok(Restore::Restored { path, bytes, .. }) => notes.push(format!(
                "transcript {} restored from checkpoint {version} ({bytes} bytes)",
                path.display()
            )),
            Ok(Restore::Present(path)) => {
                notes.push(format!("transcript {} present", path.display()))
            }
            Ok(Restore::NoCheckpoint) => {
                notes.push(format!("checkpoint {version} holds no transcript"))
            }
            Err(why) => notes.push(format!("transcript not restored: {why}")),
        }
        if !meta.agent_session_id.is_empty() && meta.agent_session_id != model.agent_session_id {
            let mut new = model.clone();
            new.agent_session_id = meta.agent_session_id.clone();
            self.store
                .update_worker(&model, &new, self.now(), Vec::new())
                .await?;
            notes.push(format!(
                "conversation set to {} (from checkpoint {version})",
                meta.agent_session_id
            ));
        }
        let session = Ref::Id(parse_id(&row.model.id)?);
        self.agents.worker(worker_id).set_last_launch(String::new());
        let view = match state {
            State::Active => {
                let model = self.reload_worker(&model).await?;
                let separator = format!(
                    "\r\n\x1b[2m--- corral: resuming from checkpoint {version} ---\x1b[0m\r\n"
                );
                self.spawn_agent(&row, &model, &separator, StartCause::Client)
                    .await
                    .map_err(|reason| Error::precondition("AGENT_START_FAILED", reason))?;
                self.view(self.load(&session).await?).await?
            }
            State::Stopped => self.session_action(&session, Action::Resume, "").await?,
            _ => self.session_action(&session, Action::Retry, "").await?,
        };
        let launched = self.agents.worker(worker_id).last_launch();
        if !launched.is_empty() {
            notes.push(launched);
        }
        if view.state() == State::Error {
            notes.push(format!(
                "the session is in ERROR: {}",
                view.row.model.last_error
            ));
        }
        Ok((view, notes.join("; ")))
    }
}
