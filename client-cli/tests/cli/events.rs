//! `corral events`: the stored log (ListEvents), following it live (WatchEvents),
//! and the state file that lets `--resume` continue after the last event printed.
//!
//! Also here: a bearer token on a server without authentication does not get in
//! the way (the header itself is unit-tested in `client.rs`; authentication
//! proper is tested against the server in the workspace's `tests/auth.rs`).

use crate::harness::Server;

/// The sequence numbers of event lines (`<seq> <time> <type> <session> ...`).
fn sequences(text: &str) -> Vec<i64> {
    text.lines()
        .filter_map(|line| line.split_whitespace().next()?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_prints_the_stored_log_in_order() {
    let server = Server::start().await;
    server.create("demo", &[]).await;
    server.create("other", &[]).await;
    let all = server.ok(&["events"]).await;
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 2, "{all}");
    assert!(lines[0].contains("SESSION_CREATED demo"), "{all}");
    assert!(lines[1].contains("SESSION_CREATED other"), "{all}");
    let seqs = sequences(&all);
    assert!(seqs[0] < seqs[1], "{all}");

    // --after skips what was seen; --session narrows to one session.
    let after = seqs[0].to_string();
    let rest = server.ok(&["events", "--after", &after]).await;
    assert_eq!(sequences(&rest), [seqs[1]], "{rest}");
    let demo = server.ok(&["events", "--session", "demo"]).await;
    assert_eq!(sequences(&demo), [seqs[0]], "{demo}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_prints_live_state_changes_and_resume_continues_after_the_last() {
    let server = Server::start().await;
    server.create("demo", &[]).await;
    let state = server.work_dir("state").join("events.seq");
    let state = state.to_str().expect("UTF-8 temp dir").to_owned();

    let mut follow = server.spawn(&[
        "events",
        "--follow",
        "--session",
        "demo",
        "--state-file",
        &state,
    ]);
    follow.expect("SESSION_CREATED demo").await;
    server.ok(&["session", "start", "demo"]).await;
    follow.expect("STARTING->ACTIVE").await;
    assert!(
        follow.text().contains("WORKER_STARTED demo worker=shell"),
        "workers by display name too:\n{}",
        follow.text()
    );
    let last = *sequences(&follow.text())
        .iter()
        .max()
        .expect("events printed");

    // The state file holds the last sequence printed (written just after it).
    let saved = || {
        std::fs::read_to_string(&state)
            .ok()
            .and_then(|text| text.trim().parse::<i64>().ok())
    };
    crate::harness::eventually("the state file catches up", || async {
        saved() == Some(last)
    })
    .await;
    drop(follow);
    let saved = last;

    // Events while nobody followed are printed by the next --resume, and only those.
    server.ok(&["session", "stop", "demo"]).await;
    let resumed = server
        .ok(&[
            "events",
            "--resume",
            "--state-file",
            &state,
            "--session",
            "demo",
        ])
        .await;
    let new = sequences(&resumed);
    assert!(!new.is_empty(), "nothing after {saved}: {resumed}");
    assert!(new.iter().all(|s| *s > saved), "{resumed}");
    assert!(resumed.contains("ACTIVE->STOPPED"), "{resumed}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_event_type_is_refused_before_any_call() {
    let server = Server::start().await;
    let run = server.corral(&["events", "--type", "bogus"]).await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("unknown event type"), "{run:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_get_shows_the_reason_of_the_last_automatic_transition() {
    let server = Server::start().await;
    server.create("demo", &[]).await;
    server.ok(&["session", "start", "demo"]).await;
    // Its only worker killed, the session leaves ACTIVE on its own, saying why.
    server
        .ok(&[
            "worker", "signal", "demo", "shell", "KILL", "--target", "session",
        ])
        .await;
    crate::harness::eventually("the session leaves ACTIVE", || async {
        server.session("demo").await.state != corral::pb::session::State::Active as i32
    })
    .await;
    let reason = server.session("demo").await.state_reason;
    assert!(!reason.is_empty(), "an automatic transition records why");
    let out = server.ok(&["session", "get", "demo"]).await;
    let row = out
        .lines()
        .find(|line| line.trim_start().starts_with("state_reason"))
        .unwrap_or_else(|| panic!("no state_reason row in:\n{out}"));
    assert!(row.contains(&reason), "{row:?} lacks {reason:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_does_not_break_calls_on_a_server_without_authentication() {
    let server = Server::start().await;
    server.create("demo", &[]).await;
    let out = server
        .ok(&["--token", "s3cret", "session", "get", "demo"])
        .await;
    assert!(out.contains("demo"), "{out}");
    server.stop().await;
}
