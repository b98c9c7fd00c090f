//! `corral session ...`: create, list, get, update and the lifecycle actions, and
//! how failures are reported (message, exit code).

use corral::pb;
use corral::pb::session::State;

use crate::harness::{Server, command, names_in, run, table_rows};

/// The value of `key` in a key/value view (`key  value` lines).
fn field(view: &str, key: &str) -> Option<String> {
    view.lines().find_map(|line| {
        let (k, rest) = line.split_once(char::is_whitespace)?;
        (k == key).then(|| rest.trim().to_owned())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_makes_the_work_dir_absolute_and_defines_workers() {
    let server = Server::start().await;
    let work_dir = server.work_dir("rel");
    std::fs::write(work_dir.join("a b"), "first line\n").unwrap();

    // A relative --work-dir is resolved against the CLI's current directory (the
    // test directory), not the server's.
    let view = server
        .ok(&[
            "session",
            "create",
            "--work-dir",
            "work/rel",
            "--name",
            "demo",
            "--label",
            "task=JIRA-12",
            "--label",
            "team=cli",
            "--description",
            "fix the parser",
            "--terminal",
            "logs=tail -f 'a b'",
        ])
        .await;
    assert_eq!(field(&view, "state").as_deref(), Some("CREATED"), "{view}");
    assert_eq!(field(&view, "display_name").as_deref(), Some("demo"));

    let session = server.session("demo").await;
    assert_eq!(session.state(), State::Created);
    // Absolute (the server canonicalizes it, and would not find `work/rel` from its
    // own current directory).
    let canonical = std::fs::canonicalize(&work_dir).unwrap();
    assert_eq!(session.work_dir, canonical.to_str().unwrap());
    assert!(
        matches!(&session.source, Some(pb::session::Source::Quick(q)) if q.work_dir == session.work_dir),
        "{:?}",
        session.source
    );
    assert_eq!(session.description, "fix the parser");
    assert_eq!(session.labels.len(), 2);
    assert_eq!(session.labels["task"], "JIRA-12");
    assert_eq!(session.labels["team"], "cli");
    assert_eq!(session.workers.len(), 1);
    let logs = &session.workers[0];
    assert_eq!(logs.display_name, "logs");
    let Some(pb::worker::Spec::Terminal(terminal)) = &logs.spec else {
        panic!("not a terminal worker: {logs:?}");
    };
    // Split like a shell would: the quoted file name is one argument.
    assert_eq!(terminal.command, ["tail", "-f", "a b"]);

    // Started, the worker runs that command in that directory.
    server.ok(&["session", "start", "demo"]).await;
    let mut attach = server.spawn(&["attach", "demo", "logs"]);
    attach.expect("first line").await;
    let run = attach.finish().await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_prints_a_table_without_colours_when_stdout_is_not_a_terminal() {
    let server = Server::start().await;
    server.create("alpha", &[]).await;
    server.create("beta", &[]).await;
    let beta = server.session("beta").await;

    // NO_COLOR is unset (the harness removes it): a pipe alone turns colours off.
    let table = server.ok(&["session", "list"]).await;
    assert!(!table.contains('\x1b'), "escape codes in {table:?}");
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "ID", "STATE", "KIND", "WORK", "DIR", "WORKERS", "CLIENTS", "AGE"
        ]
    );
    let rows = table_rows(&table);
    assert_eq!(rows.len(), 2, "{table}");
    // Newest first.
    assert_eq!(rows[0][0], "beta");
    assert!(beta.id.starts_with(&rows[0][1]) && rows[0][1].len() == 8);
    assert_eq!(
        rows[0][2..6],
        ["CREATED", "QUICK", beta.work_dir.as_str(), "0"]
    );
    assert_eq!(rows[1][0], "alpha");

    let view = server.ok(&["session", "get", "beta"]).await;
    assert!(!view.contains('\x1b'), "escape codes in {view:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_options_build_a_filter_that_selects_the_right_sessions() {
    let server = Server::start().await;
    server.create("a", &["--label", "task=x"]).await;
    server.create("b", &["--label", "task=y"]).await;
    server.create("c", &[]).await;
    server.ok(&["session", "start", "c"]).await;

    let cases: &[(&[&str], &[&str])] = &[
        (&[], &["c", "b", "a"]),
        (&["--state", "active"], &["c"]),
        (&["--state", "CREATED"], &["b", "a"]),
        (
            &["--state", "active", "--state", "created"],
            &["c", "b", "a"],
        ),
        (&["--state", "created", "--label", "task=x"], &["a"]),
        (&["--kind", "quick", "--label", "task=y"], &["b"]),
        (&["--kind", "worktree"], &[]),
        (
            &["--filter", r#"display_name = "b" OR labels.task = "x""#],
            &["b", "a"],
        ),
        (
            &["--state", "created", "--filter", r#"NOT labels.task = "x""#],
            &["b"],
        ),
    ];
    for (options, expected) in cases {
        let mut args = vec!["session", "list"];
        args.extend_from_slice(options);
        let list = server.json(&args).await;
        assert_eq!(names_in(&list), *expected, "session list {options:?}");
    }

    // A filter the server cannot parse is the server's INVALID_ARGUMENT.
    let run = server
        .corral(&["session", "list", "--filter", "state = BOGUS"])
        .await;
    run.assert_rpc_error("INVALID_ARGUMENT");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_follows_every_page_with_all_and_shows_the_next_page_token() {
    let server = Server::start().await;
    for name in ["s1", "s2", "s3", "s4", "s5"] {
        server.create(name, &[]).await;
    }

    let all = server
        .json(&["session", "list", "--page-size", "2", "--all"])
        .await;
    assert_eq!(names_in(&all), ["s5", "s4", "s3", "s2", "s1"]);
    assert_eq!(all["next_page_token"], "");
    assert_eq!(all["total_size"], 5);

    // One page in table mode ends with the token of the next.
    let first = server.ok(&["session", "list", "--page-size", "2"]).await;
    let names: Vec<String> = table_rows(&first)
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(names, ["s5", "s4"], "{first}");
    let token_line = first
        .lines()
        .find(|l| l.starts_with("next page token: "))
        .unwrap_or_else(|| panic!("no next page token in\n{first}"));
    let token = token_line["next page token: ".len()..]
        .split_whitespace()
        .next()
        .unwrap();
    assert!(token_line.ends_with("(pass it to --page-token, or use --all)"));

    let second = server
        .json(&["session", "list", "--page-size", "2", "--page-token", token])
        .await;
    assert_eq!(names_in(&second), ["s3", "s2"]);
    assert_ne!(second["next_page_token"], "");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_shows_the_fields_and_the_workers_table() {
    let server = Server::start().await;
    server.create("demo", &["--label", "task=JIRA-12"]).await;
    server.ok(&["session", "start", "demo"]).await;
    let session = server.session("demo").await;
    let shell = &session.workers[0];

    let view = server.ok(&["session", "get", "demo"]).await;
    assert_eq!(field(&view, "display_name").as_deref(), Some("demo"));
    assert_eq!(field(&view, "id").as_deref(), Some(session.id.as_str()));
    assert_eq!(field(&view, "state").as_deref(), Some("ACTIVE"));
    assert_eq!(field(&view, "labels").as_deref(), Some("task=JIRA-12"));
    assert_eq!(field(&view, "pause_count").as_deref(), Some("0"));
    assert_eq!(field(&view, "etag").as_deref(), Some(session.etag.as_str()));
    let actions = field(&view, "available_actions").unwrap();
    assert!(actions.split(", ").any(|a| a == "pause"), "{actions}");

    let header = view
        .lines()
        .find(|l| l.starts_with("NAME "))
        .unwrap_or_else(|| panic!("no workers table in\n{view}"));
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "NAME", "ID", "KIND", "STATE", "PID", "CLIENTS", "SIZE", "EXIT"
        ]
    );
    let workers = table_rows(&view);
    // SIZE is rows×cols, like `stty size`.
    let pid = shell.pid.to_string();
    assert_eq!(
        workers,
        [vec![
            "shell",
            &shell.id[..8],
            "TERMINAL",
            "RUNNING",
            pid.as_str(),
            "0",
            "24x80"
        ]]
    );

    let json = server.json(&["session", "get", "demo"]).await;
    assert_eq!(json["display_name"], "demo");
    assert_eq!(json["state"], "ACTIVE");
    assert_eq!(json["labels"]["task"], "JIRA-12");
    assert_eq!(json["workers"][0]["display_name"], "shell");
    assert_eq!(json["workers"][0]["size"]["rows"], 24);
    assert_eq!(json["workers"][0]["size"]["cols"], 80);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_without_workers_says_what_starting_it_adds() {
    let server = Server::start().await;
    server.create("demo", &[]).await;
    let view = server.ok(&["session", "get", "demo"]).await;
    assert!(
        view.contains("no workers: starting the session adds a terminal worker `shell`"),
        "{view}"
    );
    assert!(!view.lines().any(|l| l.starts_with("NAME ")), "{view}");
    let json = server.json(&["session", "get", "demo"]).await;
    assert!(
        json["workers"].as_array().is_none_or(Vec::is_empty),
        "{json}"
    );

    server.ok(&["session", "start", "demo"]).await;
    let view = server.ok(&["session", "get", "demo"]).await;
    assert!(!view.contains("no workers"), "{view}");
    assert_eq!(table_rows(&view)[0][0], "shell", "{view}");
    server.stop().await;
}

/// The one line a lifecycle action prints: `demo (<short id>): <STATE>`, maybe
/// followed by the reason.
fn assert_summary(out: &str, session: &pb::Session, state: &str) {
    assert_eq!(out.lines().count(), 1, "{out}");
    let prefix = format!("demo ({}): {state}", &session.id[..8]);
    assert!(
        out.starts_with(&prefix),
        "{out:?} should start with {prefix:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_actions_print_one_line_with_the_new_state() {
    let server = Server::start().await;
    server.create("demo", &[]).await;
    let session = server.session("demo").await;

    for (action, state, stored) in [
        ("start", "ACTIVE", State::Active),
        ("pause", "PAUSED", State::Paused),
        ("resume", "ACTIVE", State::Active),
        ("restart", "ACTIVE", State::Active),
        ("stop", "STOPPED", State::Stopped),
        ("archive", "ARCHIVED", State::Archived),
        ("reopen", "STOPPED", State::Stopped),
    ] {
        let out = server.ok(&["session", action, "demo"]).await;
        assert_summary(&out, &session, state);
        assert_eq!(
            server.session("demo").await.state(),
            stored,
            "after {action}"
        );
    }
    let after = server.session("demo").await;
    assert_eq!((after.pause_count, after.resume_count), (1, 1));
    assert_eq!(after.restart_count, 1);

    let out = server.ok(&["session", "delete", "demo"]).await;
    assert_summary(&out, &session, "DELETED");
    assert!(out.contains("; purged after "), "{out}");
    let json = server
        .json(&["session", "list", "--show-deleted", "--state", "deleted"])
        .await;
    assert_eq!(names_in(&json), ["demo"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_prints_the_last_error_and_retry_and_discard_work() {
    let server = Server::start().await;
    server
        .create("demo", &["--terminal", "bad=/nonexistent/program"])
        .await;
    let session = server.session("demo").await;

    let out = server.ok(&["session", "start", "demo"]).await;
    let mut lines = out.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with(&format!("demo ({}): ERROR", &session.id[..8])),
        "{out}"
    );
    let last_error = lines.next().unwrap_or_default();
    assert!(
        last_error.starts_with("last error: ") && last_error.contains("/nonexistent/program"),
        "{out}"
    );
    assert_eq!(server.session("demo").await.state(), State::Error);

    let out = server.ok(&["session", "retry", "demo"]).await;
    assert!(out.contains("): ERROR"), "{out}");
    assert_eq!(server.session("demo").await.retry_count, 1);

    let out = server.ok(&["session", "discard", "demo"]).await;
    assert!(
        out.starts_with(&format!("demo ({}): DELETED", &session.id[..8])),
        "{out}"
    );
    let deleted = server
        .json(&["session", "list", "--show-deleted", "--state", "deleted"])
        .await;
    assert_eq!(names_in(&deleted), ["demo"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_actions_print_the_code_and_message_and_exit_1() {
    let server = Server::start().await;
    server.create("demo", &[]).await;

    let message = server
        .corral(&["session", "pause", "demo"])
        .await
        .assert_rpc_error("FAILED_PRECONDITION");
    assert!(message.contains("CREATED"), "{message}");
    assert_eq!(server.session("demo").await.state(), State::Created);

    server
        .corral(&["session", "get", "nope"])
        .await
        .assert_rpc_error("NOT_FOUND");
    server
        .corral(&["session", "start", "demo", "--etag", "stale"])
        .await
        .assert_rpc_error("ABORTED");
    assert_eq!(server.session("demo").await.state(), State::Created);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_exits_69_naming_the_address() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let run = run(command(
        &address.to_string(),
        dir.path(),
        &["session", "list"],
    ))
    .await;
    assert_eq!(run.code, Some(69), "{run:#?}");
    assert!(
        run.stderr.starts_with("error: ") && run.stderr.contains(&format!("http://{address}")),
        "{run:#?}"
    );
    assert_eq!(run.stdout, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_leaves_the_session_as_asked() {
    let server = Server::start().await;
    server
        .create(
            "demo",
            &["--label", "a=1", "--label", "old=x", "--description", "d"],
        )
        .await;
    let etag = server.session("demo").await.etag;

    let view = server
        .ok(&[
            "session",
            "update",
            "demo",
            "--description",
            "new text",
            "--label",
            "b=2",
            "--label",
            "a=10",
            "--remove-label",
            "old",
            "--etag",
            &etag,
        ])
        .await;
    assert_eq!(field(&view, "description").as_deref(), Some("new text"));
    let session = server.session("demo").await;
    assert_eq!(session.description, "new text");
    let mut labels: Vec<_> = session.labels.into_iter().collect();
    labels.sort();
    assert_eq!(
        labels,
        [("a".to_owned(), "10".to_owned()), ("b".into(), "2".into())]
    );

    // The old etag is stale now.
    server
        .corral(&[
            "session",
            "update",
            "demo",
            "--description",
            "x",
            "--etag",
            &etag,
        ])
        .await
        .assert_rpc_error("ABORTED");
    assert_eq!(server.session("demo").await.description, "new text");

    server
        .ok(&[
            "session",
            "update",
            "demo",
            "--name",
            "renamed",
            "--description",
            "",
        ])
        .await;
    let renamed = server.session("renamed").await;
    assert_eq!(renamed.description, "");
    assert_eq!(renamed.labels.len(), 2);

    let run = server.corral(&["session", "update", "renamed"]).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(run.stderr.contains("nothing to update"), "{run:#?}");
    server.stop().await;
}
