//! The real thing: a `corrald` process with active, paused and stopped sessions —
//! one shell running a foreground job that survives the hangup — is killed with
//! SIGKILL and started again on the same data directory and database, first with
//! `--restart-policy resume`, then once more with `--restart-policy stop`.
//!
//! After each restart: every session is in the state the policy says; no process
//! of the killed run survives (checked by pid *and* start time); the `/dev/ptmx`
//! descriptors held by the server and its workers are back to what they were
//! (the same workers running under `resume`, none under `stop`); the scrollback
//! saved before the kill is replayed before a marker.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::procs::{self, Stat};
use common::{Client, PATIENCE, TestDb, eventually};
use corral::pb;
use corral::pb::session::State;
use corral::pb::session_service_client::SessionServiceClient;
use corral::pb::worker_service_client::WorkerServiceClient;
use sea_orm::{ConnectionTrait, Database};
use tonic::transport::Channel;

/// The `corrald` binary, built once (a no-op when it is up to date).
fn corrald() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| common::workspace_binary("corrald"))
}

/// A `corrald` child process and clients connected to it.
struct Corrald {
    child: Child,
    sessions: SessionServiceClient<Channel>,
    workers: WorkerServiceClient<Channel>,
}

impl Drop for Corrald {
    /// A failing test must not leave a server behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Corrald {
    /// Starts `corrald` on `dir` and `db` and waits until it answers.
    async fn start(dir: &Path, db: &TestDb, tag: &str, policy: &str, run: u32) -> Corrald {
        let port = free_port();
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let log = std::fs::File::create(dir.join(format!("corrald-{run}.log"))).unwrap();
        let child = Command::new(corrald())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--database-url", &db.url])
            .args(["--worker-env", &format!("HOME={}", home.display())])
            .args(["--worker-env", &format!("CORRAL_TEST_RUN={tag}")])
            .args(["--stop-grace", "3s", "--restart-policy", policy])
            .arg("--shell")
            .arg(common::test_shell())
            .env("CORRAL_TEST_RUN", tag)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn corrald");
        let uri = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let channel = loop {
            if let Ok(channel) = Channel::from_shared(uri.clone()).unwrap().connect().await {
                break channel;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "corrald did not listen; see {}",
                dir.join(format!("corrald-{run}.log")).display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Corrald {
            child,
            sessions: SessionServiceClient::new(channel.clone()),
            workers: WorkerServiceClient::new(channel),
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGKILL, then reap the zombie.
    fn kill9(mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let status = self.child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
    }

    /// Creates session `name`; `command` (if any) is its one terminal worker's
    /// command, else it gets the default shell.
    async fn create(&self, name: &str, dir: &Path, command: &[&str]) {
        let work_dir = dir.join("work").join(name);
        std::fs::create_dir_all(&work_dir).unwrap();
        let workers = if command.is_empty() {
            Vec::new()
        } else {
            vec![pb::Worker {
                display_name: "loop".into(),
                spec: Some(pb::worker::Spec::Terminal(pb::TerminalSpec {
                    command: command.iter().map(|a| a.to_string()).collect(),
                    ..Default::default()
                })),
                ..Default::default()
            }]
        };
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
                workers,
                ..Default::default()
            })
            .await
            .expect("create");
    }

    async fn get(&self, name: &str) -> pb::Session {
        self.sessions
            .clone()
            .get_session(pb::GetSessionRequest {
                name: format!("sessions/{name}"),
            })
            .await
            .expect("get")
            .into_inner()
    }

    async fn attach(&self, name: &str) -> Client {
        Client::open(
            self.workers.clone(),
            &format!("sessions/{name}"),
            None,
            None,
        )
        .await
    }
}

/// `/dev/ptmx` descriptors held by the server and every process of this test's
/// workers (found by the tag in their environment).
fn ptmx_in_use(server: i32, tag: &str) -> usize {
    let mut pids: Vec<i32> = procs::with_env(&format!("CORRAL_TEST_RUN={tag}"))
        .iter()
        .map(|s| s.pid)
        .collect();
    if !pids.contains(&server) {
        pids.push(server);
    }
    pids.into_iter().map(procs::ptmx_fds).sum()
}

/// Every process of the running workers of `session`: the PTY sessions they lead.
fn processes_of(session: &pb::Session) -> Vec<Stat> {
    session
        .workers
        .iter()
        .filter(|w| w.pid > 0)
        .flat_map(|w| procs::session_members(w.pid))
        .collect()
}

/// Waits until the persisted scrollback of `worker_id` holds `needle`.
async fn persisted(url: &str, worker_id: &str, needle: &str) {
    let db = Database::connect(url).await.unwrap();
    let sql = format!("SELECT data FROM scrollback_chunks WHERE worker_id = '{worker_id}'");
    let backend = db.get_database_backend();
    eventually(&format!("{needle:?} saved"), || {
        let (db, sql) = (&db, &sql);
        async move {
            let rows = db
                .query_all_raw(sea_orm::Statement::from_string(backend, sql.clone()))
                .await
                .unwrap();
            let bytes: Vec<u8> = rows
                .iter()
                .flat_map(|row| row.try_get::<Vec<u8>>("", "data").unwrap())
                .collect();
            String::from_utf8_lossy(&bytes).contains(needle)
        }
    })
    .await;
    db.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_comes_back_with_every_session_legal_and_nothing_leaked() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let db = TestDb::new(dir).await;
    let tag = uuid::Uuid::new_v4().simple().to_string();

    let first = Corrald::start(dir, &db, &tag, "resume", 1).await;
    let baseline = ptmx_in_use(first.pid(), &tag);
    // A command worker that ignores the hangup too, printing as it goes.
    let ticker = [
        "sh",
        "-c",
        "trap '' HUP; while :; do echo tick; sleep 0.2; done",
    ];
    for (name, command) in [
        ("job", &[][..]),
        ("ticker", &ticker[..]),
        ("held", &[][..]),
        ("done", &[][..]),
    ] {
        first.create(name, dir, command).await;
        first
            .sessions
            .clone()
            .start_session(pb::StartSessionRequest {
                name: format!("sessions/{name}"),
                ..Default::default()
            })
            .await
            .expect("start");
    }
    // Output that is saved, then a foreground job that ignores the hangup the
    // dying server's PTY gives it (so only reaping can end it).
    let mut job = first.attach("job").await;
    job.input(b"echo saved-$((6*7))\n").await;
    job.expect("saved-42").await;
    let job_session = first.get("job").await;
    persisted(&db.url, &job_session.workers[0].id, "saved-42").await;
    job.input(b"trap '' HUP; sleep 1000\n").await;
    let shell = job_session.workers[0].pid;
    eventually("the foreground job runs", || async move {
        procs::session_members(shell).len() >= 2
    })
    .await;
    drop(job);
    first
        .sessions
        .clone()
        .pause_session(pb::PauseSessionRequest {
            name: "sessions/held".into(),
            ..Default::default()
        })
        .await
        .expect("pause");
    first
        .sessions
        .clone()
        .stop_session(pb::StopSessionRequest {
            name: "sessions/done".into(),
            ..Default::default()
        })
        .await
        .expect("stop");
    let mut old_run = Vec::new();
    for name in ["job", "ticker", "held"] {
        old_run.extend(processes_of(&first.get(name).await));
    }
    assert!(old_run.len() >= 4, "{old_run:?}");
    let running_ptmx = ptmx_in_use(first.pid(), &tag);
    assert!(running_ptmx > baseline, "three PTYs are open");

    first.kill9();
    let survivors: Vec<&Stat> = old_run
        .iter()
        .filter(|p| procs::same_process(p.pid, p.start_ticks))
        .collect();
    assert!(
        !survivors.is_empty(),
        "the job ignores SIGHUP, so it outlives the server"
    );

    // Restart under `resume`.
    let second = Corrald::start(dir, &db, &tag, "resume", 2).await;
    for p in &old_run {
        let p = *p;
        eventually(&format!("old process {} is gone", p.pid), || async move {
            !procs::same_process(p.pid, p.start_ticks)
        })
        .await;
    }
    let job = second.get("job").await;
    assert_eq!(job.state(), State::Active, "{}", job.last_error);
    assert!(
        job.state_reason.contains("ended unexpectedly"),
        "{}",
        job.state_reason
    );
    assert!(job.workers[0].pid > 0 && job.workers[0].pid != shell);
    let ticker = second.get("ticker").await;
    assert_eq!(ticker.state(), State::Active, "{}", ticker.last_error);
    let mut ticks = second.attach("ticker").await;
    ticks.expect("the previous run ended here").await;
    let seen = String::from_utf8_lossy(&ticks.output)
        .matches("tick")
        .count();
    ticks.expect_count("tick", seen + 1).await;
    drop(ticks);
    let held = second.get("held").await;
    assert_eq!(held.state(), State::Paused, "{}", held.last_error);
    assert_eq!(held.workers[0].state(), pb::worker::State::Paused);
    assert_eq!(second.get("done").await.state(), State::Stopped);
    let server = second.pid();
    let tag_ref = tag.clone();
    eventually("as many PTYs as before the kill", || {
        let tag = tag_ref.clone();
        async move { ptmx_in_use(server, &tag) == running_ptmx }
    })
    .await;
    let mut client = second.attach("job").await;
    client.expect("the previous run ended here").await;
    let text = String::from_utf8_lossy(&client.output).into_owned();
    assert!(
        text.find("saved-42").expect("saved output is replayed")
            < text.find("the previous run ended here").unwrap()
    );
    client.input(b"echo alive-$((8*8))\n").await;
    client.expect("alive-64").await;
    drop(client);
    let mut new_run = processes_of(&job);
    new_run.extend(processes_of(&ticker));
    new_run.extend(processes_of(&held));

    // Once more, under `stop`.
    second.kill9();
    let third = Corrald::start(dir, &db, &tag, "stop", 3).await;
    for p in &new_run {
        let p = *p;
        eventually(&format!("process {} is gone", p.pid), || async move {
            !procs::same_process(p.pid, p.start_ticks)
        })
        .await;
    }
    for name in ["job", "ticker", "held", "done"] {
        let session = third.get(name).await;
        assert_eq!(session.state(), State::Stopped, "{name}");
        assert!(session.workers.iter().all(|w| w.pid == 0));
    }
    let server = third.pid();
    eventually("no PTY left open", || {
        let tag = tag.clone();
        async move { ptmx_in_use(server, &tag) == baseline }
    })
    .await;

    // A graceful stop ends cleanly.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(third.pid()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let mut third = third;
        third.child.wait().unwrap()
    })
    .await
    .unwrap();
    assert!(status.success(), "{status:?}");
    db.drop_database().await;
}
