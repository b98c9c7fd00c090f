//! The harness: a real `corrald` started in-process on an ephemeral port over a real
//! database, and the real `corral` binary run against it as a child process.
//!
//! * [`Server`] owns one server, its temporary directory (data dir, worker HOME and
//!   work dirs) and its database: SQLite in the temporary directory, or, when
//!   `CORRAL_TEST_DATABASE_URL` names a PostgreSQL server (an admin URL such as
//!   `postgres://postgres@127.0.0.1:5432/postgres`), a fresh database
//!   `corral_test_<uuid>` that is dropped again when the test ends (also when it
//!   fails, see [`TestDb`]'s `Drop`).
//! * [`Server::corral`] runs the CLI to completion and returns its [`Run`] (exit
//!   code, stdout, stderr); [`Server::spawn`] starts it with piped stdio for the
//!   tests that talk to it while it runs ([`Live`]).
//! * The server's own gRPC clients ([`Server::session`], [`Server::worker`]) are
//!   how tests check the real effect of a command, independently of the CLI's
//!   printing.
//!
//! Nothing here sleeps to synchronize: waits are polls with a generous deadline
//! ([`PATIENCE`]) that fail with what was seen.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use corral::pb;
use corral::pb::session_service_client::SessionServiceClient;
use corral::pb::worker_service_client::WorkerServiceClient;
use corral_server::{Config, RunningServer};
use sea_orm::{ConnectionTrait, Database};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// How long a test waits for something that should happen quickly.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The `corral` binary built by Cargo for these tests.
pub const CORRAL: &str = env!("CARGO_BIN_EXE_corral");

/// A database for one test: SQLite in the test's directory, or a fresh PostgreSQL
/// database when `CORRAL_TEST_DATABASE_URL` is set.
pub struct TestDb {
    /// The URL the server connects to.
    pub url: String,
    /// On PostgreSQL: the admin URL and the name of the database to drop.
    admin: Option<(String, String)>,
}

impl TestDb {
    async fn new(dir: &Path) -> TestDb {
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

    /// Drops the PostgreSQL database (best effort); nothing on SQLite.
    async fn drop_database(&mut self) {
        if let Some((admin_url, name)) = self.admin.take()
            && let Ok(admin) = Database::connect(&admin_url).await
        {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
            admin.close().await.ok();
        }
    }
}

impl Drop for TestDb {
    /// A test that failed never reached [`Server::stop`]: drop its PostgreSQL
    /// database all the same, on a thread of its own (this may run inside the
    /// test's runtime, which must not be blocked on from within).
    fn drop(&mut self) {
        if self.admin.is_none() {
            return;
        }
        let mut db = TestDb {
            url: std::mem::take(&mut self.url),
            admin: self.admin.take(),
        };
        let _ = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(db.drop_database());
            }
        })
        .join();
    }
}

/// bash when present (job control, `read -n`), else /bin/sh.
fn test_shell() -> PathBuf {
    ["/bin/bash", "/usr/bin/bash", "/bin/sh"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/bin/sh"))
}

/// One real corrald for one test.
pub struct Server {
    running: Option<RunningServer>,
    /// Where the server listens (127.0.0.1, an ephemeral port).
    pub addr: SocketAddr,
    db: TestDb,
    /// The test's directory: `data/`, `home/` (the workers' HOME), `work/<name>/`.
    /// Commands run with it as their current directory.
    pub dir: tempfile::TempDir,
    sessions: SessionServiceClient<Channel>,
    workers: WorkerServiceClient<Channel>,
}

impl Server {
    /// Starts a server with the test settings: 3 s stop grace, bash (or sh) as the
    /// shell, and a private empty HOME for workers so that login shells never run
    /// the host user's dotfiles.
    pub async fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = TestDb::new(dir.path()).await;
        let mut config = Config::with_data_dir(dir.path().join("data"));
        config.database_url = Some(db.url.clone());
        config.stop_grace = Duration::from_secs(3);
        config.shell = Some(test_shell());
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).expect("worker home");
        config.worker_env = vec![("HOME".into(), home.display().to_string())];
        let running = corral_server::serve(config)
            .await
            .expect("the server starts");
        let addr = running.local_addr();
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect to the test server");
        Server {
            running: Some(running),
            addr,
            db,
            dir,
            sessions: SessionServiceClient::new(channel.clone()),
            workers: WorkerServiceClient::new(channel),
        }
    }

    /// Shuts the server down, waits for it, and drops its database.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown();
            running.wait().await.expect("clean shutdown");
        }
        self.db.drop_database().await;
    }

    /// A fresh directory `work/<name>` for a session to work in.
    pub fn work_dir(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join("work").join(name);
        std::fs::create_dir_all(&path).expect("work dir");
        path
    }

    /// `corral --server <addr> <args>` as a command, run in the test directory with
    /// a clean environment for the CLI's own variables (`CORRAL_SERVER`,
    /// `CORRAL_TOKEN`, `NO_COLOR`).
    pub fn command(&self, args: &[&str]) -> Command {
        command(&self.addr.to_string(), self.dir.path(), args)
    }

    /// Runs `corral <args>` to the end with stdin closed.
    pub async fn corral(&self, args: &[&str]) -> Run {
        run(self.command(args)).await
    }

    /// Runs `corral <args>`, asserts it succeeded, and returns its stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let run = self.corral(args).await;
        run.assert_success(args);
        run.stdout
    }

    /// Runs `corral -o json <args>`, asserts it succeeded, and parses its stdout.
    pub async fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        let stdout = self.ok(&all).await;
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("`corral {all:?}` did not print JSON ({e}):\n{stdout}"))
    }

    /// Starts `corral <args>` with piped stdin, stdout and stderr.
    pub fn spawn(&self, args: &[&str]) -> Live {
        Live::spawn(self.command(args))
    }

    /// Creates a quick session named `name` in a fresh work dir with the CLI,
    /// passing `extra` arguments (e.g. `--terminal`, `--label`).
    pub async fn create(&self, name: &str, extra: &[&str]) {
        let work_dir = self.work_dir(name);
        let work_dir = work_dir.to_str().expect("UTF-8 temp dir");
        let mut args = vec!["session", "create", "--work-dir", work_dir, "--name", name];
        args.extend_from_slice(extra);
        self.ok(&args).await;
    }

    /// The session `sessions/<name>` as the server has it now.
    pub async fn session(&self, name: &str) -> pb::Session {
        self.sessions
            .clone()
            .get_session(pb::GetSessionRequest {
                name: format!("sessions/{name}"),
            })
            .await
            .unwrap_or_else(|status| panic!("GetSession {name}: {status:?}"))
            .into_inner()
    }

    /// The worker `sessions/<session>/workers/<worker>` as the server has it now.
    pub async fn worker(&self, session: &str, worker: &str) -> Result<pb::Worker, tonic::Status> {
        self.workers
            .clone()
            .get_worker(pb::GetWorkerRequest {
                name: format!("sessions/{session}/workers/{worker}"),
            })
            .await
            .map(tonic::Response::into_inner)
    }
}

/// `corral --server <server> <args>` in `dir`, with the CLI's own environment
/// variables removed so the host's settings cannot leak in.
pub fn command(server: &str, dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(CORRAL);
    command
        .arg("--server")
        .arg(server)
        .args(args)
        .current_dir(dir)
        .env_remove("CORRAL_SERVER")
        .env_remove("CORRAL_TOKEN")
        .env_remove("NO_COLOR")
        .kill_on_drop(true);
    command
}

/// What a finished `corral` did.
#[derive(Debug)]
pub struct Run {
    /// The exit code (`None` when a signal ended it).
    pub code: Option<i32>,
    /// Everything printed on stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything printed on stderr (lossy UTF-8).
    pub stderr: String,
}

impl Run {
    /// Panics with the whole run unless it exited 0.
    pub fn assert_success(&self, args: &[&str]) {
        assert_eq!(self.code, Some(0), "`corral {args:?}` failed: {self:#?}");
    }

    /// Asserts the run failed with `code` and printed `error: <CODE>: ...` on
    /// stderr, and nothing on stdout; returns the message after the code.
    pub fn assert_rpc_error(&self, code: &str) -> String {
        assert_eq!(self.code, Some(1), "{self:#?}");
        assert_eq!(self.stdout, "", "{self:#?}");
        let prefix = format!("error: {code}: ");
        let line = self.stderr.trim_end();
        assert!(
            line.starts_with(&prefix) && !line.contains('\n'),
            "expected one line starting with {prefix:?} on stderr: {self:#?}"
        );
        line[prefix.len()..].to_owned()
    }
}

/// Runs `command` to the end with stdin closed (within [`PATIENCE`]).
pub async fn run(mut command: Command) -> Run {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn corral");
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("corral did not finish within {PATIENCE:?}"))
        .expect("wait for corral");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A `corral` that is still running, with its stdout collected as it comes.
pub struct Live {
    child: Child,
    stdin: Option<ChildStdin>,
    chunks: mpsc::UnboundedReceiver<Vec<u8>>,
    /// Everything read from stdout so far.
    pub stdout: Vec<u8>,
    stderr: tokio::task::JoinHandle<Vec<u8>>,
}

impl Live {
    fn spawn(mut command: Command) -> Live {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn corral");
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let (tx, chunks) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 8192];
            while let Ok(n) = stdout.read(&mut buffer).await {
                if n == 0 || tx.send(buffer[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let stderr = tokio::spawn(async move {
            let mut all = Vec::new();
            let _ = stderr.read_to_end(&mut all).await;
            all
        });
        Live {
            child,
            stdin,
            chunks,
            stdout: Vec::new(),
            stderr,
        }
    }

    /// The process id (for signals).
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id().expect("still running")).expect("pid fits i32")
    }

    /// Writes `bytes` to the CLI's stdin (which stays open).
    pub async fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(bytes).await.expect("write to corral");
        stdin.flush().await.expect("flush to corral");
    }

    /// Stdout so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Waits until stdout contains `needle`; panics with stdout after [`PATIENCE`]
    /// or when stdout ends first.
    pub async fn expect(&mut self, needle: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !self.text().contains(needle) {
            match tokio::time::timeout_at(deadline, self.chunks.recv()).await {
                Ok(Some(chunk)) => self.stdout.extend(chunk),
                Ok(None) => panic!(
                    "stdout ended before {needle:?} appeared in:\n{}",
                    self.text()
                ),
                Err(_) => panic!(
                    "{needle:?} did not appear within {PATIENCE:?} in:\n{}",
                    self.text()
                ),
            }
        }
    }

    /// Closes the CLI's stdin (end of input) and waits for it to exit (within
    /// [`PATIENCE`]); returns the whole run.
    pub async fn finish(mut self) -> Run {
        self.stdin = None;
        self.wait().await
    }

    /// Waits for the CLI to exit on its own (within [`PATIENCE`]), its stdin still
    /// open; returns the whole run.
    pub async fn wait(mut self) -> Run {
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "corral did not exit within {PATIENCE:?}; stdout:\n{}",
                    self.text()
                )
            })
            .expect("wait for corral");
        self.stdin = None;
        while let Some(chunk) = self.chunks.recv().await {
            self.stdout.extend(chunk);
        }
        let stdout = self.text();
        let stderr = self.stderr.await.expect("stderr reader");
        Run {
            code: status.code(),
            stdout,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

/// Waits until `check` holds, polling every 20 ms for up to [`PATIENCE`].
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
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The rows of the first table in `text` (the lines after the first header line,
/// which starts with `NAME`, up to a blank line), split on whitespace.
pub fn table_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip_while(|l| !l.starts_with("NAME "))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// The `display_name`s of the sessions in a `-o json` list response, in order.
pub fn names_in(list: &serde_json::Value) -> Vec<String> {
    list["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("no sessions array in {list}"))
        .iter()
        .map(|s| s["display_name"].as_str().expect("display_name").to_owned())
        .collect()
}
