//! The retention task on an injected clock: STOPPED sessions past the resume window
//! are archived with `auto_archived = true`, tombstones past `purge_time` are
//! purged, every pass is idempotent, and two servers sharing one database handle
//! each row once.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestServer, eventually, test_config};
use corral::pb;
use corral::pb::session::State;
use corral_server::clock::{Clock, ManualClock};
use corral_server::reaper::{Pass, Reaper};
use tonic::Code;

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000_000;
const DAY: Duration = Duration::from_secs(24 * 3600);

fn micros(ts: &Option<prost_types::Timestamp>) -> i64 {
    let ts = ts.as_ref().expect("timestamp set");
    ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1_000
}

async fn stop(server: &TestServer, session: &str) -> pb::Session {
    server
        .sessions
        .clone()
        .stop_session(pb::StopSessionRequest {
            name: format!("sessions/{session}"),
            ..Default::default()
        })
        .await
        .expect("stop")
        .into_inner()
}

async fn delete(server: &TestServer, session: &str) -> pb::Session {
    server
        .sessions
        .clone()
        .delete_session(pb::DeleteSessionRequest {
            name: format!("sessions/{session}"),
            ..Default::default()
        })
        .await
        .expect("delete")
        .into_inner()
}

async fn get(server: &TestServer, id: &str) -> Result<pb::Session, tonic::Status> {
    server
        .sessions
        .clone()
        .get_session(pb::GetSessionRequest {
            name: format!("sessions/{id}"),
        })
        .await
        .map(tonic::Response::into_inner)
}

fn sum(a: &Pass, b: &Pass) -> (u64, u64) {
    assert_eq!((a.failed_steps, b.failed_steps), (0, 0));
    (a.archived + b.archived, a.purged + b.purged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_sessions_are_archived_after_the_window_and_tombstones_purged_once() {
    let clock = ManualClock::new(T0);
    let quiet = |config: &mut corral_server::Config| config.reaper_interval = 365 * DAY;
    let server = TestServer::start_with(quiet, Some(clock.clone() as Arc<dyn Clock>)).await;

    let old = server.create_session("old").await;
    server.start_session("old").await;
    stop(&server, "old").await;
    clock.advance(6 * DAY);
    let young = server.create_session("young").await;
    server.start_session("young").await;
    stop(&server, "young").await;
    let gone = server.create_session("gone").await;
    let deleted = delete(&server, "gone").await;
    assert_eq!(
        micros(&deleted.purge_time),
        T0 + 36 * DAY.as_micros() as i64,
        "tombstones are kept 30 days by default"
    );
    let kept = server.create_session("kept").await;

    // A second server on the same database, with its own reaper.
    let other_dir = tempfile::tempdir().unwrap();
    let mut other_config = test_config(other_dir.path(), &server.db);
    quiet(&mut other_config);
    let other = corral_server::serve_with_clock(other_config, clock.clone())
        .await
        .expect("second server");
    let ours = Reaper::new(server.server.as_ref().unwrap().manager().clone());
    let theirs = Reaper::new(other.manager().clone());

    // Nothing is due yet.
    let (a, b) = tokio::join!(ours.run_once(clock.now()), theirs.run_once(clock.now()));
    assert_eq!(sum(&a, &b), (0, 0));

    // One second past `old`'s window: archived once, by one of the two servers.
    clock.advance(DAY + Duration::from_secs(1));
    let (a, b) = tokio::join!(ours.run_once(clock.now()), theirs.run_once(clock.now()));
    assert_eq!(sum(&a, &b), (1, 0));
    let archived = get(&server, &old.id).await.unwrap();
    assert_eq!(archived.state(), State::Archived);
    assert!(archived.auto_archived);
    assert_eq!(micros(&archived.archive_time), clock.now());
    assert!(
        archived.state_reason.contains("resume window"),
        "{}",
        archived.state_reason
    );
    assert_eq!(
        get(&server, &young.id).await.unwrap().state(),
        State::Stopped
    );
    assert_eq!(
        get(&server, &kept.id).await.unwrap().state(),
        State::Created
    );
    // Idempotent: the next pass finds nothing.
    let (a, b) = tokio::join!(ours.run_once(clock.now()), theirs.run_once(clock.now()));
    assert_eq!(sum(&a, &b), (0, 0));

    // Past `gone`'s purge time (and `young`'s window).
    clock.advance(30 * DAY);
    let (a, b) = tokio::join!(ours.run_once(clock.now()), theirs.run_once(clock.now()));
    assert_eq!(sum(&a, &b), (1, 1));
    assert_eq!(
        get(&server, &young.id).await.unwrap().state(),
        State::Archived
    );
    assert_eq!(
        get(&server, &gone.id).await.unwrap_err().code(),
        Code::NotFound
    );
    let listed = server
        .sessions
        .clone()
        .list_sessions(pb::ListSessionsRequest {
            show_deleted: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.sessions.iter().all(|s| s.id != gone.id));
    assert_eq!(listed.total_size, 3);
    let events = server
        .server
        .as_ref()
        .unwrap()
        .manager()
        .store()
        .events_after(0, Some(&gone.id), 100)
        .await
        .unwrap();
    assert_eq!(events.last().unwrap().kind, "SESSION_PURGED");
    assert_eq!(
        events.iter().filter(|e| e.kind == "SESSION_PURGED").count(),
        1,
        "purged once"
    );

    // An auto-archived session can be reopened; it is no longer marked automatic.
    let reopened = server
        .sessions
        .clone()
        .reopen_session(pb::ReopenSessionRequest {
            name: format!("sessions/{}", old.id),
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reopened.state(), State::Stopped);
    assert!(!reopened.auto_archived);
    // And it is not archived again right away: reopening started a new window.
    let (a, b) = tokio::join!(ours.run_once(clock.now()), theirs.run_once(clock.now()));
    assert_eq!(sum(&a, &b), (0, 0));

    other.shutdown();
    other.wait().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_task_runs_on_its_interval() {
    let clock = ManualClock::new(T0);
    let server = TestServer::start_with(
        |config| {
            config.reaper_interval = Duration::from_millis(50);
            config.resume_window = Duration::from_secs(60);
        },
        Some(clock.clone() as Arc<dyn Clock>),
    )
    .await;
    let session = server.create_session("bg").await;
    server.start_session("bg").await;
    stop(&server, "bg").await;
    clock.advance(Duration::from_secs(61));
    eventually("the reaper archives the session", || async {
        get(&server, &session.id).await.unwrap().state() == State::Archived
    })
    .await;
    assert!(get(&server, &session.id).await.unwrap().auto_archived);
    server.stop().await;
}

/// The output stored for worker `worker_id` (all of it), read through the store.
async fn stored_output(server: &TestServer, worker_id: &str) -> String {
    let store = server.server.as_ref().unwrap().manager().store();
    let chunks = store
        .load_scrollback(worker_id, u64::MAX >> 1, usize::MAX >> 1)
        .await
        .expect("stored scrollback");
    chunks
        .iter()
        .map(|chunk| String::from_utf8_lossy(&chunk.data).into_owned())
        .collect()
}

/// A deleted session's stored scrollback goes at the next retention pass, long
/// before its tombstone; a stopped session's stays (it is replayed on resume).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stored_scrollback_of_a_deleted_session_goes_at_the_next_pass() {
    let quiet = |config: &mut corral_server::Config| config.reaper_interval = 365 * DAY;
    let server = TestServer::start_with(quiet, None).await;
    let mut workers = Vec::new();
    for name in ["kept", "gone"] {
        server.create_session(name).await;
        let session = server.start_session(name).await;
        let mut client = server.attach(&format!("sessions/{name}"), None, None).await;
        client.input(b"echo stored-$((6*7))\n").await;
        client.expect("stored-42").await;
        client.detach().await;
        stop(&server, name).await;
        let worker_id = session.workers[0].id.clone();
        eventually("the output is stored", || {
            let output = stored_output(&server, &worker_id);
            async move { output.await.contains("stored-42") }
        })
        .await;
        workers.push(worker_id);
    }
    let gone = server.get_session("gone").await;
    delete(&server, "gone").await;
    let manager = server.server.as_ref().unwrap().manager().clone();
    let reaper = Reaper::new(manager.clone());
    let pass = reaper.run_once(manager.now()).await;
    assert_eq!(pass.failed_steps, 0);
    // The server's own first pass starts with the server and runs beside the
    // test; when it reached its scrollback step after the delete (a slow start
    // under load), it dropped the rows first and this pass found none.
    assert_eq!(stored_output(&server, &workers[1]).await, "", "{pass:?}");
    assert!(
        stored_output(&server, &workers[0])
            .await
            .contains("stored-42")
    );
    let tombstone = get(&server, &gone.id).await.expect("the tombstone stays");
    assert_eq!(tombstone.state(), State::Deleted);
    let again = reaper.run_once(manager.now()).await;
    assert_eq!(again.scrollback_rows_dropped, 0, "a pass is idempotent");
    server.stop().await;
}
