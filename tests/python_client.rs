//! A client in another language: Python `grpcio` discovers the API through the
//! server's reflection service (no .proto files), lists sessions and reads one.
//!
//! The test makes its own virtualenv under cargo's target tmpdir and installs
//! `tests/python/requirements.txt` into it (from PyPI) the first time it runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestServer;

/// A Python interpreter with the client's dependencies.
///
/// nextest runs each test in its own process, so two tests can get here at once:
/// an exclusive lock on `pyenv.lock` lets one of them build the virtualenv while
/// the others wait, then find it ready.
fn python() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let venv = tmp.join("pyenv");
    let python = venv.join("bin/python");
    let lock = std::fs::File::create(tmp.join("pyenv.lock")).expect("create pyenv.lock");
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| errno)
        .expect("flock pyenv.lock");
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", "import grpc, grpc_reflection, google.protobuf"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if ready(&python) {
        return python;
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 runs (it is part of the machine's toolchain)");
    assert!(status.success(), "python3 -m venv {}", venv.display());
    let requirements = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/requirements.txt");
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements)
        .status()
        .expect("pip runs");
    assert!(
        status.success(),
        "pip install -r {}",
        requirements.display()
    );
    assert!(
        ready(&python),
        "the virtualenv has grpcio after installing it"
    );
    python
}

/// Runs `tests/python/{script}` with `args` and returns the JSON it prints.
async fn run_python(script: &str, args: &[&str]) -> serde_json::Value {
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .args(args)
        .output()
        .await
        .expect("run the Python client");
    assert!(
        output.status.success(),
        "python client failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON from the client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_uses_reflection_to_list_and_read_sessions() {
    let server = TestServer::start().await;
    let created = server.create_session("from-rust").await;
    let seen = run_python("reflection_client.py", &[&server.addr.to_string()]).await;
    let services: Vec<&str> = seen["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    for service in [
        "corral.v1.SessionService",
        "corral.v1.WorkerService",
        "corral.v1.CheckpointService",
        "corral.v1.EventService",
        "grpc.health.v1.Health",
    ] {
        assert!(services.contains(&service), "{service} in {services:?}");
    }
    assert_eq!(seen["sessions"][0]["display_name"], "from-rust");
    assert_eq!(seen["sessions"][0]["state"], "CREATED");
    assert_eq!(seen["got"]["id"], created.id.as_str());
    assert_eq!(
        seen["got"]["available_actions"],
        serde_json::json!(["START", "DELETE"])
    );
    assert_eq!(seen["missing"], "NOT_FOUND");
    server.stop().await;
}

/// A client in another language (grpcio, API from reflection) attaches, types a
/// command and reads its large output whole and in order, then the exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_attaches_and_reads_a_large_output_whole() {
    let server = TestServer::start().await;
    server.create_session("py-attach").await;
    server.start_session("py-attach").await;
    let seen = run_python(
        "attach_client.py",
        &[
            &server.addr.to_string(),
            "sessions/py-attach",
            "stty -echo; seq 1 60000; exit 7\n",
        ],
    )
    .await;
    let output = seen["output"].as_str().unwrap().replace("\r\n", "\n");
    let expected: String = (1..=60000).map(|n| format!("{n}\n")).collect();
    assert!(
        output.contains(&expected),
        "the output of seq is not whole ({} bytes received)",
        output.len()
    );
    assert_eq!(seen["contiguous"], true);
    assert_eq!(
        seen["kinds"],
        serde_json::json!(["attached", "output", "exit"])
    );
    assert_eq!(seen["exit_code"], 7);
    server.stop().await;
}
