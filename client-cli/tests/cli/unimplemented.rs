//! Commands whose RPCs the server does not implement yet (events, messages,
//! export, search, checkpoints, agent profiles and agent workers): today each
//! answers UNIMPLEMENTED, and the CLI must say so (`error: UNIMPLEMENTED: ...`)
//! and exit 1. Replace each test with a real one when its feature lands.
//!
//! Bearer-token authentication is not implemented either; the server ignores the
//! `authorization` header, which [`a_token_does_not_break_calls_while_the_server_ignores_it`]
//! pins down (the header itself is unit-tested in `client.rs`).

use crate::harness::Server;

/// Runs `corral <args>` against a server with a session `demo` and asserts the
/// UNIMPLEMENTED report; returns the server for further checks.
async fn assert_unimplemented(args: &[&str]) -> Server {
    let server = Server::start().await;
    server.create("demo", &[]).await;
    let message = server.corral(args).await.assert_rpc_error("UNIMPLEMENTED");
    assert!(!message.is_empty(), "corral {args:?}: no message");
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_is_unimplemented_today() {
    assert_unimplemented(&["events"]).await.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_is_unimplemented_today_and_not_retried() {
    // UNIMPLEMENTED will not change by waiting: no reconnect loop.
    assert_unimplemented(&["events", "--follow", "--session", "demo"])
        .await
        .stop()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_is_unimplemented_today() {
    assert_unimplemented(&["messages", "demo"])
        .await
        .stop()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_is_unimplemented_today() {
    assert_unimplemented(&["send", "demo", "hello"])
        .await
        .stop()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_is_unimplemented_today_and_leaves_no_file() {
    let server = assert_unimplemented(&["export", "demo", "-f", "out.md"]).await;
    assert!(!server.dir.path().join("out.md").exists());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_is_unimplemented_today() {
    assert_unimplemented(&["search", "parser"])
        .await
        .stop()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_list_is_unimplemented_today() {
    assert_unimplemented(&["checkpoint", "list", "demo"])
        .await
        .stop()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_get_is_unimplemented_today() {
    assert_unimplemented(&[
        "checkpoint",
        "get",
        "sessions/demo/workers/agent/checkpoints/1",
    ])
    .await
    .stop()
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_delete_is_unimplemented_today() {
    assert_unimplemented(&[
        "checkpoint",
        "delete",
        "sessions/demo/workers/agent/checkpoints/1",
    ])
    .await
    .stop()
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_resume_is_unimplemented_today() {
    assert_unimplemented(&[
        "checkpoint",
        "resume",
        "sessions/demo/workers/agent/checkpoints/1",
    ])
    .await
    .stop()
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_is_unimplemented_today() {
    assert_unimplemented(&["profiles"]).await.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_workers_are_unimplemented_today() {
    let server = assert_unimplemented(&["worker", "create", "demo", "--agent", "claude"]).await;
    let work_dir = server.work_dir("agent");
    server
        .corral(&[
            "session",
            "create",
            "--work-dir",
            work_dir.to_str().unwrap(),
            "--name",
            "agent",
            "--agent",
            "claude",
            "--agent-arg",
            "--verbose",
        ])
        .await
        .assert_rpc_error("UNIMPLEMENTED");
    // Nothing half-made was left behind.
    let names: Vec<String> = server
        .sessions()
        .await
        .into_iter()
        .map(|s| s.display_name)
        .collect();
    assert_eq!(names, ["demo"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_does_not_break_calls_while_the_server_ignores_it() {
    let server = Server::start().await;
    server.create("demo", &[]).await;
    let out = server
        .ok(&["--token", "s3cret", "session", "get", "demo"])
        .await;
    assert!(out.contains("demo"), "{out}");
    server.stop().await;
}
