//! Agent workers: starting one from its profile, verifying that a resumed agent
//! really loaded its conversation, the monitor of each run, checkpoints, and the
//! crash policy.
//!
//! **Starting.** The profile gives the program and its arguments; the client only
//! chose the profile, a model and allowed extra arguments. A missing program is a
//! start failure naming the profile and the command looked up (the session goes to
//! ERROR with that reason), never a blank terminal. Which launch:
//!
//! | worker's conversation id | transcript | launch |
//! |---|---|---|
//! | none, profile starts with an id | — | start with a new UUID (`claude --session-id`) |
//! | none, agent picks its id | — | start; the id is learned from the newest transcript |
//! | known | present, or restored from checkpoints | resume by id (`claude --resume <id>`) |
//! | known | never written, no checkpoint | start again with the same id |
//! | known | gone and checkpoints cannot rebuild it | start a new conversation (reason recorded) |
//!
//! **Verified resume.** After a resume the launcher watches the screen for up to
//! `--resume-verify-timeout`: the profile's failure text ("No conversation found")
//! or the agent exiting means the resume failed; any screen rule matching means the
//! agent's interface is up. On failure the run is stopped (recorded as stopped, not
//! as a crash) and the agent is started once more on a new conversation — one
//! fallback, always the same, with the reason in the WORKER_STARTED event and in
//! ResumeFromCheckpoint's answer. Later, the monitor confirms the resume when the
//! transcript grows under the same id, and follows a newer transcript of the same
//! directory if the agent switched conversations (e.g. after `/clear`).
//!
//! **Monitor.** One task per run (plus the screen reader of `agent::screen`):
//! screen verdicts and transcript lines become the worker's activity (stored on the
//! worker row, an ACTIVITY_CHANGED event, and a `watch` that Attach streams
//! forward); transcript lines become messages; a completed turn (a final
//! `stop_reason`, or WORKING → IDLE / WAITING_FOR_INPUT on screen) becomes a TURN
//! checkpoint. When the run ends the monitor reads the transcript to its end, then
//! the exit path writes a STOP or CRASH checkpoint.
//!
//! **Crashes.** An agent that exits abnormally (non-zero code or a signal Corral did
//! not send) while its session runs is restarted from its last checkpoint (same
//! conversation id) after a backoff that doubles each time; the
//! `--agent-max-crashes`-th crash in a row (3 by default: two automatic restarts)
//! moves the session to ERROR. A completed turn or a client's start resets the count.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Manager;
use super::sessions::{parse_id, state_of};
use super::workers::child_env;
use crate::agent::activity::{Activity, ActivityState, Evidence, RuleMatch, TurnSignal, combine};
use crate::agent::profile::{Launch, Profile, Vars};
use crate::agent::runtime::{Monitor, RunStatus};
use crate::agent::screen::{ScreenVerdict, read_screen};
use crate::agent::tail::Tail;
use crate::agent::transcript;
use crate::domain::names::Ref;
use crate::domain::state::State;
use crate::error::{Error, Result};
use crate::store::checkpoints::{CheckpointMeta, CheckpointScope, checkpoint};
use crate::store::entities::worker;
use crate::store::messages::{NewMessage, origin};
use crate::store::{EventKind, EventPayload, NewEvent, SessionRow};
use crate::supervisor::{ExitInfo, Program, ReplayFrom, RunState, WorkerHandle, pty};

/// Why an agent is being started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StartCause {
    /// A client started, resumed, restarted or retried the session, or resumed it
    /// from a checkpoint: earlier crashes are forgotten.
    Client,
    /// The automatic restart after crash number `n` in a row.
    Crash(u32),
}

/// Checkpoint triggers, stored as `Checkpoint.Trigger` names.
pub mod trigger {
    pub const TURN: &str = "TURN";
    pub const STOP: &str = "STOP";
    pub const CRASH: &str = "CRASH";
}

/// Most bytes of terminal output kept in a checkpoint.
pub const SCROLLBACK_TAIL_BYTES: usize = 64 * 1024;
/// How long the exit path waits for a run's monitor to finish reading.
const MONITOR_DRAIN_WAIT: Duration = Duration::from_secs(5);
/// A directory is scanned for a newer transcript every this many polls.
const SWITCH_CHECK_EVERY: u32 = 8;
/// Slack on file modification times (coarse clocks of some file systems).
const MTIME_SLACK: Duration = Duration::from_secs(2);
/// How many times a crash restart waits for a PAUSED/STARTING session.
const RESTART_WAITS: u32 = 600;

/// The resource name of a checkpoint.
pub fn checkpoint_name(session_id: &str, worker_id: &str, version: i64) -> String {
    format!("sessions/{session_id}/workers/{worker_id}/checkpoints/{version}")
}

/// The values of a worker's templates that do not change between launches.
#[derive(Clone, Debug)]
struct Place {
    home: String,
    cwd: String,
    /// The agent's environment (for `{env:NAME}`).
    env: Arc<[(String, String)]>,
}

impl Place {
    fn vars<'a>(&'a self, session_id: &'a str) -> Vars<'a> {
        Vars {
            session_id,
            model: "",
            home: &self.home,
            cwd: &self.cwd,
            env: &self.env,
        }
    }
}

/// The outcome of rebuilding a transcript from checkpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Restore {
    /// No checkpoint describes a transcript.
    NoCheckpoint,
    /// The transcript is where the checkpoint says.
    Present(PathBuf),
    /// Rebuilt from the chain of checkpoints up to `version`.
    Restored {
        path: PathBuf,
        version: i64,
        bytes: u64,
    },
}

/// Finds `command` like `execvp(3)` would in a child working in `cwd`, with the
/// child's `PATH` ([`pty::find_program`]); a command named by a path must be an
/// executable file. The error says why in plain words
/// ([`pty::diagnose_exec_failure`]).
fn find_program(
    command: &str,
    path: Option<&str>,
    cwd: &Path,
) -> std::result::Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    pty::find_program(command, path, cwd)
        .filter(|found| executable(found))
        .ok_or_else(|| {
            let why = pty::diagnose_exec_failure(
                &Program::Argv(vec![command.to_owned()]),
                path,
                cwd,
                None,
            );
            if command.contains('/') {
                why
            } else {
                format!("{why} (PATH={})", path.unwrap_or_default())
            }
        })
}

/// The worker's environment with the profile's variables set and its
/// `unset_env` removed.
fn agent_env(profile: &Profile, base: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut env: std::collections::BTreeMap<String, String> = base.into_iter().collect();
    for (key, value) in &profile.env {
        env.insert(key.clone(), value.clone());
    }
    for key in &profile.unset_env {
        env.remove(key);
    }
    env.into_iter().collect()
}

/// What a launch was, in words, with the arguments it used.
fn describe_launch(launch: &Launch, profile: &Profile) -> String {
    let args = |template: &[String], id: &str| {
        let vars = Vars {
            session_id: id,
            ..Vars::default()
        };
        template
            .iter()
            .map(|a| crate::agent::profile::expand(a, &vars))
            .collect::<Vec<_>>()
            .join(" ")
    };
    match launch {
        Launch::Start {
            session_id: Some(id),
        } => format!(
            "started conversation {id} with {}",
            args(&profile.start_args, id)
        ),
        Launch::Start { session_id: None } => "started a new conversation".into(),
        Launch::Resume { session_id } => format!(
            "resumed conversation {session_id} with {}",
            args(&profile.resume_args, session_id)
        ),
        Launch::ResumeLatest => format!(
            "continued the newest conversation of the directory with {}",
            args(&profile.resume_latest_args, "")
        ),
    }
}

fn is_resume(launch: &Launch) -> bool {
    matches!(launch, Launch::Resume { .. } | Launch::ResumeLatest)
}

impl Manager {
    /// CreateWorker / CreateSession: checks an agent spec against the profiles.
    ///
    /// Errors: INVALID_ARGUMENT (no or unknown profile, a model or extra argument
    /// the profile does not allow).
    pub(super) fn check_agent_spec(
        &self,
        profile: &str,
        model: &str,
        extra_args: &[String],
    ) -> Result<()> {
        let names = self.agents.profiles.names().join(", ");
        if profile.is_empty() {
            return Err(Error::invalid(
                "worker.agent.profile",
                format!("is required; this server offers: {names}"),
            ));
        }
        let found = self.agents.profiles.get(profile).ok_or_else(|| {
            Error::invalid(
                "worker.agent.profile",
                format!(
                    "{profile:?} is not an agent profile of this server; choose one of: {names}"
                ),
            )
        })?;
        found
            .check_model(model)
            .map_err(|reason| Error::invalid("worker.agent.model", reason))?;
        found
            .check_extra_args(extra_args)
            .map_err(|reason| Error::invalid("worker.agent.extra_args", reason))?;
        Ok(())
    }

    /// Starts an agent worker (see the module doc for which launch); returns what
    /// was done, in words, or why it could not start (the worker is then FAILED).
    pub(super) async fn spawn_agent(
        &self,
        row: &SessionRow,
        model: &worker::Model,
        separator: &str,
        cause: StartCause,
    ) -> std::result::Result<String, String> {
        let worker_id = parse_id(&model.id).map_err(|e| e.to_string())?;
        let runtime = self.agents.worker(worker_id);
        if cause == StartCause::Client {
            runtime.reset_crashes();
        }
        let Some(profile) = self.agents.profiles.get(&model.agent_profile) else {
            let reason = format!(
                "worker {:?}: agent profile {:?} is not offered by this server (profiles: {})",
                model.display_name,
                model.agent_profile,
                self.agents.profiles.names().join(", ")
            );
            self.mark_worker_failed(model, &reason).await;
            return Err(reason);
        };
        let extra_args: Vec<String> = serde_json::from_str(&model.extra_args).unwrap_or_default();
        let env = agent_env(
            &profile,
            child_env(
                &self.settings.worker_env,
                &row.model.display_name,
                &row.model.id,
                &model.display_name,
                &self.server_id,
                &Default::default(),
            ),
        );
        let lookup = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let place = Place {
            home: lookup("HOME")
                .or_else(|| std::env::var("HOME").ok())
                .unwrap_or_else(|| "/".into()),
            cwd: row.model.work_dir.clone(),
            env: env.clone().into(),
        };
        let command = profile.command.clone();
        let path = lookup("PATH");
        let work_dir = PathBuf::from(&row.model.work_dir);
        let found =
            tokio::task::spawn_blocking(move || find_program(&command, path.as_deref(), &work_dir))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
        if let Err(why) = found {
            let reason = format!(
                "worker {:?}: agent profile {:?}: {why}",
                model.display_name, profile.name
            );
            self.mark_worker_failed(model, &reason).await;
            return Err(reason);
        }

        let (mut launch, mut notes) = self.plan_launch(model, &profile, &place).await;
        let mut current = model.clone();
        let mut separator = separator.to_owned();
        loop {
            let reason = notes
                .iter()
                .cloned()
                .chain([describe_launch(&launch, &profile)])
                .collect::<Vec<_>>()
                .join("; ");
            let (handle, generation, verdicts) = self
                .launch_agent(
                    row,
                    &current,
                    &profile,
                    &launch,
                    &env,
                    &place,
                    &separator,
                    &extra_args,
                    reason.clone(),
                )
                .await?;
            if !is_resume(&launch) {
                runtime.set_last_launch(reason.clone());
                tracing::info!(worker_id = %worker_id, launch = %reason, "agent started");
                return Ok(reason);
            }
            let outcome = self.verify_resume(&handle, generation, verdicts).await;
            match outcome {
                Ok(confirmed) => {
                    runtime.end_verify();
                    let reason = if confirmed {
                        format!("{reason} (the agent showed its interface)")
                    } else {
                        format!(
                            "{reason} (not confirmed within {}; the transcript will tell)",
                            humantime::format_duration(self.agents.settings.resume_verify)
                        )
                    };
                    runtime.set_last_launch(reason.clone());
                    tracing::info!(worker_id = %worker_id, launch = %reason, "agent resumed");
                    return Ok(reason);
                }
                Err(why) => {
                    // Record the failed run as stopped before anything else starts,
                    // so its exit can never be taken for a crash of the next run.
                    let exit = match handle.stop(self.settings.stop_grace).await {
                        Some(exit) => exit,
                        None => match handle.run().state {
                            RunState::Exited(exit) => exit,
                            _ => ExitInfo::unknown(),
                        },
                    };
                    if let Err(err) = self.record_exit(&current, generation, &exit, true).await {
                        tracing::error!(%err, "recording the end of a failed resume");
                    }
                    runtime.end_verify();
                    let what = match &launch {
                        Launch::Resume { session_id } => {
                            format!("resume of conversation {session_id}")
                        }
                        _ => "resume of the newest conversation".into(),
                    };
                    let note = format!("{what} failed: {why}");
                    tracing::warn!(worker_id = %worker_id, %note, "falling back to a new conversation");
                    notes = vec![note];
                    launch = Launch::Start {
                        session_id: profile.starts_with_id().then(|| Uuid::new_v4().to_string()),
                    };
                    separator.clear();
                    current = self
                        .store
                        .find_worker(&model.session_id, &Ref::Id(worker_id))
                        .await
                        .map_err(|e| e.to_string())?
                        .ok_or_else(|| format!("worker {:?} was deleted", model.display_name))?;
                }
            }
        }
    }

    /// Decides how to launch (see the module doc); may rebuild a missing
    /// transcript from checkpoints. Returns the launch and notes for the record.
    async fn plan_launch(
        &self,
        model: &worker::Model,
        profile: &Profile,
        place: &Place,
    ) -> (Launch, Vec<String>) {
        let mut notes = Vec::new();
        let id = model.agent_session_id.clone();
        let fresh = || Launch::Start {
            session_id: profile.starts_with_id().then(|| Uuid::new_v4().to_string()),
        };
        if id.is_empty() {
            if model.start_time.is_some() && !profile.resume_latest_args.is_empty() {
                return (Launch::ResumeLatest, notes);
            }
            return (fresh(), notes);
        }
        let resume = || {
            if !profile.resume_args.is_empty() {
                Launch::Resume {
                    session_id: id.clone(),
                }
            } else if !profile.resume_latest_args.is_empty() {
                Launch::ResumeLatest
            } else {
                Launch::Start { session_id: None }
            }
        };
        let Some(spec) = profile.transcript.clone() else {
            return (resume(), notes);
        };
        let (vars_place, vars_id) = (place.clone(), id.clone());
        let found = tokio::task::spawn_blocking(move || {
            transcript::locate(&spec, &vars_place.vars(&vars_id))
        })
        .await
        .ok()
        .flatten();
        if found.is_some() {
            return (resume(), notes);
        }
        match self.restore_transcript(&model.id, None).await {
            Ok(Restore::Restored {
                path,
                version,
                bytes,
            }) => {
                notes.push(format!(
                    "transcript {} restored from checkpoint {version} ({bytes} bytes)",
                    path.display()
                ));
                (resume(), notes)
            }
            Ok(Restore::Present(_)) => (resume(), notes),
            // The agent never wrote this conversation: start it with the same id.
            Ok(Restore::NoCheckpoint) => (
                Launch::Start {
                    session_id: profile.starts_with_id().then_some(id),
                },
                notes,
            ),
            Err(why) => {
                notes.push(format!("conversation {id} cannot be resumed: {why}"));
                (fresh(), notes)
            }
        }
    }

    /// One launch: starts the process and its monitor. Returns the handle, the
    /// run's generation and the screen verdicts.
    #[allow(clippy::too_many_arguments)]
    async fn launch_agent(
        &self,
        row: &SessionRow,
        model: &worker::Model,
        profile: &Arc<Profile>,
        launch: &Launch,
        env: &[(String, String)],
        place: &Place,
        separator: &str,
        extra_args: &[String],
        reason: String,
    ) -> std::result::Result<(WorkerHandle, u64, watch::Receiver<ScreenVerdict>), String> {
        let worker_id = parse_id(&model.id).map_err(|e| e.to_string())?;
        let runtime = self.agents.worker(worker_id);
        let new_id = match launch {
            Launch::Start {
                session_id: Some(id),
            }
            | Launch::Resume { session_id: id } => Some(id.clone()),
            _ => None,
        };
        let conversation = new_id
            .clone()
            .unwrap_or_else(|| model.agent_session_id.clone());
        let argv = profile.argv(launch, &model.model, extra_args, &place.vars(&conversation));
        let previous = self.supervisor.handle(worker_id);
        let from = previous.as_ref().map_or(0, WorkerHandle::output_offset);
        let expected = previous.map_or(0, |h| h.run().generation) + 1;
        if is_resume(launch) {
            runtime.begin_verify(expected);
        }
        let expected_path = profile.transcript.as_ref().and_then(|spec| {
            (!conversation.is_empty())
                .then(|| transcript::expected_path(spec, &place.vars(&conversation)))
                .flatten()
        });
        runtime.update_status(|status| {
            *status = RunStatus {
                generation: expected,
                transcript_path: expected_path,
                turn_count: 0,
                agent_session_id: conversation.clone(),
                model: model.model.clone(),
            }
        });
        let started = match self
            .spawn_process(
                row,
                model,
                Program::Argv(argv),
                env.to_vec(),
                separator,
                new_id,
                reason,
            )
            .await
        {
            Ok(started) => self.record_start(started).await,
            Err(reason) => Err(reason),
        };
        let handle = match started {
            Ok((handle, _)) => handle,
            Err(reason) => {
                runtime.end_verify();
                return Err(reason);
            }
        };
        let generation = handle.run().generation;
        if is_resume(launch) && generation != expected {
            runtime.begin_verify(generation);
        }
        runtime.update_status(|status| status.generation = generation);
        let verdicts = self.start_monitor(
            &handle,
            model,
            profile.clone(),
            place.clone(),
            from,
            conversation,
        );
        Ok((handle, generation, verdicts))
    }

    /// Waits until a resumed agent shows its interface (Ok(true)), the time is up
    /// (Ok(false): not confirmed), or it fails: its failure text on screen or an
    /// exit (Err with why).
    async fn verify_resume(
        &self,
        handle: &WorkerHandle,
        generation: u64,
        mut verdicts: watch::Receiver<ScreenVerdict>,
    ) -> std::result::Result<bool, String> {
        let deadline = Instant::now() + self.agents.settings.resume_verify;
        let ended = |handle: &WorkerHandle| {
            let run = handle.run();
            match run.state {
                RunState::Exited(exit) if run.generation == generation => Some(exit.describe()),
                RunState::Running { .. } if run.generation == generation => None,
                _ => Some("ended".into()),
            }
        };
        loop {
            {
                let verdict = verdicts.borrow_and_update();
                if let Some(text) = &verdict.failure {
                    return Err(format!("the agent said {text:?}"));
                }
                if verdict.found.is_some() {
                    return Ok(true);
                }
            }
            if let Some(how) = ended(handle) {
                return Err(format!("the agent {how} before showing its conversation"));
            }
            tokio::select! {
                changed = verdicts.changed() => {
                    if changed.is_err() {
                        // The screen reader ended with the run: a last look.
                        if let Some(text) = verdicts.borrow().failure.clone() {
                            return Err(format!("the agent said {text:?}"));
                        }
                        let how = ended(handle).unwrap_or_else(|| "ended".into());
                        return Err(format!("the agent {how} before showing its conversation"));
                    }
                }
                () = tokio::time::sleep_until(deadline) => return Ok(false),
            }
        }
    }

    /// Starts the screen reader and the monitor of a run; returns the verdicts.
    fn start_monitor(
        &self,
        handle: &WorkerHandle,
        model: &worker::Model,
        profile: Arc<Profile>,
        place: Place,
        from: u64,
        agent_session_id: String,
    ) -> watch::Receiver<ScreenVerdict> {
        let worker_id = handle.worker_id();
        let runtime = self.agents.worker(worker_id);
        let generation = handle.run().generation;
        let (verdict_tx, verdict_rx) = watch::channel(ScreenVerdict::default());
        let (done_tx, done_rx) = watch::channel(false);
        let cancel = CancellationToken::new();
        runtime.set_monitor(Monitor {
            generation,
            done: done_rx,
            cancel: cancel.clone(),
        });
        match handle.observe(ReplayFrom::Offset(from)) {
            Ok((subscription, _, _)) => {
                tokio::spawn(read_screen(
                    subscription,
                    handle.clone(),
                    profile.clone(),
                    self.agents.settings.activity_settle,
                    verdict_tx,
                    cancel.clone(),
                ));
            }
            // The run is already over: the monitor only reads the transcript.
            Err(_) => drop(verdict_tx),
        }
        let monitor = RunMonitor {
            session_id: model.session_id.clone(),
            worker_id,
            worker_key: model.id.clone(),
            profile,
            place,
            agent_session_id,
            started: SystemTime::now(),
            poll: self.agents.settings.transcript_poll,
            tail: None,
            baseline: 0,
            confirmed: false,
            turn: TurnSignal::None,
            turn_count: 0,
            screen: None,
            activity: Activity::Unknown,
            polls: 0,
        };
        tokio::spawn(monitor.run(self.me.clone(), verdict_rx.clone(), done_tx, cancel));
        verdict_rx
    }

    /// Publishes an activity change of a worker: the worker row and an
    /// ACTIVITY_CHANGED event first, then the `watch` that Attach streams
    /// forward (so a client that sees the update reads the same from GetWorker).
    /// Same activity as before: nothing.
    async fn publish_activity(&self, session_id: &str, worker_id: Uuid, state: ActivityState) {
        let runtime = self.agents.worker(worker_id);
        let from = runtime.activity.borrow().activity;
        if from == state.activity {
            return;
        }
        let stored = async {
            let Some(model) = self
                .store
                .find_worker(session_id, &Ref::Id(worker_id))
                .await?
            else {
                return Ok(());
            };
            let mut new = model.clone();
            new.activity = state.activity.as_str().into();
            new.activity_evidence = serde_json::to_string(&state.evidence).unwrap_or_default();
            let event = NewEvent::worker(
                EventKind::ActivityChanged,
                session_id,
                &model.id,
                EventPayload {
                    from: from.as_str().into(),
                    to: state.activity.as_str().into(),
                    rule: state.evidence.rule.clone(),
                    source: state.evidence.source.clone(),
                    matched_text: state.evidence.matched_text.clone(),
                    ..Default::default()
                },
            );
            self.store
                .update_worker(&model, &new, self.now(), vec![event])
                .await
        };
        if let Err(err) = stored.await {
            tracing::warn!(%worker_id, %err, "recording an activity change");
        }
        tracing::debug!(%worker_id, %from, to = %state.activity, rule = %state.evidence.rule, "activity changed");
        runtime.activity.send_replace(state);
    }

    /// Stores the conversation id an agent turned out to use.
    async fn set_agent_session_id(&self, session_id: &str, worker_id: Uuid, id: &str) {
        let update = async {
            let Some(model) = self
                .store
                .find_worker(session_id, &Ref::Id(worker_id))
                .await?
            else {
                return Ok(());
            };
            let mut new = model.clone();
            new.agent_session_id = id.to_owned();
            self.store
                .update_worker(&model, &new, self.now(), Vec::new())
                .await
        };
        if let Err(err) = update.await {
            tracing::warn!(%worker_id, %err, "recording an agent's conversation id");
        }
    }

    /// The end of an agent's run (called once per run, from `record_exit`): waits
    /// for its monitor to read the transcript to the end, writes the STOP or CRASH
    /// checkpoint, and marks the activity UNKNOWN when no newer run started.
    pub(super) async fn agent_run_ended(
        &self,
        model: &worker::Model,
        generation: u64,
        exit: &ExitInfo,
        stopped: bool,
    ) {
        let Ok(worker_id) = parse_id(&model.id) else {
            return;
        };
        let runtime = self.agents.worker(worker_id);
        if let Some(mut done) = runtime.monitor_done(generation)
            && tokio::time::timeout(MONITOR_DRAIN_WAIT, done.wait_for(|done| *done))
                .await
                .is_err()
        {
            tracing::warn!(%worker_id, "the agent monitor did not finish reading in time");
        }
        if !runtime.is_verifying(generation) {
            let trigger = if stopped || exit.success() {
                trigger::STOP
            } else {
                trigger::CRASH
            };
            if let Err(err) = self.save_checkpoint(model, trigger).await {
                tracing::warn!(%worker_id, %err, "writing the checkpoint at the end of a run");
            }
        }
        let latest = self
            .supervisor
            .handle(worker_id)
            .map(|h| h.run().generation);
        if latest == Some(generation) {
            self.publish_activity(
                &model.session_id,
                worker_id,
                ActivityState {
                    activity: Activity::Unknown,
                    evidence: Evidence {
                        rule: "corral/not-running".into(),
                        source: "corral".into(),
                        matched_text: exit.describe(),
                        time: self.now(),
                    },
                },
            )
            .await;
        }
    }

    /// An agent crashed (see the module doc): restart it later, or after too many
    /// crashes in a row move the session to ERROR and stop its other workers.
    pub(super) async fn on_agent_crash(
        &self,
        model: &worker::Model,
        exit: &ExitInfo,
    ) -> Result<()> {
        let worker_id = parse_id(&model.id)?;
        let Some(row) = self.store.get_session(&model.session_id).await? else {
            return Ok(());
        };
        if !state_of(&row)?.is_running() {
            return Ok(());
        }
        let crashes = self.agents.worker(worker_id).count_crash();
        let max = self.agents.settings.max_crashes.max(1);
        if crashes >= max {
            let reason = format!(
                "agent worker {:?} crashed {crashes} times in a row (last: {}); it is not restarted again",
                model.display_name,
                exit.describe()
            );
            tracing::warn!(%worker_id, %reason, "agent crashed too often");
            self.stop_workers(&model.session_id, self.settings.stop_grace)
                .await?;
            return self.fail(&model.session_id, &reason).await;
        }
        let backoff = self.agents.settings.restart_backoff;
        let delay = backoff.saturating_mul(1 << (crashes - 1).min(16));
        tracing::warn!(%worker_id, crashes, delay_ms = delay.as_millis() as u64, exit = %exit.describe(), "agent crashed; restarting it");
        let me = self.me.clone();
        let session_id = model.session_id.clone();
        let last_exit = exit.describe();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(manager) = me.upgrade() {
                manager
                    .restart_after_crash(session_id, worker_id, crashes, delay, last_exit)
                    .await;
            }
        });
        Ok(())
    }

    /// The automatic restart after crash number `crashes`: once the session is
    /// ACTIVE (waiting while it is PAUSED or STARTING; giving up if it stopped).
    async fn restart_after_crash(
        &self,
        session_id: String,
        worker_id: Uuid,
        crashes: u32,
        delay: Duration,
        last_exit: String,
    ) {
        for _ in 0..RESTART_WAITS {
            let row = match self.store.get_session(&session_id).await {
                Ok(Some(row)) => row,
                _ => return,
            };
            match State::parse(&row.model.state) {
                Some(State::Active) => {
                    self.restart_crashed(row, worker_id, crashes, last_exit)
                        .await;
                    return;
                }
                Some(State::Starting | State::Paused) => {
                    tokio::time::sleep(delay.max(Duration::from_millis(100))).await;
                }
                _ => return,
            }
        }
    }

    async fn restart_crashed(
        &self,
        row: SessionRow,
        worker_id: Uuid,
        crashes: u32,
        last_exit: String,
    ) {
        let model = match self
            .store
            .find_worker(&row.model.id, &Ref::Id(worker_id))
            .await
        {
            Ok(Some(model)) => model,
            _ => return,
        };
        if self
            .supervisor
            .handle(worker_id)
            .is_some_and(|h| h.is_running())
        {
            return;
        }
        let restarts = self.agents.settings.max_crashes.saturating_sub(1);
        let separator = format!(
            "\r\n\x1b[2m--- corral: the agent {last_exit}; automatic restart {crashes} of {restarts} from its last checkpoint ---\x1b[0m\r\n"
        );
        match self
            .spawn_agent(&row, &model, &separator, StartCause::Crash(crashes))
            .await
        {
            Ok(description) => {
                tracing::info!(%worker_id, crashes, %description, "agent restarted after a crash");
            }
            Err(reason) => {
                if let Err(err) = self
                    .stop_workers(&row.model.id, self.settings.stop_grace)
                    .await
                {
                    tracing::error!(%err, "stopping workers after a failed agent restart");
                }
                if let Err(err) = self.fail(&row.model.id, &reason).await {
                    tracing::error!(%err, "recording a failed agent restart");
                }
                return;
            }
        }
        // A client may have stopped the session while the agent was starting.
        let still_running = self
            .store
            .get_session(&row.model.id)
            .await
            .ok()
            .flatten()
            .and_then(|r| State::parse(&r.model.state))
            .is_some_and(State::is_running);
        if !still_running
            && let Some(handle) = self.supervisor.handle(worker_id)
            && let Some(exit) = handle.stop(self.settings.stop_grace).await
            && let Err(err) = self
                .record_exit(&model, handle.run().generation, &exit, true)
                .await
        {
            tracing::error!(%err, "recording the stop of a restarted agent");
        }
    }

    /// Writes a checkpoint of an agent worker: its conversation id, turns, model,
    /// directory, the transcript lines written since its last checkpoint and the
    /// tail of its terminal output. A TURN checkpoint is skipped when nothing
    /// changed since the last one. Returns the checkpoint written, if any.
    pub(super) async fn save_checkpoint(
        &self,
        model: &worker::Model,
        trigger: &str,
    ) -> Result<Option<checkpoint::Model>> {
        let worker_id = parse_id(&model.id)?;
        let runtime = self.agents.worker(worker_id);
        let _writing = runtime.checkpoint_lock.lock().await;
        let status = runtime.status();
        let Some(row) = self.store.get_session(&model.session_id).await? else {
            return Ok(None);
        };
        let last = self.store.latest_checkpoint_meta(&model.id).await?;
        let path = status.transcript_path.clone();
        let path_text = path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let (delta_offset, delta) = read_delta(
            path.as_deref(),
            last.as_ref(),
            &path_text,
            self.agents.settings.max_checkpoint_delta_bytes,
        )
        .await;
        let transcript_bytes = delta_offset + delta.len() as i64;
        let turn_count = status.turn_count.max(
            last.as_ref()
                .filter(|l| l.transcript_path == path_text)
                .map_or(0, |l| l.turn_count),
        );
        if trigger == trigger::TURN
            && last.as_ref().is_some_and(|l| {
                l.transcript_path == path_text
                    && l.transcript_bytes == transcript_bytes
                    && l.turn_count == turn_count
            })
        {
            return Ok(None);
        }
        let scrollback_tail = self
            .supervisor
            .handle(worker_id)
            .map(|h| scrollback_tail(&h))
            .unwrap_or_default();
        let now = self.now();
        let ttl = crate::clock::micros_of(self.agents.settings.checkpoint_ttl);
        let agent_session_id = if status.agent_session_id.is_empty() {
            model.agent_session_id.clone()
        } else {
            status.agent_session_id.clone()
        };
        let new = checkpoint::Model {
            id: Uuid::new_v4().to_string(),
            session_id: model.session_id.clone(),
            worker_id: model.id.clone(),
            version: 0,
            trigger: trigger.to_owned(),
            agent_session_id,
            turn_count,
            model: if status.model.is_empty() {
                model.model.clone()
            } else {
                status.model.clone()
            },
            work_dir: row.model.work_dir.clone(),
            transcript_path: path_text,
            transcript_bytes,
            delta_offset,
            transcript_delta: delta,
            scrollback_tail,
            create_time: now,
            expire_time: now.saturating_add(ttl),
        };
        let (session_id, worker) = (model.session_id.clone(), model.id.clone());
        let saved = self
            .store
            .insert_checkpoint(new, |version| {
                checkpoint_name(&session_id, &worker, version)
            })
            .await?;
        tracing::info!(%worker_id, version = saved.version, trigger, turns = saved.turn_count, bytes = saved.transcript_bytes, "checkpoint saved");
        Ok(Some(saved))
    }

    /// A TURN checkpoint from a run's monitor.
    async fn turn_checkpoint(&self, session_id: &str, worker_id: Uuid) {
        let model = match self
            .store
            .find_worker(session_id, &Ref::Id(worker_id))
            .await
        {
            Ok(Some(model)) => model,
            _ => return,
        };
        if let Err(err) = self.save_checkpoint(&model, trigger::TURN).await {
            tracing::warn!(%worker_id, %err, "writing a turn checkpoint");
        }
    }

    /// Rebuilds the transcript of checkpoint `version` (the newest when `None`) of
    /// worker `worker_id` if its file is gone, from the chain of checkpoints that
    /// copied it. Errors say why it cannot be rebuilt (a checkpoint of the chain
    /// expired or was deleted, or the file cannot be written).
    pub(super) async fn restore_transcript(
        &self,
        worker_id: &str,
        version: Option<i64>,
    ) -> std::result::Result<Restore, String> {
        let target = match version {
            Some(version) => self.store.get_checkpoint_meta(worker_id, version).await,
            None => self.store.latest_checkpoint_meta(worker_id).await,
        }
        .map_err(|e| e.to_string())?;
        let Some(target) =
            target.filter(|t| !t.transcript_path.is_empty() && t.transcript_bytes > 0)
        else {
            return Ok(Restore::NoCheckpoint);
        };
        let path = PathBuf::from(&target.transcript_path);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(Restore::Present(path));
        }
        let chain = self
            .store
            .checkpoint_versions(worker_id, &target.transcript_path, target.version)
            .await
            .map_err(|e| e.to_string())?;
        let parent = path
            .parent()
            .ok_or_else(|| format!("{} has no directory", path.display()))?;
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        let partial = path.with_extension("jsonl.corral-restore");
        let written = write_chain(self, worker_id, &chain, &partial).await;
        let bytes = match written {
            Ok(bytes) if bytes == target.transcript_bytes as u64 => bytes,
            Ok(bytes) => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(format!(
                    "the checkpoints of {} hold {bytes} of its {} bytes",
                    path.display(),
                    target.transcript_bytes
                ));
            }
            Err(why) => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(why);
            }
        };
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(|e| format!("moving the rebuilt transcript to {}: {e}", path.display()))?;
        tracing::info!(path = %path.display(), version = target.version, bytes, "transcript restored from checkpoints");
        Ok(Restore::Restored {
            path,
            version: target.version,
            bytes,
        })
    }

    /// DeleteWorker of an agent: its live state and checkpoints go with it.
    pub(super) async fn forget_agent(&self, model: &worker::Model) -> Result<()> {
        if let Ok(id) = Uuid::try_parse(&model.id) {
            self.agents.forget(id);
        }
        self.store
            .delete_checkpoints(&CheckpointScope {
                session_id: &model.session_id,
                worker_id: Some(&model.id),
            })
            .await?;
        Ok(())
    }
}

/// Writes the deltas of `chain` (versions, oldest first) into `path`, checking that
/// they are contiguous. Returns the bytes written.
async fn write_chain(
    manager: &Manager,
    worker_id: &str,
    chain: &[i64],
    path: &Path,
) -> std::result::Result<u64, String> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    let mut written: u64 = 0;
    for version in chain {
        // One checkpoint in memory at a time.
        let Some(checkpoint) = manager
            .store
            .get_checkpoint(worker_id, *version)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Err(format!("checkpoint {version} vanished while restoring"));
        };
        let offset = checkpoint.delta_offset as u64;
        if offset == 0 && written > 0 {
            // The transcript was replaced at this checkpoint: start over.
            file.set_len(0).await.map_err(|e| e.to_string())?;
            file = tokio::fs::File::create(path)
                .await
                .map_err(|e| e.to_string())?;
            written = 0;
        } else if offset != written {
            if checkpoint.transcript_delta.is_empty() && offset <= written {
                continue;
            }
            return Err(format!(
                "the checkpoints no longer cover bytes {written}..{offset} of the transcript (expired or deleted)"
            ));
        }
        file.write_all(&checkpoint.transcript_delta)
            .await
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        written += checkpoint.transcript_delta.len() as u64;
    }
    file.sync_all()
        .await
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(written)
}

/// The transcript bytes since the last checkpoint, complete lines only: returns
/// where they start and the bytes. A missing file carries the last checkpoint's
/// length forward (nothing new); a delta over `max` bytes is not copied (the
/// chain breaks there, and a restore says so).
async fn read_delta(
    path: Option<&Path>,
    last: Option<&CheckpointMeta>,
    path_text: &str,
    max: usize,
) -> (i64, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let same_file = last.filter(|l| l.transcript_path == path_text);
    let carried = same_file.map_or(0, |l| l.transcript_bytes);
    let Some(path) = path else {
        return (carried, Vec::new());
    };
    let Ok(mut file) = tokio::fs::File::open(path).await else {
        return (carried, Vec::new());
    };
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let start = same_file
        .map(|l| l.transcript_bytes as u64)
        .filter(|bytes| *bytes <= len)
        .unwrap_or(0);
    let want = len - start;
    if want > max as u64 {
        tracing::warn!(path = %path.display(), bytes = want, max, "transcript delta too large for a checkpoint; not copied");
        return (len as i64, Vec::new());
    }
    let mut delta = Vec::with_capacity(want as usize);
    let read = async {
        file.seek(std::io::SeekFrom::Start(start)).await?;
        (&mut file).take(want).read_to_end(&mut delta).await
    };
    if read.await.is_err() {
        return (carried, Vec::new());
    }
    match delta.iter().rposition(|b| *b == b'\n') {
        Some(last_newline) => delta.truncate(last_newline + 1),
        None => delta.clear(),
    }
    (start as i64, delta)
}

/// What a worker's screen showed last (its last three rows with text), from the
/// tail of its scrollback: the reason an agent that failed printed, for its
/// `last_error`.
pub(super) fn last_words(handle: &WorkerHandle) -> String {
    let size = handle.size();
    crate::agent::screen::last_words(&scrollback_tail(handle), size.rows, size.cols, 3)
}

/// The last [`SCROLLBACK_TAIL_BYTES`] of a worker's output.
fn scrollback_tail(handle: &WorkerHandle) -> Vec<u8> {
    let (_, chunks) = handle.scrollback();
    let mut tail: Vec<u8> = Vec::new();
    for chunk in chunks.iter().rev() {
        if tail.len() >= SCROLLBACK_TAIL_BYTES {
            break;
        }
        let room = SCROLLBACK_TAIL_BYTES - tail.len();
        let piece = &chunk[chunk.len().saturating_sub(room)..];
        let mut joined = piece.to_vec();
        joined.extend_from_slice(&tail);
        tail = joined;
    }
    tail
}

/// The monitor of one run of an agent worker (see the module doc).
struct RunMonitor {
    session_id: String,
    worker_id: Uuid,
    worker_key: String,
    profile: Arc<Profile>,
    place: Place,
    agent_session_id: String,
    started: SystemTime,
    poll: Duration,
    tail: Option<Tail>,
    /// Length of the followed transcript when this run began following it: lines
    /// after it are new in this run.
    baseline: u64,
    confirmed: bool,
    turn: TurnSignal,
    turn_count: i32,
    screen: Option<RuleMatch>,
    activity: Activity,
    polls: u32,
}

impl RunMonitor {
    async fn run(
        mut self,
        me: std::sync::Weak<Manager>,
        mut verdicts: watch::Receiver<ScreenVerdict>,
        done: watch::Sender<bool>,
        cancel: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(self.poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                changed = verdicts.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let verdict = verdicts.borrow_and_update().clone();
                    let Some(manager) = me.upgrade() else { break };
                    self.screen = verdict.found;
                    self.refresh(&manager).await;
                }
                _ = ticker.tick() => {
                    let Some(manager) = me.upgrade() else { break };
                    self.poll_transcript(&manager).await;
                    self.refresh(&manager).await;
                }
            }
        }
        if !cancel.is_cancelled()
            && let Some(manager) = me.upgrade()
        {
            // Read what the agent wrote before it ended.
            for _ in 0..16 {
                let before = self.tail.as_ref().map(Tail::offset);
                self.poll_transcript(&manager).await;
                if self.tail.as_ref().map(Tail::offset) == before {
                    break;
                }
            }
        }
        let _ = done.send(true);
    }

    /// Recomputes the activity; publishes a change; a turn that ended on screen
    /// (WORKING → IDLE / WAITING_FOR_INPUT) becomes a checkpoint.
    async fn refresh(&mut self, manager: &Manager) {
        let state = combine(
            &self.profile.name,
            self.screen.as_ref(),
            self.turn,
            manager.now(),
        );
        if state.activity == self.activity {
            return;
        }
        let from = std::mem::replace(&mut self.activity, state.activity);
        let turn_over = from == Activity::Working
            && matches!(state.activity, Activity::Idle | Activity::WaitingForInput);
        if turn_over {
            // Catch up with the transcript first, so the checkpoint has the turn.
            self.poll_transcript(manager).await;
        }
        manager
            .publish_activity(&self.session_id, self.worker_id, state)
            .await;
        if turn_over {
            manager
                .turn_checkpoint(&self.session_id, self.worker_id)
                .await;
        }
    }

    /// Finds or follows the transcript and indexes its new lines.
    async fn poll_transcript(&mut self, manager: &Manager) {
        let Some(spec) = self.profile.transcript.clone() else {
            return;
        };
        self.polls = self.polls.wrapping_add(1);
        if self.tail.is_none() {
            self.find_transcript(manager, &spec).await;
        } else if self.polls.is_multiple_of(SWITCH_CHECK_EVERY) {
            self.check_switch(manager, &spec).await;
        }
        let Some(tail) = self.tail.as_mut() else {
            return;
        };
        let lines = match tail.poll().await {
            Ok(lines) => lines,
            Err(err) => {
                tracing::warn!(path = %tail.path().display(), %err, "reading a transcript");
                return;
            }
        };
        if lines.is_empty() {
            return;
        }
        let now = manager.now();
        let mut messages = Vec::new();
        let mut new_turns = 0;
        let mut model_seen = None;
        let mut grew = false;
        for (offset, line) in lines {
            let fresh = offset >= self.baseline;
            grew |= fresh;
            for message in line.messages {
                messages.push(NewMessage {
                    worker_id: self.worker_key.clone(),
                    role: message.role.as_str().into(),
                    text: message.text,
                    tool_name: message.tool_name,
                    create_time: message.time.unwrap_or(now),
                    origin: origin::TRANSCRIPT.into(),
                    source_key: format!("t:{}", message.key),
                });
            }
            // Turns the line ends: the one before it (a Gemini prompt after an
            // answer) and its own (a final stop reason).
            let ended =
                i32::from(line.closes_turn) + i32::from(line.turn == Some(TurnSignal::Ended));
            self.turn_count += ended;
            if fresh {
                new_turns += ended;
            }
            if let Some(signal) = line.turn {
                self.turn = signal;
            }
            if line.model.is_some() {
                model_seen = line.model;
            }
        }
        if let Err(err) = manager
            .store
            .insert_messages(&self.session_id, messages)
            .await
        {
            tracing::warn!(worker_id = %self.worker_id, %err, "indexing transcript messages");
        }
        let runtime = manager.agents.worker(self.worker_id);
        let turn_count = self.turn_count;
        runtime.update_status(|status| {
            status.turn_count = turn_count;
            if let Some(model) = model_seen {
                status.model = model;
            }
        });
        if grew && !self.confirmed {
            self.confirmed = true;
            tracing::info!(worker_id = %self.worker_id, conversation = %self.agent_session_id, "the agent writes to its transcript");
        }
        if new_turns > 0 {
            runtime.reset_crashes();
            manager
                .turn_checkpoint(&self.session_id, self.worker_id)
                .await;
        }
    }

    /// Looks for the transcript: by id, or (agents that pick their own id) the
    /// newest one written in this directory since the run began.
    async fn find_transcript(
        &mut self,
        manager: &Manager,
        spec: &crate::agent::profile::TranscriptSpec,
    ) {
        let place = self.place.clone();
        let spec_owned = spec.clone();
        if !self.agent_session_id.is_empty() {
            let id = self.agent_session_id.clone();
            let found = tokio::task::spawn_blocking(move || {
                transcript::locate(&spec_owned, &place.vars(&id))
            })
            .await
            .ok()
            .flatten();
            if let Some(path) = found {
                self.follow(manager, spec, path, None).await;
            }
            return;
        }
        let exclude = manager.agents.followed_transcripts(self.worker_id);
        let since = self
            .started
            .checked_sub(MTIME_SLACK)
            .unwrap_or(self.started);
        let found = tokio::task::spawn_blocking(move || {
            transcript::newest_since(&spec_owned, &place.vars(""), since, &exclude)
        })
        .await
        .ok()
        .flatten();
        if let Some((path, id)) = found {
            self.follow(manager, spec, path, Some(id)).await;
        }
    }

    /// An agent may switch conversations (e.g. `/clear`): a newer transcript in
    /// the same directory that no other worker follows becomes this one's.
    async fn check_switch(
        &mut self,
        manager: &Manager,
        spec: &crate::agent::profile::TranscriptSpec,
    ) {
        let Some(current) = self.tail.as_ref().map(|t| t.path().to_owned()) else {
            return;
        };
        let modified = tokio::fs::metadata(&current)
            .await
            .and_then(|m| m.modified())
            .unwrap_or(self.started);
        let since = (modified + Duration::from_millis(1)).max(self.started);
        let mut exclude = manager.agents.followed_transcripts(self.worker_id);
        exclude.push(current.clone());
        let place = self.place.clone();
        let spec_owned = spec.clone();
        let found = tokio::task::spawn_blocking(move || {
            transcript::newest_since(&spec_owned, &place.vars(""), since, &exclude)
        })
        .await
        .ok()
        .flatten();
        if let Some((path, id)) = found {
            tracing::info!(worker_id = %self.worker_id, from = %self.agent_session_id, to = %id, "the agent switched conversations; following its new transcript");
            self.follow(manager, spec, path, Some(id)).await;
        }
    }

    async fn follow(
        &mut self,
        manager: &Manager,
        spec: &crate::agent::profile::TranscriptSpec,
        path: PathBuf,
        new_id: Option<String>,
    ) {
        self.baseline = tokio::fs::metadata(&path).await.map_or(0, |m| m.len());
        let chat = new_id.as_deref().unwrap_or(&self.agent_session_id);
        self.tail = Some(Tail::new(path.clone(), spec.format, chat));
        self.turn_count = 0;
        self.turn = TurnSignal::None;
        if let Some(id) = &new_id {
            self.agent_session_id = id.clone();
            manager
                .set_agent_session_id(&self.session_id, self.worker_id, id)
                .await;
        }
        manager
            .agents
            .worker(self.worker_id)
            .update_status(|status| {
                status.transcript_path = Some(path);
                status.turn_count = 0;
                if let Some(id) = new_id {
                    status.agent_session_id = id;
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_looked_up_in_the_childs_path() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path();
        let err = find_program("no-such-agent", Some(cwd.to_str().unwrap()), cwd).unwrap_err();
        assert!(
            err.contains("\"no-such-agent\" failed: command not found in PATH"),
            "{err}"
        );
        let program = dir.path().join("agent");
        std::fs::write(&program, "#!/bin/sh\n").unwrap();
        let err = find_program("agent", Some(cwd.to_str().unwrap()), cwd).unwrap_err();
        assert!(err.contains("permission denied"), "not executable: {err}");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            find_program(
                "agent",
                Some(&format!("/nonexistent:{}", dir.path().display())),
                Path::new("/")
            )
            .unwrap(),
            program
        );
        assert!(find_program(program.to_str().unwrap(), None, Path::new("/")).is_ok());
        // Relative names and PATH entries are taken from the worker's directory.
        assert_eq!(
            find_program("agent", Some("."), cwd).unwrap(),
            cwd.join("./agent")
        );
        assert_eq!(
            find_program("./agent", None, cwd).unwrap(),
            cwd.join("./agent")
        );
        let err = find_program("./agent", None, Path::new("/nonexistent")).unwrap_err();
        assert!(err.contains("no such file"), "{err}");
    }

    #[test]
    fn agent_env_sets_and_unsets() {
        let profiles = crate::agent::Profiles::from_sources(Some(
            "[profiles.claude]\nenv = { DISABLE_AUTOUPDATER = \"1\" }\n",
        ))
        .unwrap();
        let claude = profiles.get("claude").unwrap();
        let env = agent_env(
            &claude,
            vec![
                ("CLAUDECODE".into(), "1".into()),
                ("PATH".into(), "/bin".into()),
            ],
        );
        assert!(env.iter().all(|(k, _)| k != "CLAUDECODE"));
        assert!(env.contains(&("DISABLE_AUTOUPDATER".into(), "1".into())));
        assert!(env.contains(&("PATH".into(), "/bin".into())));
    }
}
