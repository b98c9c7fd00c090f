//! The actor of one live worker: reads the PTY, writes input, watches the child,
//! and ends the run.
//!
//! One tokio task selects over four sources: the master's read readiness (or,
//! while the program floods, its own turns; below), its write readiness (only
//! while input is queued), the child's pidfd, and the command channel. Reads
//! loop until the master would block (or 64 KiB were read),
//! so a busy program produces few, large ring chunks and one wake-up per batch.
//! While an attached client that is still waited for is half a ring or more
//! behind, the master is not read (flow control, see the module doc of
//! `supervisor`), for a bounded time.
//!
//! A flood is polled instead. The master's line discipline (Linux `n_tty`) holds
//! 4 KiB: each read of it queues the TTY's flip-buffer work to refill it, and a
//! read that finds it empty sleeps in the kernel until that work is done
//! (`tty_buffer_flush_work`; a non-blocking descriptor sleeps too). So a flood
//! moves in 4 KiB hand-offs between the actor and a kernel worker (on the other
//! CPU, or preempting the actor on its own); reading it in a loop keeps the
//! runtime's worker thread asleep in `read(2)` at each hand-off, and its CPU
//! idle. On a virtual machine an idle vCPU halts, and waking it goes through
//! the hypervisor: tens of µs, more than the hand-off's own work. So once a batch filled a whole chunk (the program is
//! flooding), the actor stops waiting for readiness and polls: on each turn it
//! reads what the line discipline holds (`FIONREAD` never waits, and neither
//! does a read that finds bytes), polling briefly while it is empty, then
//! yields to the runtime, whose other tasks (the attached clients' streams, say)
//! run while the kernel refills the buffer. A chunk goes to the ring when it is
//! full; the flood ends when nothing came for [`FLOOD_SPIN`], or when flow
//! control holds, and what was read goes to the ring then. Network stacks poll a
//! busy socket the same way (Linux `SO_BUSY_POLL`); an idle or interactive
//! worker never polls. The cost: while a program floods, a runtime worker
//! thread stays busy through the time it would have slept, and after the last
//! byte it polls [`FLOOD_SPIN`] more. On a machine whose CPUs are all busy the
//! kernel's refills come late, the polling runs out, and the actor waits for
//! readiness until its next full chunk: it cannot keep polling where the CPU is
//! wanted. And only one actor of the server polls at a time ([`FloodPoller`]):
//! the polling uses a CPU that would otherwise idle through the hand-offs, and
//! with several floods at once no CPU idles (eight floods at once read about
//! 5 % more in all when none polled than when each did; BENCHMARKS.md). The
//! other floods are read on readiness, as an idle or interactive worker is.
//!
//! Ending a run: the pidfd says the child exited → the status is collected →
//! output is drained until the PTY reports EOF/EIO or the
//! drain timeout passes → leftover processes of the PTY session are killed → the
//! exit is published on the worker's `run` channel and reported to the manager →
//! the PTY is closed.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};

use super::pty::Spawned;
use super::{
    CLIENT_WAIT, ClientLag, Command, ExitInfo, RunState, Shared, SupervisorConfig, SupervisorEvent,
    lock, process, sys,
};

/// Commands queued per worker before senders wait.
pub(super) const COMMAND_QUEUE: usize = 32;
/// Most bytes read from the PTY into one ring chunk.
const READ_CHUNK: usize = 64 * 1024;
/// How long a flooding worker's actor polls with nothing arriving before it
/// waits for readiness again (see the module doc). Above the usual wait for the
/// TTY's work queue between two 4 KiB reads on a 2-vCPU VM (20–60 µs,
/// BENCHMARKS.md); the last bytes of a flood reach the ring this much later.
const FLOOD_SPIN: Duration = Duration::from_micros(100);
/// How long one turn of a flood polls an empty line discipline before it yields
/// to the runtime: long enough to catch a quick refill without a trip through
/// the scheduler, short enough not to keep the other tasks waiting.
const TURN_SPIN: Duration = Duration::from_micros(10);
/// `spin_loop` hints between two `FIONREAD`s (a few µs in all), so the polling
/// takes the line discipline's lock seldom next to the kernel worker filling it.
const SPIN_PAUSES: u32 = 64;
/// Input bytes queued in the actor before it stops taking input commands.
const MAX_PENDING_INPUT: usize = 1 << 20;

/// The right to poll a flood, held by one actor of the server at a time (see
/// the module doc). Cheap to clone: clones share the one right.
#[derive(Clone, Debug, Default)]
pub(super) struct FloodPoller(Arc<AtomicBool>);

impl FloodPoller {
    /// The right, when no other actor holds it; it is given back when the
    /// returned permit is dropped.
    fn try_acquire(&self) -> Option<FloodPermit> {
        self.0
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| FloodPermit(self.0.clone()))
    }

    /// Whether some actor holds the right now.
    #[cfg(test)]
    pub(super) fn is_held(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// An actor's right to poll its flood ([`FloodPoller::try_acquire`]); dropping
/// it gives the right back.
#[derive(Debug)]
struct FloodPermit(Arc<AtomicBool>);

impl Drop for FloodPermit {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

pub(super) struct Actor {
    io: AsyncFd<OwnedFd>,
    exit_fd: AsyncFd<OwnedFd>,
    commands: mpsc::Receiver<Command>,
    state: ActorState,
}

/// The actor's mutable state, apart from the descriptors it waits on (so a
/// readiness guard borrowed from them and `&mut` state can coexist).
struct ActorState {
    shared: Arc<Shared>,
    spawned: Option<Spawned>,
    events: mpsc::Sender<SupervisorEvent>,
    generation: u64,
    drain_timeout: Duration,
    /// [`SupervisorConfig::straggler_wait`].
    straggler_wait: Duration,
    pending_input: VecDeque<Bytes>,
    pending_bytes: usize,
    buffer: Vec<u8>,
    eof: bool,
    exit: Option<ExitInfo>,
    drain_deadline: Option<Instant>,
    kill_deadline: Option<Instant>,
    stop_waiters: Vec<oneshot::Sender<ExitInfo>>,
    flow: Flow,
    /// Lets one actor of the server at a time poll a flood.
    flood_poller: FloodPoller,
    /// Held while the program floods and this actor polls the master (see the
    /// module doc).
    flood: Option<FloodPermit>,
    /// Bytes at the start of `buffer` read while flooding, not yet in the ring.
    filled: usize,
    /// While flooding: since when the line discipline has been empty.
    empty_since: Option<std::time::Instant>,
    /// Clients further behind than this (all of them) hold the reads.
    hold_lag: u64,
}

/// Flow control of the PTY reads by the attached clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    /// Every client still waited for keeps up (or none is attached): read.
    Free,
    /// Some client still waited for has been far behind since this instant: wait
    /// for progress until the wait that applies (see [`flow_step`]) runs out.
    Holding(Instant),
}

/// What flow control does next (see [`flow_step`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FlowStep {
    /// Read the PTY.
    Read,
    /// Leave the PTY unread until this instant (or until a client moves).
    Hold(Instant),
    /// The wait ran out: leave the clients still behind behind, and read.
    GiveUp,
}

/// Flow control's decision at `now`, in state `flow`, for clients standing as
/// `lag`; returns the next state and the step. A hold lasts from its start for
/// the wait that applies *now*: `straggler_wait` while another client keeps up,
/// [`CLIENT_WAIT`] while none does. So a hold that began while every client was
/// behind shrinks to the straggler wait as soon as one of them catches up, and a
/// reader that stopped for good costs the others at most the straggler wait
/// after that.
fn flow_step(
    flow: Flow,
    lag: ClientLag,
    now: Instant,
    straggler_wait: Duration,
) -> (Flow, FlowStep) {
    if !lag.straggling {
        return (Flow::Free, FlowStep::Read);
    }
    let since = match flow {
        Flow::Free => now,
        Flow::Holding(since) => since,
    };
    let wait = if lag.keeping_up {
        straggler_wait
    } else {
        CLIENT_WAIT
    };
    let until = since + wait;
    if now < until {
        (Flow::Holding(since), FlowStep::Hold(until))
    } else {
        (Flow::Free, FlowStep::GiveUp)
    }
}

impl Actor {
    pub(super) fn new(
        shared: Arc<Shared>,
        spawned: Spawned,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<SupervisorEvent>,
        generation: u64,
        config: &SupervisorConfig,
        flood_poller: FloodPoller,
    ) -> io::Result<Actor> {
        let io_fd = spawned.io_fd.try_clone()?;
        let exit_fd = spawned.exit_fd.try_clone()?;
        // The Spawned keeps its own copies alive until the run ends (closed last).
        let io = sys::register(io_fd, Interest::READABLE | Interest::WRITABLE)?;
        let exit_fd = sys::register(exit_fd, Interest::READABLE)?;
        let hold_lag = lock(&shared.ring).capacity() as u64 / 2;
        Ok(Actor {
            io,
            exit_fd,
            commands,
            state: ActorState {
                shared,
                spawned: Some(spawned),
                events,
                generation,
                drain_timeout: config.drain_timeout,
                straggler_wait: config.straggler_wait,
                pending_input: VecDeque::new(),
                pending_bytes: 0,
                buffer: vec![0u8; READ_CHUNK],
                eof: false,
                exit: None,
                drain_deadline: None,
                kill_deadline: None,
                stop_waiters: Vec::new(),
                flow: Flow::Free,
                flood_poller,
                flood: None,
                filled: 0,
                empty_since: None,
                hold_lag,
            },
        })
    }

    pub(super) async fn run(self) {
        let Actor {
            io,
            exit_fd,
            mut commands,
            mut state,
        } = self;
        state.run(&io, &exit_fd, &mut commands).await;
        state.finish(io, exit_fd).await;
    }
}

impl ActorState {
    fn pid(&self) -> i32 {
        self.spawned.as_ref().map_or(0, |s| s.pid)
    }

    async fn run(
        &mut self,
        io: &AsyncFd<OwnedFd>,
        exit_fd: &AsyncFd<OwnedFd>,
        commands: &mut mpsc::Receiver<Command>,
    ) {
        let shared = self.shared.clone();
        loop {
            if self.exit.is_some()
                && (self.eof || self.drain_deadline.is_some_and(|d| Instant::now() >= d))
            {
                self.end_flood();
                break;
            }
            let want_write = !self.pending_input.is_empty() && !self.eof;
            let take_commands = self.pending_bytes < MAX_PENDING_INPUT;
            let far = Instant::now() + Duration::from_secs(3600);
            let drain_at = self.drain_deadline.unwrap_or(far);
            let kill_at = self.kill_deadline.unwrap_or(far);
            // Once the child exited, drain freely: what is left is bounded.
            let hold = if self.exit.is_none() {
                self.hold()
            } else {
                None
            };
            if self.flood.is_some() && hold.is_some() {
                self.end_flood();
            }
            let flooding = self.flood.is_some();
            tokio::select! {
                ready = io.readable(), if !self.eof && hold.is_none() && !flooding => match ready {
                    Ok(mut guard) => {
                        if self.read_available(&mut guard) {
                            guard.clear_ready();
                        }
                    }
                    Err(err) => {
                        tracing::warn!(worker_id = %self.shared.worker_id, %err, "PTY readiness failed");
                        self.eof = true;
                    }
                },
                ready = io.writable(), if want_write => match ready {
                    Ok(mut guard) => {
                        if self.write_pending(&mut guard) {
                            guard.clear_ready();
                        }
                    }
                    Err(_) => self.drop_input(),
                },
                // Flooding: poll the master once the runtime's other tasks had a turn.
                () = tokio::task::yield_now(), if flooding => self.poll_flood(io.get_ref().as_fd()),
                ready = exit_fd.readable(), if self.exit.is_none() => {
                    if let Ok(mut guard) = ready {
                        guard.clear_ready();
                    }
                    self.collect_exit();
                },
                command = commands.recv(), if take_commands => match command {
                    Some(command) => self.handle(command),
                    // Every handle is gone: nobody can stop us, so end the run.
                    None => self.begin_stop(Duration::ZERO),
                },
                () = sleep_until(kill_at), if self.kill_deadline.is_some() => {
                    self.kill_deadline = None;
                    let pid = self.pid();
                    let killed = run_blocking(move || process::kill_all(pid)).await.unwrap_or(0);
                    tracing::info!(worker_id = %self.shared.worker_id, pid, killed, "grace period over: SIGKILL");
                },
                () = sleep_until(drain_at), if self.drain_deadline.is_some() => {},
                () = shared.progress.notified(), if hold.is_some() => {},
                () = sleep_until(hold.unwrap_or(far)), if hold.is_some() => {},
            }
        }
    }

    /// Whether to leave the master unread for now: `Some(deadline)` while an
    /// attached client that is still waited for is `hold_lag` bytes or more
    /// behind and the wait for it has not run out. The wait is [`CLIENT_WAIT`]
    /// while no client keeps up, the straggler wait ([`super::STRAGGLER_WAIT`] by
    /// default) while another one does (see [`flow_step`]); when it runs out, the
    /// clients still behind are left behind.
    fn hold(&mut self) -> Option<Instant> {
        let end = *self.shared.output.borrow();
        let lag = self.shared.client_lag(end, self.hold_lag);
        let (flow, step) = flow_step(self.flow, lag, Instant::now(), self.straggler_wait);
        if self.flow == Flow::Free && flow != Flow::Free {
            tracing::trace!(worker_id = %self.shared.worker_id, keeping_up = lag.keeping_up, "an attached client fell behind: holding the PTY");
        }
        self.flow = flow;
        match step {
            FlowStep::Read => None,
            FlowStep::Hold(until) => Some(until),
            FlowStep::GiveUp => {
                tracing::debug!(worker_id = %self.shared.worker_id, "attached clients fell behind: reading on");
                self.shared.leave_behind(end, self.hold_lag);
                None
            }
        }
    }

    /// Reads until the master would block, the chunk is full, or EOF. Returns true
    /// when the readiness was consumed (the next read would block).
    fn read_available(
        &mut self,
        guard: &mut tokio::io::unix::AsyncFdReadyGuard<'_, OwnedFd>,
    ) -> bool {
        let mut filled = 0;
        let mut would_block = false;
        while filled < READ_CHUNK {
            match read_master(guard.get_inner().as_fd(), &mut self.buffer[filled..]) {
                MasterRead::Data(n) => filled += n,
                MasterRead::WouldBlock => {
                    would_block = true;
                    break;
                }
                MasterRead::Eof => {
                    self.eof = true;
                    break;
                }
            }
        }
        // A full chunk: the program floods (an EOF ends the loop short of one),
        // and it is polled unless another actor polls its own flood.
        self.flood = if filled == READ_CHUNK {
            self.flood_poller.try_acquire()
        } else {
            None
        };
        self.publish(filled);
        would_block
    }

    /// One turn of a flood (see the module doc): reads what the line discipline
    /// holds, polling it for up to [`TURN_SPIN`] while it is empty, puts a full
    /// chunk in the ring, and ends the flood after [`FLOOD_SPIN`] without output.
    fn poll_flood(&mut self, fd: BorrowedFd<'_>) {
        let turn = std::time::Instant::now();
        while self.filled < READ_CHUNK {
            // A failing ioctl counts as output waiting: the read decides.
            if rustix::io::ioctl_fionread(fd).is_ok_and(|waiting| waiting == 0) {
                if turn.elapsed() < TURN_SPIN {
                    for _ in 0..SPIN_PAUSES {
                        std::hint::spin_loop();
                    }
                    continue;
                }
                break;
            }
            match read_master(fd, &mut self.buffer[self.filled..]) {
                MasterRead::Data(n) => {
                    self.filled += n;
                    self.empty_since = None;
                    continue;
                }
                // Drained after all: wait for readiness again.
                MasterRead::WouldBlock => {}
                MasterRead::Eof => self.eof = true,
            }
            self.end_flood();
            return;
        }
        if self.filled == READ_CHUNK {
            let filled = std::mem::take(&mut self.filled);
            self.publish(filled);
        } else {
            let since = *self.empty_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() >= FLOOD_SPIN {
                self.end_flood();
            }
        }
    }

    /// Ends a flood: what it read goes to the ring, and the actor waits for
    /// readiness again.
    fn end_flood(&mut self) {
        self.flood = None;
        self.empty_since = None;
        let filled = std::mem::take(&mut self.filled);
        self.publish(filled);
    }

    /// Puts the first `filled` bytes of `buffer` in the ring as one chunk and
    /// announces the new end.
    fn publish(&mut self, filled: usize) {
        if filled > 0 {
            let chunk = Bytes::copy_from_slice(&self.buffer[..filled]);
            let end = lock(&self.shared.ring).push(chunk);
            self.shared.output.send_replace(end);
        }
    }

    /// Writes queued input until the master would block. Returns true when the
    /// readiness was consumed.
    fn write_pending(
        &mut self,
        guard: &mut tokio::io::unix::AsyncFdReadyGuard<'_, OwnedFd>,
    ) -> bool {
        while let Some(front) = self.pending_input.front_mut() {
            match rustix::io::write(guard.get_inner(), front) {
                Ok(n) => {
                    self.pending_bytes -= n;
                    if n == front.len() {
                        self.pending_input.pop_front();
                    } else {
                        let rest = front.slice(n..);
                        *front = rest;
                    }
                }
                Err(rustix::io::Errno::AGAIN) => return true,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => {
                    self.drop_input();
                    return false;
                }
            }
        }
        false
    }

    fn drop_input(&mut self) {
        self.pending_input.clear();
        self.pending_bytes = 0;
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Input(data) => {
                if self.exit.is_none() && !data.is_empty() {
                    self.pending_bytes += data.len();
                    self.pending_input.push_back(data);
                }
            }
            Command::Stop { grace, done } => {
                self.stop_waiters.push(done);
                self.begin_stop(grace);
            }
        }
    }

    fn begin_stop(&mut self, grace: Duration) {
        if self.exit.is_some() || self.kill_deadline.is_some() {
            return;
        }
        let pid = self.pid();
        let foreground = self.spawned.as_ref().and_then(|s| s.foreground_group());
        tokio::task::spawn_blocking(move || process::terminate(pid, foreground));
        self.kill_deadline = Some(Instant::now() + grace);
        tracing::info!(worker_id = %self.shared.worker_id, pid, grace_ms = grace.as_millis() as u64, "stopping worker");
    }

    /// The pidfd is readable: reap the child and start draining.
    fn collect_exit(&mut self) {
        let Some(spawned) = self.spawned.as_ref() else {
            return;
        };
        let exit = match spawned.try_reap() {
            Ok(Some(exit)) => exit,
            // Spurious readiness: the child is still alive.
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(pid = spawned.pid, %err, "waitpid failed");
                ExitInfo::unknown()
            }
        };
        tracing::debug!(worker_id = %self.shared.worker_id, exit = %exit.describe(), "child exited; draining output");
        self.exit = Some(exit);
        self.kill_deadline = None;
        self.drain_deadline = Some(Instant::now() + self.drain_timeout);
    }

    async fn finish(mut self, io: AsyncFd<OwnedFd>, exit_fd: AsyncFd<OwnedFd>) {
        let exit = self.exit.clone().unwrap_or_else(ExitInfo::unknown);
        let pid = self.pid();
        // The leader is gone; nothing of its PTY session may outlive the run.
        if pid > 0 {
            run_blocking(move || process::kill_all(pid)).await;
        }
        let stopped = !self.stop_waiters.is_empty();
        *lock(&self.shared.live) = None;
        self.shared.run.send_modify(|run| {
            if run.generation == self.generation {
                run.state = RunState::Exited(exit.clone());
            }
        });
        // Close the PTY: our descriptors first, the master last.
        drop(io);
        drop(exit_fd);
        drop(self.spawned.take());
        tracing::info!(worker_id = %self.shared.worker_id, pid, exit = %exit.describe(), "worker exited");
        let _ = self
            .events
            .send(SupervisorEvent::Exited {
                session_id: self.shared.session_id,
                worker_id: self.shared.worker_id,
                generation: self.generation,
                exit: exit.clone(),
                stopped,
            })
            .await;
        for waiter in self.stop_waiters {
            let _ = waiter.send(exit.clone());
        }
    }
}

/// What one read of the master gave.
enum MasterRead {
    /// This many bytes (at least one).
    Data(usize),
    /// Nothing now (`EAGAIN`).
    WouldBlock,
    /// EOF, or `EIO` once every slave descriptor is closed (the Linux PTY's EOF).
    Eof,
}

/// Reads the master once into `buf`, retrying `EINTR`.
fn read_master(fd: BorrowedFd<'_>, buf: &mut [u8]) -> MasterRead {
    loop {
        return match rustix::io::read(fd, &mut *buf) {
            Ok(0) => MasterRead::Eof,
            Ok(n) => MasterRead::Data(n),
            Err(rustix::io::Errno::AGAIN) => MasterRead::WouldBlock,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => MasterRead::Eof,
        };
    }
}

async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRAGGLER: Duration = Duration::from_millis(5);

    #[test]
    fn one_actor_at_a_time_holds_the_right_to_poll_a_flood() {
        let poller = FloodPoller::default();
        let clone = poller.clone();
        let first = poller.try_acquire().expect("the right is free at first");
        assert!(poller.is_held());
        assert!(
            clone.try_acquire().is_none(),
            "a clone shares the one right"
        );
        drop(first);
        assert!(!poller.is_held());
        assert!(
            clone.try_acquire().is_some(),
            "a dropped permit gives it back"
        );
    }

    fn lag(keeping_up: bool, straggling: bool) -> ClientLag {
        ClientLag {
            keeping_up,
            straggling,
        }
    }

    #[test]
    fn reads_while_nobody_waited_for_is_behind() {
        let now = Instant::now();
        for flow in [Flow::Free, Flow::Holding(now)] {
            for keeping_up in [false, true] {
                assert_eq!(
                    flow_step(flow, lag(keeping_up, false), now, STRAGGLER),
                    (Flow::Free, FlowStep::Read)
                );
            }
        }
    }

    #[test]
    fn a_hold_waits_for_a_straggler_briefly_and_for_everyone_longer() {
        let now = Instant::now();
        assert_eq!(
            flow_step(Flow::Free, lag(true, true), now, STRAGGLER),
            (Flow::Holding(now), FlowStep::Hold(now + STRAGGLER))
        );
        assert_eq!(
            flow_step(Flow::Free, lag(false, true), now, STRAGGLER),
            (Flow::Holding(now), FlowStep::Hold(now + CLIENT_WAIT))
        );
        let later = now + Duration::from_millis(3);
        assert_eq!(
            flow_step(Flow::Holding(now), lag(true, true), later, STRAGGLER),
            (Flow::Holding(now), FlowStep::Hold(now + STRAGGLER)),
            "the deadline counts from the hold's start"
        );
    }

    #[test]
    fn a_hold_gives_up_when_its_wait_runs_out() {
        let now = Instant::now();
        assert_eq!(
            flow_step(
                Flow::Holding(now),
                lag(true, true),
                now + STRAGGLER,
                STRAGGLER
            ),
            (Flow::Free, FlowStep::GiveUp)
        );
        assert_eq!(
            flow_step(
                Flow::Holding(now),
                lag(false, true),
                now + CLIENT_WAIT,
                STRAGGLER
            ),
            (Flow::Free, FlowStep::GiveUp)
        );
    }

    #[test]
    fn a_long_hold_shrinks_to_the_straggler_wait_once_a_client_catches_up() {
        // Every client was behind when the hold began (a long wait), then one
        // caught up: the one still behind is a straggler now, and the program
        // must not wait the long wait for it.
        let now = Instant::now();
        let (flow, _) = flow_step(Flow::Free, lag(false, true), now, STRAGGLER);
        let caught_up = now + Duration::from_millis(2);
        assert_eq!(
            flow_step(flow, lag(true, true), caught_up, STRAGGLER),
            (Flow::Holding(now), FlowStep::Hold(now + STRAGGLER))
        );
        let after = now + Duration::from_millis(10);
        assert_eq!(
            flow_step(flow, lag(true, true), after, STRAGGLER),
            (Flow::Free, FlowStep::GiveUp)
        );
    }
}
