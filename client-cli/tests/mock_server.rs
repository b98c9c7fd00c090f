//! Runs the `corral` binary against an in-process mock of the corral.v1 services,
//! checking what the CLI sends (names, filters, update masks, the bearer token,
//! attach frames) and what it prints and returns (tables, JSON, errors, exit codes).
//!
//! The mock answers from canned data and records the requests it gets; it is not a
//! model of the real server (the lead's end-to-end tests run against `corrald`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral::pb;
use corral::pb::event_service_server::{EventService, EventServiceServer};
use corral::pb::session_service_server::{SessionService, SessionServiceServer};
use corral::pb::worker_service_server::{WorkerService, WorkerServiceServer};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

type Rpc<T> = Result<Response<T>, Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// What the mock saw.
#[derive(Default)]
struct Seen {
    authorization: Option<String>,
    list_requests: Vec<pb::ListSessionsRequest>,
    update: Option<pb::UpdateSessionRequest>,
    create: Option<pb::CreateSessionRequest>,
    attach_open: Option<pb::AttachOpen>,
    attach_input: Vec<u8>,
    attach_resizes: Vec<pb::WindowSize>,
    watch_requests: Vec<pb::WatchEventsRequest>,
}

#[derive(Clone, Default)]
struct Mock {
    seen: Arc<Mutex<Seen>>,
}

impl Mock {
    fn record<T>(&self, request: &Request<T>) {
        let auth = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.seen.lock().unwrap().authorization = auth;
    }
}

fn session(name: &str, state: pb::session::State) -> pb::Session {
    pb::Session {
        name: format!("sessions/0190a5b4-0000-7000-8000-{name:0>12}"),
        id: format!("0190a5b4-0000-7000-8000-{name:0>12}"),
        display_name: name.into(),
        kind: pb::session::Kind::Quick as i32,
        work_dir: format!("/work/{name}"),
        state: state as i32,
        labels: HashMap::from([("task".to_owned(), "JIRA-12".to_owned())]),
        available_actions: vec![pb::session::Action::Pause as i32],
        create_time: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        workers: vec![pb::Worker {
            name: format!("sessions/{name}/workers/shell"),
            id: "77777777-0000".into(),
            display_name: "shell".into(),
            kind: pb::worker::Kind::Terminal as i32,
            state: pb::worker::State::Running as i32,
            pid: 4242,
            size: Some(pb::WindowSize { rows: 24, cols: 80 }),
            ..Default::default()
        }],
        etag: "e1".into(),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl SessionService for Mock {
    type ExportSessionStream = BoxStream<pb::ExportSessionResponse>;

    async fn create_session(&self, r: Request<pb::CreateSessionRequest>) -> Rpc<pb::Session> {
        self.record(&r);
        let request = r.into_inner();
        let mut created = session("created", pb::session::State::Created);
        if let Some(s) = &request.session {
            created.display_name = s.display_name.clone();
        }
        self.seen.lock().unwrap().create = Some(request);
        Ok(Response::new(created))
    }
    async fn get_session(&self, r: Request<pb::GetSessionRequest>) -> Rpc<pb::Session> {
        self.record(&r);
        match r.get_ref().name.as_str() {
            "sessions/demo" => Ok(Response::new(session("demo", pb::session::State::Active))),
            name => Err(Status::not_found(format!("session {name:?} not found"))),
        }
    }
    async fn list_sessions(
        &self,
        r: Request<pb::ListSessionsRequest>,
    ) -> Rpc<pb::ListSessionsResponse> {
        self.record(&r);
        let request = r.into_inner();
        let response = if request.page_token.is_empty() {
            pb::ListSessionsResponse {
                sessions: vec![
                    session("demo", pb::session::State::Active),
                    session("old", pb::session::State::Stopped),
                ],
                next_page_token: "page2".into(),
                total_size: 3,
            }
        } else {
            pb::ListSessionsResponse {
                sessions: vec![session("third", pb::session::State::Paused)],
                next_page_token: String::new(),
                total_size: 3,
            }
        };
        self.seen.lock().unwrap().list_requests.push(request);
        Ok(Response::new(response))
    }
    async fn update_session(&self, r: Request<pb::UpdateSessionRequest>) -> Rpc<pb::Session> {
        self.record(&r);
        self.seen.lock().unwrap().update = Some(r.into_inner());
        Ok(Response::new(session("demo", pb::session::State::Active)))
    }
    async fn delete_session(&self, _: Request<pb::DeleteSessionRequest>) -> Rpc<pb::Session> {
        Err(Status::unimplemented("DeleteSession"))
    }
    async fn start_session(&self, _: Request<pb::StartSessionRequest>) -> Rpc<pb::Session> {
        Err(Status::failed_precondition(
            "session \"demo\" is STOPPED; allowed actions: resume, archive, delete",
        ))
    }
    async fn pause_session(&self, r: Request<pb::PauseSessionRequest>) -> Rpc<pb::Session> {
        self.record(&r);
        let mut paused = session("demo", pb::session::State::Paused);
        paused.state_reason = "paused by test".into();
        Ok(Response::new(paused))
    }
    async fn resume_session(&self, _: Request<pb::ResumeSessionRequest>) -> Rpc<pb::Session> {
        Err(Status::unimplemented("ResumeSession"))
    }
    async fn stop_session(&self, _: Request<pb::StopSessionRequest>) -> Rpc<pb::Session> {
        Err(Status::unimplemented("StopSession"))
    }
    async fn restart_session(&self, _: Request<pb::RestartSessionRequest>) -> Rpc<pb::Session> {
        Err(Status::unimplemented("RestartSession"))
    }
    async fn archive_session(&self, _: Request<pb::ArchiveSessionRequest>) -> Rpc<pb::Session> {
        Err(Status::unimplemented("ArchiveSession"))
    }
    async fn reopen_session(&self, _: Request<pb::ReopenSessionRequest>) -> Rpc<pb::Session> {
        Err(Status::unimplemented("ReopenSession"))
    }
    async fn retry_session(&self, _: Request<pb::RetrySessionRequest>) -> Rpc<pb::Session> {
        Err(Status::unimplemented("RetrySession"))
    }
    async fn discard_session(&self, _: Request<pb::DiscardSessionRequest>) -> Rpc<pb::Session> {
        Err(Status::unimplemented("DiscardSession"))
    }
    async fn list_messages(
        &self,
        _: Request<pb::ListMessagesRequest>,
    ) -> Rpc<pb::ListMessagesResponse> {
        Err(Status::unimplemented("ListMessages"))
    }
    async fn send_message(
        &self,
        _: Request<pb::SendMessageRequest>,
    ) -> Rpc<pb::SendMessageResponse> {
        Err(Status::unimplemented("SendMessage"))
    }
    async fn export_session(
        &self,
        _: Request<pb::ExportSessionRequest>,
    ) -> Rpc<Self::ExportSessionStream> {
        let chunks = ["# demo\n", "hello\n"].map(|text| {
            Ok(pb::ExportSessionResponse {
                data: bytes::Bytes::from_static(text.as_bytes()),
                ..Default::default()
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }
    async fn search_messages(
        &self,
        _: Request<pb::SearchMessagesRequest>,
    ) -> Rpc<pb::SearchMessagesResponse> {
        Err(Status::unimplemented("SearchMessages"))
    }
}

#[tonic::async_trait]
impl WorkerService for Mock {
    type AttachStream = BoxStream<pb::AttachResponse>;

    async fn create_worker(&self, _: Request<pb::CreateWorkerRequest>) -> Rpc<pb::Worker> {
        Err(Status::unimplemented("CreateWorker"))
    }
    async fn get_worker(&self, _: Request<pb::GetWorkerRequest>) -> Rpc<pb::Worker> {
        Err(Status::unimplemented("GetWorker"))
    }
    async fn list_workers(
        &self,
        _: Request<pb::ListWorkersRequest>,
    ) -> Rpc<pb::ListWorkersResponse> {
        Err(Status::unimplemented("ListWorkers"))
    }
    async fn delete_worker(
        &self,
        _: Request<pb::DeleteWorkerRequest>,
    ) -> Rpc<pb::DeleteWorkerResponse> {
        Err(Status::unimplemented("DeleteWorker"))
    }
    async fn resize_worker(&self, _: Request<pb::ResizeWorkerRequest>) -> Rpc<pb::Worker> {
        Err(Status::unimplemented("ResizeWorker"))
    }
    async fn signal_worker(&self, _: Request<pb::SignalWorkerRequest>) -> Rpc<pb::Worker> {
        Err(Status::unimplemented("SignalWorker"))
    }
    /// Echoes input back as output; `exit\n` in the input ends the worker with code 3.
    async fn attach(&self, r: Request<Streaming<pb::AttachRequest>>) -> Rpc<Self::AttachStream> {
        use pb::attach_request::Frame as In;
        use pb::attach_response::Frame as Out;
        let mut inbound = r.into_inner();
        let Some(Ok(pb::AttachRequest {
            frame: Some(In::Open(open)),
        })) = inbound.next().await
        else {
            return Err(Status::invalid_argument("the first frame must be open"));
        };
        if open.worker.ends_with("/missing") {
            return Err(Status::not_found("worker not found"));
        }
        self.seen.lock().unwrap().attach_open = Some(open);
        let (tx, rx) = mpsc::channel(16);
        let seen = self.seen.clone();
        tokio::spawn(async move {
            let send = |frame| {
                let tx = tx.clone();
                async move { tx.send(Ok(pb::AttachResponse { frame: Some(frame) })).await }
            };
            let _ = send(Out::Attached(pb::Attached::default())).await;
            let _ = send(Out::Output(pb::Output {
                data: bytes::Bytes::from_static(b"welcome\r\n"),
                ..Default::default()
            }))
            .await;
            while let Some(Ok(request)) = inbound.next().await {
                match request.frame {
                    Some(In::Input(data)) => {
                        let text = {
                            let mut seen = seen.lock().unwrap();
                            seen.attach_input.extend_from_slice(&data);
                            String::from_utf8_lossy(&seen.attach_input).into_owned()
                        };
                        let _ = send(Out::Output(pb::Output {
                            data,
                            ..Default::default()
                        }))
                        .await;
                        if text.contains("exit\n") {
                            let _ = send(Out::Exit(pb::ExitStatus {
                                code: Some(3),
                                description: "exited with code 3".into(),
                                ..Default::default()
                            }))
                            .await;
                            return;
                        }
                    }
                    Some(In::Resize(size)) => seen.lock().unwrap().attach_resizes.push(size),
                    Some(In::Detach(_)) => {
                        let _ = send(Out::Detached(pb::Detach {})).await;
                        return;
                    }
                    Some(In::Open(_)) | None => {
                        let _ = send(Out::Error(pb::AttachError {
                            code: 3,
                            message: "unexpected frame".into(),
                        }))
                        .await;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
    async fn list_agent_profiles(
        &self,
        _: Request<pb::ListAgentProfilesRequest>,
    ) -> Rpc<pb::ListAgentProfilesResponse> {
        Err(Status::unimplemented("ListAgentProfiles"))
    }
}

fn event(sequence: i64) -> pb::Event {
    pb::Event {
        sequence,
        r#type: if sequence % 2 == 0 {
            pb::event::Type::WorkerExited as i32
        } else {
            pb::event::Type::SessionCreated as i32
        },
        session: "sessions/demo".into(),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl EventService for Mock {
    type WatchEventsStream = BoxStream<pb::Event>;

    /// Events after `after_sequence` up to 5, then the stream ends.
    async fn watch_events(
        &self,
        r: Request<pb::WatchEventsRequest>,
    ) -> Rpc<Self::WatchEventsStream> {
        let after = r.get_ref().after_sequence;
        self.seen
            .lock()
            .unwrap()
            .watch_requests
            .push(r.into_inner());
        let events: Vec<_> = (after + 1..=5).map(|s| Ok(event(s))).collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(events))))
    }
    /// Events 1..=5, two per page.
    async fn list_events(&self, r: Request<pb::ListEventsRequest>) -> Rpc<pb::ListEventsResponse> {
        let after = r.get_ref().after_sequence;
        let events: Vec<_> = (after + 1..=5).take(2).map(event).collect();
        let last_sequence = events.last().map_or(after, |e| e.sequence);
        Ok(Response::new(pb::ListEventsResponse {
            events,
            last_sequence,
        }))
    }
}

/// Starts the mock on a free port.
async fn start() -> (SocketAddr, Mock) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let mock = Mock::default();
    let router = tonic::transport::Server::builder()
        .add_service(SessionServiceServer::new(mock.clone()))
        .add_service(WorkerServiceServer::new(mock.clone()))
        .add_service(EventServiceServer::new(mock.clone()));
    tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
    (address, mock)
}

/// Runs `corral --server <address> <args>` with `stdin` as its input.
async fn corral(address: SocketAddr, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("--server")
        .arg(address.to_string())
        .args(args)
        .env_remove("CORRAL_TOKEN")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let _ = input.write_all(&stdin).await;
    });
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("corral did not finish")
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn session_list_table_follows_pages_and_builds_the_filter() {
    let (address, mock) = start().await;
    let out = corral(
        address,
        &[
            "session",
            "list",
            "--all",
            "--state",
            "active",
            "--state",
            "paused",
            "--label",
            "task=JIRA-12",
            "--filter",
            "kind = QUICK",
        ],
        b"",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "ID", "STATE", "KIND", "WORK", "DIR", "WORKERS", "CLIENTS", "AGE"
        ]
    );
    assert!(
        lines[1].contains("demo") && lines[1].contains("ACTIVE"),
        "{stdout}"
    );
    assert!(lines[1].contains("0190a5b4 "), "{stdout}");
    assert!(
        lines[3].contains("third") && lines[3].contains("PAUSED"),
        "{stdout}"
    );
    assert_eq!(lines.len(), 4, "{stdout}");
    let seen = mock.seen.lock().unwrap();
    assert_eq!(seen.list_requests.len(), 2);
    assert_eq!(
        seen.list_requests[0].filter,
        "(state = ACTIVE OR state = PAUSED) AND labels.task = \"JIRA-12\" AND (kind = QUICK)"
    );
    assert_eq!(seen.list_requests[1].page_token, "page2");
    assert_eq!(seen.authorization, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn session_list_json_is_the_response_and_a_page_token_is_shown() {
    let (address, _mock) = start().await;
    let out = corral(address, &["-o", "json", "session", "list"], b"").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["next_page_token"], "page2");
    assert_eq!(json["sessions"][0]["state"], "ACTIVE");
    assert_eq!(json["sessions"][0]["create_time"], "2023-11-14T22:13:20Z");

    let out = corral(address, &["session", "list"], b"").await;
    assert!(text(&out.stdout).contains("next page token: page2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn session_get_shows_fields_and_workers() {
    let (address, _mock) = start().await;
    let out = corral(address, &["session", "get", "demo"], b"").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for needle in [
        "display_name",
        "demo",
        "state",
        "ACTIVE",
        "available_actions",
        "pause",
        "task=JIRA-12",
        "pause_count",
        "etag",
        "e1",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing in\n{stdout}");
    }
    let header = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("NAME"))
        .unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "NAME", "ID", "KIND", "STATE", "PID", "CLIENTS", "SIZE", "EXIT"
        ]
    );
    assert!(
        stdout.contains("80x24") && stdout.contains("4242"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rpc_errors_print_the_code_and_exit_1() {
    let (address, _mock) = start().await;
    let out = corral(address, &["session", "start", "demo"], b"").await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        "error: FAILED_PRECONDITION: session \"demo\" is STOPPED; allowed actions: resume, archive, delete"
    );
    let out = corral(address, &["session", "get", "nope"], b"").await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("error: NOT_FOUND: "));
    // A service the mock does not serve at all.
    let out = corral(address, &["checkpoint", "list", "demo"], b"").await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("error: UNIMPLEMENTED"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_exits_69() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let out = corral(address, &["session", "list"], b"").await;
    assert_eq!(out.status.code(), Some(69));
    assert!(text(&out.stderr).contains(&format!("http://{address}")));
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_actions_print_one_line_and_send_the_token() {
    let (address, mock) = start().await;
    let out = corral(
        address,
        &["--token", "s3cret", "session", "pause", "demo"],
        b"",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "demo (0190a5b4): PAUSED (paused by test)"
    );
    assert_eq!(
        mock.seen.lock().unwrap().authorization.as_deref(),
        Some("Bearer s3cret")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn update_builds_the_mask() {
    let (address, mock) = start().await;
    let out = corral(
        address,
        &[
            "session",
            "update",
            "demo",
            "--description",
            "new",
            "--label",
            "b=2",
            "--label",
            "a=1",
            "--remove-label",
            "old",
            "--etag",
            "e1",
        ],
        b"",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let update = mock.seen.lock().unwrap().update.clone().unwrap();
    assert_eq!(
        update.update_mask.unwrap().paths,
        ["description", "labels.a", "labels.b", "labels.old"]
    );
    let session = update.session.unwrap();
    assert_eq!(session.name, "sessions/demo");
    assert_eq!(session.etag, "e1");
    assert_eq!(session.labels.len(), 2);

    let out = corral(address, &["session", "update", "demo"], b"").await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("nothing to update"));
}

#[tokio::test(flavor = "multi_thread")]
async fn create_makes_the_work_dir_absolute_and_defines_workers() {
    let (address, mock) = start().await;
    let out = corral(
        address,
        &[
            "session",
            "create",
            "--work-dir",
            "some/dir",
            "--name",
            "n",
            "--terminal",
            "logs=tail -f 'a b'",
            "--agent",
            "claude",
            "--agent-arg",
            "--verbose",
        ],
        b"",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let seen = mock.seen.lock().unwrap();
    let create = seen.create.as_ref().unwrap();
    let Some(pb::session::Source::Quick(quick)) =
        create.session.as_ref().and_then(|s| s.source.clone())
    else {
        panic!("not a quick source");
    };
    let expected = std::env::current_dir().unwrap().join("some/dir");
    assert_eq!(quick.work_dir, expected.to_str().unwrap());
    assert_eq!(create.workers.len(), 2);
    assert_eq!(create.workers[0].display_name, "logs");
    let Some(pb::worker::Spec::Terminal(terminal)) = &create.workers[0].spec else {
        panic!("not a terminal");
    };
    assert_eq!(terminal.command, ["tail", "-f", "a b"]);
    let Some(pb::worker::Spec::Agent(agent)) = &create.workers[1].spec else {
        panic!("not an agent");
    };
    assert_eq!(
        (agent.profile.as_str(), agent.extra_args.as_slice()),
        ("claude", &["--verbose".to_owned()][..])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn export_writes_the_chunks() {
    let (address, _mock) = start().await;
    let out = corral(address, &["export", "demo", "--format", "csv"], b"").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "# demo\nhello\n");

    let path = std::env::temp_dir().join(format!("corral-export-{}.md", std::process::id()));
    let out = corral(
        address,
        &["export", "demo", "-f", path.to_str().unwrap()],
        b"",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "# demo\nhello\n");
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn piped_attach_forwards_stdin_and_detaches_at_eof() {
    let (address, mock) = start().await;
    let out = corral(address, &["attach", "demo", "--replay", "none"], b"hello\n").await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "welcome\r\nhello\n");
    assert_eq!(text(&out.stderr).trim(), "[detached]");
    let seen = mock.seen.lock().unwrap();
    let open = seen.attach_open.as_ref().unwrap();
    assert_eq!(open.worker, "sessions/demo");
    assert_eq!(open.size, None);
    assert_eq!(
        open.replay.and_then(|r| r.mode),
        Some(pb::replay::Mode::None(true))
    );
    // Detach keys are not interpreted when stdin is not a terminal.
    assert_eq!(seen.attach_input, b"hello\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_exits_with_the_workers_code() {
    let (address, mock) = start().await;
    let out = corral(address, &["worker", "attach", "demo", "shell"], b"exit\n").await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr).trim(), "[exited: exited with code 3]");
    let seen = mock.seen.lock().unwrap();
    assert_eq!(
        seen.attach_open.as_ref().unwrap().worker,
        "sessions/demo/workers/shell"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_errors_exit_1() {
    let (address, _mock) = start().await;
    let out = corral(address, &["attach", "demo", "missing"], b"").await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        "error: NOT_FOUND: worker not found"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_attach_leaves_on_ctrl_c() {
    let (address, mock) = start().await;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .args([
            "--server",
            &address.to_string(),
            "attach",
            "demo",
            "--read-only",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Wait until the mock has the open frame, then interrupt.
    for _ in 0..100 {
        if mock.seen.lock().unwrap().attach_open.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        mock.seen
            .lock()
            .unwrap()
            .attach_open
            .as_ref()
            .unwrap()
            .read_only
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = i32::try_from(child.id().unwrap()).unwrap();
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr).trim(), "[detached]");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_list_reads_every_page_and_filters_types() {
    let (address, _mock) = start().await;
    let out = corral(address, &["events", "--type", "worker-exited"], b"").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let sequences: Vec<&str> = stdout
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(sequences, ["2", "4"]);
    assert!(stdout.lines().all(|l| l.contains(" WORKER_EXITED demo")));

    let out = corral(address, &["-o", "json", "events", "--after", "3"], b"").await;
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["sequence"], 4);
    assert_eq!(lines[1]["type"], "SESSION_CREATED");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_follow_saves_the_sequence_and_reconnects_after_it() {
    let (address, mock) = start().await;
    let state = std::env::temp_dir().join(format!("corral-events-{}.seq", std::process::id()));
    std::fs::write(&state, "2\n").unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .args([
            "--server",
            &address.to_string(),
            "events",
            "--follow",
            "--resume",
        ])
        .arg("--state-file")
        .arg(&state)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The mock ends each stream after event 5; wait for the reconnect.
    for _ in 0..100 {
        if mock.seen.lock().unwrap().watch_requests.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let sequences: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();
    assert_eq!(sequences, ["3", "4", "5"]);
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "5\n");
    assert!(
        text(&out.stderr).contains("reconnecting in 1s after sequence 5"),
        "{}",
        text(&out.stderr)
    );
    let seen = mock.seen.lock().unwrap();
    assert_eq!(seen.watch_requests[0].after_sequence, 2);
    assert_eq!(seen.watch_requests[1].after_sequence, 5);
    std::fs::remove_file(&state).unwrap();
}

/// Attaches from a real pseudo-terminal: raw mode, the initial size, a resize, the
/// detach keys (not forwarded) and the terminal restored afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn interactive_attach_in_a_pty() {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};

    let (address, mock) = start().await;
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 30,
            cols: 100,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut command = CommandBuilder::new(env!("CARGO_BIN_EXE_corral"));
    command.args(["--server", &address.to_string(), "attach", "demo", "shell"]);
    command.env("NO_COLOR", "1");
    let mut child = pty.slave.spawn_command(command).unwrap();
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().unwrap();
    let mut writer = pty.master.take_writer().unwrap();
    // Collect everything the client writes to its terminal.
    let (output_tx, output_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buffer) {
            if n == 0 || output_tx.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut output = Vec::new();
    let wait_for = |needle: &str, output: &mut Vec<u8>| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !text(output).contains(needle) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match output_rx.recv_timeout(left) {
                Ok(chunk) => output.extend(chunk),
                Err(_) => panic!("{needle:?} never came; got {:?}", text(output)),
            }
        }
    };
    wait_for("welcome", &mut output);
    {
        let seen = mock.seen.lock().unwrap();
        let open = seen.attach_open.as_ref().unwrap();
        assert_eq!(
            open.size,
            Some(pb::WindowSize {
                rows: 30,
                cols: 100
            })
        );
    }
    // In raw mode, keys arrive one by one and are echoed by the mock only.
    writer.write_all(b"ab").unwrap();
    wait_for("ab", &mut output);
    pty.master
        .resize(PtySize {
            rows: 40,
            cols: 120,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    for _ in 0..100 {
        if !mock.seen.lock().unwrap().attach_resizes.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // ctrl-p ctrl-p ctrl-q: one ctrl-p is forwarded, then the client detaches.
    writer.write_all(&[0x10, 0x10, 0x11]).unwrap();
    wait_for("[detached]", &mut output);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let seen = mock.seen.lock().unwrap();
    assert_eq!(seen.attach_input, [b'a', b'b', 0x10]);
    assert_eq!(
        seen.attach_resizes.last(),
        Some(&pb::WindowSize {
            rows: 40,
            cols: 120
        })
    );
}
