//! Start-up reconciliation: make the database and the machine agree again after
//! the previous server process ended — cleanly, killed (`kill -9`), or with the
//! machine (reboot) — at any instant, including in the middle of a transition.
//!
//! 1. **Who owns what.** Every server start is a row in `servers` (machine id,
//!    boot id, pid and process start time), and a session records the server that
//!    runs (or last ran) its processes in `sessions.server_id`. A session whose
//!    server is alive — same machine, same boot, its pid still the process that
//!    started at the recorded time, no clean stop recorded — belongs to that
//!    server and is left alone; so is one run by a server on another machine.
//!    Everything else is an orphan of a server that is gone.
//! 2. **Claim.** A running orphan (STARTING, ACTIVE, PAUSED) is claimed by
//!    writing its next state with `server_id` = this server, conditionally on its
//!    version: when several servers start at once on one database, exactly one
//!    claims each session.
//! 3. **Reap.** Processes of the previous run are found from the worker rows
//!    (pid, start time and boot id: all three must match, pids are reused) and
//!    killed with the whole process tree of their PTY session; processes that
//!    left the tree (or were spawned just before a crash and never recorded) are
//!    found by the `CORRAL_SESSION_ID`/`CORRAL_SERVER_ID` of their environment,
//!    for servers of this database that are known to be gone, whether or not
//!    their session is still recorded. Every signal goes through a pidfd after
//!    checking the process's start time, so an unrelated process that reused a
//!    pid is never signalled.
//! 4. **Policy.** `--restart-policy resume` (the default) starts the workers
//!    again in the same directory, with their scrollback restored and a visible
//!    marker where the previous run ended; PAUSED sessions are started and
//!    suspended again. `--restart-policy stop` leaves them STOPPED (resumable).
//!    The reason is written to the session (`state_reason`) and its event.
//! 5. **Forget.** Rows of this machine's servers that are gone are deleted once
//!    no session names them and no process tagged with them outlived step 3, so
//!    that `servers` does not grow by a row per start forever.
//!
//! Every step is idempotent and each write is a legal transition of the state
//! table, so a server killed during reconciliation leaves rows that the next
//! start reconciles the same way. PTYs need no reaping: a PTY lives as long as
//! its master descriptor, which only the dead server held.

use std::collections::{BTreeSet, HashMap};

use uuid::Uuid;

use super::lifecycle::{self, Cause};
use super::sessions::state_of;
use super::workers::worker_state;
use super::{MAX_CONFLICT_RETRIES, Manager};
use crate::clock::{Micros, to_datetime};
use crate::config::RestartPolicy;
use crate::domain::state::{Event, State, on_event};
use crate::error::Result;
use crate::store::entities::{server, worker};
use crate::store::{SessionRow, Write};
use crate::supervisor::process;

/// Whether the server that owns a session is alive, as far as this machine can
/// tell.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Owner {
    /// This server.
    Me,
    /// Alive on this machine: its session is not ours to touch.
    Alive,
    /// A server on another machine: not ours to judge or touch.
    Elsewhere { hostname: String },
    /// Gone: `why` says how, in words for the session's reason.
    Gone { why: String },
}

/// This server process, as recorded in `servers`.
pub(super) fn identity(id: &str, now: Micros) -> server::Model {
    let pid = std::process::id() as i32;
    server::Model {
        id: id.to_owned(),
        machine_id: process::machine_id(),
        boot_id: process::boot_id().unwrap_or_default(),
        pid,
        process_start_ticks: process::start_ticks(pid)
            .and_then(|t| i64::try_from(t).ok())
            .unwrap_or(0),
        hostname: process::hostname(),
        start_time: now,
        stop_time: None,
    }
}

fn format_time(micros: Micros) -> String {
    to_datetime(micros)
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

/// Per-run memo of owners looked up.
struct Owners<'a> {
    manager: &'a Manager,
    me: server::Model,
    known: HashMap<String, Option<Owner>>,
}

impl Owners<'_> {
    /// The owner of a session whose row names `server_id`. A server that is
    /// not recorded is gone: its session is an orphan.
    async fn of(&mut self, server_id: Option<&str>) -> Result<Owner> {
        let Some(id) = server_id else {
            return Ok(Owner::Gone {
                why: "no server is recorded as running it".into(),
            });
        };
        Ok(self.recorded(id).await?.unwrap_or_else(|| Owner::Gone {
            why: "the server that ran it is not recorded".into(),
        }))
    }

    /// The owner judged from server `id`'s row in `servers`, or `None` when
    /// there is no such row (a server of another database). Looked up once
    /// per id.
    async fn recorded(&mut self, id: &str) -> Result<Option<Owner>> {
        if id == self.me.id {
            return Ok(Some(Owner::Me));
        }
        if let Some(owner) = self.known.get(id) {
            return Ok(owner.clone());
        }
        let owner = self
            .manager
            .store
            .find_server(id)
            .await?
            .map(|other| judge(&self.me, other));
        self.known.insert(id.to_owned(), owner.clone());
        Ok(owner)
    }
}

/// Whether `other`, a server recorded in `servers`, is alive as far as `me`
/// can tell: on another machine it is not ours to judge; on this one it is
/// alive when it is of this boot, recorded no clean stop, and its pid is still
/// the process that started at the recorded time.
fn judge(me: &server::Model, other: server::Model) -> Owner {
    if other.machine_id != me.machine_id {
        return Owner::Elsewhere {
            hostname: other.hostname,
        };
    }
    let same_boot = other.boot_id == me.boot_id;
    let alive = same_boot
        && other.stop_time.is_none()
        && u64::try_from(other.process_start_ticks)
            .is_ok_and(|ticks| process::is_same_process(other.pid, ticks));
    if alive {
        Owner::Alive
    } else if let Some(stop) = other.stop_time {
        Owner::Gone {
            why: format!("the server shut down at {}", format_time(stop)),
        }
    } else if !same_boot {
        Owner::Gone {
            why: "the machine rebooted".into(),
        }
    } else {
        Owner::Gone {
            why: "the server process ended unexpectedly (killed or crashed), so \
                  the output of its last moments may be missing from the scrollback"
                .into(),
        }
    }
}

impl Manager {
    /// Start-up reconciliation (see the module documentation). Errors of one
    /// session are logged and do not stop the others; a database failure while
    /// listing what to reconcile fails the start.
    pub(super) async fn reconcile(&self) -> Result<()> {
        let now = self.now();
        let mut owners = Owners {
            manager: self,
            me: identity(&self.server_id, now),
            known: HashMap::new(),
        };
        let policy = self.settings.restart_policy;

        // Claim the running orphans first: after a claim, no other server starting
        // now will touch them.
        let mut claimed: Vec<(SessionRow, State, String)> = Vec::new();
        for row in self.store_running_sessions().await? {
            match self.claim(&mut owners, row, policy).await {
                Ok(Some(claim)) => claimed.push(claim),
                Ok(None) => {}
                Err(err) => tracing::error!(%err, "reconciling a session"),
            }
        }
        let claimed_ids: BTreeSet<String> = claimed
            .iter()
            .map(|(row, _, _)| row.model.id.clone())
            .collect();

        // Reap recorded processes of sessions that no live server runs.
        let mut reaped = 0usize;
        for model in self.store.workers_with_pid().await? {
            let owned_elsewhere = if claimed_ids.contains(&model.session_id) {
                false
            } else {
                match self.store.get_session(&model.session_id).await? {
                    Some(row) => !matches!(
                        owners.of(row.model.server_id.as_deref()).await?,
                        Owner::Gone { .. }
                    ),
                    None => false,
                }
            };
            if owned_elsewhere {
                continue;
            }
            reaped += self.reap_worker(&model).await;
            // Its process is gone now: the row must not name it any more.
            let mut new = model.clone();
            new.pid = None;
            if matches!(
                model.state.as_str(),
                worker_state::RUNNING | worker_state::PAUSED
            ) {
                new.state = worker_state::STOPPED.into();
            }
            if let Err(err) = self
                .store
                .update_worker(&model, &new, self.now(), Vec::new())
                .await
            {
                tracing::error!(worker_id = %model.id, %err, "recording a reaped worker");
            }
        }

        // Reap what escaped the recorded trees: processes tagged with a server of
        // this database that is gone. Their session need not be recorded any more:
        // the daemon of a session that was stopped, deleted and purged is as much
        // an orphan, and nothing else would ever reap it.
        let tagged = tokio::task::spawn_blocking(process::tagged_processes)
            .await
            .unwrap_or_default();
        // Servers with a tagged process that outlived the sweep.
        let mut survivors = BTreeSet::new();
        for found in tagged {
            // Only servers recorded here: an unrecorded one is another database's.
            if !matches!(
                owners.recorded(&found.server_id).await?,
                Some(Owner::Gone { .. })
            ) {
                continue;
            }
            let (pid, ticks) = (found.pid, found.start_ticks);
            // Whether it was signalled, and if not, whether it is still there.
            let (killed, left) = tokio::task::spawn_blocking(move || {
                let killed = process::kill_verified(pid, ticks);
                (killed, !killed && process::is_same_process(pid, ticks))
            })
            .await
            .unwrap_or((false, true));
            if killed {
                reaped += 1;
                tracing::info!(pid, session_id = %found.session_id, "reaped a leftover process found by its environment");
            } else if left {
                // Not signalled and still there: the next start must still know
                // its server to try again.
                survivors.insert(found.server_id);
            }
        }

        // Apply the policy to what was claimed.
        let count = claimed.len();
        for (row, before, reason) in claimed {
            if let Err(err) = self.recover(row, before, &reason).await {
                tracing::error!(%err, "resuming a session after a restart");
            }
        }
        let forgotten = match self.forget_gone_servers(&owners.me, &survivors).await {
            Ok(n) => n,
            Err(err) => {
                tracing::error!(%err, "forgetting servers that are gone");
                0
            }
        };
        tracing::info!(
            sessions = count,
            processes_reaped = reaped,
            servers_forgotten = forgotten,
            policy = policy.as_str(),
            "reconciled with the previous run"
        );
        Ok(())
    }

    /// Deletes the `servers` rows of this machine's servers that are gone (see
    /// [`judge`]), once nothing needs them: no session names them (its
    /// reconciliation judges its owner by the row, and says how it ended), and
    /// no process tagged with them outlived this start's sweep (`survivors`),
    /// which a later start finds only while the row exists. Without this the
    /// table grows by one row per server start. Rows of other machines and of
    /// live servers stay. Returns how many rows went.
    ///
    /// Errors: the database's.
    async fn forget_gone_servers(
        &self,
        me: &server::Model,
        survivors: &BTreeSet<String>,
    ) -> Result<u64> {
        let gone: Vec<String> = self
            .store
            .servers_on_machine(&me.machine_id)
            .await?
            .into_iter()
            .filter(|other| other.id != me.id && !survivors.contains(&other.id))
            .filter_map(|other| {
                let id = other.id.clone();
                matches!(judge(me, other), Owner::Gone { .. }).then_some(id)
            })
            .collect();
        self.store.forget_unnamed_servers(&gone).await
    }

    /// Claims a running session if no live server owns it: writes its next state
    /// under the restart policy, with this server as its owner. Returns the
    /// claimed row, the state before, and the reason.
    async fn claim(
        &self,
        owners: &mut Owners<'_>,
        mut row: SessionRow,
        policy: RestartPolicy,
    ) -> Result<Option<(SessionRow, State, String)>> {
        let event = match policy {
            RestartPolicy::Resume => Event::Recovered,
            RestartPolicy::Stop => Event::Orphaned,
        };
        for _ in 0..MAX_CONFLICT_RETRIES {
            let from = state_of(&row)?;
            if !from.is_running() {
                return Ok(None);
            }
            let why = match owners.of(row.model.server_id.as_deref()).await? {
                Owner::Gone { why } => why,
                Owner::Me | Owner::Alive => return Ok(None),
                Owner::Elsewhere { hostname } => {
                    tracing::info!(session_id = %row.model.id, %hostname, "session runs on another machine; left alone");
                    return Ok(None);
                }
            };
            let Some(to) = on_event(from, event) else {
                return Ok(None);
            };
            let now = self.now();
            let reason = match (policy, from) {
                (RestartPolicy::Stop, _) => format!(
                    "server restarted at {}: {why}; stopped by --restart-policy stop (resume it to start it again)",
                    format_time(now)
                ),
                (RestartPolicy::Resume, State::Paused) => format!(
                    "server restarted at {}: {why}; its workers were started again and suspended (it was PAUSED)",
                    format_time(now)
                ),
                (RestartPolicy::Resume, _) => format!(
                    "server restarted at {}: {why}; its workers were started again (--restart-policy resume)",
                    format_time(now)
                ),
            };
            let mut new = row.clone();
            let stored = lifecycle::apply(
                &mut new.model,
                from,
                to,
                &Cause::Automatic(reason.clone()),
                now,
                self.settings.retention,
            );
            new.model.server_id = Some(self.server_id.clone());
            match self.store.write_session(&row, &new, vec![stored]).await? {
                Write::Done(written) => {
                    tracing::info!(session_id = %written.model.id, %from, %to, %reason, "claimed after a restart");
                    return Ok(Some((written, from, reason)));
                }
                Write::Conflict => {
                    row = match self.store.get_session(&row.model.id).await? {
                        Some(row) => row,
                        None => return Ok(None),
                    };
                }
            }
        }
        Ok(None)
    }

    /// Kills what is left of a worker's recorded process tree, if it is from this
    /// boot and its leader is the recorded process (or gone). Returns how many
    /// processes were signalled.
    async fn reap_worker(&self, model: &worker::Model) -> usize {
        let (Some(pid), Some(ticks), Some(boot)) = (
            model.pid,
            model.process_start_ticks,
            model.boot_id.as_deref(),
        ) else {
            return 0;
        };
        let Ok(ticks) = u64::try_from(ticks) else {
            return 0;
        };
        if process::boot_id().as_deref() != Some(boot) {
            // Recorded before a reboot: every process of that boot is gone, and
            // the pid now names something else.
            return 0;
        }
        let killed = tokio::task::spawn_blocking(move || process::reap_leftovers(pid, ticks))
            .await
            .unwrap_or(0);
        if killed > 0 {
            tracing::info!(worker_id = %model.id, pid, killed, "reaped processes of the previous run");
        }
        killed
    }

    /// Applies the restart policy to a claimed session: its old workers are
    /// recorded stopped; under `resume` they start again (a PAUSED session's are
    /// then suspended).
    async fn recover(&self, row: SessionRow, before: State, reason: &str) -> Result<()> {
        let state = state_of(&row)?;
        for model in self.store.list_workers(&row.model.id).await? {
            self.mark_worker_stopped(&model).await?;
        }
        let separator = format!(
            "\r\n\x1b[2m--- corral: server restarted at {}; the previous run ended here ---\x1b[0m\r\n",
            format_time(self.now())
        );
        match state {
            State::Starting => {
                let view = self.launch_with(row, Some(separator), reason).await?;
                tracing::info!(session_id = %view.row.model.id, %before, state = %view.state(), "resumed after a restart");
            }
            State::Paused => self.relaunch_paused(row, &separator).await?,
            _ => {}
        }
        Ok(())
    }

    /// Starts the workers of a PAUSED session again and suspends them, so it
    /// comes back as it was (input refused until Resume). A worker that cannot
    /// start moves the session to ERROR.
    async fn relaunch_paused(&self, row: SessionRow, separator: &str) -> Result<()> {
        let workers = self.store.list_workers(&row.model.id).await?;
        let Some(launched) = self.spawn_all(&row, &workers, separator).await? else {
            return Ok(());
        };
        self.write_starts(launched.pending).await?;
        for model in self.store.list_workers(&row.model.id).await? {
            let Some(handle) = Uuid::try_parse(&model.id)
                .ok()
                .and_then(|id| self.supervisor.handle(id))
            else {
                continue;
            };
            if handle.pause().await.is_ok() && model.state == worker_state::RUNNING {
                let mut new = model.clone();
                new.state = worker_state::PAUSED.into();
                self.store
                    .update_worker(&model, &new, self.now(), Vec::new())
                    .await?;
            }
        }
        tracing::info!(session_id = %row.model.id, "started again and suspended after a restart");
        Ok(())
    }
}
