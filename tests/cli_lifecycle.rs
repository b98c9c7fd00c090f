//! The real `corral` binary against a real in-process server: create with labels,
//! `list --state/--label`, `update --label`, `pause`/`resume`/`stop`/`archive`/
//! `reopen`/`delete`, `-o json` everywhere, and states coloured only on a terminal.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::TestServer;
use corral::pb::session::State;
use serde_json::Value;

/// The `corral` binary, built once for the whole test binary.
fn corral_bin() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| common::workspace_binary("corral"))
}

/// Runs `corral --server <server> <args>` with no colour variables and no
/// terminal, off the async runtime (the server runs on it); returns its output.
async fn run(server: &TestServer, args: &[&str]) -> Output {
    let bin = corral_bin().clone();
    let addr = server.addr;
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .arg("--server")
            .arg(format!("http://{addr}"))
            .args(&args)
            .env_remove("CORRAL_SERVER")
            .env_remove("CORRAL_TOKEN")
            .env_remove("NO_COLOR")
            .output()
            .expect("corral runs")
    })
    .await
    .unwrap()
}

/// Runs corral and expects success; returns stdout.
async fn ok(server: &TestServer, args: &[&str]) -> String {
    let output = run(server, args).await;
    assert!(
        output.status.success(),
        "corral {args:?} failed ({:?}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Runs corral with `-o json` and parses stdout.
async fn json(server: &TestServer, args: &[&str]) -> Value {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let text = ok(server, &all).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}):\n{text}"))
}

fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list["sessions"]
        .as_array()
        .expect("sessions array")
        .iter()
        .map(|s| s["display_name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drives_the_lifecycle_and_filters_sessions() {
    let server = TestServer::start().await;
    // Build before the first call (it can take a while), off the runtime.
    tokio::task::spawn_blocking(|| corral_bin().clone())
        .await
        .unwrap();

    for (name, task) in [("alpha", "JIRA-1"), ("beta", "JIRA-2"), ("gamma", "JIRA-1")] {
        let dir = server.work_dir(name);
        let created = json(
            &server,
            &[
                "session",
                "create",
                "--work-dir",
                dir.to_str().unwrap(),
                "--name",
                name,
                "--label",
                &format!("task={task}"),
                "--label",
                "repository=acme/web",
            ],
        )
        .await;
        assert_eq!(created["state"], "CREATED");
        assert_eq!(created["labels"]["task"], task);
    }

    // list --state / --label, as JSON and as a table.
    let list = json(&server, &["session", "list", "--label", "task=JIRA-1"]).await;
    assert_eq!(names(&list), ["alpha", "gamma"]);
    assert_eq!(list["total_size"], 2);
    let started = json(&server, &["session", "start", "alpha"]).await;
    assert_eq!(started["state"], "ACTIVE", "{started}");
    let list = json(&server, &["session", "list", "--state", "active"]).await;
    assert_eq!(names(&list), ["alpha"]);
    let list = json(
        &server,
        &[
            "session",
            "list",
            "--state",
            "created",
            "--label",
            "task=JIRA-1",
        ],
    )
    .await;
    assert_eq!(names(&list), ["gamma"]);
    let table = ok(
        &server,
        &["session", "list", "--state", "active", "--state", "created"],
    )
    .await;
    assert!(table.starts_with("NAME"), "{table}");
    for name in ["alpha", "beta", "gamma"] {
        assert!(table.contains(name), "{table}");
    }
    assert!(
        !table.contains('\x1b'),
        "no colours when stdout is not a terminal:\n{table}"
    );

    // update --label changes that label only.
    let updated = json(
        &server,
        &["session", "update", "beta", "--label", "task=JIRA-1"],
    )
    .await;
    assert_eq!(updated["labels"]["task"], "JIRA-1");
    assert_eq!(updated["labels"]["repository"], "acme/web");
    let list = json(
        &server,
        &[
            "session",
            "list",
            "--label",
            "task=JIRA-1",
            "--page-size",
            "2",
            "--all",
        ],
    )
    .await;
    assert_eq!(names(&list), ["alpha", "beta", "gamma"]);

    // pause / resume, in table and JSON form.
    let line = ok(&server, &["session", "pause", "alpha"]).await;
    assert!(line.contains("alpha") && line.contains("PAUSED"), "{line}");
    assert_eq!(server.get_session("alpha").await.state(), State::Paused);
    let paused = json(&server, &["session", "get", "alpha"]).await;
    assert_eq!(paused["state"], "PAUSED");
    assert_eq!(paused["pause_count"], 1);
    assert_eq!(
        paused["available_actions"],
        serde_json::json!(["RESUME", "STOP"])
    );
    let resumed = json(&server, &["session", "resume", "alpha"]).await;
    assert_eq!(resumed["state"], "ACTIVE");
    assert_eq!(resumed["resume_count"], 1);

    // A refused action: exit code 1 and the server's message on stderr.
    let refused = run(&server, &["session", "archive", "alpha"]).await;
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("allowed actions: pause, stop, restart"),
        "{stderr}"
    );

    // stop / archive / reopen / delete.
    let stopped = json(&server, &["session", "stop", "alpha", "--grace-ms", "1000"]).await;
    assert_eq!(stopped["state"], "STOPPED");
    assert!(stopped["resume_deadline"].is_string());
    assert_eq!(
        json(&server, &["session", "archive", "alpha"]).await["state"],
        "ARCHIVED"
    );
    let list = json(&server, &["session", "list", "--state", "archived"]).await;
    assert_eq!(names(&list), ["alpha"]);
    assert_eq!(
        json(&server, &["session", "reopen", "alpha"]).await["state"],
        "STOPPED"
    );
    let deleted = ok(&server, &["session", "delete", "alpha"]).await;
    assert!(
        deleted.contains("DELETED") && deleted.contains("purged after"),
        "{deleted}"
    );
    let list = json(&server, &["session", "list"]).await;
    assert_eq!(names(&list), ["beta", "gamma"]);
    let list = json(
        &server,
        &["session", "list", "--show-deleted", "--state", "deleted"],
    )
    .await;
    assert_eq!(names(&list), ["alpha"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_are_coloured_on_a_terminal() {
    let server = TestServer::start().await;
    server.create_session("tinted").await;
    server.start_session("tinted").await;
    let bin = corral_bin().clone();
    let addr = server.addr;
    let output = tokio::task::spawn_blocking(move || {
        use portable_pty::{CommandBuilder, PtySize, native_pty_system};
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: 24,
                cols: 200,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut command = CommandBuilder::new(bin);
        command.args(["--server", &format!("http://{addr}"), "session", "list"]);
        command.env_remove("NO_COLOR");
        command.env("TERM", "xterm-256color");
        let mut child = pair.slave.spawn_command(command).unwrap();
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().unwrap();
        let mut output = Vec::new();
        let mut buffer = [0u8; 4096];
        // Read until the child closes the terminal (EIO on Linux).
        while let Ok(n) = reader.read(&mut buffer) {
            if n == 0 {
                break;
            }
            output.extend_from_slice(&buffer[..n]);
        }
        assert!(child.wait().unwrap().success());
        String::from_utf8_lossy(&output).into_owned()
    })
    .await
    .unwrap();
    assert!(output.contains("tinted"), "{output}");
    let state = output.find("ACTIVE").expect("the state is listed");
    let before = &output[..state];
    assert!(
        before.rfind('\x1b').is_some_and(|esc| state - esc < 16),
        "ACTIVE is preceded by a colour escape:\n{output:?}"
    );
    // The same command without a terminal prints no escapes.
    let plain = run(&server, &["session", "list"]).await;
    assert!(!String::from_utf8_lossy(&plain.stdout).contains('\x1b'));
    server.stop().await;
}
