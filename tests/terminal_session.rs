//! The walking skeleton, end to end against a real server on an ephemeral port:
//! create → start → attach → type → resize → detach → reattach with replay → two
//! clients → stop (both get the exit) → delete.

mod common;

use common::{TestServer, eventually};
use corral::pb;
use corral::pb::session::State;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_session_from_create_to_delete() {
    let server = TestServer::start().await;
    let created = server.create_session("demo").await;
    assert_eq!(created.state(), State::Created);
    assert_eq!(created.display_name, "demo");
    assert!(
        created
            .available_actions
            .contains(&(pb::session::Action::Start as i32))
    );

    let started = server.start_session("demo").await;
    assert_eq!(
        started.state(),
        State::Active,
        "last_error: {}",
        started.last_error
    );
    assert_eq!(started.workers.len(), 1);
    let shell = &started.workers[0];
    assert_eq!(shell.display_name, "shell");
    assert_eq!(shell.state(), pb::worker::State::Running);
    assert!(shell.pid > 0);

    // Attach, type, read the command's output: "hello" twice, once as the
    // terminal echoes the typed line and once printed by echo.
    let mut first = server
        .attach("sessions/demo/workers/shell", Some((24, 80)), None)
        .await;
    first.input(b"echo hello\n").await;
    first.expect_count("hello", 2).await;

    // Resize through the stream; the foreground program sees it.
    first.resize(50, 132).await;
    first.input(b"stty size\n").await;
    first.expect("50 132").await;

    // Detach, then reattach: the replay carries the history first.
    first.detach().await;
    assert!(first.until_end().await.is_ok());
    assert!(
        first
            .frames
            .iter()
            .any(|f| matches!(f, pb::attach_response::Frame::Detached(_)))
    );

    let mut second = server
        .attach("sessions/demo/workers/shell", None, None)
        .await;
    assert!(second.attached.replay_end_offset > 0);
    second.expect_count("hello", 2).await;

    // A second client at the same time sees the same output; both count.
    let mut third = server
        .attach("sessions/demo", None, Some(pb::replay::Mode::None(true)))
        .await;
    let session = server.get_session("demo").await;
    assert_eq!(session.attached_clients, 2);
    second.input(b"echo $((6*7))-marker\n").await;
    second.expect("42-marker").await;
    third.expect("42-marker").await;

    // Stop: every process ends; both clients get the exit status and the stream ends.
    let pid = shell.pid;
    let stopped = server
        .sessions
        .clone()
        .stop_session(pb::StopSessionRequest {
            name: "sessions/demo".into(),
            ..Default::default()
        })
        .await
        .expect("stop")
        .into_inner();
    assert_eq!(stopped.state(), State::Stopped);
    assert_eq!(stopped.workers[0].state(), pb::worker::State::Stopped);
    for client in [&mut second, &mut third] {
        assert!(client.until_end().await.is_ok());
        let exit = client.exit().expect("exit frame");
        assert!(!exit.description.is_empty());
    }
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z")),
        "the shell is gone"
    );
    eventually("attached count back to 0", || async {
        server.get_session("demo").await.attached_clients == 0
    })
    .await;

    let deleted = server
        .sessions
        .clone()
        .delete_session(pb::DeleteSessionRequest {
            name: "sessions/demo".into(),
            ..Default::default()
        })
        .await
        .expect("delete")
        .into_inner();
    assert_eq!(deleted.state(), State::Deleted);
    assert!(deleted.delete_time.is_some() && deleted.purge_time.is_some());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_terminal_worker_runs_its_command() {
    let server = TestServer::start().await;
    server.create_session("logs").await;
    server.start_session("logs").await;
    let log = server.work_dir("logs").join("app.log");
    std::fs::write(&log, "first line\n").unwrap();
    let worker = server
        .workers
        .clone()
        .create_worker(pb::CreateWorkerRequest {
            parent: "sessions/logs".into(),
            worker: Some(pb::Worker {
                display_name: "tail".into(),
                spec: Some(pb::worker::Spec::Terminal(pb::TerminalSpec {
                    command: vec!["tail".into(), "-f".into(), log.display().to_string()],
                    ..Default::default()
                })),
                ..Default::default()
            }),
        })
        .await
        .expect("create worker")
        .into_inner();
    assert_eq!(worker.state(), pb::worker::State::Running);
    let mut client = server
        .attach("sessions/logs/workers/tail", None, None)
        .await;
    client.expect("first line").await;
    std::fs::write(&log, "first line\nsecond line\n").unwrap();
    client.expect("second line").await;
    server.stop().await;
}

/// Input beyond what the PTY buffers at once (the program is not reading yet)
/// reaches it whole and in the order it was typed: the first frames go straight
/// to the master until it is full, the rest queue behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_beyond_the_pty_buffer_arrives_whole_and_in_order() {
    const FRAMES: usize = 64;
    const FRAME: usize = 4096;
    let server = TestServer::start().await;
    server.create_session("typing").await;
    server.start_session("typing").await;
    let script = format!(
        "stty raw -echo; printf 'ready\\n'; sleep 1; head -c {} | md5sum",
        FRAMES * FRAME
    );
    server
        .workers
        .clone()
        .create_worker(pb::CreateWorkerRequest {
            parent: "sessions/typing".into(),
            worker: Some(pb::Worker {
                display_name: "sum".into(),
                spec: Some(pb::worker::Spec::Terminal(pb::TerminalSpec {
                    command: vec!["sh".into(), "-c".into(), script],
                    ..Default::default()
                })),
                ..Default::default()
            }),
        })
        .await
        .expect("create worker");
    let mut client = server
        .attach("sessions/typing/workers/sum", None, None)
        .await;
    client.expect("ready").await;
    let mut typed = Vec::with_capacity(FRAMES * FRAME);
    for i in 0..FRAMES {
        let frame: Vec<u8> = (0..FRAME)
            .map(|j| b'a' + ((i * 7 + j) % 26) as u8)
            .collect();
        client.input(&frame).await;
        typed.extend_from_slice(&frame);
    }
    let expected = {
        use std::io::Write;
        let mut md5sum = std::process::Command::new("md5sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("md5sum runs");
        md5sum
            .stdin
            .take()
            .expect("stdin")
            .write_all(&typed)
            .expect("write to md5sum");
        let out = md5sum.wait_with_output().expect("md5sum output");
        String::from_utf8(out.stdout).expect("hex")[..32].to_owned()
    };
    client.expect(&expected).await;
    server.stop().await;
}
