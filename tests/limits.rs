//! Every configurable limit, hit for real: the error names the limit and its value,
//! and nothing is half-done. Time-based limits run on a manual clock.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Client, PATIENCE, TestServer, clients_as, quick_session, stored};
use corral::pb;
use corral_server::auth::tokens::entry_line;
use corral_server::clock::ManualClock;
use tonic::Code;

fn assert_limit(status: &tonic::Status, code: Code, limit: &str, value: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(&format!("{limit} = {value}")),
        "the message names the limit and its value: {:?}",
        status.message()
    );
    let info = tonic_types::StatusExt::get_details_error_info(status).expect("ErrorInfo");
    assert_eq!(info.metadata["limit"], limit);
    assert_eq!(info.metadata["value"], value);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_server_and_per_principal_are_bounded() {
    const ALICE: &str = "alice-0123456789abcdef";
    const BOB: &str = "bob-0123456789abcdef";
    let server = TestServer::start_with(
        |config| {
            config.tokens = Some(format!(
                "{} {}",
                entry_line("alice", ALICE, false),
                entry_line("bob", BOB, false)
            ));
            config.max_sessions = 3;
            config.max_sessions_per_principal = 2;
        },
        None,
    )
    .await;
    let running = server.server.as_ref().unwrap();
    let (mut alice, _) = clients_as(&server.channel, &format!("Bearer {ALICE}"));
    let (mut bob, _) = clients_as(&server.channel, &format!("Bearer {BOB}"));
    for name in ["a1", "a2"] {
        alice
            .create_session(quick_session(name, &server.work_dir(name)))
            .await
            .unwrap();
    }
    let before = stored(running).await;
    let err = alice
        .create_session(quick_session("a3", &server.work_dir("a3")))
        .await
        .unwrap_err();
    assert_limit(
        &err,
        Code::ResourceExhausted,
        "max_sessions_per_principal",
        "2",
    );
    assert!(err.message().contains("alice"), "{err:?}");
    assert_eq!(stored(running).await, before, "nothing half-written");

    bob.create_session(quick_session("b1", &server.work_dir("b1")))
        .await
        .unwrap();
    let err = bob
        .create_session(quick_session("b2", &server.work_dir("b2")))
        .await
        .unwrap_err();
    assert_limit(&err, Code::ResourceExhausted, "max_sessions", "3");

    // Tombstones do not count.
    alice
        .delete_session(pb::DeleteSessionRequest {
            name: "sessions/a1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    bob.create_session(quick_session("b2", &server.work_dir("b2")))
        .await
        .expect("room again after a delete");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creations_never_overshoot_the_session_limit() {
    let server = TestServer::start_with(|config| config.max_sessions = 5, None).await;
    let creations = (0..20).map(|i| {
        let mut sessions = server.sessions.clone();
        let name = format!("race-{i}");
        let request = quick_session(&name, &server.work_dir(&name));
        tokio::spawn(async move { sessions.create_session(request).await })
    });
    let mut created = 0;
    for outcome in futures::future::join_all(creations).await {
        match outcome.unwrap() {
            Ok(_) => created += 1,
            Err(status) => assert_limit(&status, Code::ResourceExhausted, "max_sessions", "5"),
        }
    }
    assert_eq!(created, 5);
    let stored = stored(server.server.as_ref().unwrap()).await;
    assert_eq!(stored.sessions.len(), 5);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_faster_than_the_rate_is_refused_frame_by_frame() {
    let clock = ManualClock::new(1_700_000_000_000_000);
    let server = TestServer::start_with(
        |config| {
            config.max_input_frame_bytes = 1000;
            config.max_input_bytes_per_second = 1000;
        },
        Some(clock.clone()),
    )
    .await;
    server.create_session("rate").await;
    server.start_session("rate").await;
    let mut client = server
        .attach("sessions/rate/workers/shell", None, None)
        .await;
    // A second's worth is accepted at once …
    let full = format!("echo one-{}\n", "x".repeat(1000 - "echo one-\n".len()));
    assert_eq!(full.len(), 1000);
    client.input(full.as_bytes()).await;
    client.expect("one-xxx").await;
    // … the next frame is dropped with an error frame, and the stream goes on …
    client.input(b"echo two-$((40+2))\n").await;
    let error = client.expect_error_frame().await;
    assert_eq!(error.code, Code::ResourceExhausted as i32, "{error:?}");
    assert!(
        error.message.contains("max_input_bytes_per_second = 1000"),
        "{error:?}"
    );
    // … until the clock has moved on.
    clock.advance(Duration::from_secs(1));
    client.input(b"echo three-$((40+3))\n").await;
    client.expect("three-43").await;
    assert!(
        !String::from_utf8_lossy(&client.output).contains("two-42"),
        "the refused frame never reached the terminal"
    );
    server.stop().await;
}

/// Moves `clock` on 11 minutes at a time until `client`'s stream ends, and checks
/// that it ended for its 10-minute `stream_idle_timeout`. Output still on its way
/// when the clock moved counts as activity, so it may take more than one move
/// before the stream has been quiet for 10 minutes.
async fn idles_out(clock: &ManualClock, client: &mut Client) {
    let mut ended = None;
    for _ in 0..4 {
        clock.advance(Duration::from_secs(11 * 60));
        if let Ok(end) = tokio::time::timeout(Duration::from_secs(5), client.until_end()).await {
            ended = Some(end);
            break;
        }
    }
    let status = ended
        .expect("the quiet stream ended")
        .expect_err("ended by the server");
    assert_limit(
        &status,
        Code::DeadlineExceeded,
        "stream_idle_timeout",
        "10m",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_old_attach_streams_end_with_deadline_exceeded() {
    const MINUTE: Duration = Duration::from_secs(60);
    let clock = ManualClock::new(1_700_000_000_000_000);
    let server = TestServer::start_with(
        |config| {
            config.stream_idle_timeout = 10 * MINUTE;
            config.stream_max_duration = 60 * MINUTE;
        },
        Some(clock.clone()),
    )
    .await;
    server.create_session("idle").await;
    server.start_session("idle").await;
    async fn round_trip(client: &mut Client, n: u32) {
        client
            .input(format!("echo tick-$((1000+{n}))\n").as_bytes())
            .await;
        client.expect(&format!("tick-{}", 1000 + n)).await;
    }

    // Idle: no frame either way for 10 minutes.
    let mut idle = server
        .attach("sessions/idle/workers/shell", None, None)
        .await;
    round_trip(&mut idle, 0).await;
    idles_out(&clock, &mut idle).await;

    // Absolute: a busy stream still ends after an hour.
    let mut busy = server
        .attach("sessions/idle/workers/shell", None, None)
        .await;
    for n in 1..=6 {
        clock.advance(9 * MINUTE);
        round_trip(&mut busy, n).await;
    }
    clock.advance(9 * MINUTE);
    let status = busy.until_end().await.expect_err("ended by the server");
    assert_limit(&status, Code::DeadlineExceeded, "stream_max_duration", "1h");
    server.stop().await;
}

/// Output alone is activity: a client that only watches a busy worker is not
/// idle however far the clock moves, as long as output keeps coming. (The
/// response stream sends output without the task that checks the deadlines,
/// which sees the count of frames sent move at its next check.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_alone_keeps_an_attach_stream_from_idling_out() {
    const MINUTE: Duration = Duration::from_secs(60);
    let clock = ManualClock::new(1_700_000_000_000_000);
    let server = TestServer::start_with(
        |config| config.stream_idle_timeout = 10 * MINUTE,
        Some(clock.clone()),
    )
    .await;
    server.create_session("chatty").await;
    server.start_session("chatty").await;
    let mut client = server
        .attach("sessions/chatty/workers/shell", None, None)
        .await;
    // The last input: from here on only output flows, a line every 50 ms.
    client
        .input(b"i=0; while :; do i=$((i+1)); echo line-$((i+1000)); sleep 0.05; done\n")
        .await;
    client.expect("line-1002").await;
    // 3 × 6 minutes without input, each followed by more than one deadline check
    // (every second here: a quarter of the limit, at most 1 s).
    for _ in 0..3 {
        clock.advance(6 * MINUTE);
        let until = tokio::time::Instant::now() + Duration::from_millis(1500);
        let before = client.output.len();
        while let Ok(open) = tokio::time::timeout_at(until, client.pump()).await {
            assert!(open, "the stream ended: {:?}", client.ended);
        }
        assert!(client.output.len() > before, "output kept coming");
    }
    // Quiet now (Ctrl-C, the last input): the idle limit applies again.
    client.input(b"\x03").await;
    idles_out(&clock, &mut client).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_unary_call_gets_deadline_exceeded_and_still_completes() {
    let server = TestServer::start_with(
        |config| {
            config.unary_deadline = Duration::from_millis(300);
            config.stop_grace = Duration::from_secs(5);
        },
        None,
    )
    .await;
    server.create_session("slow").await;
    server.start_session("slow").await;
    let mut client = server
        .attach("sessions/slow/workers/shell", None, None)
        .await;
    // A shell that ignores SIGTERM (and SIGHUP): stopping it takes the whole grace.
    client
        .input(b"trap '' TERM HUP; echo trapped-$((1+1))\n")
        .await;
    client.expect("trapped-2").await;
    let err = server
        .sessions
        .clone()
        .stop_session(pb::StopSessionRequest {
            name: "sessions/slow".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_limit(&err, Code::DeadlineExceeded, "unary_deadline", "300ms");
    // The stop was not abandoned half-way: the session ends STOPPED, its worker gone.
    common::eventually("the stop completes", || async {
        let session = server.get_session("slow").await;
        session.state() == pb::session::State::Stopped && session.workers.iter().all(|w| w.pid == 0)
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_is_resource_exhausted() {
    let server = TestServer::start_with(
        |config| {
            config.max_message_bytes = 64 * 1024;
            config.max_input_frame_bytes = 1024;
        },
        None,
    )
    .await;
    let before = stored(server.server.as_ref().unwrap()).await;
    let mut request = quick_session("huge", &server.work_dir("huge"));
    if let Some(session) = request.session.as_mut() {
        session.description = "x".repeat(100 * 1024);
    }
    let err = server
        .sessions
        .clone()
        .create_session(request)
        .await
        .unwrap_err();
    assert_limit(&err, Code::ResourceExhausted, "max_message_bytes", "65536");

    // An Attach frame over the message limit ends the stream the same way.
    server.create_session("big").await;
    server.start_session("big").await;
    let mut client = server
        .attach("sessions/big/workers/shell", None, None)
        .await;
    client
        .tx
        .send(pb::AttachRequest {
            frame: Some(pb::attach_request::Frame::Input(Bytes::from(
                vec![b'x'; 100 * 1024],
            ))),
        })
        .await
        .unwrap();
    let status = client.until_end().await.expect_err("ended");
    assert_limit(
        &status,
        Code::ResourceExhausted,
        "max_message_bytes",
        "65536",
    );
    assert_eq!(
        stored(server.server.as_ref().unwrap()).await.sessions.len(),
        before.sessions.len() + 1,
        "only `big` was created"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_per_connection_limit_wait_their_turn() {
    let server = TestServer::start_with(|config| config.max_concurrent_streams = 1, None).await;
    server.create_session("one").await;
    server.start_session("one").await;
    let mut first = server
        .attach("sessions/one/workers/shell", None, None)
        .await;

    // On the same connection, a second call cannot start while the stream is open.
    let mut sessions = server.sessions.clone();
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let answer = sessions
            .get_session(pb::GetSessionRequest {
                name: "sessions/one".into(),
            })
            .await;
        let _ = done_tx.send(answer.map(|r| r.into_inner().display_name));
    });
    first.input(b"echo still-$((2*3))-alone\n").await;
    first.expect("still-6-alone").await;
    assert!(
        done_rx.try_recv().is_err(),
        "the second call ran beside the open stream"
    );
    first.detach().await;
    first.until_end().await.expect("detached");
    let name = tokio::time::timeout(PATIENCE, done_rx)
        .await
        .expect("the waiting call ran once the stream ended")
        .unwrap()
        .expect("GetSession");
    assert_eq!(name, "one");

    // Another connection has its own allowance.
    let other = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let _ = Client::open(
        corral::pb::worker_service_client::WorkerServiceClient::new(other),
        "sessions/one/workers/shell",
        None,
        None,
    )
    .await;
    server.stop().await;
}
