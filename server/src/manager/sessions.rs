//! Sessions: create, read, list, update, delete, and the lifecycle transitions.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use uuid::Uuid;

use super::lifecycle::{self, Cause};
use super::workers::{NewWorker, Started, WorkerSpec};
use super::{MAX_CONFLICT_RETRIES, Manager, SessionView};
use crate::clock::micros_of;
use crate::domain::filter::{self, SourceKind};
use crate::domain::names::{
    self, MAX_DESCRIPTION_BYTES, Ref, validate_display_name, validate_labels,
};
use crate::domain::state::{Action, Event, State, on_event, transition};
use crate::error::{Error, Result, refused};
use crate::store::entities::{session, worker};
use crate::store::{
    Cursor, EventKind, EventPayload, NewEvent, Order, OrderField, SessionQuery, SessionRow, Write,
};
use crate::worktree::{self, WorktreeRequest};

/// Where a new session's directory comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    /// An existing directory.
    Quick { work_dir: String },
    /// A git worktree Corral creates.
    Worktree {
        repository: String,
        branch: String,
        base_ref: String,
    },
}

/// A CreateSession request, decoded.
#[derive(Clone, Debug)]
pub struct NewSession {
    pub display_name: String,
    pub description: String,
    pub labels: BTreeMap<String, String>,
    pub source: Option<SourceSpec>,
    pub workers: Vec<NewWorker>,
    pub validate_only: bool,
    /// The authenticated principal.
    pub creator: String,
}

/// A ListSessions request, decoded.
#[derive(Clone, Debug, Default)]
pub struct ListSessions {
    pub filter: String,
    pub order_by: String,
    pub page_size: i32,
    pub page_token: String,
    pub show_deleted: bool,
}

/// An UpdateSession request, decoded: the fields the mask selects.
#[derive(Clone, Debug, Default)]
pub struct SessionPatch {
    pub display_name: Option<String>,
    pub description: Option<String>,
    /// Replace all labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// Set (Some) or remove (None) single labels.
    pub label_changes: BTreeMap<String, Option<String>>,
    pub etag: String,
}

/// Default and largest page sizes of ListSessions (AIP-158: larger values are
/// coerced down).
const DEFAULT_PAGE_SIZE: u64 = 50;
const MAX_PAGE_SIZE: u64 = 1000;

/// The etag of a session row.
pub fn etag(row: &SessionRow) -> String {
    format!("\"{}\"", row.model.version)
}

fn check_etag(row: &SessionRow, etag: &str) -> Result<()> {
    if !etag.is_empty() && etag != self::etag(row) {
        return Err(Error::Aborted {
            message: format!(
                "session {:?} changed since etag {etag} was read (now {}); read it again and retry",
                row.model.display_name,
                self::etag(row)
            ),
        });
    }
    Ok(())
}

/// The state of a stored row (an unknown stored name is a corrupted row: INTERNAL).
pub(super) fn state_of(row: &SessionRow) -> Result<State> {
    State::parse(&row.model.state).ok_or_else(|| {
        Error::Internal(format!(
            "session {} has an unknown stored state {:?}",
            row.model.id, row.model.state
        ))
    })
}

/// Page size per AIP-158: 0 → default, negative → INVALID_ARGUMENT, above the
/// maximum → the maximum.
pub(super) fn page_size(requested: i32, default: u64) -> Result<u64> {
    match requested {
        n if n < 0 => Err(Error::invalid(
            "page_size",
            format!("must not be negative (got {n})"),
        )),
        0 => Ok(default),
        n => Ok((n as u64).min(MAX_PAGE_SIZE)),
    }
}

fn parse_order(order_by: &str) -> Result<Order> {
    let words: Vec<&str> = order_by.split_whitespace().collect();
    let (field, descending) = match words.as_slice() {
        [] => return Ok(Order::default()),
        [field] => (*field, true),
        [field, "desc"] => (*field, true),
        [field, "asc"] => (*field, false),
        _ => {
            return Err(Error::invalid(
                "order_by",
                format!("{order_by:?} is not \"<field> [asc|desc]\""),
            ));
        }
    };
    let field = match field {
        "create_time" => OrderField::CreateTime,
        "update_time" => OrderField::UpdateTime,
        other => {
            return Err(Error::invalid(
                "order_by",
                format!("cannot order by {other:?}; use create_time or update_time"),
            ));
        }
    };
    Ok(Order { field, descending })
}

impl Manager {
    /// CreateSession: validates everything, then writes the session, its labels and
    /// workers and the SESSION_CREATED event in one transaction.
    ///
    /// A worktree session's worktree is created first (after every check on the
    /// request passed) and the row second; if writing the row fails the worktree
    /// is removed again, so a failed create leaves neither a row nor a worktree.
    ///
    /// Errors: INVALID_ARGUMENT (fields, work dir, repository, branch, base ref),
    /// PERMISSION_DENIED (outside the allowed roots), ALREADY_EXISTS (display
    /// name), FAILED_PRECONDITION (git refuses the worktree), RESOURCE_EXHAUSTED.
    pub async fn create_session(&self, new: NewSession) -> Result<SessionView> {
        names::validate_text(
            "session.description",
            &new.description,
            MAX_DESCRIPTION_BYTES,
        )?;
        validate_labels(&new.labels)?;
        if !new.display_name.is_empty() {
            validate_display_name("session.display_name", &new.display_name)?;
        }
        if new.workers.len() > self.settings.max_workers_per_session {
            return Err(Error::ResourceExhausted {
                limit: "max_workers_per_session",
                value: self.settings.max_workers_per_session as u64,
                message: format!("{} workers requested", new.workers.len()),
            });
        }
        let source = new.source.clone().ok_or_else(|| {
            Error::invalid(
                "session.source",
                "is required: give a quick source (work_dir) or a worktree source (repository, branch)",
            )
        })?;
        let id = Uuid::new_v4();
        let now = self.now();
        // Every worker is checked before anything is created on disk.
        let mut workers = Vec::with_capacity(new.workers.len());
        let mut events = vec![NewEvent::session(
            EventKind::SessionCreated,
            &id.to_string(),
            EventPayload {
                to: State::Created.as_str().into(),
                ..Default::default()
            },
        )];
        for (position, spec) in new.workers.iter().enumerate() {
            let taken: Vec<&str> = workers
                .iter()
                .map(|w: &worker::Model| w.display_name.as_str())
                .collect();
            let model = self.new_worker_model(id, position as i32, spec, &taken, now)?;
            events.push(NewEvent::worker(
                EventKind::WorkerCreated,
                &model.session_id,
                &model.id,
                EventPayload::default(),
            ));
            workers.push(model);
        }
        let (kind, work_dir, plan) = match &source {
            SourceSpec::Quick { work_dir } => {
                let dir = self
                    .settings
                    .allowed_roots
                    .resolve_dir("session.quick.work_dir", work_dir)
                    .await?;
                (SourceKind::Quick, dir, None)
            }
            SourceSpec::Worktree {
                repository,
                branch,
                base_ref,
            } => {
                let plan = worktree::plan(
                    &WorktreeRequest {
                        repository: repository.clone(),
                        branch: branch.clone(),
                        base_ref: base_ref.clone(),
                    },
                    &self.settings.allowed_roots,
                )
                .await?;
                let dir = self.worktree_path(id).await?;
                (SourceKind::Worktree, dir, Some(plan))
            }
        };
        let display_name = if !new.display_name.is_empty() {
            new.display_name.clone()
        } else {
            match &plan {
                Some(plan) => {
                    let repo = plan
                        .repository
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    default_display_name(Path::new(&format!("{repo}-{}", plan.branch)), id)
                }
                None => default_display_name(&work_dir, id),
            }
        };
        // The unique index checks the name when the row is written; this early
        // look spares creating a worktree for a name that is taken, and answers a
        // validate-only request (which writes nothing).
        if (plan.is_some() || new.validate_only)
            && self
                .store
                .find_session(&Ref::Name(display_name.clone()))
                .await?
                .is_some()
        {
            return Err(Error::AlreadyExists {
                kind: "session",
                name: display_name,
                detail: "; display names are unique among sessions that are not deleted".into(),
            });
        }
        let row = SessionRow {
            model: session::Model {
                id: id.to_string(),
                display_name,
                description: new.description,
                kind: kind.as_str().into(),
                work_dir: work_dir.display().to_string(),
                repository: plan.as_ref().map(|p| p.repository.display().to_string()),
                branch: plan.as_ref().map(|p| p.branch.clone()),
                base_ref: plan.as_ref().map(|p| p.base_ref()),
                worktree_path: plan.as_ref().map(|_| work_dir.display().to_string()),
                saved_ref: None,
                state: State::Created.as_str().into(),
                version: 1,
                state_reason: String::new(),
                last_error: String::new(),
                auto_archived: false,
                creator: new.creator,
                create_time: now,
                update_time: now,
                start_time: None,
                pause_time: None,
                resume_time: None,
                stop_time: None,
                archive_time: None,
                delete_time: None,
                purge_time: None,
                pause_count: 0,
                resume_count: 0,
                retry_count: 0,
                restart_count: 0,
                message_count: 0,
                user_messages: 0,
                assistant_messages: 0,
                server_id: None,
            },
            labels: new.labels,
        };
        if new.validate_only {
            return Ok(self.view_with(row, workers));
        }
        if let Some(plan) = &plan {
            // Marked until the row is written: a server killed in between leaves
            // the marker, and the retention task retires the orphan worktree.
            self.mark_creating(id).await?;
            if let Err(err) = worktree::add(plan, &work_dir).await {
                self.unmark_creating(id).await;
                return Err(err);
            }
        }
        let limits = crate::store::SessionLimits {
            max_total: Some(self.settings.max_sessions),
            max_per_creator: Some(self.settings.max_sessions_per_principal),
        };
        let written = self
            .store
            .create_session_within(&row, &workers, events, &limits)
            .await;
        if let Some(plan) = &plan {
            if written.is_err() {
                worktree::undo_add(plan, &work_dir).await;
            }
            self.unmark_creating(id).await;
        }
        written?;
        tracing::info!(session_id = %id, display_name = %row.model.display_name, kind = kind.as_str(), "session created");
        Ok(self.view_with(row, workers))
    }

    /// GetSession.
    pub async fn get_session(&self, session: &Ref) -> Result<SessionView> {
        let row = self.load(session).await?;
        self.view(row).await
    }

    /// ListSessions: one page, the next page token, and the total count.
    pub async fn list_sessions(
        &self,
        request: ListSessions,
    ) -> Result<(Vec<SessionView>, String, u64)> {
        let filter = filter::parse(&request.filter)?;
        let order = parse_order(&request.order_by)?;
        let page_size = page_size(request.page_size, DEFAULT_PAGE_SIZE)?;
        let scope = format!(
            "ListSessions\n{}\n{}\n{}",
            request.filter.trim(),
            request.order_by.trim(),
            request.show_deleted
        );
        let after = if request.page_token.is_empty() {
            None
        } else {
            Some(
                self.store
                    .page_tokens()
                    .decode::<Cursor>(&scope, &request.page_token)?,
            )
        };
        let page = self
            .store
            .list_sessions(&SessionQuery {
                filter,
                order,
                show_deleted: request.show_deleted,
                page_size,
                after,
                creator: crate::auth::visible_creator(),
            })
            .await?;
        let ids: Vec<String> = page.sessions.iter().map(|r| r.model.id.clone()).collect();
        let mut workers = self.store.workers_of(&ids).await?;
        let views = page
            .sessions
            .into_iter()
            .map(|row| {
                let w = workers.remove(&row.model.id).unwrap_or_default();
                self.view_with(row, w)
            })
            .collect();
        let next = page
            .next
            .map(|cursor| self.store.page_tokens().encode(&scope, &cursor))
            .unwrap_or_default();
        Ok((views, next, page.total))
    }

    /// UpdateSession: display name, description, labels. Never changes state.
    pub async fn update_session(&self, session: &Ref, patch: SessionPatch) -> Result<SessionView> {
        if let Some(name) = &patch.display_name {
            validate_display_name("session.display_name", name)?;
        }
        if let Some(description) = &patch.description {
            names::validate_text("session.description", description, MAX_DESCRIPTION_BYTES)?;
        }
        for _ in 0..MAX_CONFLICT_RETRIES {
            let row = self.load(session).await?;
            check_etag(&row, &patch.etag)?;
            let state = state_of(&row)?;
            if state == State::Deleted {
                return Err(Error::precondition(
                    "SESSION_DELETED",
                    format!(
                        "session {:?} is DELETED and cannot be updated",
                        row.model.display_name
                    ),
                ));
            }
            let mut new = row.clone();
            if let Some(name) = &patch.display_name {
                new.model.display_name = name.clone();
            }
            if let Some(description) = &patch.description {
                new.model.description = description.clone();
            }
            if let Some(labels) = &patch.labels {
                new.labels = labels.clone();
            }
            for (key, value) in &patch.label_changes {
                match value {
                    Some(value) => new.labels.insert(key.clone(), value.clone()),
                    None => new.labels.remove(key),
                };
            }
            validate_labels(&new.labels)?;
            if new == row {
                return self.view(row).await;
            }
            new.model.update_time = self.now();
            let event = NewEvent::session(
                EventKind::SessionUpdated,
                &row.model.id,
                EventPayload::default(),
            );
            match self.store.write_session(&row, &new, vec![event]).await? {
                Write::Done(written) => return self.view(written).await,
                Write::Conflict if !patch.etag.is_empty() => {
                    return Err(Error::Aborted {
                        message: format!(
                            "session {:?} changed while it was being updated; read it again and retry",
                            row.model.display_name
                        ),
                    });
                }
                Write::Conflict => continue,
            }
        }
        Err(conflict_exhausted(session))
    }

    /// Runs a client's lifecycle `action`: checks the etag, the state machine and
    /// `extra` (rules that need more than the table), applies the bookkeeping and
    /// writes the row if nobody changed it meanwhile. Returns the state before and
    /// the row after.
    pub(super) async fn act(
        &self,
        session: &Ref,
        action: Action,
        etag: &str,
        extra: impl Fn(&SessionRow, State) -> Result<()>,
    ) -> Result<(State, SessionRow)> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let row = self.load(session).await?;
            check_etag(&row, etag)?;
            let from = state_of(&row)?;
            let to = transition(from, action).map_err(|r| refused(&row.model.display_name, r))?;
            extra(&row, from)?;
            let mut new = row.clone();
            let event = lifecycle::apply(
                &mut new.model,
                from,
                to,
                &Cause::Action(action),
                self.now(),
                self.settings.retention,
            );
            if to == State::Starting {
                // This server spawns the processes: it owns them (see reconcile.rs).
                new.model.server_id = Some(self.server_id.clone());
            }
            match self.store.write_session(&row, &new, vec![event]).await? {
                Write::Done(written) => {
                    tracing::info!(session_id = %written.model.id, %action, %from, %to, "transition");
                    return Ok((from, written));
                }
                Write::Conflict if !etag.is_empty() => {
                    return Err(Error::Aborted {
                        message: format!(
                            "session {:?} changed while it was being {}ed; read it again and retry",
                            row.model.display_name, action
                        ),
                    });
                }
                // Someone else moved the session: look again; the table decides.
                Write::Conflict => continue,
            }
        }
        Err(conflict_exhausted(session))
    }

    /// Applies an automatic `event` to session `id` if the state machine allows it
    /// in the current state. Returns the new row, or `None` when the event no longer
    /// applies (another transition won).
    pub(super) async fn automatic(
        &self,
        id: &str,
        event: Event,
        reason: &str,
    ) -> Result<Option<SessionRow>> {
        self.automatic_if(id, event, reason, self.now(), |_| true)
            .await
    }

    /// [`automatic`](Self::automatic) from `row`, the session as the caller last
    /// wrote it: tried first without reading it again (read again only after a
    /// lost race). The runs in `starts` are recorded in the first write, whether
    /// or not it wins (alone if the event does not apply).
    pub(super) async fn automatic_from(
        &self,
        row: SessionRow,
        event: Event,
        reason: &str,
        starts: Vec<Started>,
    ) -> Result<Option<SessionRow>> {
        let id = row.model.id.clone();
        self.automatic_with(&id, Some(row), event, reason, self.now(), |_| true, starts)
            .await
    }

    /// [`automatic`](Self::automatic) at time `now`, and only while `applies` holds
    /// for the row as read (checked again after every lost race, so a condition
    /// such as "stopped longer than the window" is true of the row that is written).
    pub(super) async fn automatic_if(
        &self,
        id: &str,
        event: Event,
        reason: &str,
        now: i64,
        applies: impl Fn(&SessionRow) -> bool,
    ) -> Result<Option<SessionRow>> {
        self.automatic_with(id, None, event, reason, now, applies, Vec::new())
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn automatic_with(
        &self,
        id: &str,
        mut known: Option<SessionRow>,
        event: Event,
        reason: &str,
        now: i64,
        applies: impl Fn(&SessionRow) -> bool,
        mut starts: Vec<Started>,
    ) -> Result<Option<SessionRow>> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let (row, fresh) = match known.take() {
                Some(row) => (row, false),
                None => match self.store.get_session(id).await? {
                    Some(row) => (row, true),
                    None => {
                        self.write_starts(starts).await?;
                        return Ok(None);
                    }
                },
            };
            let from = state_of(&row)?;
            let to = on_event(from, event).filter(|_| applies(&row));
            let Some(to) = to else {
                if fresh {
                    self.write_starts(starts).await?;
                    return Ok(None);
                }
                // The caller's copy may be stale: decide on the stored row.
                continue;
            };
            let mut new = row.clone();
            let stored = lifecycle::apply(
                &mut new.model,
                from,
                to,
                &Cause::Automatic(reason.to_owned()),
                now,
                self.settings.retention,
            );
            // The runs are recorded by this write even if the session's row lost
            // a race; their exit slots are held until it is done.
            let (workers, _exit_slots) = Started::into_writes(std::mem::take(&mut starts));
            match self
                .store
                .write_session_with(&row, &new, vec![stored], workers)
                .await?
            {
                Write::Done(written) => {
                    tracing::info!(session_id = %id, ?event, %from, %to, reason, "automatic transition");
                    return Ok(Some(written));
                }
                Write::Conflict => continue,
            }
        }
        self.write_starts(starts).await?;
        Err(Error::Aborted {
            message: format!("session {id} kept changing; automatic transition {event:?} given up"),
        })
    }

    /// StartSession: CREATED → STARTING, spawn every worker, → ACTIVE (or ERROR).
    pub async fn start_session(&self, session: &Ref, etag: &str) -> Result<SessionView> {
        let (_, row) = self
            .act(session, Action::Start, etag, |_, _| Ok(()))
            .await?;
        self.launch(row).await
    }

    /// StopSession: → STOPPED, then end every process (SIGTERM, SIGKILL after the
    /// grace). Returns once every process is gone.
    pub async fn stop_session(
        &self,
        session: &Ref,
        etag: &str,
        grace: Option<Duration>,
    ) -> Result<SessionView> {
        let (_, row) = self.act(session, Action::Stop, etag, |_, _| Ok(())).await?;
        let grace = grace.unwrap_or(self.settings.stop_grace);
        // The session as this call left it (stopping its workers writes only their
        // rows), with the workers as they ended.
        match self.stop_workers(&row.model.id, grace).await? {
            Some(workers) => Ok(self.view_with(row, workers)),
            None => self.view(row).await,
        }
    }

    /// DeleteSession: → DELETED (a tombstone); the workers' scrollback is dropped.
    /// A worktree session's worktree is then removed, its uncommitted changes and
    /// untracked files saved first on `refs/corral/<id>` (`saved_ref`); the branch
    /// is kept unless `delete_branch`. If git cannot remove the worktree now, the
    /// session is DELETED all the same, the worktree is kept (nothing is lost), the
    /// reason is in `state_reason`, and the retention task tries again.
    ///
    /// Errors: NOT_FOUND, FAILED_PRECONDITION (the state does not allow delete),
    /// ABORTED (stale etag).
    pub async fn delete_session(
        &self,
        session: &Ref,
        etag: &str,
        delete_branch: bool,
    ) -> Result<SessionView> {
        let (_, row) = self
            .act(session, Action::Delete, etag, |_, _| Ok(()))
            .await?;
        let workers = self.forget_workers(&row.model.id).await?;
        let row = self.retire_worktree(row, delete_branch).await?;
        Ok(self.view_with(row, workers))
    }
}

fn conflict_exhausted(session: &Ref) -> Error {
    Error::Aborted {
        message: format!("session {session} is changing too often to apply the request; retry"),
    }
}

pub(super) fn parse_id(id: &str) -> Result<Uuid> {
    Uuid::try_parse(id).map_err(|_| Error::Internal(format!("stored id {id:?} is not a UUID")))
}

/// `<base name of the dir>-<4 hex digits of the id>`, reduced to the allowed characters.
fn default_display_name(work_dir: &Path, id: Uuid) -> String {
    let base: String = work_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .skip_while(|c| !c.is_ascii_alphanumeric())
        .take(50)
        .collect();
    let suffix = &id.simple().to_string()[..4];
    if base.is_empty() {
        format!("session-{suffix}")
    } else {
        format!("{base}-{suffix}")
    }
}

/// The workers a session without workers starts with: one terminal `shell`.
pub(super) fn default_workers() -> Vec<NewWorker> {
    vec![NewWorker {
        display_name: "shell".into(),
        spec: WorkerSpec::Terminal {
            command: Vec::new(),
            env: BTreeMap::new(),
        },
    }]
}

/// The resume window rule (a STOPPED session resumes only within the window).
pub(super) fn within_resume_window(row: &SessionRow, now: i64, window: Duration) -> bool {
    row.model
        .stop_time
        .is_none_or(|stop| now <= stop.saturating_add(micros_of(window)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_by_parsing() {
        assert_eq!(parse_order("").unwrap(), Order::default());
        assert_eq!(
            parse_order("update_time asc").unwrap(),
            Order {
                field: OrderField::UpdateTime,
                descending: false
            }
        );
        assert!(parse_order("name").is_err());
        assert!(parse_order("create_time sideways").is_err());
    }

    #[test]
    fn page_sizes_follow_aip_158() {
        assert_eq!(page_size(0, 50).unwrap(), 50);
        assert_eq!(page_size(7, 50).unwrap(), 7);
        assert_eq!(page_size(100_000, 50).unwrap(), 1000);
        assert!(page_size(-1, 50).is_err());
    }

    #[test]
    fn default_names_are_valid() {
        let id = Uuid::new_v4();
        for dir in ["/home/me/my project", "/", "/tmp/.hidden", "/srv/ünï"] {
            let name = default_display_name(Path::new(dir), id);
            assert!(validate_display_name("n", &name).is_ok(), "{dir} → {name}");
        }
    }
}
