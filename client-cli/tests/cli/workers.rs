//! `corral worker ...` against a started session: create, list, get, resize,
//! signal and delete, each checked against the real worker and its process.

use corral::pb;
use corral::pb::session::State;

use crate::harness::{Server, eventually, table_rows};

/// The cells of the row named `name` in a workers table.
fn row(table: &str, name: &str) -> Vec<String> {
    table_rows(table)
        .into_iter()
        .find(|r| r[0] == name)
        .unwrap_or_else(|| panic!("no row {name:?} in\n{table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_commands_act_on_real_workers() {
    let server = Server::start().await;
    server.create("demo", &[]).await;
    server.ok(&["session", "start", "demo"]).await;

    // create: argv after `--`, or one --command line split like a shell would.
    let view = server
        .ok(&[
            "worker", "create", "demo", "--name", "sleeper", "--", "sleep", "300",
        ])
        .await;
    assert!(
        view.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["state", "RUNNING"]),
        "{view}"
    );
    let sleeper = server.worker("demo", "sleeper").await.unwrap();
    assert_eq!(sleeper.state(), pb::worker::State::Running);
    // The pid is known from the fork; the exec of `sleep` follows.
    let cmdline = format!("/proc/{}/cmdline", sleeper.pid);
    eventually("the worker's process runs `sleep 300`", || async {
        std::fs::read(&cmdline).unwrap() == b"sleep\x00300\x00"
    })
    .await;

    server
        .ok(&[
            "worker",
            "create",
            "demo",
            "--name",
            "greeter",
            "--env",
            "GREETING=hello there",
            "--command",
            r#"sh -c 'echo "greeting: $GREETING"; exec sleep 300'"#,
        ])
        .await;
    let mut attach = server.spawn(&["attach", "demo", "greeter"]);
    attach.expect("greeting: hello there").await;
    assert_eq!(attach.finish().await.code, Some(0));

    // list and get.
    let table = server.ok(&["worker", "list", "demo"]).await;
    let names: Vec<String> = table_rows(&table)
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(names, ["shell", "sleeper", "greeter"], "{table}");
    assert_eq!(row(&table, "sleeper")[4], sleeper.pid.to_string());
    let json = server.json(&["worker", "list", "demo"]).await;
    assert_eq!(json["workers"].as_array().unwrap().len(), 3);
    assert_eq!(json["workers"][1]["pid"], sleeper.pid);

    let view = server.ok(&["worker", "get", "demo", "sleeper"]).await;
    assert!(
        view.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["pid", &sleeper.pid.to_string()]),
        "{view}"
    );
    let json = server.json(&["worker", "get", "demo", "sleeper"]).await;
    assert_eq!(json["name"], sleeper.name);
    assert_eq!(json["state"], "RUNNING");

    // resize: the PTY's size, printed rows×cols.
    let out = server
        .ok(&[
            "worker", "resize", "demo", "sleeper", "--rows", "30", "--cols", "100",
        ])
        .await;
    assert_eq!(out.trim(), "sleeper: 30x100 (RUNNING)");
    let size = server
        .worker("demo", "sleeper")
        .await
        .unwrap()
        .size
        .unwrap();
    assert_eq!((size.rows, size.cols), (30, 100));
    let table = server.ok(&["session", "get", "demo"]).await;
    assert_eq!(row(&table, "sleeper")[6], "30x100");
    assert_eq!(row(&table, "shell")[6], "24x80");

    // signal: INT to the foreground process group ends `sleep`.
    let out = server
        .ok(&["worker", "signal", "demo", "sleeper", "INT"])
        .await;
    assert!(
        out.starts_with("sent SIGINT to sleeper (foreground process group); now "),
        "{out}"
    );
    eventually("sleeper exits on SIGINT", || async {
        server.worker("demo", "sleeper").await.unwrap().state() == pb::worker::State::Exited
    })
    .await;
    let exited = server.worker("demo", "sleeper").await.unwrap();
    assert_eq!(exited.exit_status.unwrap().signal, "SIGINT");
    let table = server.ok(&["worker", "list", "demo"]).await;
    assert_eq!(
        row(&table, "sleeper")[3..],
        ["EXITED", "0", "30x100", "SIGINT"]
    );
    // The other workers keep the session active.
    assert_eq!(server.session("demo").await.state(), State::Active);

    // delete.
    let out = server.ok(&["worker", "delete", "demo", "sleeper"]).await;
    assert_eq!(out.trim(), "deleted sessions/demo/workers/sleeper");
    let gone = server.worker("demo", "sleeper").await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    server
        .corral(&["worker", "get", "demo", "sleeper"])
        .await
        .assert_rpc_error("NOT_FOUND");
    server.stop().await;
}
