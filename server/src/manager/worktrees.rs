//! Worktree sessions in the manager: where their worktrees live, and retiring a
//! worktree once its session is DELETED (see `crate::worktree` for the git side).
//!
//! Order on delete, for crash safety: the session becomes DELETED first (the row
//! keeps `worktree_path`), then the worktree's changes are saved on a ref and
//! `saved_ref` is recorded, then the worktree is removed. A crash anywhere in
//! between leaves a DELETED session whose worktree still exists, with nothing
//! lost; the retention task ([`Manager::retire_leftover_worktrees`]) finishes the
//! job on its next pass.

use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::{MAX_CONFLICT_RETRIES, Manager};
use crate::domain::filter::SourceKind;
use crate::domain::state::State;
use crate::error::{Error, Result};
use crate::store::{EventKind, EventPayload, NewEvent, SessionRow, Write};
use crate::worktree::{self, Retire};

/// Name prefix of the marker a create leaves beside a worktree until its row is
/// written (see [`Manager::retire_orphan_worktrees`]).
const CREATING_PREFIX: &str = ".creating-";

impl Manager {
    /// The directory that holds Corral's worktrees: `<data_dir>/worktrees`.
    pub fn worktrees_dir(&self) -> PathBuf {
        self.settings.data_dir.join("worktrees")
    }

    /// Where the worktree of session `id` goes: `<data_dir>/worktrees/<id>`, with
    /// the worktrees directory created if needed and canonicalized (a session's
    /// `work_dir` is canonical).
    ///
    /// Errors: INTERNAL when the worktrees directory cannot be created.
    pub(super) async fn worktree_path(&self, id: Uuid) -> Result<PathBuf> {
        let dir = self.worktrees_dir();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|err| Error::Internal(format!("cannot create {}: {err}", dir.display())))?;
        let dir = tokio::fs::canonicalize(&dir).await.unwrap_or(dir);
        Ok(dir.join(id.to_string()))
    }

    /// Removes the worktree of a DELETED worktree session (saving its changes
    /// first) and records `saved_ref`; returns the row as stored afterwards. Other
    /// sessions are returned unchanged.
    ///
    /// A git failure does not fail the call: the worktree is kept, the reason is
    /// recorded in `state_reason`, and the retention task retries. Errors: only the
    /// database's.
    pub(super) async fn retire_worktree(
        &self,
        row: SessionRow,
        delete_branch: bool,
    ) -> Result<SessionRow> {
        if row.model.kind != SourceKind::Worktree.as_str()
            || row.model.state != State::Deleted.as_str()
        {
            return Ok(row);
        }
        let (Some(repository), Some(path)) = (
            row.model.repository.clone(),
            row.model.worktree_path.clone(),
        ) else {
            return Ok(row);
        };
        let scratch = self.worktrees_dir();
        let retired = worktree::retire(&Retire {
            repository: Path::new(&repository),
            worktree: Path::new(&path),
            branch: row.model.branch.as_deref().unwrap_or_default(),
            session_id: &row.model.id,
            session_name: &row.model.display_name,
            delete_branch,
            scratch_dir: &scratch,
        })
        .await;
        let kept = |why: String| {
            tracing::warn!(session_id = %row.model.id, worktree = %path, %why, "worktree kept");
            format!(
                "deleted; the worktree at {path} was kept because it could not be removed yet ({why}); the retention task tries again"
            )
        };
        let (saved_ref, reason) = match retired {
            Ok(retired) => (retired.saved_ref, retired.kept.map(kept)),
            Err(err) => (None, Some(kept(err.to_string()))),
        };
        self.record_retirement(row, saved_ref, reason).await
    }

    /// Writes `saved_ref` and/or a `state_reason` onto a DELETED row (retrying on
    /// a lost race); a no-op when nothing changes.
    async fn record_retirement(
        &self,
        mut row: SessionRow,
        saved_ref: Option<String>,
        reason: Option<String>,
    ) -> Result<SessionRow> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let mut new = row.clone();
            if saved_ref.is_some() {
                new.model.saved_ref = saved_ref.clone();
            }
            match &reason {
                Some(reason) => new.model.state_reason = reason.clone(),
                // A retirement that worked clears an earlier "kept" note.
                None if new.model.state_reason.contains("worktree at") => {
                    new.model.state_reason.clear()
                }
                None => {}
            }
            if new == row {
                return Ok(row);
            }
            new.model.update_time = self.now();
            let event = NewEvent::session(
                EventKind::SessionUpdated,
                &row.model.id,
                EventPayload {
                    reason: new.model.state_reason.clone(),
                    ..Default::default()
                },
            );
            match self.store.write_session(&row, &new, vec![event]).await? {
                Write::Done(written) => return Ok(written),
                Write::Conflict => match self.store.get_session(&row.model.id).await? {
                    Some(current) => row = current,
                    None => return Ok(new),
                },
            }
        }
        Ok(row)
    }

    /// For the retention task: retires the worktrees of DELETED sessions that
    /// still exist on disk (a delete interrupted by a crash, or one git refused).
    /// Looks at most `limit` sessions. Returns how many worktrees were removed and
    /// the ids of the sessions whose worktree is still there after this pass.
    ///
    /// Errors: the database's; git failures only leave the worktree in place.
    pub async fn retire_leftover_worktrees(&self, limit: u64) -> Result<(u64, Vec<String>)> {
        let mut removed = 0;
        let mut kept = Vec::new();
        for row in self.store.deleted_worktree_sessions(limit).await? {
            let Some(path) = row.model.worktree_path.clone() else {
                continue;
            };
            if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
                continue;
            }
            let id = row.model.id.clone();
            let row = self.retire_worktree(row, false).await?;
            if tokio::fs::try_exists(&path).await.unwrap_or(false) {
                kept.push(id);
            } else {
                removed += 1;
                tracing::info!(session_id = %row.model.id, worktree = %path, "leftover worktree removed");
            }
        }
        Ok((removed, kept))
    }

    /// The marker a create leaves beside the worktree of session `id` while it is
    /// between `git worktree add` and the new row: `<worktrees dir>/.creating-<id>`.
    fn creating_marker(&self, id: Uuid) -> PathBuf {
        self.worktrees_dir().join(format!("{CREATING_PREFIX}{id}"))
    }

    /// Marks the worktree of session `id` as being created (see
    /// [`retire_orphan_worktrees`](Self::retire_orphan_worktrees)).
    ///
    /// Errors: INTERNAL when the marker cannot be written.
    pub(super) async fn mark_creating(&self, id: Uuid) -> Result<()> {
        let marker = self.creating_marker(id);
        tokio::fs::write(&marker, b"")
            .await
            .map_err(|err| Error::Internal(format!("cannot write {}: {err}", marker.display())))
    }

    /// Removes the marker of [`mark_creating`](Self::mark_creating): the create
    /// is done (its row written, or its worktree undone).
    pub(super) async fn unmark_creating(&self, id: Uuid) {
        let marker = self.creating_marker(id);
        if let Err(err) = tokio::fs::remove_file(&marker).await
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(marker = %marker.display(), %err, "create marker not removed");
        }
    }

    /// Retires orphan worktrees: those of creates that never finished. A create
    /// leaves a marker (`.creating-<id>`) before `git worktree add` and removes it
    /// once the session's row is written (or the worktree undone), so a marker
    /// still there after a server was killed in between names the only
    /// worktrees that are surely orphans; worktrees without a marker (say, those
    /// of sessions in another database) are never touched. For each marker last
    /// modified at least `min_age` ago (a create in progress is never taken for
    /// an orphan): when no session row has the id, the worktree is retired like a
    /// deleted session's — changes, if any, saved on `refs/corral/<id>` first,
    /// then removed, its branch kept — and the marker goes once the worktree is
    /// gone; when the row exists, only the marker goes. At most `limit` markers
    /// per call. Returns how many worktrees were removed.
    ///
    /// Errors: the database's (a git failure is logged, and the worktree and its
    /// marker kept for the next pass).
    pub async fn retire_orphan_worktrees(
        &self,
        min_age: std::time::Duration,
        limit: u64,
    ) -> Result<u64> {
        let dir = self.worktrees_dir();
        let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
            return Ok(0);
        };
        let mut markers = Vec::new();
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name
                .strip_prefix(CREATING_PREFIX)
                .and_then(|id| Uuid::try_parse(id).ok())
            else {
                continue;
            };
            let old_enough = entry
                .metadata()
                .await
                .ok()
                .and_then(|meta| meta.modified().ok())
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age >= min_age);
            if old_enough {
                markers.push(id);
            }
            if markers.len() as u64 >= limit {
                break;
            }
        }
        let ids: Vec<String> = markers.iter().map(Uuid::to_string).collect();
        let known = self.store.existing_session_ids(&ids).await?;
        let mut removed = 0;
        for id in markers {
            let path = dir.join(id.to_string());
            if known.contains(&id.to_string())
                || !tokio::fs::try_exists(&path).await.unwrap_or(true)
            {
                self.unmark_creating(id).await;
                continue;
            }
            let Some(repository) = worktree::repository_of(&path).await else {
                tracing::warn!(worktree = %path.display(), "a create marker names a directory that is not a git worktree; left alone");
                continue;
            };
            let retired = worktree::retire(&Retire {
                repository: &repository,
                worktree: &path,
                branch: "",
                session_id: &id.to_string(),
                session_name: "a session whose create was interrupted",
                delete_branch: false,
                scratch_dir: &dir,
            })
            .await;
            match retired {
                Ok(retired) if retired.removed => {
                    removed += 1;
                    self.unmark_creating(id).await;
                    tracing::info!(worktree = %path.display(), saved_ref = ?retired.saved_ref, "orphan worktree removed (its create was interrupted)");
                }
                Ok(retired) => {
                    tracing::warn!(worktree = %path.display(), kept = ?retired.kept, "orphan worktree kept");
                }
                Err(err) => {
                    tracing::warn!(worktree = %path.display(), %err, "orphan worktree kept");
                }
            }
        }
        Ok(removed)
    }
}
