//! Shared test harness: a real corrald (in-process, real tonic on an ephemeral
//! port) over a real database — SQLite in a temporary directory, or PostgreSQL when
//! `CORRAL_TEST_DATABASE_URL` is set (each test then gets its own fresh database).

#![allow(dead_code)]

pub mod agent;
pub mod procs;
pub mod rpc;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use corral::pb;
use corral::pb::session_service_client::SessionServiceClient;
use corral::pb::worker_service_client::WorkerServiceClient;
use corral_server::clock::Clock;
use corral_server::{Config, RunningServer};
use sea_orm::{ConnectionTrait, Database};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

/// How long a test waits for something that should happen quickly.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A database for one test.
pub struct TestDb {
    pub url: String,
    admin: Option<(String, String)>,
}

impl TestDb {
    /// SQLite in `dir`, or a fresh PostgreSQL database when
    /// `CORRAL_TEST_DATABASE_URL` names a server.
    pub async fn new(dir: &Path) -> TestDb {
        match std::env::var("CORRAL_TEST_DATABASE_URL") {
            Ok(admin_url) if !admin_url.is_empty() => {
                let name = format!("corral_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(&admin_url)
                    .await
                    .expect("CORRAL_TEST_DATABASE_URL must reach PostgreSQL");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                let base = admin_url
                    .rsplit_once('/')
                    .map(|(base, _)| base.to_owned())
                    .unwrap_or(admin_url.clone());
                TestDb {
                    url: format!("{base}/{name}"),
                    admin: Some((admin_url, name)),
                }
            }
            _ => TestDb {
                url: format!("sqlite://{}?mode=rwc", dir.join("corral.db").display()),
                admin: None,
            },
        }
    }

    /// True on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.admin.is_some()
    }

    /// Drops the PostgreSQL database (best effort).
    pub async fn drop_database(&self) {
        if let Some((admin_url, name)) = &self.admin
            && let Ok(admin) = Database::connect(admin_url).await
        {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
            admin.close().await.ok();
        }
    }
}

/// A running server with clients.
pub struct TestServer {
    pub server: Option<RunningServer>,
    pub addr: std::net::SocketAddr,
    pub dir: tempfile::TempDir,
    pub db: TestDb,
    pub sessions: SessionServiceClient<Channel>,
    pub workers: WorkerServiceClient<Channel>,
    pub channel: Channel,
}

/// The settings every test server uses; `edit` may change them.
pub fn test_config(dir: &Path, db: &TestDb) -> Config {
    let mut config = Config::with_data_dir(dir.join("data"));
    config.database_url = Some(db.url.clone());
    config.stop_grace = Duration::from_secs(3);
    config.shell = Some(test_shell());
    // Workers get a private, empty home: login shells must not run the host
    // user's dotfiles (slow, stateful, and not ours to disturb).
    let home = dir.join("home");
    std::fs::create_dir_all(&home).expect("worker home");
    config.worker_env = vec![("HOME".into(), home.display().to_string())];
    config
}

/// bash when present (job control for pause tests), else /bin/sh.
pub fn test_shell() -> PathBuf {
    ["/bin/bash", "/usr/bin/bash", "/bin/sh"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/bin/sh"))
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}, None).await
    }

    pub async fn start_with(
        edit: impl FnOnce(&mut Config),
        clock: Option<Arc<dyn Clock>>,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = TestDb::new(dir.path()).await;
        TestServer::start_in(dir, db, edit, clock).await
    }

    /// A server on an existing directory and database (a restart).
    pub async fn start_in(
        dir: tempfile::TempDir,
        db: TestDb,
        edit: impl FnOnce(&mut Config),
        clock: Option<Arc<dyn Clock>>,
    ) -> TestServer {
        let mut config = test_config(dir.path(), &db);
        edit(&mut config);
        let server = match clock {
            Some(clock) => corral_server::serve_with_clock(config, clock).await,
            None => corral_server::serve(config).await,
        }
        .expect("server starts");
        let addr = server.local_addr();
        let channel = match server.unix_path() {
            Some(path) => eventually_connect_unix(path).await,
            None => Channel::from_shared(format!("http://{addr}"))
                .expect("uri")
                .connect()
                .await
                .expect("connect"),
        };
        TestServer {
            server: Some(server),
            addr,
            dir,
            db,
            sessions: SessionServiceClient::new(channel.clone()),
            workers: WorkerServiceClient::new(channel.clone()),
            channel,
        }
    }

    /// A directory for sessions to work in.
    pub fn work_dir(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join("work").join(name);
        std::fs::create_dir_all(&path).expect("work dir");
        path
    }

    /// Creates a quick session named `name` in a fresh work dir.
    pub async fn create_session(&self, name: &str) -> pb::Session {
        let work_dir = self.work_dir(name);
        self.sessions
            .clone()
            .create_session(pb::CreateSessionRequest {
                session: Some(pb::Session {
                    display_name: name.into(),
                    source: Some(pb::session::Source::Quick(pb::QuickSource {
                        work_dir: work_dir.display().to_string(),
                    })),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("create session")
            .into_inner()
    }

    pub async fn start_session(&self, name: &str) -> pb::Session {
        self.sessions
            .clone()
            .start_session(pb::StartSessionRequest {
                name: format!("sessions/{name}"),
                ..Default::default()
            })
            .await
            .expect("start session")
            .into_inner()
    }

    pub async fn get_session(&self, name: &str) -> pb::Session {
        self.sessions
            .clone()
            .get_session(pb::GetSessionRequest {
                name: format!("sessions/{name}"),
            })
            .await
            .expect("get session")
            .into_inner()
    }

    /// Attaches to `worker` (a full worker name or `sessions/x`).
    pub async fn attach(
        &self,
        worker: &str,
        size: Option<(u32, u32)>,
        replay: Option<pb::replay::Mode>,
    ) -> Client {
        Client::open(self.workers.clone(), worker, size, replay).await
    }

    /// Shuts the server down gracefully and hands back its directory and
    /// database, for a restart with [`TestServer::start_in`].
    pub async fn shut_down(mut self) -> (tempfile::TempDir, TestDb) {
        if let Some(server) = self.server.take() {
            server.shutdown();
            server.wait().await.expect("clean shutdown");
        }
        (self.dir, self.db)
    }

    /// An EventService client.
    pub fn events(&self) -> corral::pb::event_service_client::EventServiceClient<Channel> {
        corral::pb::event_service_client::EventServiceClient::new(self.channel.clone())
    }

    /// Shuts the server down and waits for it.
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
            server.wait().await.expect("clean shutdown");
        }
        self.db.drop_database().await;
    }
}

/// An attached client: sends frames, collects everything the server sent.
pub struct Client {
    pub tx: mpsc::Sender<pb::AttachRequest>,
    rx: tonic::Streaming<pb::AttachResponse>,
    /// Output bytes received so far (replay and live).
    pub output: Vec<u8>,
    /// Every frame other than output, in order.
    pub frames: Vec<pb::attach_response::Frame>,
    /// The first frame.
    pub attached: pb::Attached,
    /// The stream's final status, once it ended.
    pub ended: Option<Result<(), tonic::Status>>,
}

impl Client {
    pub async fn open(
        mut workers: WorkerServiceClient<Channel>,
        worker: &str,
        size: Option<(u32, u32)>,
        replay: Option<pb::replay::Mode>,
    ) -> Client {
        Client::try_open(&mut workers, worker, size, replay)
            .await
            .expect("attach")
    }

    pub async fn try_open(
        workers: &mut WorkerServiceClient<Channel>,
        worker: &str,
        size: Option<(u32, u32)>,
        replay: Option<pb::replay::Mode>,
    ) -> Result<Client, tonic::Status> {
        let (tx, rx) = mpsc::channel(64);
        tx.send(pb::AttachRequest {
            frame: Some(pb::attach_request::Frame::Open(pb::AttachOpen {
                worker: worker.into(),
                size: size.map(|(rows, cols)| pb::WindowSize { rows, cols }),
                replay: replay.map(|mode| pb::Replay { mode: Some(mode) }),
                read_only: false,
            })),
        })
        .await
        .expect("queue open");
        let rx = workers
            .attach(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        Client::from_stream(tx, rx).await
    }

    /// Attaches through a client that sends credentials.
    pub async fn open_with(
        mut workers: WorkerServiceClient<AuthChannel>,
        worker: &str,
        size: Option<(u32, u32)>,
        replay: Option<pb::replay::Mode>,
    ) -> Client {
        let (tx, rx) = mpsc::channel(64);
        tx.send(pb::AttachRequest {
            frame: Some(pb::attach_request::Frame::Open(pb::AttachOpen {
                worker: worker.into(),
                size: size.map(|(rows, cols)| pb::WindowSize { rows, cols }),
                replay: replay.map(|mode| pb::Replay { mode: Some(mode) }),
                read_only: false,
            })),
        })
        .await
        .expect("queue open");
        let rx = workers
            .attach(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("attach")
            .into_inner();
        Client::from_stream(tx, rx).await.expect("attached")
    }

    /// A client over an opened Attach stream: waits for the `attached` frame.
    pub async fn from_stream(
        tx: mpsc::Sender<pb::AttachRequest>,
        mut rx: tonic::Streaming<pb::AttachResponse>,
    ) -> Result<Client, tonic::Status> {
        let first = tokio::time::timeout(PATIENCE, rx.next())
            .await
            .expect("attached frame in time")
            .expect("a first frame")?;
        let attached = match first.frame {
            Some(pb::attach_response::Frame::Attached(attached)) => attached,
            other => panic!("first frame is not `attached`: {other:?}"),
        };
        Ok(Client {
            tx,
            rx,
            output: Vec::new(),
            frames: Vec::new(),
            attached,
            ended: None,
        })
    }

    pub async fn input(&self, bytes: &[u8]) {
        self.tx
            .send(pb::AttachRequest {
                frame: Some(pb::attach_request::Frame::Input(Bytes::copy_from_slice(
                    bytes,
                ))),
            })
            .await
            .expect("send input");
    }

    pub async fn resize(&self, rows: u32, cols: u32) {
        self.tx
            .send(pb::AttachRequest {
                frame: Some(pb::attach_request::Frame::Resize(pb::WindowSize {
                    rows,
                    cols,
                })),
            })
            .await
            .expect("send resize");
    }

    pub async fn detach(&self) {
        self.tx
            .send(pb::AttachRequest {
                frame: Some(pb::attach_request::Frame::Detach(pb::Detach {})),
            })
            .await
            .expect("send detach");
    }

    /// Receives one frame; false when the stream ended.
    pub async fn pump(&mut self) -> bool {
        match self.rx.next().await {
            Some(Ok(response)) => {
                match response.frame {
                    Some(pb::attach_response::Frame::Output(output)) => {
                        self.output.extend_from_slice(&output.data)
                    }
                    Some(frame) => self.frames.push(frame),
                    None => {}
                }
                true
            }
            Some(Err(status)) => {
                self.ended = Some(Err(status));
                false
            }
            None => {
                self.ended = Some(Ok(()));
                false
            }
        }
    }

    /// Waits until the output contains `needle`; panics with the output after the patience.
    pub async fn expect(&mut self, needle: &str) {
        self.expect_count(needle, 1).await;
    }

    /// Waits until the output contains `needle` at least `count` times (e.g. twice:
    /// once echoed by the terminal as it was typed, once printed by the command).
    pub async fn expect_count(&mut self, needle: &str, count: usize) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while String::from_utf8_lossy(&self.output)
            .matches(needle)
            .count()
            < count
        {
            match tokio::time::timeout_at(deadline, self.pump()).await {
                Ok(true) => {}
                Ok(false) => panic!(
                    "stream ended ({:?}) before {needle:?} appeared in:\n{}",
                    self.ended,
                    String::from_utf8_lossy(&self.output)
                ),
                Err(_) => panic!(
                    "{needle:?} did not appear within {PATIENCE:?} in:\n{}",
                    String::from_utf8_lossy(&self.output)
                ),
            }
        }
    }

    /// Reads until the stream ends; returns the final status.
    pub async fn until_end(&mut self) -> Result<(), tonic::Status> {
        loop {
            match tokio::time::timeout(PATIENCE, self.pump()).await {
                Ok(true) => {}
                Ok(false) => return self.ended.clone().expect("ended"),
                Err(_) => panic!(
                    "stream did not end within {PATIENCE:?}; frames: {:?}",
                    self.frames
                ),
            }
        }
    }

    /// The exit frame, if one arrived.
    pub fn exit(&self) -> Option<&pb::ExitStatus> {
        self.frames.iter().find_map(|f| match f {
            pb::attach_response::Frame::Exit(exit) => Some(exit),
            _ => None,
        })
    }

    /// The error frames received.
    pub fn errors(&self) -> Vec<&pb::AttachError> {
        self.frames
            .iter()
            .filter_map(|f| match f {
                pb::attach_response::Frame::Error(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    /// Waits until an error frame arrives.
    pub async fn expect_error_frame(&mut self) -> pb::AttachError {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(err) = self.errors().first() {
                return (*err).clone();
            }
            match tokio::time::timeout_at(deadline, self.pump()).await {
                Ok(true) => {}
                Ok(false) => panic!("stream ended ({:?}) without an error frame", self.ended),
                Err(_) => panic!("no error frame within {PATIENCE:?}"),
            }
        }
    }
}

/// Waits until `check` holds, polling.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The path of a binary of this workspace (`corrald`, `corral`), built if needed.
///
/// Built with `--workspace` so that dependency features are unified exactly as for
/// the test build: building one package alone (`-p corral-cli`) resolves features
/// differently and recompiles most dependencies.
pub fn workspace_binary(name: &str) -> PathBuf {
    let mut build = escargot::CargoBuild::new().bin(name).arg("--workspace");
    // The variables `cargo test` sets for this test crate must not leak into the
    // nested build: some build scripts (ring's) track e.g. OUT_DIR and
    // CARGO_MANIFEST_DIR, and a different value rebuilds half the tree.
    const PER_CRATE: [&str; 8] = [
        "OUT_DIR",
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
    ];
    for (key, _) in std::env::vars_os() {
        if PER_CRATE
            .iter()
            .any(|prefix| key.to_string_lossy().starts_with(prefix))
        {
            build = build.env_remove(key);
        }
    }
    build
        .run()
        .unwrap_or_else(|e| panic!("building {name}: {e}"))
        .path()
        .to_owned()
}

/// Everything stored: sessions (tombstones included) with labels, their workers,
/// and the number of events. Refused calls must leave it unchanged.
#[derive(Debug, PartialEq)]
pub struct Stored {
    pub sessions: Vec<corral_server::store::SessionRow>,
    pub workers:
        std::collections::BTreeMap<String, Vec<corral_server::store::entities::worker::Model>>,
    pub events: usize,
}

/// Reads [`Stored`] straight from the store (no RPC, so no credentials needed).
pub async fn stored(server: &RunningServer) -> Stored {
    let store = server.manager().store();
    let sessions = store
        .list_sessions(&corral_server::store::SessionQuery {
            show_deleted: true,
            page_size: 100_000,
            ..Default::default()
        })
        .await
        .expect("list sessions")
        .sessions;
    let ids: Vec<String> = sessions.iter().map(|s| s.model.id.clone()).collect();
    let workers = store.workers_of(&ids).await.expect("workers");
    let events = store
        .events_after(0, None, 1_000_000)
        .await
        .expect("events")
        .len();
    Stored {
        sessions,
        workers,
        events,
    }
}

/// Adds a fixed `authorization` header to every call.
#[derive(Clone, Debug)]
pub struct Authorization(pub tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Authorization {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A channel whose calls carry `authorization: <value>`.
pub type AuthChannel = tonic::service::interceptor::InterceptedService<Channel, Authorization>;

/// Session and worker clients over `channel` that send `authorization: <value>`.
pub fn clients_as(
    channel: &Channel,
    authorization: &str,
) -> (
    SessionServiceClient<AuthChannel>,
    WorkerServiceClient<AuthChannel>,
) {
    let auth = Authorization(authorization.parse().expect("an ASCII header value"));
    (
        SessionServiceClient::with_interceptor(channel.clone(), auth.clone()),
        WorkerServiceClient::with_interceptor(channel.clone(), auth),
    )
}

/// A quick CreateSession request.
pub fn quick_session(name: &str, work_dir: &Path) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        session: Some(pb::Session {
            display_name: name.into(),
            source: Some(pb::session::Source::Quick(pb::QuickSource {
                work_dir: work_dir.display().to_string(),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Connects to a server's Unix socket, waiting until it answers.
pub async fn eventually_connect_unix(path: &Path) -> Channel {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let path_buf = path.to_path_buf();
        let connector = tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path_buf.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        });
        match tonic::transport::Endpoint::from_static("http://localhost")
            .connect_with_connector(connector)
            .await
        {
            Ok(channel) => return channel,
            Err(err) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{} did not answer within {PATIENCE:?}: {err}",
                    path.display()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
