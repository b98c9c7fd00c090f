//! The live state of agent workers that the manager and the gRPC streams share:
//! each agent's activity (a `watch` channel, so an Attach stream always sees the
//! latest value and a slow one never queues old ones), the monitor of its current
//! run, what the monitor learned (transcript, turns, conversation id), and how
//! many times in a row it crashed.
//!
//! The maps are `std::sync::Mutex`es: every critical section is a lookup or a
//! field swap, never held across an `.await`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::activity::ActivityState;
use super::profile::Profiles;

/// Settings of agent workers, from the server's configuration.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    /// How long a checkpoint is kept.
    pub checkpoint_ttl: Duration,
    /// Crashes in a row after which the session goes to ERROR (the agent is
    /// restarted automatically after each earlier one).
    pub max_crashes: u32,
    /// Wait before the first automatic restart; doubled for each further one.
    pub restart_backoff: Duration,
    /// How long a resumed agent has to show that it loaded its conversation.
    pub resume_verify: Duration,
    /// How often transcripts are polled.
    pub transcript_poll: Duration,
    /// How long a screen verdict must hold before it is published.
    pub activity_settle: Duration,
    /// Largest SendMessage prompt, in bytes.
    pub max_prompt_bytes: usize,
    /// Largest transcript delta kept in one checkpoint, in bytes.
    pub max_checkpoint_delta_bytes: usize,
    /// Largest gRPC message, in bytes (bounds GetCheckpoint's FULL view).
    pub max_message_bytes: usize,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            checkpoint_ttl: Duration::from_secs(7 * 24 * 3600),
            max_crashes: 3,
            restart_backoff: Duration::from_secs(1),
            resume_verify: Duration::from_secs(5),
            transcript_poll: Duration::from_millis(250),
            activity_settle: Duration::from_millis(300),
            max_prompt_bytes: 64 * 1024,
            max_checkpoint_delta_bytes: 64 << 20,
            max_message_bytes: 4 << 20,
        }
    }
}

/// What the monitor of a run learned, kept for checkpoints written after it ends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunStatus {
    /// The run (the supervisor's generation) this describes.
    pub generation: u64,
    /// The transcript followed (or expected), if any.
    pub transcript_path: Option<PathBuf>,
    /// Turns the transcript shows completed.
    pub turn_count: i32,
    /// The conversation id in use.
    pub agent_session_id: String,
    /// The model the transcript names, if it does.
    pub model: String,
}

/// The monitor of one run.
#[derive(Debug)]
pub struct Monitor {
    /// The run monitored.
    pub generation: u64,
    /// Becomes true once the monitor finished its last transcript read.
    pub done: watch::Receiver<bool>,
    /// Ends the monitor early (worker deleted).
    pub cancel: CancellationToken,
}

/// The live state of one agent worker.
#[derive(Debug)]
pub struct AgentWorker {
    /// The latest activity, for Attach streams.
    pub activity: watch::Sender<ActivityState>,
    monitor: Mutex<Option<Monitor>>,
    status: Mutex<RunStatus>,
    crashes: Mutex<u32>,
    /// What the last launch did, in words (ResumeFromCheckpoint's description).
    last_launch: Mutex<String>,
    /// The run whose resume is being verified, and whether the check failed.
    verifying: Mutex<Option<(u64, bool)>>,
    /// Serializes checkpoint writes of this worker (each builds on the last).
    pub checkpoint_lock: tokio::sync::Mutex<()>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AgentWorker {
    fn new() -> Self {
        AgentWorker {
            activity: watch::Sender::new(ActivityState::default()),
            monitor: Mutex::new(None),
            status: Mutex::new(RunStatus::default()),
            crashes: Mutex::new(0),
            last_launch: Mutex::new(String::new()),
            verifying: Mutex::new(None),
            checkpoint_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Installs the monitor of a new run (replacing the previous one's handle).
    pub fn set_monitor(&self, monitor: Monitor) {
        *lock(&self.monitor) = Some(monitor);
    }

    /// The monitor's completion of run `generation`, if that run is monitored.
    pub fn monitor_done(&self, generation: u64) -> Option<watch::Receiver<bool>> {
        lock(&self.monitor)
            .as_ref()
            .filter(|m| m.generation == generation)
            .map(|m| m.done.clone())
    }

    /// Cancels the current monitor.
    pub fn cancel_monitor(&self) {
        if let Some(monitor) = lock(&self.monitor).as_ref() {
            monitor.cancel.cancel();
        }
    }

    /// What the current (or last) run's monitor learned.
    pub fn status(&self) -> RunStatus {
        lock(&self.status).clone()
    }

    /// Changes the run status.
    pub fn update_status(&self, change: impl FnOnce(&mut RunStatus)) {
        change(&mut lock(&self.status));
    }

    /// Counts a crash; returns the crashes in a row so far.
    pub fn count_crash(&self) -> u32 {
        let mut crashes = lock(&self.crashes);
        *crashes += 1;
        *crashes
    }

    /// Forgets earlier crashes (a client started it, or it completed a turn).
    pub fn reset_crashes(&self) {
        *lock(&self.crashes) = 0;
    }

    /// Records what a launch did.
    pub fn set_last_launch(&self, description: String) {
        *lock(&self.last_launch) = description;
    }

    /// What the last launch did.
    pub fn last_launch(&self) -> String {
        lock(&self.last_launch).clone()
    }

    /// Run `generation` is a resume being verified: its exit is the verifier's to
    /// handle, not a crash.
    pub fn begin_verify(&self, generation: u64) {
        *lock(&self.verifying) = Some((generation, false));
    }

    /// The verification of run `generation` failed (the run is being replaced).
    pub fn fail_verify(&self, generation: u64) {
        let mut verifying = lock(&self.verifying);
        if verifying.is_some_and(|(g, _)| g == generation) {
            *verifying = Some((generation, true));
        }
    }

    /// The verification is over (whatever its outcome).
    pub fn end_verify(&self) {
        *lock(&self.verifying) = None;
    }

    /// True while run `generation` is being verified.
    pub fn is_verifying(&self, generation: u64) -> bool {
        lock(&self.verifying).is_some_and(|(g, _)| g == generation)
    }

    /// True when run `generation` failed its verification.
    pub fn verify_failed(&self, generation: u64) -> bool {
        lock(&self.verifying).is_some_and(|(g, failed)| g == generation && failed)
    }
}

/// The registry of agent workers' live state, with the profiles and settings.
#[derive(Debug)]
pub struct AgentRuntime {
    /// The profiles this server offers.
    pub profiles: Profiles,
    /// Agent settings from the configuration.
    pub settings: AgentSettings,
    workers: Mutex<HashMap<Uuid, Arc<AgentWorker>>>,
}

impl AgentRuntime {
    /// A runtime offering `profiles`.
    pub fn new(profiles: Profiles, settings: AgentSettings) -> Self {
        AgentRuntime {
            profiles,
            settings,
            workers: Mutex::new(HashMap::new()),
        }
    }

    /// The live state of worker `id`, created on first use.
    pub fn worker(&self, id: Uuid) -> Arc<AgentWorker> {
        lock(&self.workers)
            .entry(id)
            .or_insert_with(|| Arc::new(AgentWorker::new()))
            .clone()
    }

    /// The live state of worker `id`, if it has any.
    pub fn get(&self, id: Uuid) -> Option<Arc<AgentWorker>> {
        lock(&self.workers).get(&id).cloned()
    }

    /// Forgets worker `id` (deleted), ending its monitor.
    pub fn forget(&self, id: Uuid) {
        if let Some(worker) = lock(&self.workers).remove(&id) {
            worker.cancel_monitor();
        }
    }

    /// The transcripts followed by agents other than `except`: a worker looking
    /// for a newer transcript in a shared directory must not take another's.
    pub fn followed_transcripts(&self, except: Uuid) -> Vec<PathBuf> {
        lock(&self.workers)
            .iter()
            .filter(|(id, _)| **id != except)
            .filter_map(|(_, w)| w.status().transcript_path)
            .collect()
    }
}
