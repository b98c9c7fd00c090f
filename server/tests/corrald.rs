//! The real `corrald` binary, as an operator runs it: it refuses a public address
//! without authentication (exit 64, saying how to fix it), says what to do when
//! its address is taken (exit 1, before it opens the store) or its data directory
//! cannot be created (exit 1), makes tokens and their token-file lines, and keeps
//! its own environment — tokens, secrets — out of the workers it starts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use corral::pb;
use corral::pb::session_service_client::SessionServiceClient;
use corral::pb::worker_service_client::WorkerServiceClient;
use corral_server::auth::tokens::{entry_line, hash_token};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

const CORRALD: &str = env!("CARGO_BIN_EXE_corrald");
const PATIENCE: Duration = Duration::from_secs(30);

fn corrald() -> Command {
    let mut command = Command::new(CORRALD);
    command
        .env_remove("CORRAL_TOKENS")
        .env_remove("CORRAL_TOKEN_FILE")
        .env_remove("CORRAL_LISTEN")
        .env_remove("CORRAL_DATABASE_URL");
    command
}

#[test]
fn a_public_address_without_authentication_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = corrald()
        .args(["--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64), "EX_USAGE: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("without authentication"), "{stderr}");
    assert!(stderr.contains("corrald token new"), "says how: {stderr}");
}

/// Runs corrald with `--listen listen --data-dir data_dir`, expecting it to fail
/// at start-up (exit 1) with a message of its own, not an "internal error".
/// Returns its last line of stderr, which says what went wrong and what to do,
/// and the whole stderr (for failure messages).
fn start_up_failure(listen: &str, data_dir: &Path) -> (String, String) {
    let output = corrald()
        .args(["--listen", listen, "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("internal error"), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default().to_owned();
    (last, stderr)
}

#[test]
fn an_address_in_use_is_reported_with_what_to_do() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (last, stderr) = start_up_failure(&addr, dir.path());
    assert!(
        last.starts_with(&format!("corrald: cannot listen on {addr}: ")),
        "{stderr}"
    );
    assert!(last.contains("another corrald"), "asks: {stderr}");
    assert!(last.contains("--listen"), "says how: {stderr}");
    // It listens before it opens the store: a server that cannot listen leaves
    // the database (and the sessions of a server that is gone) untouched.
    assert!(
        !dir.path().join("corral.db").exists(),
        "the store was opened: {stderr}"
    );
}

#[test]
fn a_data_directory_it_cannot_create_is_reported_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let (last, stderr) = start_up_failure("127.0.0.1:0", &file.join("data"));
    assert!(
        last.starts_with("corrald: cannot create the data directory "),
        "{stderr}"
    );
    assert!(last.contains("--data-dir"), "says how: {stderr}");
}

#[test]
fn token_new_and_token_hash_make_matching_lines() {
    let output = corrald()
        .args(["token", "new", "ci", "--admin"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let token = stdout
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .expect("a token line");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("line:  "))
        .expect("a token-file line");
    assert_eq!(line, entry_line("ci", token, true));
    assert!(
        !line.contains(token),
        "the line holds the hash, not the token"
    );

    let mut hash = corrald()
        .args(["token", "hash", "ci", "--admin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(hash.stdin.take().unwrap(), "{token}").unwrap();
    let output = hash.wait_with_output().unwrap();
    assert_eq!(String::from_utf8(output.stdout).unwrap().trim(), line);

    let output = corrald()
        .args(["token", "new", "bad name"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
}

/// bash when present, else /bin/sh.
fn shell() -> PathBuf {
    ["/bin/bash", "/usr/bin/bash", "/bin/sh"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/bin/sh"))
}

/// Connects to the Unix socket once the server answers on it.
async fn connect_unix(path: &Path) -> Channel {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let socket = path.to_path_buf();
        let connector = tower::service_fn(move |_: tonic::transport::Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
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
                    "{} did not answer: {err}",
                    path.display()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Adds `authorization: Bearer <token>`.
#[derive(Clone)]
struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_never_see_the_servers_tokens_or_secrets() {
    const ALICE: &str = "alice-0123456789abcdef";
    const BOB: &str = "bob-0123456789abcdef";
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("corral.sock");
    let home = dir.path().join("home");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let token_file = dir.path().join("tokens");
    std::fs::write(&token_file, entry_line("alice", ALICE, false)).unwrap();
    let mut server = tokio::process::Command::from(corrald())
        .arg("--listen")
        .arg(format!("unix:{}", socket.display()))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--token-file")
        .arg(&token_file)
        .arg("--shell")
        .arg(shell())
        .arg(format!("--worker-env=HOME={}", home.display()))
        .env("CORRAL_TOKENS", entry_line("bob", BOB, false))
        .env("SERVER_SECRET", "hunter2-do-not-leak")
        .env("AWS_SECRET_ACCESS_KEY", "hunter3-do-not-leak")
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let channel = connect_unix(&socket).await;
    let bearer = Bearer(format!("Bearer {BOB}").parse().unwrap());
    let mut sessions = SessionServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut workers = WorkerServiceClient::with_interceptor(channel, bearer);
    sessions
        .create_session(pb::CreateSessionRequest {
            session: Some(pb::Session {
                display_name: "env".into(),
                source: Some(pb::session::Source::Quick(pb::QuickSource {
                    work_dir: work.display().to_string(),
                })),
                ..Default::default()
            }),
            workers: vec![pb::Worker {
                display_name: "env".into(),
                spec: Some(pb::worker::Spec::Terminal(pb::TerminalSpec {
                    command: vec![
                        "sh".into(),
                        "-c".into(),
                        "env; echo END-OF-ENV; sleep 60".into(),
                    ],
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    sessions
        .start_session(pb::StartSessionRequest {
            name: "sessions/env".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let open = pb::AttachRequest {
        frame: Some(pb::attach_request::Frame::Open(pb::AttachOpen {
            worker: "sessions/env/workers/env".into(),
            ..Default::default()
        })),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(open).await.unwrap();
    let mut frames = workers
        .attach(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut output = String::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !output.contains("END-OF-ENV\r\n") {
        let frame = tokio::time::timeout_at(deadline, frames.next())
            .await
            .unwrap_or_else(|_| panic!("no END-OF-ENV in:\n{output}"))
            .expect("the stream goes on")
            .unwrap();
        if let Some(pb::attach_response::Frame::Output(chunk)) = frame.frame {
            output.push_str(&String::from_utf8_lossy(&chunk.data));
        }
    }
    for secret in [
        "hunter2",
        "hunter3",
        "CORRAL_TOKEN",
        &hash_token(BOB),
        &hash_token(ALICE),
    ] {
        assert!(!output.contains(secret), "{secret} leaked into:\n{output}");
    }
    assert!(output.contains("CORRAL_SESSION=env"), "{output}");
    drop(tx);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(PATIENCE, server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists(), "the socket is removed at shutdown");
}
