//! The manager: what each RPC does, in two hops — ask the domain what is allowed,
//! then make it happen in the store and the supervisor.
//!
//! Transitions are optimistic: read the session, ask the state machine, write the
//! new row only if its version did not change (see `Store::write_session`). A
//! conflicting writer re-reads and asks again, so concurrent calls on one session
//! serialize without holding any lock across an `.await`: exactly one wins; the
//! others see the new state and are refused (FAILED_PRECONDITION) or, when they
//! passed an etag, told it is stale (ABORTED).
//!
//! Processes follow the stored state: a start is recorded (STARTING) before
//! anything is spawned, and whoever loses a race against a concurrent stop cleans
//! up what it spawned.

mod agents;
mod checkpoints;
mod conversation;
mod events;
pub mod lifecycle;
mod reconcile;
mod retention;
pub mod scrollback;
mod sessions;
mod transitions;
mod workers;
mod worktrees;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::agent::{AgentRuntime, AgentSettings, Profiles};
use crate::clock::{Clock, micros_of};
use crate::config::{Config, RestartPolicy};
use crate::confinement::{AllowedRoots, CommandPolicy};
use crate::domain::names::Ref;
use crate::domain::state::State;
use crate::error::{Error, Result};
use crate::store::entities::worker;
use crate::store::{SessionRow, Store};
use crate::supervisor::{Supervisor, SupervisorConfig, SupervisorEvent, WindowSize};
pub use agents::checkpoint_name;
pub use conversation::{Export, SearchResult, message_name};
pub use lifecycle::{Cause, Retention};
pub use sessions::{ListSessions, NewSession, SessionPatch, SourceSpec, etag};
pub use workers::{Attachment, NewWorker, WorkerSpec};

/// How many times a transition re-reads after losing a race before giving up with
/// ABORTED.
const MAX_CONFLICT_RETRIES: usize = 8;

/// A session with its workers and live counters, ready to be shown.
#[derive(Clone, Debug)]
pub struct SessionView {
    pub row: SessionRow,
    pub workers: Vec<WorkerView>,
    /// Clients attached to any worker right now.
    pub attached: u32,
    /// Until when a STOPPED session can be resumed (µs).
    pub resume_deadline: Option<i64>,
}

impl SessionView {
    /// The session's state.
    pub fn state(&self) -> State {
        State::parse(&self.row.model.state).unwrap_or(State::Error)
    }
}

/// A worker with its live counters.
#[derive(Clone, Debug)]
pub struct WorkerView {
    pub model: worker::Model,
    pub attached: u32,
    pub output_offset: u64,
    pub pid: Option<i32>,
    pub size: WindowSize,
}

/// Settings the manager uses, derived from [`Config`].
#[derive(Clone, Debug)]
pub struct Settings {
    pub stop_grace: Duration,
    pub resume_window: Duration,
    pub retention: Retention,
    pub max_retries: u32,
    pub max_workers_per_session: usize,
    pub max_clients_per_worker: u32,
    pub max_pty_rows: u16,
    pub max_pty_cols: u16,
    pub shell: PathBuf,
    pub data_dir: PathBuf,
    /// Set for every worker, over what it inherits.
    pub worker_env: Vec<(String, String)>,
    /// Where sessions may work (`--allowed-root`).
    pub allowed_roots: AllowedRoots,
    /// What terminal workers may run (`--terminal-commands`).
    pub commands: CommandPolicy,
    /// Most live sessions on the server (`--max-sessions`).
    pub max_sessions: u64,
    /// Most live sessions of one principal (`--max-sessions-per-principal`).
    pub max_sessions_per_principal: u64,
    /// What start-up does with sessions a previous run left running.
    pub restart_policy: RestartPolicy,
    /// How long events are kept.
    pub event_retention: Duration,
}

impl Settings {
    /// From the server's configuration.
    pub fn from_config(config: &Config) -> Self {
        Settings {
            stop_grace: config.stop_grace,
            resume_window: config.resume_window,
            retention: Retention {
                tombstone_micros: micros_of(config.tombstone_retention),
            },
            max_retries: config.max_retries,
            max_workers_per_session: config.max_workers_per_session,
            max_clients_per_worker: config.max_clients_per_worker,
            max_pty_rows: config.max_pty_rows,
            max_pty_cols: config.max_pty_cols,
            shell: config.shell(),
            data_dir: config.data_dir(),
            worker_env: config.worker_env.clone(),
            // Resolving the roots touches the file system once, at start-up; the
            // configuration check already proved they resolve.
            allowed_roots: AllowedRoots::new(&config.allowed_roots)
                .unwrap_or_else(|_| AllowedRoots::unresolved(&config.allowed_roots)),
            commands: CommandPolicy::new(
                config.terminal_commands,
                &config.allowed_commands,
                config.shell(),
            ),
            max_sessions: config.max_sessions,
            max_sessions_per_principal: config.max_sessions_per_principal,
            restart_policy: config.restart_policy,
            event_retention: config.event_retention,
        }
    }
}

/// The manager. Shared by every gRPC handler behind an `Arc`.
#[derive(Debug)]
pub struct Manager {
    settings: Settings,
    store: Store,
    supervisor: Arc<Supervisor>,
    clock: Arc<dyn Clock>,
    /// Per worker: the last run whose exit was recorded, so an exit seen both by a
    /// stopper and by the exit listener is recorded once. The map is behind a std
    /// mutex (only looked up, never held across an `.await`); each worker's slot is
    /// a tokio mutex held while its exit is written, so the second to come waits
    /// for the first's write, and by a start from before its spawn until its row
    /// is written. A deleted worker's slot is dropped (`forget_worker`).
    recorded_exits: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<u64>>>>,
    shutdown: CancellationToken,
    /// Agent profiles and the live state of agent workers.
    agents: Arc<AgentRuntime>,
    /// The manager itself, for tasks it spawns (crash restarts, agent monitors).
    me: Weak<Manager>,
    /// This server process's id in `servers` (new at every start).
    server_id: String,
    /// The tasks that persist the scrollback of running workers.
    persisters: Arc<scrollback::Persisters>,
}

impl Manager {
    /// A manager over `store`, with a supervisor built from `config`. Registers
    /// this server process in `servers`, starts the event feed and the task that
    /// records worker exits, and reconciles the store with the machine (see
    /// `reconcile.rs`): leftover processes of a previous run are reaped and the
    /// sessions it left running are resumed or stopped per `--restart-policy`.
    pub async fn start(
        config: &Config,
        store: Store,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Manager>> {
        let (events_tx, events_rx) = mpsc::channel(1024);
        let supervisor = Supervisor::new(
            SupervisorConfig {
                scrollback_bytes: config.scrollback_bytes,
                ..SupervisorConfig::default()
            },
            events_tx,
        );
        let path = config.profiles.clone();
        let profiles = tokio::task::spawn_blocking(move || Profiles::load(path.as_deref()))
            .await
            .map_err(|e| Error::Internal(format!("loading agent profiles: {e}")))?
            .map_err(|e| Error::Internal(format!("agent profiles: {e}")))?;
        let agents = Arc::new(AgentRuntime::new(profiles, agent_settings(config)));
        let server_id = Uuid::new_v4().to_string();
        store
            .register_server(&reconcile::identity(&server_id, clock.now()))
            .await?;
        let persisters = Arc::new(scrollback::Persisters::new(scrollback::FlushPolicy {
            bytes: config.scrollback_flush_bytes,
            interval: config.scrollback_flush_interval,
            capacity: config.scrollback_bytes,
        }));
        let manager = Arc::new_cyclic(|me| Manager {
            settings: Settings::from_config(config),
            store,
            supervisor,
            clock,
            recorded_exits: Mutex::new(HashMap::new()),
            shutdown,
            agents,
            me: me.clone(),
            server_id,
            persisters,
        });
        tokio::spawn(exit_listener(Arc::downgrade(&manager), events_rx));
        manager.reconcile().await?;
        crate::events::spawn_feed(
            manager.store.clone(),
            config.event_poll_interval,
            manager.shutdown.clone(),
        );
        Ok(manager)
    }

    /// This server process's id (`servers.id`; sessions it runs name it in
    /// `server_id`).
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The supervisor.
    pub fn supervisor(&self) -> &Arc<Supervisor> {
        &self.supervisor
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Agent profiles and the live state of agent workers.
    pub fn agents(&self) -> &Arc<AgentRuntime> {
        &self.agents
    }

    /// The clock (for time-based limits of streams).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Cancelled when the server shuts down; long-lived streams select on it.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Now, on the manager's clock (µs since the epoch).
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Loads a session or answers NOT_FOUND — also when the caller may not see it
    /// (another principal's session: see [`crate::auth`]), with the same message.
    async fn load(&self, session: &Ref) -> Result<SessionRow> {
        self.store
            .find_session(session)
            .await?
            .filter(|row| crate::auth::may_see(&row.model.creator))
            .ok_or_else(|| Error::session_not_found(format!("sessions/{session}")))
    }

    /// A session with its workers and live counters.
    async fn view(&self, row: SessionRow) -> Result<SessionView> {
        let workers = self.store.list_workers(&row.model.id).await?;
        Ok(self.view_with(row, workers))
    }

    fn view_with(&self, row: SessionRow, workers: Vec<worker::Model>) -> SessionView {
        let workers: Vec<WorkerView> = workers.into_iter().map(|w| self.worker_view(w)).collect();
        let attached = workers.iter().map(|w| w.attached).sum();
        let resume_deadline = match State::parse(&row.model.state) {
            Some(State::Stopped) => row
                .model
                .stop_time
                .map(|stop| stop.saturating_add(micros_of(self.settings.resume_window))),
            _ => None,
        };
        SessionView {
            row,
            workers,
            attached,
            resume_deadline,
        }
    }

    fn worker_view(&self, model: worker::Model) -> WorkerView {
        let handle = Uuid::try_parse(&model.id)
            .ok()
            .and_then(|id| self.supervisor.handle(id));
        match handle {
            Some(handle) => WorkerView {
                attached: handle.attached(),
                output_offset: handle.output_offset(),
                pid: handle.pid(),
                size: handle.size(),
                model,
            },
            None => WorkerView {
                attached: 0,
                output_offset: 0,
                pid: None,
                size: WindowSize {
                    rows: u16::try_from(model.rows).unwrap_or(24),
                    cols: u16::try_from(model.cols).unwrap_or(80),
                },
                model,
            },
        }
    }

    /// Graceful shutdown: stops every worker (SIGTERM, SIGKILL after the grace)
    /// and records their exits, lets the scrollback persisters write their last
    /// batches, and records that this server stopped cleanly. Sessions keep their
    /// state (ACTIVE, PAUSED): the next start handles them by its restart policy,
    /// as after a crash, but with nothing lost and the reason "the server shut
    /// down at …".
    pub async fn shutdown(&self) {
        let runs: Vec<_> = self
            .supervisor
            .running()
            .into_iter()
            .map(|handle| {
                let generation = handle.run().generation;
                (handle, generation)
            })
            .collect();
        self.supervisor.shutdown(self.settings.stop_grace).await;
        for (handle, generation) in runs {
            let crate::supervisor::RunState::Exited(exit) = handle.run().state else {
                continue;
            };
            let worker_id = handle.worker_id().to_string();
            let model = match self
                .store
                .find_worker(
                    &handle.session_id().to_string(),
                    &Ref::Id(handle.worker_id()),
                )
                .await
            {
                Ok(Some(model)) => model,
                Ok(None) => continue,
                Err(err) => {
                    tracing::error!(%worker_id, %err, "reading a worker at shutdown");
                    continue;
                }
            };
            if let Err(err) = self.record_exit(&model, generation, &exit, true).await {
                tracing::error!(%worker_id, %err, "recording a worker exit at shutdown");
            }
        }
        self.persisters
            .drain(self.settings.stop_grace + Duration::from_secs(5))
            .await;
        if let Err(err) = self
            .store
            .mark_server_stopped(&self.server_id, self.now())
            .await
        {
            tracing::error!(%err, "recording the clean shutdown");
        }
    }

    async fn store_running_sessions(&self) -> Result<Vec<SessionRow>> {
        use crate::domain::filter::{Expr, Op};
        let mut rows = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_sessions(&crate::store::SessionQuery {
                    filter: Some(Expr::Or(vec![
                        Expr::State(Op::Eq, State::Starting),
                        Expr::State(Op::Eq, State::Active),
                        Expr::State(Op::Eq, State::Paused),
                    ])),
                    page_size: 500,
                    after,
                    ..Default::default()
                })
                .await?;
            rows.extend(page.sessions);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(rows),
            }
        }
    }

    /// Lists labels of a session for display (sorted).
    pub fn labels(row: &SessionRow) -> &BTreeMap<String, String> {
        &row.labels
    }
}

/// The agent settings of `config`.
fn agent_settings(config: &Config) -> AgentSettings {
    AgentSettings {
        checkpoint_ttl: config.checkpoint_ttl,
        max_crashes: config.agent_max_crashes,
        restart_backoff: config.agent_restart_backoff,
        resume_verify: config.resume_verify_timeout,
        transcript_poll: config.transcript_poll,
        activity_settle: config.activity_settle,
        max_prompt_bytes: config.max_prompt_bytes,
        max_message_bytes: config.max_message_bytes,
        ..AgentSettings::default()
    }
}

/// Records worker exits reported by the supervisor until the manager is dropped.
async fn exit_listener(
    manager: std::sync::Weak<Manager>,
    mut events: mpsc::Receiver<SupervisorEvent>,
) {
    while let Some(event) = events.recv().await {
        let Some(manager) = manager.upgrade() else {
            return;
        };
        match event {
            SupervisorEvent::Exited {
                session_id,
                worker_id,
                generation,
                exit,
                stopped,
            } => {
                if let Err(err) = manager
                    .on_worker_exit(session_id, worker_id, generation, &exit, stopped)
                    .await
                {
                    tracing::error!(%session_id, %worker_id, %err, "recording a worker exit");
                }
            }
        }
    }
}
