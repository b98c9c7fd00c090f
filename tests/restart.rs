//! Restarting the server (in-process, on the same directory and database):
//! sessions come back per the restart policy with their scrollback, leftover
//! processes of the previous run are reaped by pid *and* start time *and* boot id,
//! and nothing else — a process that reused a recorded pid, a live server's
//! sessions — is ever touched.

mod common;

use common::procs;
use common::{Client, TestServer, eventually};
use corral::pb;
use corral::pb::session::State;
use corral_server::config::RestartPolicy;
use sea_orm::{ConnectionTrait, Database};
use std::time::Duration;

async fn act(server: &TestServer, name: &str, action: pb::session::Action) -> pb::Session {
    let mut sessions = server.sessions.clone();
    let name = format!("sessions/{name}");
    use pb::session::Action as A;
    let response = match action {
        A::Pause => {
            sessions
                .pause_session(pb::PauseSessionRequest {
                    name,
                    ..Default::default()
                })
                .await
        }
        A::Resume => {
            sessions
                .resume_session(pb::ResumeSessionRequest {
                    name,
                    ..Default::default()
                })
                .await
        }
        A::Stop => {
            sessions
                .stop_session(pb::StopSessionRequest {
                    name,
                    ..Default::default()
                })
                .await
        }
        A::Delete => {
            sessions
                .delete_session(pb::DeleteSessionRequest {
                    name,
                    ..Default::default()
                })
                .await
        }
        other => panic!("no helper for {other:?}"),
    };
    response.expect("lifecycle action").into_inner()
}

/// The rows `sql` selects from the test database.
async fn select(url: &str, sql: &str) -> Vec<sea_orm::QueryResult> {
    let db = Database::connect(url).await.unwrap();
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            sql,
        ))
        .await
        .unwrap();
    db.close().await.ok();
    rows
}

/// The bytes stored for worker `worker_id`, oldest first.
async fn stored_scrollback(url: &str, worker_id: &str) -> Vec<u8> {
    let sql = format!(
        "SELECT data FROM scrollback_chunks WHERE worker_id = '{worker_id}' ORDER BY start_offset"
    );
    select(url, &sql)
        .await
        .iter()
        .flat_map(|row| row.try_get::<Vec<u8>>("", "data").unwrap())
        .collect()
}

/// Waits until the scrollback stored for worker `worker_id` holds `needle`;
/// fails with `what` when it does not in time.
async fn eventually_stored(url: &str, worker_id: &str, needle: &str, what: &str) {
    eventually(what, || async {
        String::from_utf8_lossy(&stored_scrollback(url, worker_id).await).contains(needle)
    })
    .await;
}

/// Creates and starts the session `name` (one shell worker) and attaches to it;
/// returns the worker's id and the client.
async fn start_attached(server: &TestServer, name: &str) -> (String, Client) {
    server.create_session(name).await;
    let session = server.start_session(name).await;
    let worker_id = session.workers[0].id.clone();
    let client = server.attach(&format!("sessions/{name}"), None, None).await;
    (worker_id, client)
}

/// Runs session `name` (one shell worker) on a new server from its start to its
/// stop, then shuts the server down; returns its directory and database.
async fn stopped_then_shut_down(name: &str) -> (tempfile::TempDir, common::TestDb) {
    let server = TestServer::start().await;
    server.create_session(name).await;
    server.start_session(name).await;
    act(&server, name, pb::session::Action::Stop).await;
    server.shut_down().await
}

/// Runs `sql` on the test database.
async fn execute(url: &str, sql: &str) {
    let db = Database::connect(url).await.unwrap();
    db.execute_unprepared(sql).await.expect(sql);
    db.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_restart_brings_sessions_back_with_their_scrollback() {
    let server = TestServer::start().await;
    for name in ["work", "held", "done", "fresh"] {
        server.create_session(name).await;
    }
    for name in ["work", "held", "done"] {
        server.start_session(name).await;
    }
    let mut client = server.attach("sessions/work", None, None).await;
    client.input(b"echo before-restart-$((1+1))\n").await;
    client.expect("before-restart-2").await;
    let old_end = client.output.len();
    drop(client);
    act(&server, "held", pb::session::Action::Pause).await;
    act(&server, "done", pb::session::Action::Stop).await;
    let old = server.get_session("work").await;
    let old_pid = old.workers[0].pid;
    let old_ticks = procs::stat(old_pid).unwrap().start_ticks;

    let (dir, db) = server.shut_down().await;
    assert!(
        !procs::same_process(old_pid, old_ticks),
        "shutdown ended the shell"
    );
    let server = TestServer::start_in(dir, db, |_| {}, None).await;

    // ACTIVE came back ACTIVE, with a new shell and the reason recorded.
    let work = server.get_session("work").await;
    assert_eq!(work.state(), State::Active, "{}", work.last_error);
    assert!(
        work.state_reason.contains("server restarted") && work.state_reason.contains("shut down"),
        "{}",
        work.state_reason
    );
    assert_eq!(work.workers[0].state(), pb::worker::State::Running);
    assert_ne!(work.workers[0].pid, old_pid);
    // Its scrollback was replayed with the same offsets, then the marker, then
    // the new run.
    let mut client = server.attach("sessions/work", None, None).await;
    client.expect("the previous run ended here").await;
    let text = String::from_utf8_lossy(&client.output).into_owned();
    let before = text.find("before-restart-2").expect("old output replayed");
    assert!(before < text.find("the previous run ended here").unwrap());
    assert_eq!(client.attached.replay_start_offset, 0);
    assert!(client.attached.replay_end_offset as usize > old_end);
    client.input(b"echo after-$((2+2))\n").await;
    client.expect("after-4").await;

    // PAUSED came back PAUSED: processes suspended, input refused.
    let held = server.get_session("held").await;
    assert_eq!(held.state(), State::Paused, "{}", held.state_reason);
    assert_eq!(
        held.pause_count, 1,
        "coming back paused is not another pause"
    );
    assert_eq!(held.workers[0].state(), pb::worker::State::Paused);
    let pid = held.workers[0].pid;
    eventually("the shell is stopped (T)", || async move {
        procs::stat(pid).is_some_and(|s| s.state == 'T')
    })
    .await;
    let mut paused = server.attach("sessions/held", None, None).await;
    paused.input(b"echo refused\n").await;
    let refusal = paused.expect_error_frame().await;
    assert!(refusal.message.contains("paused"), "{}", refusal.message);
    act(&server, "held", pb::session::Action::Resume).await;
    let mut resumed = server.attach("sessions/held", None, None).await;
    resumed.input(b"echo resumed-$((3+3))\n").await;
    resumed.expect("resumed-6").await;

    // The others are as they were.
    assert_eq!(server.get_session("done").await.state(), State::Stopped);
    assert_eq!(server.get_session("fresh").await.state(), State::Created);

    // The restart is in the event log, with its reason.
    let page = server
        .events()
        .list_events(pb::ListEventsRequest {
            session: "sessions/work".into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let restarted = page.events.iter().any(|e| match &e.detail {
        Some(pb::event::Detail::StateChange(change)) => {
            change.from() == State::Active
                && change.to() == State::Starting
                && change.reason.contains("server restarted")
        }
        _ => false,
    });
    assert!(restarted, "{:#?}", page.events);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policy_stop_leaves_running_sessions_stopped_and_resumable() {
    let server = TestServer::start().await;
    for name in ["work", "held"] {
        server.create_session(name).await;
        server.start_session(name).await;
    }
    let mut client = server.attach("sessions/work", None, None).await;
    client.input(b"echo kept-$((5*5))\n").await;
    client.expect("kept-25").await;
    drop(client);
    act(&server, "held", pb::session::Action::Pause).await;

    let (dir, db) = server.shut_down().await;
    let server = TestServer::start_in(
        dir,
        db,
        |config| config.restart_policy = RestartPolicy::Stop,
        None,
    )
    .await;
    for name in ["work", "held"] {
        let session = server.get_session(name).await;
        assert_eq!(session.state(), State::Stopped, "{name}");
        assert!(
            session.state_reason.contains("--restart-policy stop"),
            "{}",
            session.state_reason
        );
        assert!(session.workers.iter().all(|w| w.pid == 0));
        assert!(session.resume_deadline.is_some(), "resumable");
    }
    // Resumed later, the worker shows what it printed before the restart.
    let resumed = act(&server, "work", pb::session::Action::Resume).await;
    assert_eq!(resumed.state(), State::Active, "{}", resumed.last_error);
    let mut client = server.attach("sessions/work", None, None).await;
    client.expect("kept-25").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_signals_only_processes_whose_pid_start_time_and_boot_match() {
    let server = TestServer::start().await;
    let work_dir = server.work_dir("pids");
    let terminal = |name: &str| pb::Worker {
        display_name: name.into(),
        spec: Some(pb::worker::Spec::Terminal(pb::TerminalSpec {
            command: vec!["sleep".into(), "1000".into()],
            ..Default::default()
        })),
        ..Default::default()
    };
    server
        .sessions
        .clone()
        .create_session(pb::CreateSessionRequest {
            session: Some(pb::Session {
                display_name: "pids".into(),
                source: Some(pb::session::Source::Quick(pb::QuickSource {
                    work_dir: work_dir.display().to_string(),
                })),
                ..Default::default()
            }),
            workers: vec![
                terminal("reused"),
                terminal("rebooted"),
                terminal("leftover"),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    let session = server.start_session("pids").await;
    assert_eq!(session.state(), State::Active);
    let (dir, db) = server.shut_down().await;

    // Unrelated processes that now hold pids the rows will name.
    let spawn = |setsid: bool| {
        let mut command = std::process::Command::new(if setsid { "setsid" } else { "sleep" });
        if setsid {
            command.args(["sleep", "1000"]);
        } else {
            command.arg("1000");
        }
        let child = command.spawn().unwrap();
        let pid = child.id() as i32;
        (child, pid)
    };
    let (mut reused, reused_pid) = spawn(false);
    let (mut rebooted, rebooted_pid) = spawn(false);
    // A real leftover of the previous run: its own session, identity recorded.
    let (mut leftover, leftover_pid) = spawn(true);
    let ticks = |pid: i32| procs::stat(pid).unwrap().start_ticks;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_owned();
    let rows = [
        // Same pid, another start time: the pid was reused.
        ("reused", reused_pid, ticks(reused_pid) - 1, boot.clone()),
        // Same pid and start time, but recorded in another boot.
        (
            "rebooted",
            rebooted_pid,
            ticks(rebooted_pid),
            "another-boot".to_owned(),
        ),
        // All three match: this one is ours to reap.
        ("leftover", leftover_pid, ticks(leftover_pid), boot.clone()),
    ];
    for (name, pid, start, boot) in &rows {
        execute(
            &db.url,
            &format!(
                "UPDATE workers SET state = 'RUNNING', pid = {pid}, process_start_ticks = {start}, \
                 boot_id = '{boot}' WHERE display_name = '{name}'"
            ),
        )
        .await;
    }

    let server = TestServer::start_in(dir, db, |_| {}, None).await;
    let leftover_status = tokio::task::spawn_blocking(move || leftover.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&leftover_status),
        Some(9),
        "the recorded leftover was killed"
    );
    assert!(
        reused.try_wait().unwrap().is_none(),
        "a reused pid is never signalled"
    );
    assert!(
        rebooted.try_wait().unwrap().is_none(),
        "a pid from another boot is never signalled"
    );
    for pid in [reused_pid, rebooted_pid] {
        assert_ne!(procs::stat(pid).unwrap().state, 'T');
    }
    // The session itself came back with fresh processes.
    let session = server.get_session("pids").await;
    assert_eq!(session.state(), State::Active, "{}", session.last_error);
    assert!(
        session
            .workers
            .iter()
            .all(|w| w.pid > 0 && ![reused_pid, rebooted_pid, leftover_pid].contains(&w.pid))
    );
    reused.kill().unwrap();
    rebooted.kill().unwrap();
    reused.wait().unwrap();
    rebooted.wait().unwrap();
    server.stop().await;
}

/// Creates and starts session `name` (one shell worker), whose shell starts a
/// daemon: a `sleep` in a PTY session of its own, out of the worker's process
/// tree, with the worker's environment (and so its tags). Returns the session
/// and the daemon.
async fn start_with_a_daemon(server: &TestServer, name: &str) -> (pb::Session, procs::Stat) {
    let session = server.create_session(name).await;
    server.start_session(name).await;
    let mut client = server.attach(&format!("sessions/{name}"), None, None).await;
    // A daemon: its own session, out of the PTY's process tree.
    client
        .input(b"setsid -f sleep 1000; echo escaped-$((7*6))\n")
        .await;
    client.expect("escaped-42").await;
    drop(client);
    let tag = format!("CORRAL_SESSION_ID={}", session.id);
    let sleeping = || -> Vec<procs::Stat> {
        procs::with_env(&tag)
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{}/comm", p.pid))
                    .is_ok_and(|c| c.trim() == "sleep")
            })
            .collect()
    };
    // `setsid -f` returns before its child has run `sleep`: wait for the exec.
    eventually("the escaped process runs sleep", || {
        let found = sleeping();
        async move { !found.is_empty() }
    })
    .await;
    let escaped = sleeping();
    assert_eq!(escaped.len(), 1, "{escaped:?}");
    (session, escaped[0])
}

/// Shuts `server` down, checks that the daemon `escaped` outlived it, and
/// starts a server on the same directory and database, which must reap it.
async fn outlives_the_server_and_is_reaped_at_the_next_start(
    server: TestServer,
    escaped: procs::Stat,
) {
    let (dir, db) = server.shut_down().await;
    assert!(
        procs::same_process(escaped.pid, escaped.start_ticks),
        "stopping the worker's PTY session does not reach it"
    );
    let server = TestServer::start_in(dir, db, |_| {}, None).await;
    eventually("the escaped process is reaped", || async move {
        !procs::same_process(escaped.pid, escaped.start_ticks)
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_left_its_worker_is_reaped_at_the_next_start() {
    let server = TestServer::start().await;
    let (_, escaped) = start_with_a_daemon(&server, "escape").await;
    outlives_the_server_and_is_reaped_at_the_next_start(server, escaped).await;
}

/// A daemon outlives its session's stop, delete and purge; the next start
/// still finds it by the tag of the server that spawned it, and reaps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_left_a_purged_session_is_reaped_at_the_next_start() {
    use corral_server::clock::{Clock, SystemClock};
    let server =
        TestServer::start_with(|config| config.tombstone_retention = Duration::ZERO, None).await;
    let (session, escaped) = start_with_a_daemon(&server, "purged").await;
    act(&server, "purged", pb::session::Action::Stop).await;
    act(&server, "purged", pb::session::Action::Delete).await;
    let manager = server.server.as_ref().unwrap().manager().clone();
    let purged = manager
        .purge_tombstones(SystemClock.now(), 10)
        .await
        .unwrap();
    assert_eq!(purged, 1);
    let sql = format!("SELECT id FROM sessions WHERE id = '{}'", session.id);
    assert!(
        select(&server.db.url, &sql).await.is_empty(),
        "the session is purged"
    );
    outlives_the_server_and_is_reaped_at_the_next_start(server, escaped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_starting_beside_a_live_one_leaves_its_sessions_alone() {
    let a = TestServer::start().await;
    a.create_session("owned").await;
    let session = a.start_session("owned").await;
    let pid = session.workers[0].pid;
    let ticks = procs::stat(pid).unwrap().start_ticks;

    let b = corral_server::serve(common::test_config(a.dir.path(), &a.db))
        .await
        .expect("second server");
    let after = a.get_session("owned").await;
    assert_eq!(after.state(), State::Active);
    assert_eq!(after.etag, session.etag, "not touched");
    assert!(procs::same_process(pid, ticks), "its shell is alive");
    b.shutdown();
    b.wait().await.unwrap();
    assert!(procs::same_process(pid, ticks));
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_scrollback_stays_within_the_ring_and_keeps_its_offsets() {
    const RING: u64 = 8192;
    const BATCH: u64 = 1024;
    let small = |config: &mut corral_server::Config| {
        config.scrollback_bytes = RING as usize;
        config.scrollback_flush_bytes = BATCH as usize;
    };
    let server = TestServer::start_with(small, None).await;
    let (worker_id, mut client) = start_attached(&server, "flood").await;
    client.input(b"seq 1 5000; echo flood-$((9*9))\n").await;
    client.expect("flood-81").await;
    let db_url = server.db.url.clone();
    eventually_stored(
        &db_url,
        &worker_id,
        "flood-81",
        "the end of the flood is stored",
    )
    .await;
    let stored = stored_scrollback(&db_url, &worker_id).await.len() as u64;
    assert!(
        stored <= RING + 2 * BATCH,
        "{stored} bytes stored for a {RING}-byte ring"
    );
    let old_end = server.get_session("flood").await.workers[0].output_offset as u64;
    assert!(
        old_end > 3 * RING,
        "the ring wrapped ({old_end} bytes written)"
    );
    drop(client);

    let (dir, db) = server.shut_down().await;
    let server = TestServer::start_in(dir, db, small, None).await;
    let mut client = server.attach("sessions/flood", None, None).await;
    client.expect("the previous run ended here").await;
    let start = client.attached.replay_start_offset as u64;
    assert!(
        start > 0 && start + RING + 2 * BATCH >= old_end,
        "offsets continue where they were: replay from {start}, old end {old_end}"
    );
    let text = String::from_utf8_lossy(&client.output).into_owned();
    assert!(text.find("flood-81").unwrap() < text.find("the previous run ended here").unwrap());
    server.stop().await;
}

/// Output that no batch was due for yet (too small, too young) is stored when
/// the run ends: the persister waits for output only while nothing is pending,
/// so it must still see the end of the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_pending_when_a_run_ends_is_stored() {
    let lazy = |config: &mut corral_server::Config| {
        config.scrollback_flush_interval = Duration::from_secs(3600);
    };
    let server = TestServer::start_with(lazy, None).await;
    let (worker_id, mut client) = start_attached(&server, "lazy").await;
    client.input(b"echo bye-$((6*7))\n").await;
    client.expect("bye-42").await;
    drop(client);
    act(&server, "lazy", pb::session::Action::Stop).await;
    eventually_stored(
        &server.db.url,
        &worker_id,
        "bye-42",
        "the run's last output is stored",
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_left_by_a_crash_during_stop_are_reaped_and_the_session_stays_stopped() {
    let (dir, db) = stopped_then_shut_down("halting").await;

    // What a kill -9 during StopSession's grace period leaves: the session is
    // STOPPED, the worker row still names a live process.
    let mut leftover = std::process::Command::new("setsid")
        .args(["sleep", "1000"])
        .spawn()
        .unwrap();
    let pid = leftover.id() as i32;
    let start = procs::stat(pid).unwrap().start_ticks;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    execute(
        &db.url,
        &format!(
            "UPDATE workers SET state = 'RUNNING', pid = {pid}, process_start_ticks = {start}, \
             boot_id = '{}'",
            boot.trim()
        ),
    )
    .await;

    let server = TestServer::start_in(dir, db, |_| {}, None).await;
    let status = tokio::task::spawn_blocking(move || leftover.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let session = server.get_session("halting").await;
    assert_eq!(session.state(), State::Stopped);
    assert_eq!(session.workers[0].state(), pb::worker::State::Stopped);
    assert_eq!(session.workers[0].pid, 0);
    server.stop().await;
}

/// The ids in `servers`, oldest first.
async fn server_ids(url: &str) -> Vec<String> {
    select(url, "SELECT id FROM servers ORDER BY start_time, id")
        .await
        .iter()
        .map(|row| row.try_get::<String>("", "id").unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_forgets_servers_that_are_gone_unless_something_still_names_them() {
    // The first server runs a session to its stop: the session names it.
    let (dir, db) = stopped_then_shut_down("named").await;
    // The second runs nothing.
    let server = TestServer::start_in(dir, db, |_| {}, None).await;
    let (dir, db) = server.shut_down().await;
    let ids = server_ids(&db.url).await;
    let [named, unnamed] = ids.as_slice() else {
        panic!("one row per start: {ids:?}");
    };
    // Beside them: a live server of this machine (this test's own process), one
    // on another machine, and one of this machine's previous boot.
    let me = procs::stat(std::process::id() as i32).unwrap();
    let copy = |id: &str, changes: &str| {
        format!(
            "INSERT INTO servers (id, machine_id, boot_id, pid, process_start_ticks, hostname, \
             start_time, stop_time) SELECT '{id}', {changes}, hostname, start_time, NULL \
             FROM servers WHERE id = '{named}'"
        )
    };
    execute(
        &db.url,
        &copy(
            "alive",
            &format!("machine_id, boot_id, {}, {}", me.pid, me.start_ticks),
        ),
    )
    .await;
    execute(
        &db.url,
        &copy("elsewhere", "'another-machine', boot_id, 1, 1"),
    )
    .await;
    execute(
        &db.url,
        &copy("rebooted", "machine_id, 'another-boot', 1, 1"),
    )
    .await;

    let server = TestServer::start_in(dir, db, |_| {}, None).await;
    let left = server_ids(&server.db.url).await;
    let mut third = left.clone();
    third.retain(|id| ![named.as_str(), "alive", "elsewhere"].contains(&id.as_str()));
    assert_eq!(
        third.len(),
        1,
        "{unnamed} and 'rebooted' are forgotten: {left:?}"
    );
    assert!(!third.contains(unnamed), "{left:?}");
    assert!(!left.contains(&"rebooted".to_owned()), "{left:?}");
    for kept in [named.as_str(), "alive", "elsewhere"] {
        assert!(left.contains(&kept.to_owned()), "{kept} stays: {left:?}");
    }
    // The session that names the first server is still resumable.
    act(&server, "named", pb::session::Action::Resume).await;
    assert_eq!(server.get_session("named").await.state(), State::Active);
    server.stop().await;
}
