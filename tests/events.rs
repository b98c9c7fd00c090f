//! EventService end to end: WatchEvents replays then streams without a gap or a
//! duplicate at the seam, survives disconnects, reaches across server processes
//! sharing one database (LISTEN/NOTIFY on PostgreSQL, polling on SQLite), filters,
//! and events past their retention are purged on an injected clock.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{PATIENCE, TestServer};
use corral::pb;
use corral::pb::event_service_client::EventServiceClient;
use corral_server::clock::{Clock, ManualClock};
use tonic::Code;
use tonic::transport::Channel;

/// Every stored event, via ListEvents pages.
async fn all_events(events: &mut EventServiceClient<Channel>) -> Vec<pb::Event> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = events
            .list_events(pb::ListEventsRequest {
                after_sequence: after,
                page_size: 7,
                ..Default::default()
            })
            .await
            .expect("list events")
            .into_inner();
        if page.events.is_empty() {
            assert_eq!(page.last_sequence, after);
            return all;
        }
        assert_eq!(page.last_sequence, page.events.last().unwrap().sequence);
        after = page.last_sequence;
        all.extend(page.events);
    }
}

async fn watch(
    events: &mut EventServiceClient<Channel>,
    after: i64,
    session: &str,
    types: &[pb::event::Type],
) -> tonic::Streaming<pb::Event> {
    events
        .watch_events(pb::WatchEventsRequest {
            after_sequence: after,
            session: session.into(),
            types: types.iter().map(|t| *t as i32).collect(),
        })
        .await
        .expect("watch events")
        .into_inner()
}

async fn next_event(stream: &mut tonic::Streaming<pb::Event>) -> pb::Event {
    tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("an event in time")
        .expect("the stream is healthy")
        .expect("the stream is open")
}

/// Changes the description of `session` `n` times: one SESSION_UPDATED each.
async fn update_many(
    server_sessions: pb::session_service_client::SessionServiceClient<Channel>,
    session: &str,
    n: usize,
) {
    let mut sessions = server_sessions;
    for i in 0..n {
        sessions
            .update_session(pb::UpdateSessionRequest {
                session: Some(pb::Session {
                    name: format!("sessions/{session}"),
                    description: format!("revision {i}"),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["description".into()],
                }),
            })
            .await
            .expect("update session");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_reconnects_with_its_last_sequence_misses_nothing() {
    let server = TestServer::start().await;
    server.create_session("seam").await;
    // Events keep being written while the watcher reads, disconnects and comes back.
    let writer = tokio::spawn(update_many(server.sessions.clone(), "seam", 150));
    let mut events = server.events();
    let mut seen: Vec<i64> = Vec::new();
    let mut after = 0;
    for disconnect_after in [1usize, 20, 45, 80] {
        let mut stream = watch(&mut events, after, "", &[]).await;
        while seen.len() < disconnect_after {
            seen.push(next_event(&mut stream).await.sequence);
        }
        // Hang up mid-stream and reconnect with the last sequence seen.
        drop(stream);
        after = *seen.last().unwrap();
    }
    writer.await.unwrap();
    let stored = all_events(&mut events).await;
    let head = stored.last().unwrap().sequence;
    let mut stream = watch(&mut events, after, "", &[]).await;
    while *seen.last().unwrap() < head {
        seen.push(next_event(&mut stream).await.sequence);
    }
    let want: Vec<i64> = stored.iter().map(|e| e.sequence).collect();
    assert_eq!(
        want,
        (1..=head).collect::<Vec<_>>(),
        "sequences are gap-free"
    );
    assert_eq!(
        seen, want,
        "the union of the streams is the whole log, in order"
    );
    assert_eq!(head, 151, "one SESSION_CREATED and 150 SESSION_UPDATED");

    // The live tail keeps going after the replay.
    update_many(server.sessions.clone(), "seam", 1).await;
    assert_eq!(next_event(&mut stream).await.sequence, head + 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_database_see_each_others_events() {
    // On PostgreSQL, polling is pushed out of reach: only LISTEN/NOTIFY can
    // carry the other server's events within the test's patience.
    let postgres = std::env::var("CORRAL_TEST_DATABASE_URL").is_ok_and(|url| !url.is_empty());
    let no_polling = move |config: &mut corral_server::Config| {
        if postgres {
            config.event_poll_interval = Duration::from_secs(3600);
        }
    };
    let a = TestServer::start_with(no_polling, None).await;
    // A second server process on the same database (and data directory).
    let mut config_b = common::test_config(a.dir.path(), &a.db);
    no_polling(&mut config_b);
    let b = corral_server::serve(config_b).await.expect("second server");
    let channel_b = Channel::from_shared(format!("http://{}", b.local_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut events_a = a.events();
    let mut events_b = EventServiceClient::new(channel_b.clone());
    let mut sessions_b = pb::session_service_client::SessionServiceClient::new(channel_b);

    let mut on_b = watch(&mut events_b, 0, "", &[]).await;
    let mut on_a = watch(&mut events_a, 0, "", &[]).await;
    a.create_session("made-on-a").await;
    let work_dir = a.work_dir("made-on-b");
    sessions_b
        .create_session(pb::CreateSessionRequest {
            session: Some(pb::Session {
                display_name: "made-on-b".into(),
                source: Some(pb::session::Source::Quick(pb::QuickSource {
                    work_dir: work_dir.display().to_string(),
                })),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("create on b");
    for stream in [&mut on_a, &mut on_b] {
        let first = next_event(stream).await;
        let second = next_event(stream).await;
        assert_eq!((first.sequence, second.sequence), (1, 2));
        assert!(
            [first, second]
                .iter()
                .all(|e| e.r#type == pb::event::Type::SessionCreated as i32)
        );
    }
    // Both servers serve the same log.
    assert_eq!(
        all_events(&mut events_a).await,
        all_events(&mut events_b).await
    );
    drop((on_a, on_b));
    b.shutdown();
    b.wait().await.expect("b stops");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_describe_transitions_and_filter_by_session_and_type() {
    let server = TestServer::start().await;
    server.create_session("one").await;
    server.create_session("two").await;
    let mut events = server.events();
    let mut changes = watch(
        &mut events,
        0,
        "sessions/one",
        &[pb::event::Type::SessionStateChanged],
    )
    .await;
    server.start_session("one").await;
    server.start_session("two").await;
    server
        .sessions
        .clone()
        .stop_session(pb::StopSessionRequest {
            name: "sessions/one".into(),
            ..Default::default()
        })
        .await
        .expect("stop");
    let one = server.get_session("one").await;
    let mut transitions = Vec::new();
    for _ in 0..3 {
        let event = next_event(&mut changes).await;
        assert_eq!(event.session, one.name);
        let Some(pb::event::Detail::StateChange(change)) = event.detail else {
            panic!("a state change carries its detail: {event:?}");
        };
        transitions.push((change.from(), change.to(), change.action()));
    }
    use pb::session::{Action, State};
    assert_eq!(
        transitions,
        vec![
            (State::Created, State::Starting, Action::Start),
            (State::Starting, State::Active, Action::Unspecified),
            (State::Active, State::Stopped, Action::Stop),
        ]
    );

    // ListEvents by session; worker events name the worker.
    let page = events
        .list_events(pb::ListEventsRequest {
            session: "sessions/one".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(page.events.iter().all(|e| e.session == one.name));
    let exited = page
        .events
        .iter()
        .find(|e| e.r#type == pb::event::Type::WorkerExited as i32)
        .expect("the shell's exit is an event");
    assert_eq!(exited.worker, one.workers[0].name);
    assert!(matches!(
        exited.detail,
        Some(pb::event::Detail::WorkerExit(pb::WorkerExit {
            exit_status: Some(_)
        }))
    ));

    // Bad requests are refused with the right codes.
    let bad = [
        (
            pb::WatchEventsRequest {
                after_sequence: -1,
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            pb::WatchEventsRequest {
                session: "sessions/nope".into(),
                ..Default::default()
            },
            Code::NotFound,
        ),
        (
            pb::WatchEventsRequest {
                types: vec![999],
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            pb::WatchEventsRequest {
                session: "workers/x".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
    ];
    for (request, code) in bad {
        let status = events.watch_events(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), code, "{request:?}: {status:?}");
    }
    let status = events
        .list_events(pb::ListEventsRequest {
            page_size: -5,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    drop(changes);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_past_their_retention_are_purged_on_the_injected_clock() {
    let clock = ManualClock::new(1_800_000_000_000_000);
    let server = TestServer::start_with(|_| {}, Some(clock.clone() as Arc<_>)).await;
    server.create_session("old").await;
    update_many(server.sessions.clone(), "old", 2).await;
    let mut events = server.events();
    assert_eq!(all_events(&mut events).await.len(), 3);

    clock.advance(Duration::from_secs(6 * 24 * 3600));
    server.create_session("recent").await;
    // The retention task does it.
    let reaper =
        corral_server::reaper::Reaper::new(server.server.as_ref().unwrap().manager().clone());
    assert_eq!(
        reaper.run_once(clock.now()).await.events_purged,
        0,
        "nothing is 7 days old yet"
    );

    clock.advance(Duration::from_secs(2 * 24 * 3600));
    assert_eq!(reaper.run_once(clock.now()).await.events_purged, 3);
    assert_eq!(
        reaper.run_once(clock.now()).await.events_purged,
        0,
        "idempotent"
    );
    let kept = all_events(&mut events).await;
    assert_eq!(kept.iter().map(|e| e.sequence).collect::<Vec<_>>(), vec![4]);

    // A reader that would silently miss purged events is told so.
    for after in [1, 2] {
        let status = events
            .watch_events(pb::WatchEventsRequest {
                after_sequence: after,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    }
    // Right before the oldest kept event, or from the start, is fine.
    let mut stream = watch(&mut events, 3, "", &[]).await;
    assert_eq!(next_event(&mut stream).await.sequence, 4);
    let mut stream = watch(&mut events, 0, "", &[]).await;
    assert_eq!(next_event(&mut stream).await.sequence, 4);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_ends_with_unavailable_when_the_server_shuts_down() {
    let server = TestServer::start().await;
    let mut events = server.events();
    let mut stream = watch(&mut events, 0, "", &[]).await;
    let running = server.server.as_ref().unwrap();
    running.shutdown();
    let end = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("the stream ends in time");
    assert_eq!(end.unwrap_err().code(), Code::Unavailable);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_open_for_the_stream_max_duration_ends_with_deadline_exceeded() {
    const MINUTE: Duration = Duration::from_secs(60);
    let clock = ManualClock::new(1_700_000_000_000_000);
    let server = TestServer::start_with(
        |config| config.stream_max_duration = 60 * MINUTE,
        Some(clock.clone()),
    )
    .await;
    let mut events = server.events();
    let mut stream = watch(&mut events, 0, "", &[]).await;
    server.create_session("busy").await;
    assert_eq!(
        next_event(&mut stream).await.r#type(),
        pb::event::Type::SessionCreated
    );
    // Not yet: the stream stays open before its hour is up.
    clock.advance(59 * MINUTE);
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), stream.message())
            .await
            .is_err(),
        "the stream ended before its limit"
    );
    clock.advance(2 * MINUTE);
    let end = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("the stream ends in time")
        .expect_err("ended by the server");
    assert_eq!(end.code(), Code::DeadlineExceeded, "{end:?}");
    assert!(end.message().contains("after_sequence"), "{end:?}");
    server.stop().await;
}
