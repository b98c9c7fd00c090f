//! The real `corral` binary against a real server with the fake Claude Code:
//! profiles, session with an agent, send, messages, search, export to a file,
//! checkpoints, and the refusal of a message to a stopped session.

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::TestServer;
use common::agent::{agent_server, wait_activity, wait_message};
use corral::pb::message::Role;
use corral::pb::worker::Activity;

/// Builds (once) and returns the `corral` binary of the `corral-cli` package.
async fn corral_binary() -> PathBuf {
    static BINARY: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();
    BINARY
        .get_or_init(|| async {
            tokio::task::spawn_blocking(|| common::workspace_binary("corral"))
                .await
                .expect("build task")
        })
        .await
        .clone()
}

/// Runs `corral --server <server> <args>`.
async fn corral(server: &TestServer, args: &[&str]) -> Output {
    tokio::process::Command::new(corral_binary().await)
        .arg("--server")
        .arg(format!("http://{}", server.addr))
        .args(args)
        .env_remove("CORRAL_TOKEN")
        .env_remove("CORRAL_SERVER")
        .output()
        .await
        .expect("run corral")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "corral failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_drives_an_agent_conversation() {
    let server = agent_server().await;
    let profiles = stdout(&corral(&server, &["profiles"]).await);
    assert!(
        profiles.contains("claude") && profiles.contains("claude-jsonl"),
        "{profiles}"
    );

    let work_dir = server.work_dir("cli");
    let created = corral(
        &server,
        &[
            "session",
            "create",
            "--work-dir",
            work_dir.to_str().unwrap(),
            "--name",
            "cli",
            "--agent",
            "claude",
        ],
    )
    .await;
    stdout(&created);
    stdout(&corral(&server, &["session", "start", "cli"]).await);
    wait_activity(&server, "cli", Activity::Idle).await;

    let sent = stdout(&corral(&server, &["send", "cli", "tell me about marmalade"]).await);
    assert!(sent.contains("sent message #1"), "{sent}");
    wait_message(
        &server,
        "cli",
        Role::Assistant,
        "You said: tell me about marmalade",
    )
    .await;

    let listed = stdout(&corral(&server, &["messages", "cli"]).await);
    assert!(
        listed.contains("tell me about marmalade") && listed.contains("You said:"),
        "{listed}"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(
        &corral(&server, &["-o", "json", "messages", "cli"]).await,
    ))
    .unwrap();
    assert_eq!(json["messages"].as_array().unwrap().len(), 2, "{json}");
    assert_eq!(json["messages"][1]["role"], "ASSISTANT");

    let found = stdout(&corral(&server, &["search", "marmalade"]).await);
    assert!(found.contains("[marmalade]"), "{found}");

    let file = server.dir.path().join("cli.csv");
    let exported = corral(
        &server,
        &[
            "export",
            "cli",
            "--format",
            "csv",
            "-f",
            file.to_str().unwrap(),
        ],
    )
    .await;
    stdout(&exported);
    let mut reader = csv::Reader::from_path(&file).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert!(
        rows[0]
            .iter()
            .any(|field| field == "tell me about marmalade")
    );

    let checkpoints = stdout(&corral(&server, &["checkpoint", "list", "cli"]).await);
    assert!(checkpoints.contains("TURN"), "{checkpoints}");

    stdout(&corral(&server, &["session", "stop", "cli"]).await);
    let late = corral(&server, &["send", "cli", "too late"]).await;
    assert!(!late.status.success());
    let stderr = String::from_utf8_lossy(&late.stderr);
    assert!(stderr.contains("STOPPED"), "{stderr}");
    server.stop().await;
}
