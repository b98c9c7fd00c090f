//! Confinement against a real server and a real file system: work dirs must lie
//! inside the allowed roots (after `..` and symlinks), also when the session
//! starts; terminal workers run only what the command policy allows.

mod common;

use common::{TestServer, quick_session, stored};
use corral::pb;
use corral_server::config::TerminalCommands;
use tonic::Code;

fn terminal(name: &str, command: &[&str]) -> pb::Worker {
    pb::Worker {
        display_name: name.into(),
        spec: Some(pb::worker::Spec::Terminal(pb::TerminalSpec {
            command: command.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_dirs_outside_the_allowed_roots_are_permission_denied() {
    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("project")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("escape")).unwrap();
    let server = TestServer::start_with(
        {
            let root = root.clone();
            move |config| config.allowed_roots = vec![root]
        },
        None,
    )
    .await;
    let before = stored(server.server.as_ref().unwrap()).await;
    let mut sessions = server.sessions.clone();

    let refused = [
        outside.path().to_path_buf(),
        root.join("escape"),
        root.join("project/../../.."),
        root.join("escape/."),
        "/etc".into(),
        "/no/such/dir".into(),
    ];
    for path in &refused {
        let err = sessions
            .create_session(quick_session("out", path))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::PermissionDenied,
            "{}: {err:?}",
            path.display()
        );
        assert!(
            err.message().contains("outside the allowed roots"),
            "{}: {err:?}",
            path.display()
        );
    }
    assert_eq!(stored(server.server.as_ref().unwrap()).await, before);

    let created = sessions
        .create_session(quick_session("in", &root.join("project/./../project")))
        .await
        .expect("inside the root")
        .into_inner();
    assert_eq!(
        created.work_dir,
        std::fs::canonicalize(root.join("project"))
            .unwrap()
            .display()
            .to_string(),
        "stored resolved"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_dir_swapped_for_a_symlink_is_refused_at_start() {
    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("project")).unwrap();
    let server = TestServer::start_with(
        {
            let root = root.clone();
            move |config| config.allowed_roots = vec![root]
        },
        None,
    )
    .await;
    let mut sessions = server.sessions.clone();
    sessions
        .create_session(quick_session("swap", &root.join("project")))
        .await
        .expect("inside the root");
    std::fs::remove_dir(root.join("project")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("project")).unwrap();

    let started = sessions
        .start_session(pb::StartSessionRequest {
            name: "sessions/swap".into(),
            ..Default::default()
        })
        .await
        .expect("the start is recorded")
        .into_inner();
    assert_eq!(started.state(), pb::session::State::Error);
    assert!(
        started.last_error.contains("outside the allowed roots"),
        "{:?}",
        started.last_error
    );
    assert!(started.workers.iter().all(|w| w.pid == 0), "nothing ran");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shell_policy_refuses_other_commands() {
    let server = TestServer::start_with(
        |config| config.terminal_commands = TerminalCommands::Shell,
        None,
    )
    .await;
    server.create_session("shelly").await;
    let before = stored(server.server.as_ref().unwrap()).await;
    let err = server
        .workers
        .clone()
        .create_worker(pb::CreateWorkerRequest {
            parent: "sessions/shelly".into(),
            worker: Some(terminal("logs", &["tail", "-f", "/etc/hostname"])),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("--terminal-commands shell"),
        "{err:?}"
    );

    let mut request = quick_session("with-command", &server.work_dir("with-command"));
    request.workers = vec![terminal("logs", &["tail", "-f", "/etc/hostname"])];
    let err = server
        .sessions
        .clone()
        .create_session(request)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(stored(server.server.as_ref().unwrap()).await, before);

    // The shell itself is fine.
    server.start_session("shelly").await;
    let mut client = server
        .attach("sessions/shelly/workers/shell", None, None)
        .await;
    client.input(b"echo shell-$((20+1))\n").await;
    client.expect("shell-21").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_policy_allows_listed_programs_without_environment() {
    let server = TestServer::start_with(
        |config| {
            config.terminal_commands = TerminalCommands::List;
            config.allowed_commands = vec!["cat".into()];
        },
        None,
    )
    .await;
    server.create_session("listed").await;
    let mut workers = server.workers.clone();
    workers
        .create_worker(pb::CreateWorkerRequest {
            parent: "sessions/listed".into(),
            worker: Some(terminal("cat", &["cat"])),
        })
        .await
        .expect("cat is listed");
    let before = stored(server.server.as_ref().unwrap()).await;
    for (worker, needle) in [
        (
            terminal("sh", &["sh", "-c", "id"]),
            "\"sh\" is not an allowed program",
        ),
        (terminal("shell", &[]), "is not an allowed program"),
        (
            pb::Worker {
                display_name: "preloaded".into(),
                spec: Some(pb::worker::Spec::Terminal(pb::TerminalSpec {
                    command: vec!["cat".into()],
                    env: [("LD_PRELOAD".to_string(), "/tmp/evil.so".to_string())].into(),
                })),
                ..Default::default()
            },
            "LD_PRELOAD",
        ),
    ] {
        let err = workers
            .create_worker(pb::CreateWorkerRequest {
                parent: "sessions/listed".into(),
                worker: Some(worker),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert!(err.message().contains(needle), "{needle}: {err:?}");
        assert!(
            err.message().contains("--terminal-commands list"),
            "{err:?}"
        );
    }
    assert_eq!(stored(server.server.as_ref().unwrap()).await, before);
    server.stop().await;
}
