//! Authentication and principals, against a real server with tokens configured:
//! every RPC of every service — enumerated from the descriptor sets, so that a new
//! RPC cannot be forgotten — refuses a missing and a wrong credential with the same
//! UNAUTHENTICATED answer; tokens name principals; a principal sees and touches
//! only its own sessions unless it is an admin. (The `corrald` binary's own checks
//! are in `server/tests/corrald.rs`.)

mod common;

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use common::rpc::{self, call_raw};
use common::{PATIENCE, TestServer, clients_as, quick_session, stored};
use corral::pb;
use corral_server::auth::UNAUTHENTICATED_MESSAGE;
use corral_server::auth::tokens::entry_line;
use tokio_stream::StreamExt;
use tonic::Code;

const ALICE: &str = "alice-0123456789abcdef";
const BOB: &str = "bob-0123456789abcdef";
const ROOT: &str = "root-0123456789abcdef";

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn basic(name: &str, token: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{name}:{token}"));
    format!("Basic {encoded}")
}

/// A server accepting alice and bob (principals) and root (an admin), given as
/// `CORRAL_TOKENS`-style entries.
async fn server_with_tokens() -> TestServer {
    TestServer::start_with(
        |config| {
            config.tokens = Some(format!(
                "{},{} {}",
                entry_line("alice", ALICE, false),
                entry_line("bob", BOB, false),
                entry_line("root", ROOT, true)
            ));
        },
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_missing_and_wrong_credentials_alike() {
    let server = server_with_tokens().await;
    create_as(&server, ALICE, "kept").await;
    let running = server.server.as_ref().unwrap();
    let before = stored(running).await;

    let mut methods = rpc::corral_methods();
    methods.extend(rpc::reflection_methods());
    let refused = [
        None,
        Some(bearer("wrong")),
        Some(bearer(&format!("{ALICE}x"))),
        Some("Bearer".to_owned()),
        Some(ALICE.to_owned()),
        Some(format!("Token {ALICE}")),
        Some(basic("alice", "wrong")),
        Some(basic("mallory", ALICE)),
        Some("Basic %%%not-base64".to_owned()),
    ];
    for method in &methods {
        for authorization in &refused {
            let outcome = call_raw(
                &server.channel,
                method,
                vec![Bytes::new()],
                authorization.as_deref(),
                PATIENCE,
            )
            .await;
            let status = outcome.status.expect_err(&format!(
                "{} with {authorization:?} must be refused",
                method.full_name
            ));
            assert_eq!(
                status.code(),
                Code::Unauthenticated,
                "{} with {authorization:?}: {status:?}",
                method.full_name
            );
            assert_eq!(
                status.message(),
                UNAUTHENTICATED_MESSAGE,
                "the same words whatever was wrong"
            );
        }
        // The right token passes the guard (what the RPC then says is its business).
        let outcome = call_raw(
            &server.channel,
            method,
            vec![Bytes::new()],
            Some(&bearer(ALICE)),
            Duration::from_millis(500),
        )
        .await;
        if let Err(status) = outcome.status {
            assert_ne!(status.code(), Code::Unauthenticated, "{}", method.full_name);
        }
    }

    // The open health prefix is no way around the guard.
    let list_sessions = methods
        .iter()
        .find(|m| m.full_name == "corral.v1.SessionService/ListSessions")
        .unwrap();
    for path in [
        "/grpc.health.v1.Health/../corral.v1.SessionService/ListSessions",
        "/grpc.health.v1.Health/%2E%2E/corral.v1.SessionService/ListSessions",
        "/grpc.health.v1.Health//corral.v1.SessionService/ListSessions",
    ] {
        let sneaky = rpc::Method {
            path: path.into(),
            ..list_sessions.clone()
        };
        let outcome = call_raw(&server.channel, &sneaky, vec![Bytes::new()], None, PATIENCE).await;
        let status = outcome.status.expect_err(path);
        assert_eq!(status.code(), Code::Unimplemented, "{path}: {status:?}");
        assert!(outcome.messages.is_empty(), "{path}");
    }

    // Health stays open to everyone (load balancers, orchestrators).
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "corral.v1.SessionService".into(),
        })
        .await
        .expect("health needs no token")
        .into_inner();
    assert_eq!(
        answer.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );

    assert_eq!(
        stored(running).await,
        before,
        "refused calls changed nothing"
    );
    server.stop().await;
}

/// Creates a quick session as the holder of `token`.
async fn create_as(server: &TestServer, token: &str, name: &str) -> pb::Session {
    let (mut sessions, _) = clients_as(&server.channel, &bearer(token));
    sessions
        .create_session(quick_session(name, &server.work_dir(name)))
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e:?}"))
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principals_see_and_touch_only_their_own_sessions() {
    let server = server_with_tokens().await;
    let alices = create_as(&server, ALICE, "alices").await;
    assert_eq!(
        alices.creator, "alice",
        "the session records who created it"
    );
    let (mut alice, _) = clients_as(&server.channel, &basic("alice", ALICE));
    alice
        .start_session(pb::StartSessionRequest {
            name: "sessions/alices".into(),
            ..Default::default()
        })
        .await
        .expect("HTTP Basic works too");
    let bobs = create_as(&server, BOB, "bobs").await;
    assert_eq!(bobs.creator, "bob");

    let running = server.server.as_ref().unwrap();
    let before = stored(running).await;
    let (mut bob_sessions, mut bob_workers) = clients_as(&server.channel, &bearer(BOB));

    // Bob cannot tell alice's session from one that does not exist.
    let nobody = bob_sessions
        .get_session(pb::GetSessionRequest {
            name: "sessions/nobody".into(),
        })
        .await
        .unwrap_err();
    for name in ["sessions/alices".to_owned(), alices.name.clone()] {
        let err = bob_sessions
            .get_session(pb::GetSessionRequest { name: name.clone() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{name}");
        assert_eq!(
            err.message(),
            nobody
                .message()
                .replace("nobody", name.trim_start_matches("sessions/")),
            "the same words as for a session that does not exist"
        );
    }
    macro_rules! not_found {
        ($call:expr) => {{
            let err = $call.await.expect_err("refused");
            assert_eq!(err.code(), Code::NotFound, "{err:?}");
        }};
    }
    let name = || "sessions/alices".to_owned();
    let worker = || "sessions/alices/workers/shell".to_owned();
    not_found!(bob_sessions.stop_session(pb::StopSessionRequest {
        name: name(),
        ..Default::default()
    }));
    not_found!(bob_sessions.pause_session(pb::PauseSessionRequest {
        name: name(),
        ..Default::default()
    }));
    not_found!(bob_sessions.delete_session(pb::DeleteSessionRequest {
        name: name(),
        ..Default::default()
    }));
    not_found!(bob_sessions.update_session(pb::UpdateSessionRequest {
        session: Some(pb::Session {
            name: name(),
            description: "mine now".into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["description".into()],
        }),
    }));
    not_found!(bob_workers.create_worker(pb::CreateWorkerRequest {
        parent: name(),
        worker: Some(pb::Worker::default()),
    }));
    not_found!(bob_workers.list_workers(pb::ListWorkersRequest {
        parent: name(),
        ..Default::default()
    }));
    not_found!(bob_workers.get_worker(pb::GetWorkerRequest { name: worker() }));
    not_found!(bob_workers.resize_worker(pb::ResizeWorkerRequest {
        name: worker(),
        size: Some(pb::WindowSize { rows: 10, cols: 10 }),
    }));
    not_found!(bob_workers.signal_worker(pb::SignalWorkerRequest {
        name: worker(),
        signal: pb::Signal::Sigkill.into(),
        ..Default::default()
    }));
    let open = pb::AttachRequest {
        frame: Some(pb::attach_request::Frame::Open(pb::AttachOpen {
            worker: worker(),
            ..Default::default()
        })),
    };
    not_found!(bob_workers.attach(tokio_stream::iter([open])));

    // Listings leave other principals' sessions out.
    let listed = bob_sessions
        .list_sessions(pb::ListSessionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = listed
        .sessions
        .iter()
        .map(|s| s.display_name.as_str())
        .collect();
    assert_eq!(names, ["bobs"]);
    assert_eq!(listed.total_size, 1);
    assert_eq!(
        stored(running).await,
        before,
        "bob changed nothing of alice's"
    );

    // An admin sees and acts on everything.
    let (mut root, _) = clients_as(&server.channel, &bearer(ROOT));
    let listed = root
        .list_sessions(pb::ListSessionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.total_size, 2);
    let stopped = root
        .stop_session(pb::StopSessionRequest {
            name: name(),
            ..Default::default()
        })
        .await
        .expect("an admin may stop anyone's session")
        .into_inner();
    assert_eq!(stopped.state(), pb::session::State::Stopped);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_can_be_open_authenticated_or_off() {
    use corral_server::config::ReflectionAccess;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;

    async fn list(server: &TestServer, token: Option<&str>) -> Option<Code> {
        let auth = common::Authorization(
            token
                .map(bearer)
                .unwrap_or_default()
                .parse()
                .expect("ASCII"),
        );
        let mut client = ServerReflectionClient::with_interceptor(server.channel.clone(), auth);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let answer = match client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
        {
            Ok(answers) => answers.into_inner().next().await.expect("an answer"),
            Err(status) => Err(status),
        };
        answer.err().map(|status| status.code())
    }

    for (access, without_token, with_token) in [
        (ReflectionAccess::Open, None, None),
        (
            ReflectionAccess::Authenticated,
            Some(Code::Unauthenticated),
            None,
        ),
        // Not served at all; credentials are still checked first.
        (
            ReflectionAccess::Off,
            Some(Code::Unauthenticated),
            Some(Code::Unimplemented),
        ),
    ] {
        let server = TestServer::start_with(
            |config| {
                config.tokens = Some(entry_line("alice", ALICE, false));
                config.reflection = access;
            },
            None,
        )
        .await;
        assert_eq!(list(&server, None).await, without_token, "{access:?}");
        assert_eq!(list(&server, Some(ALICE)).await, with_token, "{access:?}");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_only_the_conversations_a_principal_may_see() {
    use corral_server::store::messages::NewMessage;
    let server = server_with_tokens().await;
    let store = server.server.as_ref().unwrap().manager().store().clone();
    for (token, name) in [(ALICE, "alices"), (BOB, "bobs")] {
        let session = create_as(&server, token, name).await;
        store
            .insert_messages(
                &session.id,
                vec![NewMessage {
                    worker_id: String::new(),
                    role: "USER".into(),
                    text: format!("{name} says the password is swordfish"),
                    tool_name: String::new(),
                    create_time: 1,
                    origin: "SEND_MESSAGE".into(),
                    source_key: format!("test-{name}"),
                }],
            )
            .await
            .expect("a message");
    }
    let search = |token: &'static str| {
        let channel = server.channel.clone();
        async move {
            let (mut sessions, _) = clients_as(&channel, &bearer(token));
            let mut found: Vec<String> = sessions
                .search_messages(pb::SearchMessagesRequest {
                    query: "swordfish".into(),
                    ..Default::default()
                })
                .await
                .expect("search")
                .into_inner()
                .results
                .into_iter()
                .map(|r| r.message.expect("message").text)
                .collect();
            found.sort();
            found
        }
    };
    assert_eq!(
        search(BOB).await,
        vec!["bobs says the password is swordfish"]
    );
    assert_eq!(
        search(ALICE).await,
        vec!["alices says the password is swordfish"]
    );
    assert_eq!(search(ROOT).await.len(), 2, "an admin searches everything");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_show_a_principal_only_its_own_sessions() {
    use corral::pb::event_service_client::EventServiceClient;
    let server = server_with_tokens().await;
    let alices = create_as(&server, ALICE, "alices").await;
    let bobs = create_as(&server, BOB, "bobs").await;
    let events_of = |token: &'static str| {
        let auth = common::Authorization(bearer(token).parse().expect("ASCII"));
        EventServiceClient::with_interceptor(server.channel.clone(), auth)
    };
    let listed = |token: &'static str| {
        let mut client = events_of(token);
        async move {
            client
                .list_events(pb::ListEventsRequest::default())
                .await
                .expect("ListEvents")
                .into_inner()
                .events
                .into_iter()
                .map(|e| e.session)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(ALICE).await, vec![alices.name.clone()]);
    assert_eq!(listed(BOB).await, vec![bobs.name.clone()]);
    assert_eq!(
        listed(ROOT).await,
        [alices.name, bobs.name.clone()],
        "an admin sees every event"
    );

    // WatchEvents: the replay and the live events alike.
    let mut watch = events_of(BOB)
        .watch_events(pb::WatchEventsRequest::default())
        .await
        .expect("WatchEvents")
        .into_inner();
    let mut next = async || {
        tokio::time::timeout(PATIENCE, watch.next())
            .await
            .expect("an event in time")
            .expect("an event")
            .expect("no error")
            .session
    };
    assert_eq!(next().await, bobs.name);
    create_as(&server, ALICE, "alices-second").await;
    let bobs_second = create_as(&server, BOB, "bobs-second").await;
    assert_eq!(
        next().await,
        bobs_second.name,
        "alice's new session is skipped, bob's comes next"
    );
    server.stop().await;
}
