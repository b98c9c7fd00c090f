//! Workers: their rows, their processes, their exits, and attaching to them.

use std::collections::BTreeMap;

use bytes::Bytes;
use uuid::Uuid;

use super::sessions::{default_workers, page_size, parse_id, state_of};
use super::{Manager, WorkerView};
use crate::domain::names::{self, Ref, validate_display_name};
use crate::domain::state::{Event, State};
use crate::error::{Error, Result, not_in_state};
use crate::store::entities::worker;
use crate::store::{EventKind, EventPayload, NewEvent, SessionRow, WorkerWrites};
use crate::supervisor::{
    ExitInfo, Program, ReplayFrom, SignalTarget, SpawnSpec, Subscription, WindowSize, WorkerHandle,
};

/// Stored worker states (`Worker.State` names).
pub mod worker_state {
    pub const PENDING: &str = "PENDING";
    pub const RUNNING: &str = "RUNNING";
    pub const PAUSED: &str = "PAUSED";
    pub const EXITED: &str = "EXITED";
    pub const FAILED: &str = "FAILED";
    pub const STOPPED: &str = "STOPPED";
}

/// Stored worker kinds (`Worker.Kind` names).
pub mod worker_kind {
    pub const TERMINAL: &str = "TERMINAL";
    pub const AGENT: &str = "AGENT";
}

/// What a new worker runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerSpec {
    /// A command (argv) or, when empty, the user's shell.
    Terminal {
        command: Vec<String>,
        env: BTreeMap<String, String>,
    },
    /// An agent from a server-side profile.
    Agent {
        profile: String,
        model: String,
        extra_args: Vec<String>,
    },
}

/// A worker to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewWorker {
    /// Empty: a default (`shell`, `terminal-2`, …).
    pub display_name: String,
    pub spec: WorkerSpec,
}

/// An attached client's end of a worker: its output subscription and the handle
/// its input goes to.
#[derive(Debug)]
pub struct Attachment {
    pub subscription: Subscription,
    pub handle: WorkerHandle,
    pub worker: WorkerView,
    /// The replay covers `[replay_start, replay_end)`.
    pub replay_start: u64,
    pub replay_end: u64,
    /// Agent workers: their activity, for `WorkerUpdate` frames.
    pub activity: Option<tokio::sync::watch::Receiver<crate::agent::ActivityState>>,
}

/// A run whose process is started and whose row does not say so yet: the row as
/// read and as it is to be written (RUNNING, its pid), with its WORKER_STARTED
/// event. It holds the worker's exit slot (see `Manager::recorded_exits`), so the
/// run's exit, seen by the exit listener or a stopper, is recorded only after its
/// start: write it soon ([`Manager::write_starts`], or with the session's next
/// state), and before waiting for anything that records exits.
pub(super) struct Started {
    pub(super) handle: WorkerHandle,
    old: worker::Model,
    pub(super) row: worker::Model,
    event: NewEvent,
    /// When the process started (µs since the epoch).
    time: i64,
    exit_slot: tokio::sync::OwnedMutexGuard<u64>,
}

impl Started {
    /// The rows and events of `starts` as one write, and the exit slots to hold
    /// until it is done.
    pub(super) fn into_writes(
        starts: Vec<Started>,
    ) -> (WorkerWrites, Vec<tokio::sync::OwnedMutexGuard<u64>>) {
        let mut writes = WorkerWrites::default();
        let mut slots = Vec::with_capacity(starts.len());
        for started in starts {
            writes.time = writes.time.max(started.time);
            writes.rows.push((started.old, started.row));
            writes.events.push(started.event);
            slots.push(started.exit_slot);
        }
        (writes, slots)
    }
}

/// What [`Manager::spawn_all`] started.
pub(super) struct Launched {
    /// The terminals' runs, still to be recorded.
    pub(super) pending: Vec<Started>,
    /// Every worker's row as its start wrote (or will write) it; `None` when some
    /// row is known only by reading it (an agent's).
    pub(super) rows: Option<Vec<worker::Model>>,
}

/// Most arguments of a terminal command, and bytes per argument.
const MAX_ARGS: usize = 256;
const MAX_ARG_BYTES: usize = 4096;
/// Most extra environment variables of a terminal worker.
const MAX_ENV: usize = 128;

/// Variables of the server's environment a child inherits; nothing else is passed
/// on (no secrets, no tokens, no `CLAUDECODE`-style markers).
const INHERITED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
];

fn validate_terminal(command: &[String], env: &BTreeMap<String, String>) -> Result<()> {
    if command.len() > MAX_ARGS {
        return Err(Error::invalid(
            "worker.terminal.command",
            format!("has {} arguments; the limit is {MAX_ARGS}", command.len()),
        ));
    }
    for (i, arg) in command.iter().enumerate() {
        names::validate_text(&format!("worker.terminal.command[{i}]"), arg, MAX_ARG_BYTES)?;
    }
    if command.first().is_some_and(String::is_empty) {
        return Err(Error::invalid(
            "worker.terminal.command[0]",
            "the program must not be empty",
        ));
    }
    if env.len() > MAX_ENV {
        return Err(Error::invalid(
            "worker.terminal.env",
            format!("has {} variables; the limit is {MAX_ENV}", env.len()),
        ));
    }
    for (key, value) in env {
        let valid_key = !key.is_empty()
            && !key.as_bytes()[0].is_ascii_digit()
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid_key {
            return Err(Error::invalid(
                format!("worker.terminal.env.{key}"),
                "variable names are letters, digits and '_', not starting with a digit",
            ));
        }
        names::validate_text(&format!("worker.terminal.env.{key}"), value, MAX_ARG_BYTES)?;
    }
    Ok(())
}

/// The name a new agent worker gets when none is given: its profile's name
/// (`claude`), then `claude-2`, … (a profile name is a valid display name).
fn default_agent_name(profile: &str, taken: &[&str]) -> String {
    if !taken.contains(&profile) {
        return profile.to_owned();
    }
    (2..)
        .map(|n| format!("{profile}-{n}"))
        .find(|name| !taken.contains(&name.as_str()))
        .unwrap_or_else(|| format!("{profile}-{}", Uuid::new_v4().simple()))
}

/// The name a new terminal worker gets when none is given.
fn default_worker_name(taken: &[&str]) -> String {
    if !taken.contains(&"shell") {
        return "shell".into();
    }
    (2..)
        .map(|n| format!("terminal-{n}"))
        .find(|name| !taken.contains(&name.as_str()))
        .unwrap_or_else(|| format!("terminal-{}", Uuid::new_v4().simple()))
}

impl Manager {
    /// Validates `spec` and builds the row of a new worker of session `session_id`.
    pub(super) fn new_worker_model(
        &self,
        session_id: Uuid,
        position: i32,
        spec: &NewWorker,
        taken: &[&str],
        now: i64,
    ) -> Result<worker::Model> {
        let display_name = if spec.display_name.is_empty() {
            match &spec.spec {
                WorkerSpec::Agent { profile, .. } => default_agent_name(profile, taken),
                WorkerSpec::Terminal { .. } => default_worker_name(taken),
            }
        } else {
            validate_display_name("worker.display_name", &spec.display_name)?;
            if taken.contains(&spec.display_name.as_str()) {
                return Err(Error::AlreadyExists {
                    kind: "worker",
                    name: spec.display_name.clone(),
                    detail: "; worker names are unique within a session".into(),
                });
            }
            spec.display_name.clone()
        };
        let (kind, command, env) = match &spec.spec {
            WorkerSpec::Terminal { command, env } => {
                validate_terminal(command, env)?;
                self.settings.commands.check(command, env)?;
                (
                    worker_kind::TERMINAL,
                    serde_json::to_string(command).unwrap_or_else(|_| "[]".into()),
                    serde_json::to_string(env).unwrap_or_else(|_| "{}".into()),
                )
            }
            WorkerSpec::Agent {
                profile,
                model,
                extra_args,
            } => {
                self.check_agent_spec(profile, model, extra_args)?;
                (worker_kind::AGENT, "[]".into(), "{}".into())
            }
        };
        let (agent_profile, agent_model, extra_args) = match &spec.spec {
            WorkerSpec::Agent {
                profile,
                model,
                extra_args,
            } => (
                profile.clone(),
                model.clone(),
                serde_json::to_string(extra_args).unwrap_or_else(|_| "[]".into()),
            ),
            WorkerSpec::Terminal { .. } => (String::new(), String::new(), "[]".into()),
        };
        let default_size = WindowSize::default();
        Ok(worker::Model {
            id: Uuid::new_v4().to_string(),
            session_id: session_id.to_string(),
            display_name,
            position,
            kind: kind.into(),
            command,
            env,
            agent_profile,
            model: agent_model,
            extra_args,
            agent_session_id: String::new(),
            state: worker_state::PENDING.into(),
            last_error: String::new(),
            exit_code: None,
            exit_signal: None,
            pid: None,
            process_start_ticks: None,
            boot_id: None,
            rows: i32::from(default_size.rows),
            cols: i32::from(default_size.cols),
            create_time: now,
            start_time: None,
            exit_time: None,
            restart_count: 0,
            activity: if kind == worker_kind::AGENT {
                crate::agent::Activity::Unknown.as_str().into()
            } else {
                String::new()
            },
            activity_evidence: String::new(),
        })
    }

    pub(super) async fn load_worker(
        &self,
        session: &Ref,
        worker: &Ref,
    ) -> Result<(SessionRow, worker::Model)> {
        let row = self.load(session).await?;
        let model = self
            .store
            .find_worker(&row.model.id, worker)
            .await?
            .ok_or_else(|| {
                Error::worker_not_found(format!("sessions/{session}/workers/{worker}"))
            })?;
        Ok((row, model))
    }

    /// CreateWorker: adds a worker; in an ACTIVE session it starts at once.
    pub async fn create_worker(&self, session: &Ref, new: NewWorker) -> Result<WorkerView> {
        let row = self.load(session).await?;
        let state = state_of(&row)?;
        if !matches!(state, State::Created | State::Active | State::Stopped) {
            return Err(not_in_state(
                "SESSION_NOT_EDITABLE",
                &row.model.display_name,
                state,
                "workers can be added",
                "only while the session is CREATED, ACTIVE or STOPPED",
            ));
        }
        let existing = self.store.list_workers(&row.model.id).await?;
        if existing.len() >= self.settings.max_workers_per_session {
            return Err(Error::ResourceExhausted {
                limit: "max_workers_per_session",
                value: self.settings.max_workers_per_session as u64,
                message: format!(
                    "session {:?} has {} workers",
                    row.model.display_name,
                    existing.len()
                ),
            });
        }
        let taken: Vec<&str> = existing.iter().map(|w| w.display_name.as_str()).collect();
        let position = self.store.next_worker_position(&row.model.id).await?;
        let session_id = parse_id(&row.model.id)?;
        let model = self.new_worker_model(session_id, position, &new, &taken, self.now())?;
        let event = NewEvent::worker(
            EventKind::WorkerCreated,
            &model.session_id,
            &model.id,
            EventPayload::default(),
        );
        self.store.insert_worker(&model, vec![event]).await?;
        if state != State::Active {
            return Ok(self.worker_view(model));
        }
        let model = match self.spawn_worker(&row, &model, "").await {
            Ok(Some(written)) => written,
            Ok(None) => self.reload_worker(&model).await?,
            Err(reason) => {
                // The session keeps running its other workers; this one is FAILED.
                tracing::warn!(worker_id = %model.id, %reason, "worker could not start");
                self.reload_worker(&model).await?
            }
        };
        Ok(self.worker_view(model))
    }

    pub(super) async fn reload_worker(&self, model: &worker::Model) -> Result<worker::Model> {
        let id = parse_id(&model.id)?;
        self.store
            .find_worker(&model.session_id, &Ref::Id(id))
            .await?
            .ok_or_else(|| {
                Error::worker_not_found(format!(
                    "sessions/{}/workers/{}",
                    model.session_id, model.id
                ))
            })
    }

    /// GetWorker.
    pub async fn get_worker(&self, session: &Ref, worker: &Ref) -> Result<WorkerView> {
        let (_, model) = self.load_worker(session, worker).await?;
        Ok(self.worker_view(model))
    }

    /// ListWorkers: the session's workers in creation order, paginated.
    pub async fn list_workers(
        &self,
        session: &Ref,
        page: i32,
        token: &str,
    ) -> Result<(Vec<WorkerView>, String)> {
        let row = self.load(session).await?;
        let size = page_size(page, 100)? as usize;
        let scope = format!("ListWorkers\n{}", row.model.id);
        let skip: usize = if token.is_empty() {
            0
        } else {
            self.store.page_tokens().decode(&scope, token)?
        };
        let all = self.store.list_workers(&row.model.id).await?;
        let next = if all.len() > skip + size {
            self.store.page_tokens().encode(&scope, &(skip + size))
        } else {
            String::new()
        };
        let page = all
            .into_iter()
            .skip(skip)
            .take(size)
            .map(|m| self.worker_view(m))
            .collect();
        Ok((page, next))
    }

    /// DeleteWorker: ends its process (if any) and removes it.
    pub async fn delete_worker(&self, session: &Ref, worker: &Ref) -> Result<()> {
        let (row, model) = self.load_worker(session, worker).await?;
        let state = state_of(&row)?;
        if matches!(state, State::Starting | State::Archived | State::Deleted) {
            return Err(not_in_state(
                "SESSION_NOT_EDITABLE",
                &row.model.display_name,
                state,
                "workers can be removed",
                "only while the session is CREATED, ACTIVE, PAUSED, STOPPED or ERROR",
            ));
        }
        let id = parse_id(&model.id)?;
        if let Some(handle) = self.supervisor.handle(id)
            && let Some(exit) = handle.stop(self.settings.stop_grace).await
        {
            self.record_exit(&model, handle.run().generation, &exit, true)
                .await?;
        }
        self.persisters.cancel(id).await;
        let event = NewEvent::worker(
            EventKind::WorkerDeleted,
            &model.session_id,
            &model.id,
            EventPayload::default(),
        );
        self.store
            .delete_worker(&model.id, self.now(), vec![event])
            .await?;
        self.forget_worker(id);
        if model.kind == worker_kind::AGENT {
            self.forget_agent(&model).await?;
        }
        tracing::info!(worker_id = %model.id, "worker deleted");
        if state == State::Active {
            self.stop_if_all_exited(&model.session_id).await?;
        }
        Ok(())
    }

    /// Checks a PTY size against the limits.
    pub fn check_size(&self, field: &str, rows: u32, cols: u32) -> Result<WindowSize> {
        let (max_rows, max_cols) = (self.settings.max_pty_rows, self.settings.max_pty_cols);
        if rows == 0 || cols == 0 || rows > u32::from(max_rows) || cols > u32::from(max_cols) {
            return Err(Error::invalid(
                field,
                format!("{rows}×{cols} is outside 1×1 .. {max_rows}×{max_cols} (rows×cols)"),
            ));
        }
        Ok(WindowSize {
            rows: rows as u16,
            cols: cols as u16,
        })
    }

    /// ResizeWorker.
    pub async fn resize_worker(
        &self,
        session: &Ref,
        worker: &Ref,
        size: WindowSize,
    ) -> Result<WorkerView> {
        let (_, model) = self.load_worker(session, worker).await?;
        let handle = self.running_handle(&model)?;
        handle.resize(size).map_err(|e| {
            Error::Internal(format!("TIOCSWINSZ on worker {}: {e}", model.display_name))
        })?;
        let mut new = model.clone();
        new.rows = i32::from(size.rows);
        new.cols = i32::from(size.cols);
        self.store
            .update_worker(&model, &new, self.now(), Vec::new())
            .await?;
        Ok(self.worker_view(new))
    }

    /// SignalWorker.
    pub async fn signal_worker(
        &self,
        session: &Ref,
        worker: &Ref,
        signal: nix::sys::signal::Signal,
        target: SignalTarget,
    ) -> Result<WorkerView> {
        let (_, model) = self.load_worker(session, worker).await?;
        let handle = self.running_handle(&model)?;
        handle
            .signal(signal, target)
            .await
            .map_err(|_| self.not_running(&model))?;
        Ok(self.worker_view(model))
    }

    fn not_running(&self, model: &worker::Model) -> Error {
        Error::precondition(
            "WORKER_NOT_RUNNING",
            format!(
                "worker {:?} is not running (it is {}); start or resume its session first",
                model.display_name, model.state
            ),
        )
    }

    fn running_handle(&self, model: &worker::Model) -> Result<WorkerHandle> {
        let id = parse_id(&model.id)?;
        self.supervisor
            .handle(id)
            .filter(WorkerHandle::is_running)
            .ok_or_else(|| self.not_running(model))
    }

    /// Opens an Attach: resolves the worker (`worker = None`: the session's first
    /// worker), checks it runs and has room for another client, applies the
    /// client's size, and subscribes from the requested replay point.
    pub async fn attach(
        &self,
        session: &Ref,
        worker: Option<&Ref>,
        size: Option<WindowSize>,
        replay: ReplayFrom,
    ) -> Result<Attachment> {
        let (_, model) = match worker {
            Some(worker) => self.load_worker(session, worker).await?,
            None => {
                let row = self.load(session).await?;
                let first = self
                    .store
                    .list_workers(&row.model.id)
                    .await?
                    .into_iter()
                    .next()
                    .ok_or_else(|| {
                        Error::precondition(
                            "SESSION_HAS_NO_WORKERS",
                            format!(
                                "session {:?} has no worker to attach to; start it first",
                                row.model.display_name
                            ),
                        )
                    })?;
                (row, first)
            }
        };
        let handle = self.running_handle(&model)?;
        if handle.attached() >= self.settings.max_clients_per_worker {
            return Err(Error::ResourceExhausted {
                limit: "max_clients_per_worker",
                value: u64::from(self.settings.max_clients_per_worker),
                message: format!(
                    "worker {:?} already has {} clients attached",
                    model.display_name,
                    handle.attached()
                ),
            });
        }
        if let Some(size) = size {
            handle.resize(size).map_err(|e| {
                Error::Internal(format!("TIOCSWINSZ on worker {}: {e}", model.display_name))
            })?;
        }
        let (subscription, replay_start, replay_end) = handle
            .subscribe(replay)
            .map_err(|_| self.not_running(&model))?;
        let activity = (model.kind == worker_kind::AGENT)
            .then(|| parse_id(&model.id).ok())
            .flatten()
            .map(|id| self.agents.worker(id).activity.subscribe());
        let view = self.worker_view(model);
        Ok(Attachment {
            subscription,
            handle,
            worker: view,
            activity,
            replay_start,
            replay_end,
        })
    }

    /// Writes an attached client's input to the worker of `handle` (`worker`: its
    /// view, for the messages), unless the worker is paused.
    ///
    /// Errors: FAILED_PRECONDITION while paused or after the process ended.
    pub async fn attach_input(
        &self,
        handle: &WorkerHandle,
        worker: &WorkerView,
        data: Bytes,
    ) -> Result<()> {
        if handle.is_paused() {
            return Err(Error::precondition(
                "SESSION_PAUSED",
                format!(
                    "worker {:?} is paused: input is refused until the session is resumed",
                    worker.model.display_name
                ),
            ));
        }
        handle
            .write(data)
            .await
            .map_err(|_| self.not_running(&worker.model))
    }

    /// Spawns every worker of a STARTING session (a default `shell` when it has
    /// none), then moves it to ACTIVE — or to ERROR with the first failure.
    pub(super) async fn launch(&self, row: SessionRow) -> Result<super::SessionView> {
        self.launch_with(row, None, "every worker is running").await
    }

    /// [`launch`](Self::launch) with the line written into each worker's
    /// scrollback before the new run (`None`: a "started again" line when the
    /// session ran before) and the reason recorded for STARTING → ACTIVE.
    pub(super) async fn launch_with(
        &self,
        row: SessionRow,
        separator: Option<String>,
        ready_reason: &str,
    ) -> Result<super::SessionView> {
        let session_id = parse_id(&row.model.id)?;
        let mut workers = self.store.list_workers(&row.model.id).await?;
        if workers.is_empty() {
            for (position, spec) in default_workers().iter().enumerate() {
                let model =
                    self.new_worker_model(session_id, position as i32, spec, &[], self.now())?;
                let event = NewEvent::worker(
                    EventKind::WorkerCreated,
                    &model.session_id,
                    &model.id,
                    EventPayload::default(),
                );
                self.store.insert_worker(&model, vec![event]).await?;
                workers.push(model);
            }
        }
        // A worker that ran before continues its scrollback after a visible line
        // (the caller's, e.g. a server-restart marker, or "started again").
        let separator = separator.unwrap_or_else(|| {
            format!(
                "\r\n\x1b[2m--- corral: started again at {} ---\x1b[0m\r\n",
                crate::clock::to_datetime(self.now()).format("%Y-%m-%d %H:%M:%S UTC")
            )
        });
        // A worker that cannot start fails the session (spawn_all records why).
        let id = row.model.id.clone();
        if let Some(launched) = self.spawn_all(&row, &workers, &separator).await? {
            let started = launched.rows;
            match self
                .automatic_from(row, Event::Ready, ready_reason, launched.pending)
                .await?
            {
                None => {
                    // Another transition won (a concurrent stop): end what we started.
                    let current = self.store.get_session(&id).await?;
                    if current
                        .as_ref()
                        .and_then(|r| State::parse(&r.model.state))
                        .is_some_and(|s| !s.is_running())
                    {
                        self.stop_workers(&id, self.settings.stop_grace).await?;
                    }
                }
                // While a worker just started runs (checked without reading the
                // workers again), the session is as this call wrote it, and its
                // workers as their starts wrote them (when every row is known).
                Some(active) if self.any_running(&workers) => {
                    return match started {
                        Some(started) => Ok(self.view_with(active, started)),
                        None => self.view(active).await,
                    };
                }
                // Workers that ended before the session became ACTIVE were not
                // counted: it may stop now (shown by the read below).
                Some(_) => self.stop_if_all_exited(&id).await?,
            }
        }
        let row = self
            .store
            .get_session(&id)
            .await?
            .ok_or_else(|| Error::session_not_found(format!("sessions/{id}")))?;
        self.view(row).await
    }

    /// Spawns `workers` of `row` in order; a worker that ran before continues its
    /// scrollback after `separator`. On the first worker that cannot start, stops
    /// those already started, fails the session (ERROR, within the retry budget;
    /// see `fail`) with the reason, and returns `None`. Otherwise returns what
    /// started: the terminals' runs still to be recorded (the caller writes them,
    /// with the session's next state when it can) and every worker's row as it
    /// will be.
    pub(super) async fn spawn_all(
        &self,
        row: &SessionRow,
        workers: &[worker::Model],
        separator: &str,
    ) -> Result<Option<Launched>> {
        let mut pending = Vec::new();
        let mut rows = Some(Vec::with_capacity(workers.len()));
        for model in workers {
            let separator = if model.start_time.is_some() {
                separator
            } else {
                ""
            };
            let started = if model.kind == worker_kind::AGENT {
                // An agent's start writes its rows itself and can take seconds (a
                // resume is verified): the runs started so far are recorded first.
                self.write_starts(std::mem::take(&mut pending)).await?;
                self.spawn_agent(row, model, separator, super::agents::StartCause::Client)
                    .await
                    .map(|_| None)
            } else {
                self.spawn_terminal(row, model, separator)
                    .await
                    .map(|started| {
                        let written = started.row.clone();
                        pending.push(started);
                        Some(written)
                    })
            };
            match started {
                Ok(Some(written)) => {
                    if let Some(rows) = &mut rows {
                        rows.push(written);
                    }
                }
                // An agent's row is known only by reading it.
                Ok(None) => rows = None,
                Err(reason) => {
                    self.write_starts(pending).await?;
                    self.stop_workers(&row.model.id, self.settings.stop_grace)
                        .await?;
                    self.fail(&row.model.id, &reason).await?;
                    return Ok(None);
                }
            }
        }
        Ok(Some(Launched { pending, rows }))
    }

    /// Starts one worker's process and returns its row as written (`None` for an
    /// agent, whose start writes it more than once); on failure marks it FAILED
    /// and returns the reason in plain words (which worker, which command, what
    /// went wrong).
    pub(super) async fn spawn_worker(
        &self,
        row: &SessionRow,
        model: &worker::Model,
        separator: &str,
    ) -> std::result::Result<Option<worker::Model>, String> {
        if model.kind == worker_kind::AGENT {
            return self
                .spawn_agent(row, model, separator, super::agents::StartCause::Client)
                .await
                .map(|_| None);
        }
        let started = self.spawn_terminal(row, model, separator).await?;
        let (_, written) = self.record_start(started).await?;
        Ok(Some(written))
    }

    /// Starts a terminal worker's process; its row is left to the caller (see
    /// [`Started`]). On failure marks it FAILED and returns the reason.
    async fn spawn_terminal(
        &self,
        row: &SessionRow,
        model: &worker::Model,
        separator: &str,
    ) -> std::result::Result<Started, String> {
        let command: Vec<String> = serde_json::from_str(&model.command).unwrap_or_default();
        let extra_env: BTreeMap<String, String> =
            serde_json::from_str(&model.env).unwrap_or_default();
        let program = if command.is_empty() {
            Program::LoginShell(self.settings.shell.clone())
        } else {
            Program::Argv(command.clone())
        };
        // The command policy is checked again right before spawning: it may have
        // changed since the worker was created.
        if let Err(err) = self.settings.commands.check(&command, &extra_env) {
            let reason = format!(
                "worker {:?} ({}): {err}",
                model.display_name,
                program.describe()
            );
            self.mark_worker_failed(model, &reason).await;
            return Err(reason);
        }
        let env = child_env(
            &self.settings.worker_env,
            &row.model.display_name,
            &row.model.id,
            &model.display_name,
            &self.server_id,
            &extra_env,
        );
        self.spawn_process(row, model, program, env, separator, None, String::new())
            .await
    }

    /// Records one run started by [`spawn_process`](Self::spawn_process) at once;
    /// returns its handle and its row as written.
    pub(super) async fn record_start(
        &self,
        started: Started,
    ) -> std::result::Result<(WorkerHandle, worker::Model), String> {
        let handle = started.handle.clone();
        let written = started.row.clone();
        self.write_starts(vec![started])
            .await
            .map_err(|e| e.to_string())?;
        Ok((handle, written))
    }

    /// Records runs started by [`spawn_process`](Self::spawn_process), in one
    /// transaction, and lets their exits be recorded.
    pub(super) async fn write_starts(&self, starts: Vec<Started>) -> Result<()> {
        if starts.is_empty() {
            return Ok(());
        }
        let (writes, _exit_slots) = Started::into_writes(starts);
        self.store.update_workers(writes).await
    }

    /// Starts `program` as a run of worker `model`: the [`Started`] run, whose row
    /// (RUNNING, pid, WORKER_STARTED with `reason`, and `agent_session_id` when
    /// given) the caller writes. On failure marks the worker FAILED and returns
    /// the reason.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn spawn_process(
        &self,
        row: &SessionRow,
        model: &worker::Model,
        program: Program,
        env: Vec<(String, String)>,
        separator: &str,
        agent_session_id: Option<String>,
        reason: String,
    ) -> std::result::Result<Started, String> {
        let session_id = parse_id(&row.model.id).map_err(|e| e.to_string())?;
        let worker_id = parse_id(&model.id).map_err(|e| e.to_string())?;
        // After a server restart the worker continues its stored scrollback.
        let stored_end = self.restore_scrollback(model).await;
        let size = self
            .supervisor
            .handle(worker_id)
            .map(|h| h.size())
            .unwrap_or(WindowSize {
                rows: u16::try_from(model.rows).unwrap_or(24),
                cols: u16::try_from(model.cols).unwrap_or(80),
            });
        let spec = SpawnSpec {
            program: program.clone(),
            cwd: row.model.work_dir.clone().into(),
            env,
            size,
        };
        let now = self.now();
        // Confinement is checked again right before spawning (agents included): a
        // work dir may have been replaced by a symlink pointing elsewhere since the
        // session was created.
        let refusal = if row.model.kind == crate::domain::filter::SourceKind::Quick.as_str() {
            self.settings
                .allowed_roots
                .resolve_dir("work_dir", &row.model.work_dir)
                .await
                .err()
        } else {
            None
        };
        // Taken before the process exists: its exit cannot be recorded before the
        // start is (the row would say RUNNING after its exit).
        let exit_slot = self.exit_slot(worker_id).lock_owned().await;
        let started = match refusal {
            Some(err) => Err(err.to_string()),
            None => self
                .supervisor
                .start(session_id, worker_id, spec, separator)
                .await
                .map_err(|e| e.to_string()),
        };
        match started {
            Ok(handle) => {
                self.persist_scrollback(&handle, stored_end);
                let pid = handle.pid();
                let mut new = model.clone();
                new.state = worker_state::RUNNING.into();
                new.pid = pid;
                new.process_start_ticks = pid
                    .and_then(crate::supervisor::process::start_ticks)
                    .and_then(|t| i64::try_from(t).ok());
                new.boot_id = crate::supervisor::process::boot_id();
                new.start_time = Some(now);
                new.exit_code = None;
                new.exit_signal = None;
                new.exit_time = None;
                new.last_error.clear();
                if let Some(id) = agent_session_id {
                    new.agent_session_id = id;
                }
                if model.start_time.is_some() {
                    new.restart_count += 1;
                }
                let event = NewEvent::worker(
                    EventKind::WorkerStarted,
                    &model.session_id,
                    &model.id,
                    EventPayload {
                        reason,
                        ..Default::default()
                    },
                );
                Ok(Started {
                    handle,
                    old: model.clone(),
                    row: new,
                    event,
                    time: now,
                    exit_slot,
                })
            }
            Err(err) => {
                drop(exit_slot);
                let reason = format!(
                    "worker {:?} ({}): {err}",
                    model.display_name,
                    program.describe()
                );
                self.mark_worker_failed(model, &reason).await;
                Err(reason)
            }
        }
    }

    /// Worker `worker_id`'s exit slot (see `Manager::recorded_exits`), made if
    /// needed (before its first run is spawned).
    fn exit_slot(&self, worker_id: Uuid) -> std::sync::Arc<tokio::sync::Mutex<u64>> {
        self.recorded_exits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(worker_id)
            .or_default()
            .clone()
    }

    /// [`exit_slot`](Self::exit_slot) of a worker the supervisor knows; `None`
    /// once it was deleted ([`forget_worker`](Self::forget_worker) dropped both).
    fn known_exit_slot(&self, worker_id: Uuid) -> Option<std::sync::Arc<tokio::sync::Mutex<u64>>> {
        let mut slots = self
            .recorded_exits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Looked up under the slots' lock, as `forget_worker` drops both under it.
        self.supervisor.handle(worker_id)?;
        Some(slots.entry(worker_id).or_default().clone())
    }

    /// Forgets a deleted worker: its ring, and its exit slot (so the server's
    /// memory does not grow with every worker it ever ran). Its processes must be
    /// gone and their exits recorded.
    pub(super) fn forget_worker(&self, worker_id: Uuid) {
        let mut slots = self
            .recorded_exits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.supervisor.forget(worker_id);
        slots.remove(&worker_id);
    }

    /// Whether the scrollback of worker `worker_id` is being persisted (a run of
    /// it is live or writing its last batch); for tests and introspection.
    pub fn is_persisting(&self, worker_id: Uuid) -> bool {
        self.persisters.is_persisting(worker_id)
    }

    /// How many workers' exit slots this server holds: one per worker it started
    /// that is not deleted (for tests and introspection; see
    /// `Manager::recorded_exits`).
    pub fn exit_slots(&self) -> usize {
        self.recorded_exits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Marks a worker that could not start FAILED with `reason`.
    pub(super) async fn mark_worker_failed(&self, model: &worker::Model, reason: &str) {
        let mut new = model.clone();
        new.state = worker_state::FAILED.into();
        new.last_error = reason.to_owned();
        new.pid = None;
        if let Err(db) = self
            .store
            .update_worker(model, &new, self.now(), Vec::new())
            .await
        {
            tracing::error!(%db, "recording a worker failure");
        }
    }

    /// Stops every running worker of a session and records their exits. Returns
    /// every worker's row as this call left it, or `None` when some row is not
    /// known without reading it (its exit was recorded by the exit listener).
    pub(super) async fn stop_workers(
        &self,
        session_id: &str,
        grace: std::time::Duration,
    ) -> Result<Option<Vec<worker::Model>>> {
        let workers = self.store.list_workers(session_id).await?;
        let stops = workers.iter().filter_map(|model| {
            let handle = Uuid::try_parse(&model.id)
                .ok()
                .and_then(|id| self.supervisor.handle(id))?;
            Some(async move {
                let generation = handle.run().generation;
                let exit = handle.stop(grace).await;
                (model, generation, exit)
            })
        });
        let mut stopped: std::collections::HashMap<&str, Option<worker::Model>> =
            std::collections::HashMap::new();
        for (model, generation, exit) in futures::future::join_all(stops).await {
            let written = match exit {
                Some(exit) => self.record_exit(model, generation, &exit, true).await?,
                None => Some(self.mark_worker_stopped(model).await?),
            };
            stopped.insert(model.id.as_str(), written);
        }
        let rows = workers
            .iter()
            .map(|model| match stopped.remove(model.id.as_str()) {
                Some(written) => written,
                None => Some(model.clone()),
            })
            .collect();
        Ok(rows)
    }

    /// Marks a worker stopped (its process is known to be gone); returns its row
    /// as written (unchanged when it was not RUNNING or PAUSED).
    pub(super) async fn mark_worker_stopped(&self, model: &worker::Model) -> Result<worker::Model> {
        if !matches!(
            model.state.as_str(),
            worker_state::RUNNING | worker_state::PAUSED
        ) {
            return Ok(model.clone());
        }
        let mut new = model.clone();
        new.state = worker_state::STOPPED.into();
        new.pid = None;
        if model.kind == worker_kind::AGENT {
            // Its last activity is history: nothing runs any more.
            new.activity = crate::agent::Activity::Unknown.as_str().into();
            new.activity_evidence = serde_json::to_string(&crate::agent::Evidence {
                rule: "corral/not-running".into(),
                source: "corral".into(),
                matched_text: String::new(),
                time: self.now(),
            })
            .unwrap_or_default();
        }
        self.store
            .update_worker(model, &new, self.now(), Vec::new())
            .await?;
        Ok(new)
    }

    /// Records the end of run `generation` of a worker, once (whoever sees it
    /// first: the stopper or the exit listener). Returns the row as written, or
    /// `None` when the exit was recorded already or the worker's row is gone
    /// (nothing to record it in).
    pub(super) async fn record_exit(
        &self,
        model: &worker::Model,
        generation: u64,
        exit: &ExitInfo,
        stopped: bool,
    ) -> Result<Option<worker::Model>> {
        let worker_id = parse_id(&model.id)?;
        Ok(self
            .record_exit_of(&model.session_id, worker_id, generation, exit, stopped)
            .await?
            .map(|(_, written)| written))
    }

    /// [`record_exit`](Self::record_exit) by id: the row is read once, after the
    /// exit is known not to be recorded yet. Returns the row as it was before and
    /// as written (`None`: recorded already, or the worker is gone).
    async fn record_exit_of(
        &self,
        session_id: &str,
        worker_id: Uuid,
        generation: u64,
        exit: &ExitInfo,
        stopped: bool,
    ) -> Result<Option<(worker::Model, worker::Model)>> {
        // A deleted worker's exit (one the listener is told of after the delete)
        // has nothing left to record it in.
        let Some(slot) = self.known_exit_slot(worker_id) else {
            return Ok(None);
        };
        // Held until the row is written: whoever comes second waits, and then finds
        // the exit recorded in the store (a stopper reads the row right after).
        // A start holds it too, until the run's row is written.
        let mut last = slot.lock_owned().await;
        if *last >= generation {
            return Ok(None);
        }
        // Read the row now: a caller's copy may predate the start of this run.
        let Some(current) = self
            .store
            .find_worker(session_id, &Ref::Id(worker_id))
            .await?
        else {
            return Ok(None);
        };
        let mut new = current.clone();
        let failure = (!stopped)
            .then(|| {
                exit_failure(&current, exit, || {
                    self.supervisor
                        .handle(worker_id)
                        .map(|h| super::agents::last_words(&h))
                        .unwrap_or_default()
                })
            })
            .flatten();
        new.state = if failure.is_some() {
            worker_state::FAILED
        } else if stopped {
            worker_state::STOPPED
        } else {
            worker_state::EXITED
        }
        .into();
        new.exit_code = exit.code;
        new.exit_signal = exit.signal_name();
        new.exit_time = Some(self.now());
        new.pid = None;
        if let Some(failure) = &failure {
            new.last_error = failure.clone();
        }
        if let Some(handle) = self.supervisor.handle(worker_id) {
            let size = handle.size();
            new.rows = i32::from(size.rows);
            new.cols = i32::from(size.cols);
        }
        let event = NewEvent::worker(
            EventKind::WorkerExited,
            &current.session_id,
            &current.id,
            EventPayload {
                exit_code: exit.code,
                exit_signal: exit.signal_name().unwrap_or_default(),
                reason: exit.describe(),
                ..Default::default()
            },
        );
        self.store
            .update_worker(&current, &new, self.now(), vec![event])
            .await?;
        *last = generation;
        if current.kind == worker_kind::AGENT {
            self.agent_run_ended(&new, generation, exit, stopped).await;
        }
        Ok(Some((current, new)))
    }

    /// An exit reported by the supervisor: record it, then let the session react
    /// (an agent that crashed → restarted from its checkpoint, or ERROR; the last
    /// worker gone → STOPPED).
    pub(super) async fn on_worker_exit(
        &self,
        session_id: Uuid,
        worker_id: Uuid,
        generation: u64,
        exit: &ExitInfo,
        stopped: bool,
    ) -> Result<()> {
        let Some((model, _)) = self
            .record_exit_of(
                &session_id.to_string(),
                worker_id,
                generation,
                exit,
                stopped,
            )
            .await?
        else {
            return Ok(());
        };
        if stopped {
            return Ok(());
        }
        // An agent that crashed is restarted from its checkpoint first
        // (`on_agent_crash` fails the session once it crashed too often).
        if model.kind == worker_kind::AGENT {
            if self.agents.worker(worker_id).is_verifying(generation) {
                // A resume being verified: its launcher decides what happens next.
                return Ok(());
            }
            if !exit.success() {
                return self.on_agent_crash(&model, exit).await;
            }
        }
        self.stop_if_all_exited(&model.session_id).await
    }

    /// Whether the supervisor runs a process for any of `workers`.
    fn any_running(&self, workers: &[worker::Model]) -> bool {
        workers.iter().any(|w| {
            Uuid::try_parse(&w.id)
                .ok()
                .and_then(|id| self.supervisor.handle(id))
                .is_some_and(|h| h.is_running())
        })
    }

    /// An ACTIVE session none of whose workers runs any more (they exited on their
    /// own, or were removed) becomes STOPPED.
    pub(super) async fn stop_if_all_exited(&self, session_id: &str) -> Result<()> {
        let workers = self.store.list_workers(session_id).await?;
        if !self.any_running(&workers) {
            let reason = if workers.is_empty() {
                "the session has no worker left"
            } else {
                "every worker exited"
            };
            self.automatic(session_id, Event::AllWorkersExited, reason)
                .await?;
        }
        Ok(())
    }
}

/// Whether a worker's exit (not asked for by a stop) fails it, and why in plain
/// words: an agent worker ended abnormally (a non-zero code or a signal), with
/// what its screen showed last (`last_words`, asked only then), when there is
/// any. A terminal worker that ends, however it ends, is just EXITED. (A program
/// that cannot start at all fails at `posix_spawn`, before any exit.)
fn exit_failure(
    model: &worker::Model,
    exit: &ExitInfo,
    last_words: impl FnOnce() -> String,
) -> Option<String> {
    if model.kind != worker_kind::AGENT || exit.success() {
        return None;
    }
    let last_words = last_words();
    let mut reason = format!(
        "agent worker {:?} ended abnormally: {}",
        model.display_name,
        exit.describe()
    );
    if !last_words.is_empty() {
        reason.push_str(&format!("; its screen ended with: {last_words:?}"));
    }
    Some(reason)
}

/// The explicit environment of a worker's process: a few variables of the
/// server's own (see [`INHERITED_ENV`] and `LC_*`), the server's `--worker-env`,
/// the terminal's, Corral's, then the worker's own. `CORRAL_SESSION_ID` and
/// `CORRAL_SERVER_ID` also let a later server find the worker's processes after a
/// crash, even those that left its process tree.
pub(super) fn child_env(
    configured: &[(String, String)],
    session_name: &str,
    session_id: &str,
    worker_name: &str,
    server_id: &str,
    extra: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = std::env::vars()
        .filter(|(key, _)| INHERITED_ENV.contains(&key.as_str()) || key.starts_with("LC_"))
        .collect();
    env.entry("PATH".into())
        .or_insert_with(|| "/usr/local/bin:/usr/bin:/bin".into());
    for (key, value) in configured {
        env.insert(key.clone(), value.clone());
    }
    env.insert("TERM".into(), "xterm-256color".into());
    env.insert("COLORTERM".into(), "truecolor".into());
    env.insert("CORRAL_SESSION".into(), session_name.into());
    env.insert("CORRAL_SESSION_ID".into(), session_id.into());
    env.insert("CORRAL_WORKER".into(), worker_name.into());
    env.insert("CORRAL_SERVER_ID".into(), server_id.into());
    for (key, value) in extra {
        env.insert(key.clone(), value.clone());
    }
    env.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_skip_taken_ones() {
        assert_eq!(default_worker_name(&[]), "shell");
        assert_eq!(default_worker_name(&["shell"]), "terminal-2");
        assert_eq!(default_worker_name(&["shell", "terminal-2"]), "terminal-3");
    }

    #[test]
    fn terminal_specs_are_checked() {
        let ok = validate_terminal(
            &["tail".into(), "-f".into(), "/var/log/syslog".into()],
            &BTreeMap::new(),
        );
        assert!(ok.is_ok());
        assert!(validate_terminal(&["".into()], &BTreeMap::new()).is_err());
        assert!(validate_terminal(&["a\0b".into()], &BTreeMap::new()).is_err());
        let mut env = BTreeMap::new();
        env.insert("1BAD".to_string(), "x".to_string());
        assert!(validate_terminal(&[], &env).is_err());
    }

    #[test]
    fn which_exits_fail_the_session() {
        let mut model = worker::Model {
            id: String::new(),
            session_id: String::new(),
            display_name: "w".into(),
            position: 0,
            kind: worker_kind::TERMINAL.into(),
            command: "[]".into(),
            env: "{}".into(),
            agent_profile: String::new(),
            model: String::new(),
            extra_args: "[]".into(),
            agent_session_id: String::new(),
            state: worker_state::RUNNING.into(),
            last_error: String::new(),
            exit_code: None,
            exit_signal: None,
            pid: None,
            process_start_ticks: None,
            boot_id: None,
            rows: 24,
            cols: 80,
            create_time: 0,
            start_time: None,
            exit_time: None,
            restart_count: 0,
            activity: String::new(),
            activity_evidence: String::new(),
        };
        let code = |code| ExitInfo {
            code: Some(code),
            ..Default::default()
        };
        // Terminals: no exit fails them.
        assert_eq!(exit_failure(&model, &code(0), String::new), None);
        assert_eq!(exit_failure(&model, &code(1), || "oops".into()), None);
        // Agents: any abnormal end does, with what the screen showed last.
        model.kind = worker_kind::AGENT.into();
        assert_eq!(exit_failure(&model, &code(0), String::new), None);
        assert_eq!(
            exit_failure(&model, &code(2), String::new).as_deref(),
            Some("agent worker \"w\" ended abnormally: exited with code 2")
        );
        assert_eq!(
            exit_failure(&model, &code(1), || {
                "Unable to connect / Please check".into()
            })
            .as_deref(),
            Some(
                "agent worker \"w\" ended abnormally: exited with code 1; its screen ended with: \"Unable to connect / Please check\""
            )
        );
        let killed = ExitInfo {
            signal: Some(9),
            ..Default::default()
        };
        assert!(
            exit_failure(&model, &killed, String::new)
                .unwrap()
                .contains("SIGKILL")
        );
    }

    #[test]
    fn child_env_is_explicit() {
        let mut extra = BTreeMap::new();
        extra.insert("FOO".to_string(), "bar".to_string());
        let env: BTreeMap<String, String> = child_env(
            &[("LANG".into(), "C.UTF-8".into())],
            "demo",
            "id",
            "shell",
            "server",
            &extra,
        )
        .into_iter()
        .collect();
        assert_eq!(env["TERM"], "xterm-256color");
        assert_eq!(env["CORRAL_SESSION"], "demo");
        assert_eq!(env["FOO"], "bar");
        assert_eq!(env["LANG"], "C.UTF-8");
        assert!(env.contains_key("PATH"));
        assert!(env.keys().all(|k| INHERITED_ENV.contains(&k.as_str())
            || k.starts_with("LC_")
            || k.starts_with("CORRAL_")
            || matches!(k.as_str(), "TERM" | "COLORTERM" | "FOO")));
    }
}
