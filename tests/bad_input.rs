//! Bad input gets the right gRPC code, a message a person can act on, and changes
//! nothing that is stored (the sessions, their workers and the event log are
//! compared before and after every refused call).

mod common;

use bytes::Bytes;
use common::{Client, TestServer};
use corral::pb;
use tonic::Code;

/// Everything a client could observe of the stored state, plus the event log.
async fn snapshot(server: &TestServer) -> (Vec<pb::Session>, usize) {
    let mut sessions = server
        .sessions
        .clone()
        .list_sessions(pb::ListSessionsRequest {
            show_deleted: true,
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .sessions;
    for session in &mut sessions {
        // Live counters are not stored data.
        session.attached_clients = 0;
        for worker in &mut session.workers {
            worker.attached_clients = 0;
        }
    }
    let events = server
        .server
        .as_ref()
        .expect("running")
        .manager()
        .store()
        .events_after(0, None, 100_000)
        .await
        .expect("events")
        .len();
    (sessions, events)
}

/// Asserts `status` has `code` and a message containing every `needle`.
fn assert_status(status: &tonic::Status, code: Code, needles: &[&str]) {
    assert_eq!(status.code(), code, "{status:?}");
    for needle in needles {
        assert!(
            status.message().contains(needle),
            "message {:?} should mention {needle:?}",
            status.message()
        );
    }
}

fn quick(work_dir: &str, name: &str) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        session: Some(pb::Session {
            display_name: name.into(),
            source: Some(pb::session::Source::Quick(pb::QuickSource {
                work_dir: work_dir.into(),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_change_nothing() {
    let server = TestServer::start().await;
    server.create_session("kept").await;
    server.start_session("kept").await;
    let mut sessions = server.sessions.clone();
    let mut workers = server.workers.clone();
    let before = snapshot(&server).await;

    // Unknown id → NOT_FOUND.
    let unknown = format!("sessions/{}", uuid::Uuid::new_v4());
    let err = sessions
        .get_session(pb::GetSessionRequest {
            name: unknown.clone(),
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, &[&unknown]);
    let err = sessions
        .get_session(pb::GetSessionRequest {
            name: "sessions/no-such-name".into(),
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::NotFound, &["no-such-name"]);

    // Malformed names → INVALID_ARGUMENT naming the field.
    for bad in [
        "",
        "sessions/",
        "kept",
        "sessions/has space",
        "sessions/a/b",
        "sessions/-x",
    ] {
        let err = sessions
            .get_session(pb::GetSessionRequest { name: bad.into() })
            .await
            .unwrap_err();
        assert_status(&err, Code::InvalidArgument, &["name"]);
    }
    let err = workers
        .get_worker(pb::GetWorkerRequest {
            name: "sessions/kept/workers/".into(),
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::InvalidArgument, &["worker"]);

    // Work dir that does not exist, or is not a directory → INVALID_ARGUMENT with the path.
    let missing = server.dir.path().join("nope").display().to_string();
    let err = sessions
        .create_session(quick(&missing, "a"))
        .await
        .unwrap_err();
    assert_status(&err, Code::InvalidArgument, &[&missing, "does not exist"]);
    let file = server.dir.path().join("file.txt");
    std::fs::write(&file, "x").unwrap();
    let file = file.display().to_string();
    let err = sessions
        .create_session(quick(&file, "b"))
        .await
        .unwrap_err();
    assert_status(&err, Code::InvalidArgument, &[&file, "not a directory"]);
    let err = sessions
        .create_session(quick("relative/dir", "c"))
        .await
        .unwrap_err();
    assert_status(&err, Code::InvalidArgument, &["absolute"]);
    let work = server.work_dir("d").display().to_string();
    let err = sessions
        .create_session(quick(&work, "bad name!"))
        .await
        .unwrap_err();
    assert_status(&err, Code::InvalidArgument, &["display_name"]);
    let err = sessions
        .create_session(quick(&work, "kept"))
        .await
        .unwrap_err();
    assert_status(&err, Code::AlreadyExists, &["kept"]);
    let err = sessions
        .create_session(pb::CreateSessionRequest::default())
        .await
        .unwrap_err();
    assert_status(&err, Code::InvalidArgument, &["session"]);

    // Illegal transition → FAILED_PRECONDITION naming the state and allowed actions.
    let err = sessions
        .archive_session(pb::ArchiveSessionRequest {
            name: "sessions/kept".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_status(
        &err,
        Code::FailedPrecondition,
        &["ACTIVE", "pause, stop, restart"],
    );
    let info = tonic_types::StatusExt::get_details_error_info(&err).expect("ErrorInfo");
    assert_eq!(info.reason, "ACTION_NOT_ALLOWED");

    // Stale etag → ABORTED.
    let err = sessions
        .stop_session(pb::StopSessionRequest {
            name: "sessions/kept".into(),
            etag: "\"1\"".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::Aborted, &["etag"]);

    // Duplicate worker name in a session → ALREADY_EXISTS.
    let err = workers
        .create_worker(pb::CreateWorkerRequest {
            parent: "sessions/kept".into(),
            worker: Some(pb::Worker {
                display_name: "shell".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::AlreadyExists, &["shell"]);

    // Bad sizes and signals → INVALID_ARGUMENT.
    for (rows, cols) in [(0, 80), (24, 0), (65535, 65535)] {
        let err = workers
            .resize_worker(pb::ResizeWorkerRequest {
                name: "sessions/kept/workers/shell".into(),
                size: Some(pb::WindowSize { rows, cols }),
            })
            .await
            .unwrap_err();
        assert_status(&err, Code::InvalidArgument, &["size"]);
    }
    let err = workers
        .signal_worker(pb::SignalWorkerRequest {
            name: "sessions/kept/workers/shell".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_status(&err, Code::InvalidArgument, &["signal"]);

    // Attach: the first frame must be `open`; an unknown worker is NOT_FOUND.
    let err = Client::try_open(&mut workers, "sessions/kept/workers/nobody", None, None)
        .await
        .err()
        .expect("refused");
    assert_status(&err, Code::NotFound, &["nobody"]);

    assert_eq!(
        snapshot(&server).await,
        before,
        "refused calls changed stored data"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_input_frame_is_resource_exhausted() {
    let server = TestServer::start_with(|config| config.max_input_frame_bytes = 1024, None).await;
    server.create_session("big").await;
    server.start_session("big").await;
    let before = snapshot(&server).await;
    let mut client = server
        .attach("sessions/big/workers/shell", None, None)
        .await;
    client
        .tx
        .send(pb::AttachRequest {
            frame: Some(pb::attach_request::Frame::Input(Bytes::from(vec![
                b'x';
                1025
            ]))),
        })
        .await
        .unwrap();
    let status = client
        .until_end()
        .await
        .expect_err("the stream ends with an error");
    assert_status(&status, Code::ResourceExhausted, &["1025", "1024"]);
    assert!(
        !String::from_utf8_lossy(&client.output).contains("xxxxxxxxxx"),
        "nothing of the oversized frame reached the terminal"
    );
    assert_eq!(snapshot(&server).await, before);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_to_a_stopped_worker_is_failed_precondition() {
    let server = TestServer::start().await;
    server.create_session("done").await;
    server.start_session("done").await;
    server
        .sessions
        .clone()
        .stop_session(pb::StopSessionRequest {
            name: "sessions/done".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let before = snapshot(&server).await;
    let mut workers = server.workers.clone();
    let err = Client::try_open(&mut workers, "sessions/done/workers/shell", None, None)
        .await
        .err()
        .expect("refused");
    assert_status(&err, Code::FailedPrecondition, &["shell", "not running"]);
    assert_eq!(snapshot(&server).await, before);
    server.stop().await;
}
