//! Every state and action of the session state machine (DESIGN.md §2) on real
//! processes: pause/resume verified in /proc, stop with the grace period, resume
//! from STOPPED within the window (injected clock), restart, archive/reopen,
//! exec failures → ERROR, retry exhaustion, discard, workers exiting on their own,
//! workers added and removed while ACTIVE, and refusals naming the allowed actions.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use common::{PATIENCE, TestServer, eventually};
use corral::pb;
use corral::pb::session::{Action, State};
use corral_server::clock::{Clock, ManualClock};
use corral_server::supervisor::process;
use tonic::Code;

/// A fixed start for injected clocks: 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000_000;

/// The actions each state allows, written out from DESIGN.md §2 (independently of
/// the server's table).
fn expected_actions(state: State) -> Vec<Action> {
    use Action as A;
    match state {
        State::Created => vec![A::Start, A::Delete],
        State::Starting => vec![A::Stop],
        State::Active => vec![A::Pause, A::Stop, A::Restart],
        State::Paused => vec![A::Resume, A::Stop],
        State::Stopped => vec![A::Resume, A::Archive, A::Delete],
        State::Archived => vec![A::Reopen, A::Delete],
        State::Error => vec![A::Retry, A::Discard],
        State::Deleted | State::Unspecified => vec![],
    }
}

/// Asserts the session is in `state` and lists exactly the actions the table allows.
#[track_caller]
fn assert_state(session: &pb::Session, state: State) {
    assert_eq!(
        session.state(),
        state,
        "session {} is {:?} (last_error: {:?}, state_reason: {:?})",
        session.display_name,
        session.state(),
        session.last_error,
        session.state_reason
    );
    let actions: Vec<Action> = session
        .available_actions
        .iter()
        .map(|a| Action::try_from(*a).unwrap())
        .collect();
    assert_eq!(
        actions,
        expected_actions(state),
        "available_actions of {state:?}"
    );
}

fn micros(ts: &Option<prost_types::Timestamp>) -> i64 {
    let ts = ts.as_ref().expect("timestamp set");
    ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1_000
}

fn name(session: &str) -> String {
    format!("sessions/{session}")
}

/// The lifecycle RPCs by action, for tests that walk the table.
async fn act(
    server: &TestServer,
    session: &str,
    action: Action,
) -> Result<pb::Session, tonic::Status> {
    let mut c = server.sessions.clone();
    let name = name(session);
    let reply = match action {
        Action::Start => {
            c.start_session(pb::StartSessionRequest {
                name,
                etag: String::new(),
            })
            .await
        }
        Action::Pause => {
            c.pause_session(pb::PauseSessionRequest {
                name,
                etag: String::new(),
            })
            .await
        }
        Action::Resume => {
            c.resume_session(pb::ResumeSessionRequest {
                name,
                etag: String::new(),
            })
            .await
        }
        Action::Stop => {
            c.stop_session(pb::StopSessionRequest {
                name,
                etag: String::new(),
                grace_ms: 2_000,
            })
            .await
        }
        Action::Restart => {
            c.restart_session(pb::RestartSessionRequest {
                name,
                etag: String::new(),
            })
            .await
        }
        Action::Archive => {
            c.archive_session(pb::ArchiveSessionRequest {
                name,
                etag: String::new(),
            })
            .await
        }
        Action::Reopen => {
            c.reopen_session(pb::ReopenSessionRequest {
                name,
                etag: String::new(),
            })
            .await
        }
        Action::Retry => {
            c.retry_session(pb::RetrySessionRequest {
                name,
                etag: String::new(),
            })
            .await
        }
        Action::Discard => {
            c.discard_session(pb::DiscardSessionRequest {
                name,
                etag: String::new(),
            })
            .await
        }
        Action::Delete => {
            c.delete_session(pb::DeleteSessionRequest {
                name,
                ..Default::default()
            })
            .await
        }
        Action::Unspecified => panic!("no such action"),
    };
    reply.map(tonic::Response::into_inner)
}

async fn must(server: &TestServer, session: &str, action: Action) -> pb::Session {
    match act(server, session, action).await {
        Ok(session) => session,
        Err(status) => panic!("{action:?} {session}: {status:?}"),
    }
}

/// DeleteWorker of `name` (`sessions/<session>/workers/<worker>`), which must succeed.
async fn delete_worker(server: &TestServer, name: &str) {
    server
        .workers
        .clone()
        .delete_worker(pb::DeleteWorkerRequest { name: name.into() })
        .await
        .unwrap();
}

/// Creates a quick session with the given terminal workers (`(name, argv)`; an
/// empty argv runs the test shell).
async fn create_with_workers(
    server: &TestServer,
    session: &str,
    workers: &[(&str, &[&str])],
) -> pb::Session {
    let work_dir = server.work_dir(session);
    server
        .sessions
        .clone()
        .create_session(pb::CreateSessionRequest {
            session: Some(pb::Session {
                display_name: session.into(),
                source: Some(pb::session::Source::Quick(pb::QuickSource {
                    work_dir: work_dir.display().to_string(),
                })),
                ..Default::default()
            }),
            workers: workers
                .iter()
                .map(|(worker, argv)| pb::Worker {
                    display_name: (*worker).into(),
                    spec: Some(pb::worker::Spec::Terminal(pb::TerminalSpec {
                        command: argv.iter().map(|a| a.to_string()).collect(),
                        ..Default::default()
                    })),
                    ..Default::default()
                })
                .collect(),
            validate_only: false,
        })
        .await
        .expect("create session")
        .into_inner()
}

/// Every process of the PTY session led by `leader`, from /proc.
fn members(leader: i32) -> Vec<process::Member> {
    process::session_members(leader)
}

fn comm(pid: i32) -> String {
    process::comm(pid).unwrap_or_default()
}

fn is_gone(pid: i32) -> bool {
    process::member(pid).is_none_or(|m| m.state == 'Z')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_shell_and_foreground_job_and_resume_continues_them() {
    let server = TestServer::start().await;
    server.create_session("pz").await;
    let started = server.start_session("pz").await;
    assert_state(&started, State::Active);
    let shell = started.workers[0].pid;

    let mut client = server
        .attach("sessions/pz/workers/shell", Some((24, 80)), None)
        .await;
    client.input(b"echo ready-$((20+1))\n").await;
    client.expect("ready-21").await;
    client.input(b"sleep 1000\n").await;
    eventually("sleep runs as the terminal's foreground job", || async {
        members(shell)
            .iter()
            .any(|m| comm(m.pid) == "sleep" && m.pgid != shell)
    })
    .await;

    let paused = must(&server, "pz", Action::Pause).await;
    assert_state(&paused, State::Paused);
    assert_eq!(paused.pause_count, 1);
    assert!(paused.pause_time.is_some());
    assert_eq!(paused.workers[0].state(), pb::worker::State::Paused);
    // Every process of the PTY's session, the shell and its job, is stopped.
    let stopped = members(shell);
    assert!(stopped.len() >= 2, "bash and sleep: {stopped:?}");
    for member in &stopped {
        assert_eq!(
            member.state,
            'T',
            "{} ({}) is not stopped: {stopped:?}",
            member.pid,
            comm(member.pid)
        );
    }

    // Input is refused with an error frame; the stream stays open.
    client.input(b"echo typed-while-paused\n").await;
    let refused = client.expect_error_frame().await;
    assert_eq!(refused.code, Code::FailedPrecondition as i32, "{refused:?}");
    assert!(refused.message.contains("paused"), "{}", refused.message);
    // Output and replay still work: a new client gets the history.
    let mut watcher = server.attach("sessions/pz/workers/shell", None, None).await;
    watcher.expect("ready-21").await;
    // Other refusals while PAUSED name the allowed actions.
    let status = act(&server, "pz", Action::Restart).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("allowed actions: resume, stop"),
        "{}",
        status.message()
    );

    let resumed = must(&server, "pz", Action::Resume).await;
    assert_state(&resumed, State::Active);
    assert_eq!((resumed.pause_count, resumed.resume_count), (1, 1));
    assert!(resumed.resume_time.is_some());
    assert_eq!(resumed.workers[0].state(), pb::worker::State::Running);
    eventually("every process runs again", || async {
        let now = members(shell);
        now.len() >= 2 && now.iter().all(|m| matches!(m.state, 'S' | 'R'))
    })
    .await;

    // The job is still the foreground job: ctrl-C ends it and the prompt returns.
    client.input(b"\x03").await;
    client.input(b"echo after-$((40+2))\n").await;
    client.expect("after-42").await;
    let output = String::from_utf8_lossy(&client.output).into_owned();
    assert!(
        !output.contains("Stopped"),
        "the shell noticed its job stop:\n{output}"
    );
    assert!(
        !output.contains("typed-while-paused"),
        "refused input reached the shell:\n{output}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_keeps_scrollback_and_resume_restarts_the_same_workers_in_the_same_dir() {
    let clock = ManualClock::new(T0);
    let server = TestServer::start_with(|_| {}, Some(clock.clone() as Arc<dyn Clock>)).await;
    let created = server.create_session("st").await;
    assert_eq!(micros(&created.create_time), T0);
    clock.advance(Duration::from_secs(1));
    let started = server.start_session("st").await;
    assert_eq!(micros(&started.start_time), T0 + 1_000_000);
    let worker_id = started.workers[0].id.clone();
    let first_pid = started.workers[0].pid;
    let mut client = server.attach("sessions/st/workers/shell", None, None).await;
    client.input(b"echo before-$((1+1)); pwd\n").await;
    client.expect("before-2").await;

    clock.advance(Duration::from_secs(1));
    let stopped = must(&server, "st", Action::Stop).await;
    assert_state(&stopped, State::Stopped);
    assert_eq!(micros(&stopped.stop_time), T0 + 2_000_000);
    assert_eq!(
        micros(&stopped.resume_deadline),
        T0 + 2_000_000 + 7 * 24 * 3600 * 1_000_000,
        "the default resume window is 7 days"
    );
    assert_eq!(stopped.workers[0].state(), pb::worker::State::Stopped);
    assert!(client.until_end().await.is_ok());
    assert!(client.exit().is_some());
    assert!(is_gone(first_pid));
    // STOPPED is read-only: no attaching, no new input.
    let mut workers = server.workers.clone();
    let refused = common::Client::try_open(&mut workers, "sessions/st/workers/shell", None, None)
        .await
        .err()
        .expect("attach to a stopped worker is refused");
    assert_eq!(refused.code(), Code::FailedPrecondition);

    clock.advance(Duration::from_secs(6 * 24 * 3600));
    let resumed = must(&server, "st", Action::Resume).await;
    assert_state(&resumed, State::Active);
    assert_eq!(resumed.resume_count, 1);
    assert_eq!(resumed.workers.len(), 1);
    assert_eq!(resumed.workers[0].id, worker_id, "same worker");
    assert_eq!(resumed.workers[0].display_name, "shell");
    assert_eq!(resumed.workers[0].restart_count, 1);
    assert_ne!(resumed.workers[0].pid, first_pid);
    assert!(resumed.resume_deadline.is_none());

    // The scrollback is kept, with a visible separator before the new run.
    let mut client = server.attach("sessions/st/workers/shell", None, None).await;
    client.expect("before-2").await;
    client.expect("started again").await;
    client.input(b"pwd; echo after-$((2+1))\n").await;
    client.expect("after-3").await;
    let work_dir = std::fs::canonicalize(server.work_dir("st")).unwrap();
    client
        .expect_count(&work_dir.display().to_string(), 2)
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_kills_what_ignores_sigterm_after_the_grace() {
    let server = TestServer::start().await;
    let script = "trap '' TERM HUP; echo trapped; while :; do sleep 1; done";
    create_with_workers(&server, "stubborn", &[("loop", &["sh", "-c", script])]).await;
    let started = server.start_session("stubborn").await;
    let pid = started.workers[0].pid;
    let mut client = server
        .attach("sessions/stubborn/workers/loop", None, None)
        .await;
    client.expect("trapped").await;
    let stopped = server
        .sessions
        .clone()
        .stop_session(pb::StopSessionRequest {
            name: name("stubborn"),
            etag: String::new(),
            grace_ms: 200,
        })
        .await
        .unwrap()
        .into_inner();
    assert_state(&stopped, State::Stopped);
    let exit = stopped.workers[0]
        .exit_status
        .as_ref()
        .expect("exit status");
    assert_eq!(exit.signal, "SIGKILL", "{exit:?}");
    assert!(is_gone(pid));
    assert!(
        members(pid).iter().all(|m| m.state == 'Z'),
        "nothing of the PTY session is left"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_from_stopped_only_within_the_window_then_reopen_from_the_archive() {
    let clock = ManualClock::new(T0);
    let server = TestServer::start_with(
        |config| {
            config.resume_window = Duration::from_secs(3600);
            // Only this test moves sessions along here, not the retention task.
            config.reaper_interval = Duration::from_secs(365 * 24 * 3600);
        },
        Some(clock.clone() as Arc<dyn Clock>),
    )
    .await;
    server.create_session("win").await;
    server.start_session("win").await;
    let stopped = must(&server, "win", Action::Stop).await;
    assert_eq!(micros(&stopped.resume_deadline), T0 + 3_600_000_000);

    clock.advance(Duration::from_secs(3601));
    let status = act(&server, "win", Action::Resume).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("reopened from the archive"),
        "{}",
        status.message()
    );
    assert_state(&server.get_session("win").await, State::Stopped);

    let archived = must(&server, "win", Action::Archive).await;
    assert_state(&archived, State::Archived);
    assert!(!archived.auto_archived, "a client archived it");
    assert_eq!(micros(&archived.archive_time), T0 + 3_601_000_000);
    for refused in [Action::Resume, Action::Start, Action::Pause] {
        let status = act(&server, "win", refused).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(
            status.message().contains("allowed actions: reopen, delete"),
            "{}",
            status.message()
        );
    }

    clock.advance(Duration::from_secs(10));
    let reopened = must(&server, "win", Action::Reopen).await;
    assert_state(&reopened, State::Stopped);
    assert_eq!(
        micros(&reopened.stop_time),
        T0 + 3_611_000_000,
        "a new window starts"
    );
    let resumed = must(&server, "win", Action::Resume).await;
    assert_state(&resumed, State::Active);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_starts_new_processes_and_keeps_history() {
    let server = TestServer::start().await;
    server.create_session("rs").await;
    let started = server.start_session("rs").await;
    let old_pid = started.workers[0].pid;
    let mut client = server.attach("sessions/rs", None, None).await;
    client.input(b"echo first-$((3*3))\n").await;
    client.expect("first-9").await;

    let restarted = must(&server, "rs", Action::Restart).await;
    assert_state(&restarted, State::Active);
    assert_eq!(restarted.restart_count, 1);
    assert_eq!(restarted.workers[0].id, started.workers[0].id);
    assert_ne!(restarted.workers[0].pid, old_pid);
    assert!(is_gone(old_pid));
    assert!(
        client.until_end().await.is_ok(),
        "the old run's clients see it end"
    );

    let mut client = server.attach("sessions/rs", None, None).await;
    client.expect("first-9").await;
    client.expect("started again").await;
    client.input(b"echo second-$((4*4))\n").await;
    client.expect("second-16").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_start_puts_the_session_in_error_in_plain_words() {
    let server = TestServer::start().await;

    // Command not found.
    create_with_workers(
        &server,
        "nf",
        &[("tool", &["corral-no-such-command", "--flag"])],
    )
    .await;
    let failed = server.start_session("nf").await;
    assert_state(&failed, State::Error);
    assert!(
        failed.last_error.contains("\"tool\""),
        "{}",
        failed.last_error
    );
    assert!(
        failed.last_error.contains("corral-no-such-command"),
        "{}",
        failed.last_error
    );
    assert!(
        failed.last_error.contains("not found"),
        "{}",
        failed.last_error
    );
    assert_eq!(failed.workers[0].state(), pb::worker::State::Failed);
    assert_eq!(failed.workers[0].last_error, failed.last_error);

    // Permission denied: the exec itself fails (portable-pty reports success for
    // the fork); it is detected and reported as a start failure.
    let script = server.work_dir("pd").join("tool.sh");
    std::fs::write(&script, "#!/bin/sh\necho never\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let script = script.display().to_string();
    create_with_workers(&server, "pd", &[("script", &[script.as_str()])]).await;
    let failed = server.start_session("pd").await;
    assert_state(&failed, State::Error);
    assert!(
        failed
            .last_error
            .to_lowercase()
            .contains("permission denied"),
        "{}",
        failed.last_error
    );

    // A missing #! interpreter: execve fails in the forked child.
    let script = server.work_dir("interp").join("old.py");
    std::fs::write(&script, "#!/nonexistent/python9\nprint('x')\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = script.display().to_string();
    create_with_workers(&server, "interp", &[("py", &[script.as_str()])]).await;
    let failed = server.start_session("interp").await;
    assert_state(&failed, State::Error);
    assert!(
        failed.last_error.contains("/nonexistent/python9"),
        "{}",
        failed.last_error
    );

    // The work dir was removed after the session was created.
    server.create_session("gone").await;
    std::fs::remove_dir(server.work_dir("gone")).unwrap();
    let failed = server.start_session("gone").await;
    assert_state(&failed, State::Error);
    assert!(
        failed.last_error.contains("does not exist"),
        "{}",
        failed.last_error
    );

    // A session with a good worker and a bad one: the good one is stopped again.
    create_with_workers(
        &server,
        "mixed",
        &[
            ("good", &["sleep", "1000"]),
            ("bad", &["corral-no-such-command"]),
        ],
    )
    .await;
    let failed = server.start_session("mixed").await;
    assert_state(&failed, State::Error);
    assert!(
        failed.last_error.contains("\"bad\""),
        "{}",
        failed.last_error
    );
    assert_eq!(failed.workers[0].state(), pb::worker::State::Stopped);
    assert_eq!(failed.workers[0].pid, 0);

    // Discard → DELETED.
    let discarded = must(&server, "mixed", Action::Discard).await;
    assert_state(&discarded, State::Deleted);
    assert!(discarded.delete_time.is_some() && discarded.purge_time.is_some());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_third_failed_retry_discards_the_session() {
    let server = TestServer::start().await;
    create_with_workers(&server, "flaky", &[("tool", &["corral-no-such-command"])]).await;
    let failed = server.start_session("flaky").await;
    assert_state(&failed, State::Error);
    assert_eq!(failed.retry_count, 0);
    for attempt in 1..=2 {
        let retried = must(&server, "flaky", Action::Retry).await;
        assert_state(&retried, State::Error);
        assert_eq!(retried.retry_count, attempt);
        assert!(
            retried.last_error.contains("not found"),
            "{}",
            retried.last_error
        );
    }
    let discarded = must(&server, "flaky", Action::Retry).await;
    assert_state(&discarded, State::Deleted);
    assert_eq!(discarded.retry_count, 3);
    assert!(
        discarded.state_reason.contains("3 of 3 retries failed"),
        "{}",
        discarded.state_reason
    );
    assert!(
        discarded.last_error.contains("not found"),
        "the reason is kept: {}",
        discarded.last_error
    );
    let status = act(&server, &discarded.id, Action::Retry)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("DELETED is final"),
        "{}",
        status.message()
    );

    // A retry that works brings the session up.
    let dir = server.work_dir("fixable");
    create_with_workers(&server, "fixable", &[("tool", &["./tool.sh"])]).await;
    let script = dir.join("tool.sh");
    std::fs::write(&script, "#!/bin/sh\necho fixed; exec sleep 1000\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_state(&server.start_session("fixable").await, State::Error);
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let retried = must(&server, "fixable", Action::Retry).await;
    assert_state(&retried, State::Active);
    assert_eq!(retried.retry_count, 1);
    assert!(retried.last_error.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_configurable() {
    let server = TestServer::start_with(|config| config.max_retries = 1, None).await;
    create_with_workers(&server, "once", &[("tool", &["corral-no-such-command"])]).await;
    assert_state(&server.start_session("once").await, State::Error);
    let discarded = must(&server, "once", Action::Retry).await;
    assert_state(&discarded, State::Deleted);
    assert!(
        discarded.state_reason.contains("1 of 1 retries failed"),
        "{}",
        discarded.state_reason
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_exit_on_their_own_and_come_and_go_while_active() {
    let server = TestServer::start().await;
    create_with_workers(&server, "multi", &[("a", &[]), ("b", &[])]).await;
    let started = server.start_session("multi").await;
    assert_state(&started, State::Active);

    // A worker added while ACTIVE starts at once; removing it ends its process.
    let added = server
        .workers
        .clone()
        .create_worker(pb::CreateWorkerRequest {
            parent: name("multi"),
            worker: Some(pb::Worker {
                display_name: "extra".into(),
                spec: Some(pb::worker::Spec::Terminal(pb::TerminalSpec {
                    command: vec!["sleep".into(), "1000".into()],
                    ..Default::default()
                })),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.state(), pb::worker::State::Running);
    assert_eq!(comm(added.pid), "sleep");
    delete_worker(&server, "sessions/multi/workers/extra").await;
    assert!(is_gone(added.pid));
    let session = server.get_session("multi").await;
    assert_state(&session, State::Active);
    assert_eq!(session.workers.len(), 2);

    // `exit 3` in one shell: that worker is EXITED with its status; the session
    // stays ACTIVE while the other runs.
    let mut a = server.attach("sessions/multi/workers/a", None, None).await;
    a.input(b"exit 3\n").await;
    assert!(a.until_end().await.is_ok());
    assert_eq!(a.exit().unwrap().code, Some(3));
    eventually("worker a is recorded as exited", || async {
        server.get_session("multi").await.workers[0].state() == pb::worker::State::Exited
    })
    .await;
    let session = server.get_session("multi").await;
    assert_state(&session, State::Active);
    assert_eq!(
        session.workers[0].exit_status.as_ref().unwrap().code,
        Some(3)
    );
    assert_eq!(session.workers[1].state(), pb::worker::State::Running);

    // The last one exits: the session is STOPPED.
    let mut b = server.attach("sessions/multi/workers/b", None, None).await;
    b.input(b"exit\n").await;
    assert!(b.until_end().await.is_ok());
    eventually("the session stops with its last worker", || async {
        server.get_session("multi").await.state() == State::Stopped
    })
    .await;
    let session = server.get_session("multi").await;
    assert_state(&session, State::Stopped);
    assert_eq!(session.state_reason, "every worker exited");
    assert!(session.stop_time.is_some());
    server.stop().await;
}

/// A worker that exits the moment it starts is recorded EXITED, after its start:
/// never left RUNNING by a start written after the exit. A start's row is written
/// with the session's ACTIVE state, after every worker of the session started, so
/// the exit must wait for it (without that wait this fails most runs). Many
/// sessions at once, so the writes queue behind each other (on SQLite, behind one
/// write lock) while the exits come in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_exits_at_once_is_recorded_exited_after_its_start() {
    const SESSIONS: usize = 12;
    let server = TestServer::start().await;
    for i in 0..SESSIONS {
        create_with_workers(
            &server,
            &format!("blink-{i}"),
            &[("a", &["true"]), ("b", &["true"])],
        )
        .await;
    }
    let starts = (0..SESSIONS).map(|i| {
        let mut sessions = server.sessions.clone();
        async move {
            sessions
                .start_session(pb::StartSessionRequest {
                    name: format!("sessions/blink-{i}"),
                    ..Default::default()
                })
                .await
        }
    });
    for started in futures::future::join_all(starts).await {
        // ACTIVE, or already STOPPED when both exits came in before the answer.
        let state = started.unwrap().into_inner().state();
        assert!(matches!(state, State::Active | State::Stopped), "{state:?}");
    }
    for i in 0..SESSIONS {
        let name = format!("blink-{i}");
        // The session stops once no worker runs; each exit is recorded by the
        // exit listener, in turn.
        eventually("the session stops and both exits are recorded", || async {
            let session = server.get_session(&name).await;
            session.state() == State::Stopped
                && session
                    .workers
                    .iter()
                    .all(|w| w.state() != pb::worker::State::Running)
        })
        .await;
        let session = server.get_session(&name).await;
        for worker in &session.workers {
            assert_eq!(
                worker.state(),
                pb::worker::State::Exited,
                "{name}: {worker:?}"
            );
            assert_eq!(worker.exit_status.as_ref().and_then(|e| e.code), Some(0));
            assert_eq!(worker.pid, 0, "{name}: an exited worker has no pid");
        }
    }
    server.stop().await;
}

/// What the server keeps in memory per worker goes with the worker: after cycles
/// of create → start → stop → delete, and a worker removed from a running
/// session, no exit slot is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_workers_leave_nothing_behind_in_memory() {
    let server = TestServer::start().await;
    let manager = server.server.as_ref().unwrap().manager().clone();
    for cycle in 0..3 {
        let session = format!("cycle-{cycle}");
        create_with_workers(&server, &session, &[("a", &["sleep", "1000"]), ("b", &[])]).await;
        must(&server, &session, Action::Start).await;
        assert_eq!(manager.exit_slots(), 2, "one slot per started worker");
        must(&server, &session, Action::Stop).await;
        must(&server, &session, Action::Delete).await;
        assert_eq!(manager.exit_slots(), 0, "cycle {cycle}");
    }
    create_with_workers(
        &server,
        "kept",
        &[("a", &["sleep", "1000"]), ("b", &["sleep", "1000"])],
    )
    .await;
    must(&server, "kept", Action::Start).await;
    delete_worker(&server, "sessions/kept/workers/a").await;
    assert_eq!(manager.exit_slots(), 1, "the running worker keeps its slot");
    server.stop().await;
}

/// A worker deleted as soon as its flood ended (a client saw the exit) leaves
/// nothing writing its scrollback: its persister's last batch, still being
/// written, used to fail on the deleted row's foreign key and be retried and
/// logged as an error for half a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_deleted_right_after_its_exit_leaves_nothing_writing() {
    let server = TestServer::start().await;
    let manager = server.server.as_ref().unwrap().manager().clone();
    let flood = "read _; head -c 4000000 /dev/zero";
    create_with_workers(
        &server,
        "flood",
        &[("a", &["sh", "-c", flood]), ("b", &["sleep", "1000"])],
    )
    .await;
    let started = must(&server, "flood", Action::Start).await;
    let a = started
        .workers
        .iter()
        .find(|w| w.display_name == "a")
        .map(|w| uuid::Uuid::parse_str(&w.id).unwrap())
        .unwrap();
    let mut client = server.attach("sessions/flood/workers/a", None, None).await;
    client.input(b"\n").await;
    client.until_end().await.unwrap();
    assert!(client.exit().is_some());
    delete_worker(&server, "sessions/flood/workers/a").await;
    assert!(
        !manager.is_persisting(a),
        "a deleted worker's scrollback is still being written"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_last_running_worker_stops_the_session() {
    let server = TestServer::start().await;
    create_with_workers(&server, "solo", &[("only", &["sleep", "1000"])]).await;
    let started = server.start_session("solo").await;
    delete_worker(&server, "sessions/solo/workers/only").await;
    assert!(is_gone(started.workers[0].pid));
    let session = server.get_session("solo").await;
    assert_state(&session, State::Stopped);
    assert!(session.workers.is_empty());
    // Resuming a session without workers starts the default shell.
    let resumed = must(&server, "solo", Action::Resume).await;
    assert_state(&resumed, State::Active);
    assert_eq!(resumed.workers[0].display_name, "shell");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refused_action_names_the_state_and_the_allowed_actions() {
    let server = TestServer::start().await;
    let id = server.create_session("walk").await.id;
    let all = [
        Action::Start,
        Action::Pause,
        Action::Resume,
        Action::Stop,
        Action::Restart,
        Action::Archive,
        Action::Reopen,
        Action::Retry,
        Action::Discard,
        Action::Delete,
    ];
    // Walk CREATED → ACTIVE → PAUSED → STOPPED → ARCHIVED, trying every refused
    // action in each state: nothing changes, and the message lists the allowed ones.
    let path = [
        (State::Created, Action::Start),
        (State::Active, Action::Pause),
        (State::Paused, Action::Stop),
        (State::Stopped, Action::Archive),
        (State::Archived, Action::Delete),
    ];
    for (state, next) in path {
        let before = server.get_session(&id).await;
        assert_state(&before, state);
        let allowed: BTreeSet<Action> = expected_actions(state).into_iter().collect();
        for action in all {
            if allowed.contains(&action) {
                continue;
            }
            let status = act(&server, "walk", action).await.unwrap_err();
            assert_eq!(
                status.code(),
                Code::FailedPrecondition,
                "{action:?} in {state:?}"
            );
            assert!(
                status
                    .message()
                    .contains(&format!("that is {}", state.as_str_name())),
                "{}",
                status.message()
            );
        }
        let after = server.get_session(&id).await;
        assert_eq!(after.etag, before.etag, "refusals change nothing");
        let moved = must(&server, &before.id, next).await;
        assert!(micros(&moved.update_time) >= micros(&before.update_time));
    }
    assert_state(&server.get_session(&id).await, State::Deleted);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_etag_aborts_a_transition() {
    let server = TestServer::start().await;
    let created = server.create_session("etag").await;
    let updated = server
        .sessions
        .clone()
        .update_session(pb::UpdateSessionRequest {
            session: Some(pb::Session {
                name: name("etag"),
                description: "changed".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["description".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(updated.etag, created.etag);
    let status = server
        .sessions
        .clone()
        .start_session(pb::StartSessionRequest {
            name: name("etag"),
            etag: created.etag.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    let started = server
        .sessions
        .clone()
        .start_session(pb::StartSessionRequest {
            name: name("etag"),
            etag: updated.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_state(&started, State::Active);
    tokio::time::timeout(PATIENCE, server.stop()).await.unwrap();
}
