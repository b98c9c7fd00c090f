//! Worktree sessions against real git: `git worktree add` on create (new or
//! existing branch), dirty changes and untracked files saved on
//! `refs/corral/<session>` before the worktree is removed on delete, the branch kept
//! or deleted as asked, bad requests refused with the right code and nothing left
//! behind, the allowed roots, and leftover worktrees retired by the retention task.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestServer;
use corral::pb;
use corral::pb::session::State;
use corral_server::reaper::Reaper;
use tonic::Code;

/// Runs git in `dir` with a fixed identity and no global configuration; panics
/// when it fails. Returns stdout, trimmed.
fn git(dir: &Path, args: &[&str]) -> String {
    let output = git_output(dir, args);
    assert!(
        output.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn git_output(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        .output()
        .expect("git runs")
}

/// A repository with one commit (README) on branch `main`.
fn repository(server: &TestServer, name: &str) -> PathBuf {
    let repo = server.work_dir(name);
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README"), "first\n").unwrap();
    git(&repo, &["add", "README"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    repo
}

fn worktree_request(
    display_name: &str,
    repo: &Path,
    branch: &str,
    base_ref: &str,
) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        session: Some(pb::Session {
            display_name: display_name.into(),
            source: Some(pb::session::Source::Worktree(pb::WorktreeSource {
                repository: repo.display().to_string(),
                branch: branch.into(),
                base_ref: base_ref.into(),
                ..Default::default()
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn create(
    server: &TestServer,
    request: pb::CreateSessionRequest,
) -> Result<pb::Session, tonic::Status> {
    server
        .sessions
        .clone()
        .create_session(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn delete(server: &TestServer, session: &str, delete_branch: bool) -> pb::Session {
    server
        .sessions
        .clone()
        .delete_session(pb::DeleteSessionRequest {
            name: format!("sessions/{session}"),
            etag: String::new(),
            delete_branch,
        })
        .await
        .expect("delete")
        .into_inner()
}

fn source(session: &pb::Session) -> pb::WorktreeSource {
    match &session.source {
        Some(pb::session::Source::Worktree(source)) => source.clone(),
        other => panic!("not a worktree session: {other:?}"),
    }
}

fn worktrees_dir(server: &TestServer) -> PathBuf {
    server.dir.path().join("data").join("worktrees")
}

/// Entries of the worktrees directory (ignoring none: scratch files must not stay).
fn worktree_entries(server: &TestServer) -> Vec<String> {
    match std::fs::read_dir(worktrees_dir(server)) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn branches(repo: &Path) -> Vec<String> {
    git(repo, &["branch", "--format=%(refname:short)"])
        .lines()
        .map(str::to_owned)
        .collect()
}

fn registered_worktrees(repo: &Path) -> usize {
    git(repo, &["worktree", "list", "--porcelain"])
        .lines()
        .filter(|l| l.starts_with("worktree "))
        .count()
}

async fn session_count(server: &TestServer) -> i32 {
    server
        .sessions
        .clone()
        .list_sessions(pb::ListSessionsRequest {
            show_deleted: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .total_size
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_branch_worktree_is_created_and_its_dirty_changes_are_saved_on_delete() {
    let server = TestServer::start().await;
    let repo = repository(&server, "repo");
    let head = git(&repo, &["rev-parse", "HEAD"]);

    let created = create(&server, worktree_request("feat", &repo, "feature/x", ""))
        .await
        .expect("create");
    assert_eq!(created.kind(), pb::session::Kind::Worktree);
    let tree = source(&created);
    let path = PathBuf::from(&tree.worktree_path);
    assert_eq!(
        path,
        std::fs::canonicalize(worktrees_dir(&server))
            .unwrap()
            .join(&created.id)
    );
    assert_eq!(created.work_dir, tree.worktree_path);
    assert_eq!(
        tree.repository,
        std::fs::canonicalize(&repo).unwrap().display().to_string()
    );
    assert_eq!(tree.branch, "feature/x");
    assert_eq!(tree.base_ref, "HEAD");
    assert_eq!(git(&path, &["branch", "--show-current"]), "feature/x");
    assert_eq!(git(&path, &["rev-parse", "HEAD"]), head);

    // The workers run in the worktree.
    server.start_session("feat").await;
    let mut client = server.attach("sessions/feat", None, None).await;
    client
        .input(b"git branch --show-current | sed 's/^/on-/'\n")
        .await;
    client.expect("on-feature/x").await;

    // Leave work behind: a commit on the branch, a modified file, a staged new
    // file, an untracked file in a new directory, and an ignored file.
    std::fs::write(path.join("README"), "first\ncommitted\n").unwrap();
    git(&path, &["commit", "-q", "-am", "work"]);
    let tip = git(&path, &["rev-parse", "HEAD"]);
    std::fs::write(path.join("README"), "first\ncommitted\nuncommitted\n").unwrap();
    std::fs::write(path.join("staged.txt"), "staged\n").unwrap();
    git(&path, &["add", "staged.txt"]);
    std::fs::create_dir(path.join("notes")).unwrap();
    std::fs::write(path.join("notes/todo.txt"), "untracked\n").unwrap();
    std::fs::write(path.join(".gitignore"), "*.log\n").unwrap();
    std::fs::write(path.join("build.log"), "ignored\n").unwrap();

    let stopped = server
        .sessions
        .clone()
        .stop_session(pb::StopSessionRequest {
            name: "sessions/feat".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stopped.state(), State::Stopped);
    let deleted = delete(&server, "feat", false).await;
    assert_eq!(deleted.state(), State::Deleted);
    let saved_ref = format!("refs/corral/{}", deleted.id);
    assert_eq!(source(&deleted).saved_ref, saved_ref);
    assert!(!path.exists(), "the worktree is removed");
    assert_eq!(
        registered_worktrees(&repo),
        1,
        "only the main worktree is left"
    );
    assert!(
        branches(&repo).contains(&"feature/x".to_owned()),
        "the branch is kept"
    );
    assert_eq!(git(&repo, &["rev-parse", "feature/x"]), tip);

    // The saved commit: parent = the worktree's HEAD, and every change in it.
    assert_eq!(git(&repo, &["rev-parse", &format!("{saved_ref}^")]), tip);
    assert_eq!(
        git(&repo, &["show", &format!("{saved_ref}:README")]),
        "first\ncommitted\nuncommitted"
    );
    assert_eq!(
        git(&repo, &["show", &format!("{saved_ref}:staged.txt")]),
        "staged"
    );
    assert_eq!(
        git(&repo, &["show", &format!("{saved_ref}:notes/todo.txt")]),
        "untracked"
    );
    assert!(
        !git_output(
            &repo,
            &["cat-file", "-e", &format!("{saved_ref}:build.log")]
        )
        .status
        .success(),
        "ignored files are not work"
    );
    assert!(
        worktree_entries(&server).is_empty(),
        "no scratch files left: {:?}",
        worktree_entries(&server)
    );

    // The tombstone keeps its name: fetched by id, it still says where the work is.
    let tombstone = server.get_session(&deleted.id).await;
    assert_eq!(source(&tombstone).saved_ref, saved_ref);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_branch_is_checked_out_and_a_clean_worktree_saves_nothing() {
    let server = TestServer::start().await;
    let repo = repository(&server, "repo");
    git(&repo, &["branch", "existing"]);
    let created = create(&server, worktree_request("ex", &repo, "existing", ""))
        .await
        .expect("create");
    let path = PathBuf::from(source(&created).worktree_path);
    assert_eq!(git(&path, &["branch", "--show-current"]), "existing");
    assert_eq!(
        source(&created).base_ref,
        "",
        "an existing branch has no base"
    );

    // Deleted straight from CREATED.
    let deleted = delete(&server, "ex", false).await;
    assert_eq!(deleted.state(), State::Deleted);
    assert_eq!(source(&deleted).saved_ref, "", "nothing to save");
    assert!(!path.exists());
    assert!(branches(&repo).contains(&"existing".to_owned()));
    assert!(
        !git_output(
            &repo,
            &[
                "rev-parse",
                "--verify",
                &format!("refs/corral/{}", deleted.id)
            ]
        )
        .status
        .success()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_branch_removes_the_branch_but_keeps_its_commits_reachable() {
    let server = TestServer::start().await;
    let repo = repository(&server, "repo");
    let first = git(&repo, &["rev-parse", "HEAD"]);
    git(&repo, &["tag", "v1"]);
    std::fs::write(repo.join("README"), "second\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "second"]);

    // A new branch from a tag.
    let created = create(&server, worktree_request("tmp", &repo, "scratch", "v1"))
        .await
        .expect("create");
    let path = PathBuf::from(source(&created).worktree_path);
    assert_eq!(source(&created).base_ref, "v1");
    assert_eq!(git(&path, &["rev-parse", "HEAD"]), first);
    std::fs::write(path.join("new.txt"), "x\n").unwrap();
    git(&path, &["add", "new.txt"]);
    git(&path, &["commit", "-q", "-m", "on scratch"]);
    let tip = git(&path, &["rev-parse", "HEAD"]);

    let deleted = delete(&server, "tmp", true).await;
    assert!(
        !branches(&repo).contains(&"scratch".to_owned()),
        "the branch is deleted"
    );
    let saved_ref = source(&deleted).saved_ref;
    assert_eq!(saved_ref, format!("refs/corral/{}", deleted.id));
    assert_eq!(
        git(&repo, &["rev-parse", &saved_ref]),
        tip,
        "its commits stay reachable"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_worktree_requests_are_refused_and_leave_nothing_behind() {
    let server = TestServer::start_with(
        |config| {
            let root = config.data_dir().parent().unwrap().join("work");
            std::fs::create_dir_all(&root).unwrap();
            config.allowed_roots = vec![root];
        },
        None,
    )
    .await;
    let repo = repository(&server, "repo");
    git(&repo, &["branch", "taken"]);
    let other = server.dir.path().join("elsewhere");
    std::fs::create_dir_all(&other).unwrap();
    git(
        &repo,
        &["worktree", "add", "-q", other.to_str().unwrap(), "taken"],
    );
    let plain = server.work_dir("plain");
    let outside = tempfile::tempdir().unwrap();
    git(outside.path(), &["init", "-q", "-b", "main"]);
    git(
        outside.path(),
        &["commit", "-q", "--allow-empty", "-m", "x"],
    );
    let branches_before = branches(&repo);

    let cases: Vec<(&str, pb::CreateSessionRequest, Code, &str)> = vec![
        (
            "not a git repository",
            worktree_request("w1", &plain, "b1", ""),
            Code::InvalidArgument,
            "not a git repository",
        ),
        (
            "a repository that does not exist",
            // Inside the allowed root: outside it, PERMISSION_DENIED comes first and
            // does not reveal whether the path exists.
            worktree_request("w2", &server.dir.path().join("work/nope"), "b1", ""),
            Code::InvalidArgument,
            "does not exist",
        ),
        (
            "an unknown base ref",
            worktree_request("w3", &repo, "b1", "no-such-ref"),
            Code::InvalidArgument,
            "\"no-such-ref\" does not name a commit",
        ),
        (
            "an invalid branch name",
            worktree_request("w4", &repo, "a..b", ""),
            Code::InvalidArgument,
            "not a valid branch name",
        ),
        (
            "an option as branch",
            worktree_request("w5", &repo, "--force", ""),
            Code::InvalidArgument,
            "must not start with '-'",
        ),
        (
            "the branch checked out in the main worktree",
            worktree_request("w6", &repo, "main", ""),
            Code::FailedPrecondition,
            "already checked out",
        ),
        (
            "the branch checked out in another worktree",
            worktree_request("w7", &repo, "taken", ""),
            Code::FailedPrecondition,
            "already checked out",
        ),
        (
            "a repository outside the allowed roots",
            worktree_request("w8", outside.path(), "b1", ""),
            Code::PermissionDenied,
            "--allowed-root",
        ),
        (
            "no branch",
            worktree_request("w9", &repo, "", ""),
            Code::InvalidArgument,
            "session.worktree.branch",
        ),
    ];
    for (what, request, code, needle) in cases {
        for validate_only in [true, false] {
            let mut request = request.clone();
            request.validate_only = validate_only;
            let status = create(&server, request).await.expect_err(what);
            assert_eq!(status.code(), code, "{what}: {status:?}");
            assert!(
                status.message().contains(needle),
                "{what}: {}",
                status.message()
            );
        }
    }
    // A quick session outside the roots is refused the same way.
    let status = server
        .sessions
        .clone()
        .create_session(pb::CreateSessionRequest {
            session: Some(pb::Session {
                source: Some(pb::session::Source::Quick(pb::QuickSource {
                    work_dir: outside.path().display().to_string(),
                })),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    assert_eq!(session_count(&server).await, 0, "no row");
    assert!(worktree_entries(&server).is_empty(), "no stray worktree");
    assert_eq!(
        registered_worktrees(&repo),
        2,
        "the main one and `elsewhere`"
    );
    assert_eq!(branches(&repo), branches_before, "no new branch");

    // validate_only on a good request creates nothing either.
    let mut request = worktree_request("ok", &repo, "fresh", "");
    request.validate_only = true;
    let would_be = create(&server, request).await.expect("valid");
    assert_eq!(source(&would_be).branch, "fresh");
    assert!(worktree_entries(&server).is_empty());
    assert!(!branches(&repo).contains(&"fresh".to_owned()));
    assert_eq!(session_count(&server).await, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_clash_leaves_no_worktree_and_no_branch() {
    let server = TestServer::start().await;
    let repo = repository(&server, "repo");
    server.create_session("dup").await;
    let status = create(&server, worktree_request("dup", &repo, "clash", ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);

    // Two creates racing for one name: exactly one wins, and the loser's worktree
    // and new branch are gone whether the early check or the insert caught it.
    let (a, b) = tokio::join!(
        create(&server, worktree_request("race", &repo, "race-a", "")),
        create(&server, worktree_request("race", &repo, "race-b", "")),
    );
    let (winner, loser_branch) = match (a, b) {
        (Ok(winner), Err(status)) => {
            assert_eq!(status.code(), Code::AlreadyExists);
            (winner, "race-b")
        }
        (Err(status), Ok(winner)) => {
            assert_eq!(status.code(), Code::AlreadyExists);
            (winner, "race-a")
        }
        other => panic!("exactly one create must win: {other:?}"),
    };
    assert_eq!(worktree_entries(&server), vec![winner.id.clone()]);
    assert!(!branches(&repo).contains(&loser_branch.to_owned()));
    assert_eq!(registered_worktrees(&repo), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worktree_git_refuses_to_remove_is_kept_and_retired_later() {
    let server = TestServer::start_with(
        |config| config.reaper_interval = std::time::Duration::from_secs(24 * 3600),
        None,
    )
    .await;
    let repo = repository(&server, "repo");
    let created = create(&server, worktree_request("locked", &repo, "locked", ""))
        .await
        .unwrap();
    let path = PathBuf::from(source(&created).worktree_path);
    std::fs::write(path.join("wip.txt"), "work in progress\n").unwrap();
    git(
        &repo,
        &[
            "worktree",
            "lock",
            "--reason",
            "in use",
            path.to_str().unwrap(),
        ],
    );

    // Deleting works; the locked worktree stays, its changes already saved.
    let deleted = delete(&server, "locked", false).await;
    assert_eq!(deleted.state(), State::Deleted);
    assert!(
        path.join("wip.txt").exists(),
        "nothing is removed while git refuses"
    );
    assert!(
        deleted.state_reason.contains("was kept"),
        "{}",
        deleted.state_reason
    );
    assert!(
        deleted.state_reason.contains("locked"),
        "{}",
        deleted.state_reason
    );
    let saved_ref = source(&deleted).saved_ref;
    assert_eq!(
        git(&repo, &["show", &format!("{saved_ref}:wip.txt")]),
        "work in progress"
    );

    let first_save = git(&repo, &["rev-parse", &saved_ref]);
    let head = git(&path, &["rev-parse", "HEAD"]);

    // Still locked: the retention task keeps it too, and saves nothing new when
    // nothing changed.
    let manager = server.server.as_ref().unwrap().manager().clone();
    let reaper = Reaper::new(manager.clone());
    let pass = reaper.run_once(manager.now()).await;
    assert_eq!((pass.worktrees_removed, pass.failed_steps), (0, 0));
    assert!(path.exists());
    assert_eq!(git(&repo, &["rev-parse", &saved_ref]), first_save);

    // More work appears meanwhile: the next save keeps the first one reachable as
    // its second parent (the first parent stays the worktree's HEAD).
    std::fs::write(path.join("more.txt"), "more\n").unwrap();
    let pass = reaper.run_once(manager.now()).await;
    assert_eq!((pass.worktrees_removed, pass.failed_steps), (0, 0));
    assert_eq!(
        git(&repo, &["show", &format!("{saved_ref}:more.txt")]),
        "more"
    );
    assert_eq!(git(&repo, &["rev-parse", &format!("{saved_ref}^1")]), head);
    assert_eq!(
        git(&repo, &["rev-parse", &format!("{saved_ref}^2")]),
        first_save
    );

    // Unlocked: the next pass removes it and clears the note.
    git(&repo, &["worktree", "unlock", path.to_str().unwrap()]);
    let pass = reaper.run_once(manager.now()).await;
    assert_eq!((pass.worktrees_removed, pass.failed_steps), (1, 0));
    assert!(!path.exists());
    let tombstone = server.get_session(&deleted.id).await;
    assert_eq!(tombstone.state_reason, "");
    assert_eq!(source(&tombstone).saved_ref, saved_ref);
    assert_eq!(
        git(&repo, &["show", &format!("{saved_ref}:wip.txt")]),
        "work in progress"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discarding_a_failed_worktree_session_removes_its_worktree() {
    let server = TestServer::start().await;
    let repo = repository(&server, "repo");
    let mut request = worktree_request("broken", &repo, "broken", "");
    request.workers = vec![pb::Worker {
        display_name: "tool".into(),
        spec: Some(pb::worker::Spec::Terminal(pb::TerminalSpec {
            command: vec!["corral-no-such-command".into()],
            ..Default::default()
        })),
        ..Default::default()
    }];
    let created = create(&server, request).await.unwrap();
    let path = PathBuf::from(source(&created).worktree_path);
    std::fs::write(path.join("draft.txt"), "draft\n").unwrap();
    assert_eq!(server.start_session("broken").await.state(), State::Error);
    let discarded = server
        .sessions
        .clone()
        .discard_session(pb::DiscardSessionRequest {
            name: "sessions/broken".into(),
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(discarded.state(), State::Deleted);
    assert!(!path.exists());
    let saved_ref = source(&discarded).saved_ref;
    assert_eq!(
        git(&repo, &["show", &format!("{saved_ref}:draft.txt")]),
        "draft"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_the_client_gives_up_on_still_completes_whole() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start().await;
    let repo = repository(&server, "repo");
    // A slow post-checkout hook keeps `git worktree add` busy for a while.
    let hook = repo.join(".git/hooks/post-checkout");
    std::fs::write(&hook, "#!/bin/sh\nsleep 1\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut client = server.sessions.clone();
    let request = worktree_request("slow", &repo, "slow", "");
    let gave_up = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        client.create_session(request),
    )
    .await;
    assert!(
        gave_up.is_err(),
        "the client gave up before the hook finished"
    );

    // The server finishes the create all the same: a row and its worktree.
    common::eventually("the session exists", || async {
        session_count(&server).await == 1
    })
    .await;
    let session = server.get_session("slow").await;
    let path = PathBuf::from(source(&session).worktree_path);
    assert_eq!(git(&path, &["branch", "--show-current"]), "slow");
    assert_eq!(worktree_entries(&server), vec![session.id.clone()]);
    server.stop().await;
}

/// A worktree left by a server killed between `git worktree add` and the new
/// session's row (its create marker still there, no session with its id) is
/// retired by the retention step once the marker is old enough, its changes
/// saved first. A live session's worktree, a worktree without a marker (say, of a
/// session in another database) and a marker whose session was written are left
/// alone (the last loses its marker).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphan_worktree_is_saved_and_removed_and_nothing_else_is_touched() {
    let server = TestServer::start().await;
    let repo = repository(&server, "repo");
    let live = create(&server, worktree_request("live", &repo, "live", "main"))
        .await
        .expect("create");
    let live_path = PathBuf::from(source(&live).worktree_path);
    assert_eq!(
        worktree_entries(&server),
        vec![live.id.clone()],
        "no marker stays"
    );
    let add = |id: &str, branch: &str| {
        let path = worktrees_dir(&server).join(id);
        git(
            &repo,
            &[
                "worktree",
                "add",
                "-q",
                "-b",
                branch,
                path.to_str().unwrap(),
                "main",
            ],
        );
        path
    };
    let marker = |id: &str| worktrees_dir(&server).join(format!(".creating-{id}"));
    // What the killed server left: the marker, the worktree, and no row.
    let orphan_id = "0d1f3c52-6a1e-4b7e-9a57-3c2f7d1e5b90";
    std::fs::write(marker(orphan_id), "").unwrap();
    let orphan = add(orphan_id, "orphaned");
    std::fs::write(orphan.join("notes.txt"), "typed in by hand\n").unwrap();
    // A worktree without a marker: not ours to judge.
    let foreign = add("6b0e9a4c-1d2f-4e3a-8b5c-7d9e0f1a2b3c", "foreign");
    // Killed after the row was written: only the marker is left over.
    std::fs::write(marker(&live.id), "").unwrap();

    let manager = server.server.as_ref().unwrap().manager().clone();
    let hour = std::time::Duration::from_secs(3600);
    assert_eq!(
        manager.retire_orphan_worktrees(hour, 100).await.unwrap(),
        0,
        "a young marker may be a create in progress"
    );
    assert!(orphan.exists());
    let removed = manager
        .retire_orphan_worktrees(std::time::Duration::ZERO, 100)
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert!(!orphan.exists());
    assert!(live_path.exists(), "a live session's worktree stays");
    assert!(foreign.exists(), "a worktree without a marker stays");
    assert!(!marker(orphan_id).exists() && !marker(&live.id).exists());
    assert_eq!(registered_worktrees(&repo), 3);
    assert_eq!(
        git(
            &repo,
            &["show", &format!("refs/corral/{orphan_id}:notes.txt")]
        ),
        "typed in by hand",
        "the orphan's changes are saved before it is removed"
    );
    assert!(branches(&repo).contains(&"orphaned".to_owned()));
    server.stop().await;
}
