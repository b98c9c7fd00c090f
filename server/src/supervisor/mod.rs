//! The PTY supervisor: one actor per live worker, owning its PTY, its process and
//! the output ring that clients read.
//!
//! ```text
//!                  ┌───────────── WorkerHandle (cheap clone) ──────────────┐
//!  Attach input ──►│ commands (bounded mpsc) ──► actor task ──► PTY master │
//!  Attach output ◄─│ Subscription: own cursor ◄── Scrollback ◄── reads     │
//!                  └───────────────────────────────────────────────────────┘
//! ```
//!
//! - The actor (see `actor.rs`) is a tokio task that selects over the master's
//!   readiness (a non-blocking fd registered with tokio), the child's pidfd and its
//!   command channel. No thread per PTY: 1000 workers are 1000 tasks.
//! - Output goes into the worker's [`Scrollback`] (bounded; 1 MiB by default) and a
//!   `watch` channel announces the new end offset. Each attached client owns a
//!   [`Subscription`] with its own cursor and reads the ring at its own pace; a
//!   client that falls behind the ring is told what it skipped and continues from
//!   the oldest byte kept. The program and the other clients wait for it at most
//!   once (below).
//! - Flow control waits, briefly, for clients that fall behind: while an attached
//!   client is half a ring or more behind, the actor stops reading the PTY (so the
//!   kernel stops the program at its next write, as a terminal would). The wait
//!   is [`STRAGGLER_WAIT`] (5 ms) when another client keeps up, so a reader
//!   that was descheduled for a moment (ten viewers of one flood on two cores)
//!   catches up instead of skipping; it is [`CLIENT_WAIT`] (100 ms) while no
//!   client keeps up. Both count from the start of the hold, and the one that
//!   applies is decided again whenever a client moves: a hold that began while
//!   every client was behind ends 5 ms after its start once one catches up. A
//!   client still behind when the wait runs out is *left behind*: it skips, flow control no longer waits for it, and it is waited
//!   for again once it is less than half a ring behind. So one fast client reads
//!   everything, a slow one costs the program one such wait, and with no client
//!   attached nothing waits at all.
//! - Child exit and PTY EOF are separate events: the exit status is published only
//!   after the output is drained, so clients see every byte before the exit.
//! - The ring outlives a run of the process: a worker restarted (Resume, Restart)
//!   continues in the same ring after a visible separator. The manager persists
//!   rings in batches; after a server restart [`Supervisor::restore`] gives a
//!   worker its stored ring back, at the same absolute offsets.

mod actor;
pub mod exit;
pub mod process;
pub mod pty;
pub mod ring;
#[allow(unsafe_code)]
mod sys;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use nix::sys::signal::Signal;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_util::task::TaskTracker;
use uuid::Uuid;

pub use exit::ExitInfo;
pub use pty::{Program, SpawnError, SpawnSpec, WindowSize};
pub use ring::{Read, Scrollback};

/// How long the PTY may go unread while no attached client keeps up (all are
/// half a ring or more behind); after that the program runs on and those
/// clients skip.
pub const CLIENT_WAIT: Duration = Duration::from_millis(100);

/// How long the PTY may go unread for clients that fell half a ring behind
/// while another client keeps up; after that they are left behind and skip.
/// Long enough for a reader that was briefly descheduled, short enough that a
/// slow client costs the others little.
pub const STRAGGLER_WAIT: Duration = Duration::from_millis(5);

/// Settings of the supervisor.
#[derive(Clone, Debug)]
pub struct SupervisorConfig {
    /// Bytes of output kept per worker (the scrollback ring).
    pub scrollback_bytes: usize,
    /// After the process exits, how long to keep reading output that is still
    /// arriving before reporting the exit.
    pub drain_timeout: Duration,
    /// How long the PTY may go unread for clients that fell half a ring behind
    /// while another client keeps up ([`STRAGGLER_WAIT`] by default).
    pub straggler_wait: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            scrollback_bytes: 1 << 20,
            drain_timeout: Duration::from_millis(500),
            straggler_wait: STRAGGLER_WAIT,
        }
    }
}

/// Something the supervisor reports to the manager.
#[derive(Clone, Debug)]
pub enum SupervisorEvent {
    /// A worker's process ended (on its own, by a signal, or by `stop`) and its
    /// output was drained.
    Exited {
        session_id: Uuid,
        worker_id: Uuid,
        /// Which run of the worker ended (1 for the first start).
        generation: u64,
        exit: ExitInfo,
        /// True when the end was asked for with [`WorkerHandle::stop`].
        stopped: bool,
    },
}

/// The state of a worker's current (or last) run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// 0 before the first start, then 1, 2, … for each start.
    pub generation: u64,
    pub state: RunState,
    /// How the run before this one ended.
    pub previous_exit: Option<ExitInfo>,
}

/// Whether the run's process is alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Never started.
    NotStarted,
    /// The process runs (or is suspended).
    Running { pid: i32 },
    /// The process ended and its output is drained.
    Exited(ExitInfo),
}

/// A command for a worker's actor.
#[derive(Debug)]
enum Command {
    /// Bytes to write to the PTY.
    Input(Bytes),
    /// End the process tree: SIGHUP/SIGTERM now, SIGKILL after `grace`; answer
    /// once the exit is published.
    Stop {
        grace: Duration,
        done: oneshot::Sender<ExitInfo>,
    },
}

/// The part of a live run that handles need.
#[derive(Debug)]
struct Live {
    pid: i32,
    commands: mpsc::Sender<Command>,
    /// A duplicate of the PTY master for control ioctls (size, foreground group).
    control: Arc<OwnedFd>,
}

/// State shared by a worker's actor, its handles and its subscriptions.
///
/// The mutexes are `std::sync::Mutex`, not tokio's: they guard short, non-async
/// critical sections (a ring append or read, a field swap) and are never held
/// across an `.await`.
#[derive(Debug)]
struct Shared {
    session_id: Uuid,
    worker_id: Uuid,
    ring: Mutex<Scrollback>,
    /// The ring's end offset, announced after every append.
    output: watch::Sender<u64>,
    run: watch::Sender<Run>,
    live: Mutex<Option<Live>>,
    size: Mutex<WindowSize>,
    attached: AtomicU32,
    /// The read position of each attached client (for flow control).
    cursors: Mutex<Vec<Arc<ClientCursor>>>,
    /// Signalled when a client's read position moves or a client leaves.
    progress: Notify,
    /// Set while the worker's processes are suspended by [`WorkerHandle::pause`].
    paused: AtomicBool,
    /// The processes [`WorkerHandle::pause`] stopped, for `resume` to continue.
    stopped_by_pause: Mutex<Vec<process::Member>>,
}

impl Shared {
    /// The state of a worker that has not run yet in this server, with `ring`
    /// (empty, or restored from storage) and its PTY size.
    fn new(session_id: Uuid, worker_id: Uuid, ring: Scrollback, size: WindowSize) -> Self {
        let end = ring.end();
        Shared {
            session_id,
            worker_id,
            ring: Mutex::new(ring),
            output: watch::Sender::new(end),
            run: watch::Sender::new(Run {
                generation: 0,
                state: RunState::NotStarted,
                previous_exit: None,
            }),
            live: Mutex::new(None),
            size: Mutex::new(size),
            attached: AtomicU32::new(0),
            cursors: Mutex::new(Vec::new()),
            progress: Notify::new(),
            paused: AtomicBool::new(false),
            stopped_by_pause: Mutex::new(Vec::new()),
        }
    }

    /// Where the attached clients stand against `end`, the ring's end offset:
    /// clients that were left behind and are now less than `hold_lag` bytes
    /// behind are taken back into step first.
    fn client_lag(&self, end: u64, hold_lag: u64) -> ClientLag {
        let mut lag = ClientLag::default();
        for cursor in lock(&self.cursors).iter() {
            let left_behind = cursor.left_behind.load(Ordering::Relaxed);
            if !cursor.is_behind(end, hold_lag) {
                if left_behind {
                    cursor.left_behind.store(false, Ordering::Relaxed);
                }
                lag.keeping_up = true;
            } else if !left_behind {
                lag.straggling = true;
            }
        }
        lag
    }

    /// Leaves behind every client `hold_lag` bytes or more behind `end`: flow
    /// control stops waiting for them until they catch up.
    fn leave_behind(&self, end: u64, hold_lag: u64) {
        for cursor in lock(&self.cursors).iter() {
            if cursor.is_behind(end, hold_lag) {
                cursor.left_behind.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// An attached client's read position, as the actor's flow control sees it.
#[derive(Debug)]
struct ClientCursor {
    /// Absolute offset of the next byte the client gets.
    position: AtomicU64,
    /// Set when flow control gave up waiting for this client; cleared when it is
    /// less than half a ring behind again.
    left_behind: AtomicBool,
}

impl ClientCursor {
    /// Whether the client is `hold_lag` bytes or more behind `end`.
    fn is_behind(&self, end: u64, hold_lag: u64) -> bool {
        end.saturating_sub(self.position.load(Ordering::Relaxed)) >= hold_lag
    }
}

/// What flow control sees of the attached clients (see [`Shared::client_lag`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ClientLag {
    /// Some client is less than half a ring behind.
    keeping_up: bool,
    /// Some client that is still waited for is half a ring or more behind.
    straggling: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves consistent data (each
    // critical section is a single assignment or ring call), so poisoning is ignored.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why an operation on a worker could not be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotRunning {
    #[error("the worker's process is not running")]
    NotRunning,
}

/// Which history a new subscription replays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayFrom {
    /// Everything the ring holds.
    All,
    /// From this absolute offset (clamped to what the ring holds).
    Offset(u64),
    /// The last N bytes.
    LastBytes(u64),
    /// Nothing: live output only.
    None,
}

/// The supervisor: the registry of workers and their actors.
#[derive(Debug)]
pub struct Supervisor {
    config: SupervisorConfig,
    workers: Mutex<HashMap<Uuid, Arc<Shared>>>,
    events: mpsc::Sender<SupervisorEvent>,
    tasks: TaskTracker,
    /// Lets one actor at a time poll a flood (see the module doc of `actor`).
    flood_poller: actor::FloodPoller,
}

impl Supervisor {
    /// A supervisor that reports exits on `events`.
    pub fn new(config: SupervisorConfig, events: mpsc::Sender<SupervisorEvent>) -> Arc<Self> {
        Arc::new(Supervisor {
            config,
            workers: Mutex::new(HashMap::new()),
            events,
            tasks: TaskTracker::new(),
            flood_poller: actor::FloodPoller::default(),
        })
    }

    /// The supervisor's settings.
    pub fn config(&self) -> &SupervisorConfig {
        &self.config
    }

    fn shared(&self, session_id: Uuid, worker_id: Uuid) -> Arc<Shared> {
        let mut workers = lock(&self.workers);
        workers
            .entry(worker_id)
            .or_insert_with(|| {
                Arc::new(Shared::new(
                    session_id,
                    worker_id,
                    Scrollback::new(self.config.scrollback_bytes),
                    WindowSize::default(),
                ))
            })
            .clone()
    }

    /// Starts a run of worker `worker_id`: opens a PTY and spawns `spec` in it. The
    /// worker's ring is kept from earlier runs; `separator` (when non-empty) is
    /// written into it first so a reader sees where the new run begins.
    ///
    /// Errors: the process could not be started ([`SpawnError`], in plain words);
    /// also when the worker is already running.
    pub async fn start(
        &self,
        session_id: Uuid,
        worker_id: Uuid,
        spec: SpawnSpec,
        separator: &str,
    ) -> Result<WorkerHandle, SpawnError> {
        let shared = self.shared(session_id, worker_id);
        if let RunState::Running { pid } = shared.run.borrow().state {
            return Err(SpawnError::Program {
                program: spec.program.describe(),
                reason: format!("the worker is already running (pid {pid})"),
            });
        }
        let size = spec.size;
        let spawned = tokio::task::spawn_blocking(move || pty::spawn(&spec))
            .await
            .map_err(|e| SpawnError::Pty(format!("spawn task failed: {e}")))??;
        let control = spawned
            .io_fd
            .try_clone()
            .map_err(|e| SpawnError::Pty(format!("dup of the PTY master: {e}")))?;

        if !separator.is_empty() {
            let end = lock(&shared.ring).push(Bytes::copy_from_slice(separator.as_bytes()));
            shared.output.send_replace(end);
        }
        let (commands, receiver) = mpsc::channel(actor::COMMAND_QUEUE);
        let pid = spawned.pid;
        *lock(&shared.size) = size;
        shared.paused.store(false, Ordering::Relaxed);
        lock(&shared.stopped_by_pause).clear();
        *lock(&shared.live) = Some(Live {
            pid,
            commands,
            control: Arc::new(control),
        });
        let generation = {
            let mut generation = 0;
            shared.run.send_modify(|run| {
                run.generation += 1;
                generation = run.generation;
                if let RunState::Exited(exit) = &run.state {
                    run.previous_exit = Some(exit.clone());
                }
                run.state = RunState::Running { pid };
            });
            generation
        };
        let actor = actor::Actor::new(
            shared.clone(),
            spawned,
            receiver,
            self.events.clone(),
            generation,
            &self.config,
            self.flood_poller.clone(),
        )
        .map_err(|e| SpawnError::Pty(format!("registering the PTY with the runtime: {e}")))?;
        self.tasks.spawn(actor.run());
        tracing::info!(%session_id, %worker_id, pid, generation, "worker started");
        Ok(WorkerHandle { shared })
    }

    /// Restores the scrollback of a worker this supervisor does not know yet
    /// (after a server restart): `chunks` are contiguous output starting at the
    /// absolute offset `start`, oldest first; the ring keeps the newest
    /// `scrollback_bytes` of them and continues at their end, so offsets stay the
    /// ones clients saw before the restart. `size` is the PTY size the worker
    /// had (rows×cols). Call it before the worker starts.
    ///
    /// Returns false (changing nothing) when the worker is already known.
    pub fn restore(
        &self,
        session_id: Uuid,
        worker_id: Uuid,
        start: u64,
        chunks: Vec<Bytes>,
        size: WindowSize,
    ) -> bool {
        let mut workers = lock(&self.workers);
        if workers.contains_key(&worker_id) {
            return false;
        }
        let mut ring = Scrollback::starting_at(self.config.scrollback_bytes, start);
        for chunk in chunks {
            ring.push(chunk);
        }
        workers.insert(
            worker_id,
            Arc::new(Shared::new(session_id, worker_id, ring, size)),
        );
        true
    }

    /// The handle of a known worker (running or not).
    pub fn handle(&self, worker_id: Uuid) -> Option<WorkerHandle> {
        lock(&self.workers)
            .get(&worker_id)
            .map(|shared| WorkerHandle {
                shared: shared.clone(),
            })
    }

    /// Forgets a worker's ring (after its deletion). A running process is not
    /// affected; stop it first.
    pub fn forget(&self, worker_id: Uuid) {
        lock(&self.workers).remove(&worker_id);
    }

    /// Handles of every running worker.
    pub fn running(&self) -> Vec<WorkerHandle> {
        lock(&self.workers)
            .values()
            .filter(|shared| matches!(shared.run.borrow().state, RunState::Running { .. }))
            .map(|shared| WorkerHandle {
                shared: shared.clone(),
            })
            .collect()
    }

    /// Stops every running worker (SIGTERM, SIGKILL after `grace`) and waits for
    /// their actors to finish.
    pub async fn shutdown(&self, grace: Duration) {
        let stops = self.running().into_iter().map(|handle| async move {
            handle.stop(grace).await;
        });
        futures::future::join_all(stops).await;
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// A handle to one worker: cheap to clone.
#[derive(Clone, Debug)]
pub struct WorkerHandle {
    shared: Arc<Shared>,
}

impl WorkerHandle {
    /// The worker's id.
    pub fn worker_id(&self) -> Uuid {
        self.shared.worker_id
    }

    /// The worker's session.
    pub fn session_id(&self) -> Uuid {
        self.shared.session_id
    }

    /// The current run.
    pub fn run(&self) -> Run {
        self.shared.run.borrow().clone()
    }

    /// The pid of the running process.
    pub fn pid(&self) -> Option<i32> {
        lock(&self.shared.live).as_ref().map(|live| live.pid)
    }

    /// True while the worker's processes are suspended (input is refused).
    pub fn is_paused(&self) -> bool {
        self.shared.paused.load(Ordering::Relaxed)
    }

    /// True while the process runs.
    pub fn is_running(&self) -> bool {
        lock(&self.shared.live).is_some()
    }

    /// The PTY's size.
    pub fn size(&self) -> WindowSize {
        *lock(&self.shared.size)
    }

    /// One past the last byte of output ever produced.
    pub fn output_offset(&self) -> u64 {
        *self.shared.output.borrow()
    }

    /// Clients attached right now.
    pub fn attached(&self) -> u32 {
        self.shared.attached.load(Ordering::Relaxed)
    }

    /// A copy of the scrollback: the offset of its first byte and its chunks.
    pub fn scrollback(&self) -> (u64, Vec<Bytes>) {
        lock(&self.shared.ring).snapshot()
    }

    /// Queues `data` for the PTY. Waits while the worker's input queue is full (a
    /// program that does not read its input slows only the client typing into it).
    ///
    /// Errors: [`NotRunning`].
    pub async fn write(&self, data: Bytes) -> Result<(), NotRunning> {
        let commands = lock(&self.shared.live)
            .as_ref()
            .map(|live| live.commands.clone())
            .ok_or(NotRunning::NotRunning)?;
        commands
            .send(Command::Input(data))
            .await
            .map_err(|_| NotRunning::NotRunning)
    }

    fn control(&self) -> Result<(i32, Arc<OwnedFd>), NotRunning> {
        lock(&self.shared.live)
            .as_ref()
            .map(|live| (live.pid, live.control.clone()))
            .ok_or(NotRunning::NotRunning)
    }

    /// Sets the PTY size (TIOCSWINSZ; the kernel sends SIGWINCH to the foreground
    /// job). The size is remembered for the next run when the worker is not running.
    pub fn resize(&self, size: WindowSize) -> std::io::Result<()> {
        *lock(&self.shared.size) = size;
        let Ok((_, control)) = self.control() else {
            return Ok(());
        };
        rustix::termios::tcsetwinsize(
            &*control,
            rustix::termios::Winsize {
                ws_row: size.rows,
                ws_col: size.cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )
        .map_err(std::io::Error::from)
    }

    /// The PTY's foreground process group (`tcgetpgrp` on the master).
    pub fn foreground_pgrp(&self) -> Option<i32> {
        let (_, control) = self.control().ok()?;
        rustix::termios::tcgetpgrp(&*control)
            .ok()
            .map(|pid| pid.as_raw_nonzero().get())
    }

    /// Attaches a client at the position `replay` asks for. Counts in
    /// [`attached`](Self::attached) until the subscription is dropped.
    ///
    /// Returns the subscription and the replay range `[start, end)`.
    /// Errors: [`NotRunning`].
    pub fn subscribe(&self, replay: ReplayFrom) -> Result<(Subscription, u64, u64), NotRunning> {
        self.reader(replay, true)
    }

    /// A reader for the server's own use (activity detection, persistence): the
    /// same as [`subscribe`](Self::subscribe) but not counted as an attached
    /// client, and also allowed once the latest run has ended (it then reads what
    /// is left from `replay` and gets that run's exit), so a reader set up just
    /// after a start cannot miss a run that ended at once.
    ///
    /// Errors: [`NotRunning`] when the worker was never started.
    pub fn observe(&self, replay: ReplayFrom) -> Result<(Subscription, u64, u64), NotRunning> {
        self.reader(replay, false)
    }

    fn reader(
        &self,
        replay: ReplayFrom,
        client: bool,
    ) -> Result<(Subscription, u64, u64), NotRunning> {
        let run = self.shared.run.borrow().clone();
        let readable = match run.state {
            RunState::Running { .. } => true,
            RunState::Exited(_) => !client,
            RunState::NotStarted => false,
        };
        if !readable {
            return Err(NotRunning::NotRunning);
        }
        let (start, end) = {
            let ring = lock(&self.shared.ring);
            let (first, end) = (ring.start(), ring.end());
            let start = match replay {
                ReplayFrom::All => first,
                ReplayFrom::Offset(offset) => offset.clamp(first, end),
                ReplayFrom::LastBytes(n) => end.saturating_sub(n).max(first),
                ReplayFrom::None => end,
            };
            (start, end)
        };
        let position = client.then(|| {
            self.shared.attached.fetch_add(1, Ordering::Relaxed);
            let position = Arc::new(ClientCursor {
                position: AtomicU64::new(start),
                left_behind: AtomicBool::new(false),
            });
            lock(&self.shared.cursors).push(position.clone());
            position
        });
        let subscription = Subscription {
            shared: self.shared.clone(),
            cursor: start,
            output: self.shared.output.subscribe(),
            run: self.shared.run.subscribe(),
            generation: run.generation,
            position,
        };
        Ok((subscription, start, end))
    }

    /// Ends the process tree (SIGHUP and SIGTERM to every process group of the
    /// PTY's session, SIGKILL to what is left after `grace`) and waits until the
    /// exit is published. Returns `None` when the worker was not running.
    pub async fn stop(&self, grace: Duration) -> Option<ExitInfo> {
        let commands = lock(&self.shared.live)
            .as_ref()
            .map(|live| live.commands.clone())?;
        let (done, wait) = oneshot::channel();
        if commands.send(Command::Stop { grace, done }).await.is_err() {
            return self.exit_of_last_run();
        }
        wait.await.ok().or_else(|| self.exit_of_last_run())
    }

    fn exit_of_last_run(&self) -> Option<ExitInfo> {
        match &self.shared.run.borrow().state {
            RunState::Exited(exit) => Some(exit.clone()),
            _ => None,
        }
    }

    /// Suspends every process of the worker (see [`process::pause`]); input is
    /// refused from now on until [`resume`](Self::resume).
    pub async fn pause(&self) -> Result<(), NotRunning> {
        let (pid, _) = self.control()?;
        let foreground = self.foreground_pgrp();
        self.shared.paused.store(true, Ordering::Relaxed);
        let stopped = tokio::task::spawn_blocking(move || process::pause(pid, foreground))
            .await
            .unwrap_or_else(|err| {
                tracing::error!(%err, "pausing a worker panicked");
                Vec::new()
            });
        lock(&self.shared.stopped_by_pause).extend(stopped);
        Ok(())
    }

    /// Continues what [`pause`](Self::pause) stopped (see [`process::resume`]).
    pub async fn resume(&self) -> Result<(), NotRunning> {
        let (pid, _) = self.control()?;
        let foreground = self.foreground_pgrp();
        let stopped = std::mem::take(&mut *lock(&self.shared.stopped_by_pause));
        run_blocking(move || process::resume(pid, foreground, &stopped)).await;
        self.shared.paused.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Sends `signal` to the foreground job, the worker's own process group, or
    /// every process group of its PTY session.
    pub async fn signal(&self, signal: Signal, target: SignalTarget) -> Result<(), NotRunning> {
        let (pid, _) = self.control()?;
        let foreground = self.foreground_pgrp();
        run_blocking(move || match target {
            SignalTarget::Foreground => process::signal_group(foreground.unwrap_or(pid), signal),
            SignalTarget::ProcessGroup => process::signal_group(pid, signal),
            SignalTarget::Session => process::signal_session(pid, signal),
        })
        .await;
        Ok(())
    }
}

/// Who receives a signal from [`WorkerHandle::signal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalTarget {
    /// The PTY's foreground process group.
    Foreground,
    /// The worker's own process group.
    ProcessGroup,
    /// Every process group of the PTY's session.
    Session,
}

async fn run_blocking<F: FnOnce() + Send + 'static>(f: F) {
    if let Err(err) = tokio::task::spawn_blocking(f).await {
        tracing::error!(%err, "process operation panicked");
    }
}

/// What a [`Subscription`] yields next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Output starting at `offset`.
    Data { offset: u64, data: Bytes },
    /// The bytes `[from, to)` were dropped for this reader (it fell behind the ring).
    Skipped { from: u64, to: u64 },
    /// The run ended; every byte of it was delivered.
    Exited(ExitInfo),
}

/// One attached reader of a worker's output, with its own cursor. Dropping it
/// detaches (the worker's `attached` count goes down).
#[derive(Debug)]
pub struct Subscription {
    shared: Arc<Shared>,
    cursor: u64,
    output: watch::Receiver<u64>,
    run: watch::Receiver<Run>,
    generation: u64,
    /// For an attached client (counted in the worker's attached clients): its
    /// cursor as the actor's flow control sees it.
    position: Option<Arc<ClientCursor>>,
}

impl Subscription {
    /// The absolute offset of the next byte this reader will get.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The worker this reader is attached to.
    pub fn worker(&self) -> WorkerHandle {
        WorkerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Moves the cursor and tells the actor's flow control.
    fn advance(&mut self, cursor: u64) {
        self.cursor = cursor;
        if let Some(position) = &self.position {
            position.position.store(cursor, Ordering::Relaxed);
            self.shared.progress.notify_one();
        }
    }

    /// How the run this reader is attached to ended, if it did.
    fn exit(&mut self) -> Option<ExitInfo> {
        let run = self.run.borrow_and_update();
        if run.generation == self.generation {
            match &run.state {
                RunState::Exited(exit) => Some(exit.clone()),
                _ => None,
            }
        } else if run.generation == self.generation + 1 {
            Some(run.previous_exit.clone().unwrap_or_else(ExitInfo::unknown))
        } else {
            Some(ExitInfo::unknown())
        }
    }

    /// Waits for the next output (at most `max` bytes), a skip notice, or the end of
    /// the run once all its output was delivered.
    pub async fn next(&mut self, max: usize) -> Next {
        loop {
            if let Some(next) = self.try_next(max) {
                return next;
            }
            tokio::select! {
                changed = self.output.changed() => if changed.is_err() { return Next::Exited(ExitInfo::unknown()) },
                changed = self.run.changed() => if changed.is_err() { return Next::Exited(ExitInfo::unknown()) },
            }
        }
    }

    /// Waits until the run this reader follows may have ended (its run state
    /// changed), without waking for output: for a reader that looks at the ring
    /// on a schedule of its own with [`try_next`](Self::try_next), such as the
    /// scrollback persister, and must still learn of the end at once.
    pub async fn run_changed(&mut self) {
        if self.run.changed().await.is_err() {
            // The sender lives in `shared`, which this reader holds: unreachable,
            // but a closed channel must not make the caller spin.
            std::future::pending::<()>().await;
        }
    }

    /// What [`next`](Self::next) would return now, without waiting: `None` while
    /// nothing after the cursor is in the ring and the run has not ended.
    pub fn try_next(&mut self, max: usize) -> Option<Next> {
        // Order matters: look at the run first, then the ring. The actor publishes
        // the exit only after its last append, so "exited, then nothing to read"
        // means everything was delivered.
        let exited = self.exit();
        self.output.borrow_and_update();
        let read = lock(&self.shared.ring).read(self.cursor, max);
        match read {
            Read::Data { offset, data } => {
                self.advance(offset + data.len() as u64);
                Some(Next::Data { offset, data })
            }
            Read::Skipped { from, to } => {
                self.advance(to);
                Some(Next::Skipped { from, to })
            }
            Read::Empty => exited.map(Next::Exited),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(position) = &self.position {
            self.shared.attached.fetch_sub(1, Ordering::Relaxed);
            lock(&self.shared.cursors).retain(|p| !Arc::ptr_eq(p, position));
            self.shared.progress.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT_BYTES: u64 = 4 << 20;

    /// Ring of the tests: half of it plus one 64 KiB read of the PTY fits in it,
    /// so a client at the hold threshold is not overrun by the read after it.
    const RING_BYTES: usize = 256 << 10;

    /// A supervisor with `config`, and a worker running `/bin/sh -c script`.
    async fn start_script(
        config: SupervisorConfig,
        script: String,
    ) -> (Arc<Supervisor>, WorkerHandle) {
        let (events, _) = mpsc::channel(16);
        let supervisor = Supervisor::new(config, events);
        let worker = start_on(&supervisor, script).await;
        (supervisor, worker)
    }

    /// A worker of `supervisor` running `/bin/sh -c script`.
    async fn start_on(supervisor: &Supervisor, script: String) -> WorkerHandle {
        let spec = SpawnSpec {
            program: Program::Argv(vec!["/bin/sh".into(), "-c".into(), script]),
            cwd: std::env::temp_dir(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            size: WindowSize::default(),
        };
        supervisor
            .start(Uuid::new_v4(), Uuid::new_v4(), spec, "")
            .await
            .unwrap()
    }

    /// A script that writes [`OUTPUT_BYTES`] zero bytes once it reads a line.
    fn flood_script() -> String {
        format!("stty raw -echo; read _; head -c {OUTPUT_BYTES} /dev/zero")
    }

    /// A supervisor with a [`RING_BYTES`] ring, and a worker running
    /// [`flood_script`].
    async fn flood(straggler_wait: Duration) -> (Arc<Supervisor>, WorkerHandle) {
        let config = SupervisorConfig {
            scrollback_bytes: RING_BYTES,
            straggler_wait,
            ..SupervisorConfig::default()
        };
        start_script(config, flood_script()).await
    }

    /// What one client read: bytes of the flood, and bytes skipped.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Received {
        zeros: u64,
        skipped: u64,
    }

    /// Reads until the run ends, sleeping `pause` after each frame.
    async fn read_all(mut subscription: Subscription, pause: Duration) -> Received {
        let mut received = Received::default();
        loop {
            match subscription.next(16 << 10).await {
                Next::Data { data, .. } => {
                    received.zeros += data.iter().filter(|b| **b == 0).count() as u64;
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
                Next::Skipped { from, to } => received.skipped += to - from,
                Next::Exited(_) => return received,
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_is_read_whole_and_the_worker_answers_input_after_it() {
        // The actor polls the master while a program floods (see `actor.rs`):
        // the flood's last, partial chunk must reach the ring although the
        // program neither exits nor writes again, and the actor must go back to
        // waiting for readiness, so the echo of later input arrives.
        const FLOOD: u64 = OUTPUT_BYTES + 1000;
        let script = format!("stty raw -echo; head -c {FLOOD} /dev/zero; exec cat");
        let (_supervisor, worker) = start_script(SupervisorConfig::default(), script).await;
        let (mut client, _, _) = worker.subscribe(ReplayFrom::All).unwrap();
        let within = Duration::from_secs(60);
        let mut zeros = 0u64;
        let mut echoed = Vec::new();
        let mut asked = false;
        while !echoed.ends_with(b"ping") {
            let next = tokio::time::timeout(within, client.next(64 << 10)).await;
            match next.expect("output in time") {
                Next::Data { data, .. } => {
                    for byte in data.iter() {
                        if *byte == 0 {
                            zeros += 1;
                        } else {
                            echoed.push(*byte);
                        }
                    }
                }
                other => panic!("expected output, got {other:?}"),
            }
            if zeros == FLOOD && !asked {
                worker.write(Bytes::from_static(b"ping")).await.unwrap();
                asked = true;
            }
        }
        assert_eq!(zeros, FLOOD);
        assert_eq!(echoed, b"ping");
        worker.stop(Duration::from_secs(2)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn floods_at_once_are_read_whole_and_the_right_to_poll_is_given_back() {
        // One actor at a time polls a flood (`actor::FloodPoller`); the other
        // flood is read on readiness, and loses nothing either.
        let (supervisor, first) = flood(STRAGGLER_WAIT).await;
        let second = start_on(&supervisor, flood_script()).await;
        let mut readers = Vec::new();
        for worker in [&first, &second] {
            let (client, _, _) = worker.subscribe(ReplayFrom::All).unwrap();
            readers.push(tokio::spawn(read_all(client, Duration::ZERO)));
        }
        for worker in [&first, &second] {
            worker.write(Bytes::from_static(b"\n")).await.unwrap();
        }
        let mut polled = false;
        while readers.iter().any(|r| !r.is_finished()) {
            polled |= supervisor.flood_poller.is_held();
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        for reader in readers {
            let received = tokio::time::timeout(Duration::from_secs(60), reader)
                .await
                .expect("both floods end in time")
                .unwrap();
            assert_eq!(
                received,
                Received {
                    zeros: OUTPUT_BYTES,
                    skipped: 0
                }
            );
        }
        assert!(polled, "neither flood was polled");
        assert!(
            !supervisor.flood_poller.is_held(),
            "the right to poll was not given back when the floods ended"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_lags_for_moments_beside_a_fast_one_misses_nothing() {
        // A straggler wait far above the lagging client's pauses, so only a
        // broken flow control (one that follows the fastest client) makes it skip.
        let (_supervisor, worker) = flood(Duration::from_secs(10)).await;
        let (fast, _, _) = worker.subscribe(ReplayFrom::All).unwrap();
        let (lagging, _, _) = worker.subscribe(ReplayFrom::All).unwrap();
        let fast = tokio::spawn(read_all(fast, Duration::ZERO));
        let lagging = tokio::spawn(read_all(lagging, Duration::from_millis(2)));
        worker.write(Bytes::from_static(b"\n")).await.unwrap();
        let within = Duration::from_secs(60);
        let fast = tokio::time::timeout(within, fast).await.unwrap().unwrap();
        let lagging = tokio::time::timeout(within, lagging)
            .await
            .unwrap()
            .unwrap();
        let all = Received {
            zeros: OUTPUT_BYTES,
            skipped: 0,
        };
        assert_eq!(fast, all);
        assert_eq!(lagging, all);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_stops_reading_is_left_behind_and_the_program_runs_on() {
        let (_supervisor, worker) = flood(Duration::from_millis(50)).await;
        let (fast, _, _) = worker.subscribe(ReplayFrom::All).unwrap();
        let (mut stalled, _, _) = worker.subscribe(ReplayFrom::All).unwrap();
        let fast = tokio::spawn(read_all(fast, Duration::ZERO));
        worker.write(Bytes::from_static(b"\n")).await.unwrap();
        // The program ends although one client never reads: flow control gave up
        // on it, and the fast client got everything.
        let fast = tokio::time::timeout(Duration::from_secs(60), fast)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            fast,
            Received {
                zeros: OUTPUT_BYTES,
                skipped: 0
            }
        );
        // The stalled client is told what it missed, then gets the rest.
        match stalled.next(16 << 10).await {
            Next::Skipped { from, to } => assert!(from == 0 && to > 0, "{from}..{to}"),
            other => panic!("expected a skip, got {other:?}"),
        }
        let rest = read_all(stalled, Duration::ZERO).await;
        assert_eq!(rest.skipped, 0);
        assert!(rest.zeros <= RING_BYTES as u64, "{rest:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_changed_ignores_output_and_wakes_at_the_end_of_the_run() {
        let script = "stty raw -echo; exec cat".to_string();
        let (_supervisor, worker) = start_script(SupervisorConfig::default(), script).await;
        let (mut observer, _, _) = worker.observe(ReplayFrom::All).unwrap();
        let (mut client, _, _) = worker.subscribe(ReplayFrom::All).unwrap();
        worker.write(Bytes::from_static(b"ping")).await.unwrap();
        let within = Duration::from_secs(30);
        let mut echoed = Vec::new();
        while !echoed.ends_with(b"ping") {
            match tokio::time::timeout(within, client.next(1024)).await {
                Ok(Next::Data { data, .. }) => echoed.extend_from_slice(&data),
                other => panic!("expected the echo, got {other:?}"),
            }
        }
        // Output is in the ring, the run goes on: nothing for `run_changed`.
        let early = tokio::time::timeout(Duration::from_millis(200), observer.run_changed()).await;
        assert!(early.is_err(), "run_changed woke for output");
        let ended = tokio::spawn(async move {
            observer.run_changed().await;
            observer
        });
        worker.stop(Duration::from_secs(2)).await;
        let mut observer = tokio::time::timeout(within, ended)
            .await
            .expect("run_changed woke at the end of the run")
            .unwrap();
        // Then everything is there to read without waiting, and the exit after it.
        let mut read = Vec::new();
        loop {
            match observer.try_next(1024) {
                Some(Next::Data { data, .. }) => read.extend_from_slice(&data),
                Some(Next::Exited(_)) => break,
                other => panic!("expected output or the exit, got {other:?}"),
            }
        }
        assert!(read.ends_with(b"ping"), "{read:?}");
    }
}
