//! Git worktrees of worktree sessions: checking a request, `git worktree add`, and
//! removing a worktree without ever losing work.
//!
//! Everything runs the real `git` as a child process with
//! [`tokio::process::Command`] (never blocking the runtime), in a clean
//! environment: nothing of the server's `GIT_*` variables leaks in (a stray
//! `GIT_DIR` or `GIT_INDEX_FILE` would point git at another repository), `LC_ALL=C`
//! keeps git's messages in English, and `GIT_TERMINAL_PROMPT=0` keeps it from
//! waiting for a password. Each command has a time limit, and its output is read
//! up to a bound.
//!
//! Creating ([`plan`] then [`add`]): every check that can fail on the client's
//! input runs first and changes nothing — the repository is a git repository under
//! an allowed root (INVALID_ARGUMENT / PERMISSION_DENIED), the branch name is valid
//! (`git check-ref-format --branch`), the base ref names a commit (both
//! INVALID_ARGUMENT), and the branch is not checked out in another worktree
//! (FAILED_PRECONDITION). Then `git worktree add` creates the worktree (with `-b`
//! when the branch is new). A failure there is FAILED_PRECONDITION with git's own
//! message, and whatever git left behind is removed ([`undo_add`]).
//!
//! Removing ([`retire`]): uncommitted changes and untracked files are first saved
//! as a commit on `refs/corral/<session id>` whose parent is the worktree's HEAD:
//! the worktree's index is copied to a scratch index file, `git add -A` stages the
//! whole working tree into that copy (`GIT_INDEX_FILE`; the worktree's own index
//! and files are untouched), `git write-tree` and `git commit-tree` make the commit,
//! and `git update-ref` points the ref at it. Only then is the worktree removed
//! (`git worktree remove --force`). Ignored files are not saved (they are, by the
//! repository's own rules, not work). The branch is kept unless asked otherwise.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::confinement::AllowedRoots;
use crate::error::{Error, Result};

/// Longest a git command may run before it is killed.
const GIT_TIMEOUT: Duration = Duration::from_secs(120);
/// Bytes of a git command's stdout kept (the rest is read and dropped).
const MAX_STDOUT_BYTES: usize = 1 << 20;
/// Bytes of a git command's stderr kept for messages.
const MAX_STDERR_BYTES: usize = 16 * 1024;
/// The namespace of the refs that keep a deleted worktree's changes.
pub const SAVED_REF_PREFIX: &str = "refs/corral/";
/// Author and committer of the commits that save a worktree's changes.
const SAVE_IDENTITY: (&str, &str) = ("Corral", "corral@localhost");

/// What a client asked for: `WorktreeSource` decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorktreeRequest {
    /// The repository's path (its work tree, a subdirectory, or its git dir).
    pub repository: String,
    /// The branch to check out.
    pub branch: String,
    /// Where a new branch starts; empty means `HEAD`.
    pub base_ref: String,
}

/// A checked request: what [`add`] will do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The repository as given, canonical; git commands run there.
    pub repository: PathBuf,
    /// The branch to check out.
    pub branch: String,
    /// `Some((base_ref, commit))` when the branch does not exist yet and will be
    /// created at `commit`; `None` when an existing branch is checked out.
    pub new_branch_from: Option<(String, String)>,
}

impl Plan {
    /// The base ref as stored (`HEAD` when defaulted; empty for an existing branch).
    pub fn base_ref(&self) -> String {
        self.new_branch_from
            .as_ref()
            .map(|(base, _)| base.clone())
            .unwrap_or_default()
    }
}

/// What [`retire`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retired {
    /// The ref holding the saved changes, when there were any.
    pub saved_ref: Option<String>,
    /// True when the worktree directory was removed (false: it was already gone).
    pub removed: bool,
    /// True when the branch was deleted as asked.
    pub branch_deleted: bool,
    /// Why the worktree is still there (git refused to remove it, e.g. it is
    /// locked); its changes are saved all the same when `saved_ref` is set.
    pub kept: Option<String>,
}

/// The output of one git command.
#[derive(Debug)]
struct GitOutput {
    success: bool,
    stdout: String,
    /// stderr, trimmed, as one message.
    stderr: String,
}

/// Runs `git <args>` in `dir` with the clean environment plus `env`.
///
/// Errors: FAILED_PRECONDITION when git cannot be run at all (not installed) or
/// runs longer than [`GIT_TIMEOUT`]; a git that runs and fails is `Ok` with
/// `success == false`.
async fn git(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<GitOutput> {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(dir)
        .args(args)
        .env_clear()
        .envs(clean_env())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let shown = format!("git {}", args.join(" "));
    let mut child = command.spawn().map_err(|err| {
        Error::precondition(
            "GIT_UNAVAILABLE",
            format!("cannot run git on this server ({err}); install git to use worktree sessions"),
        )
    })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let run = async {
        let (out, err) = tokio::join!(
            read_bounded(stdout, MAX_STDOUT_BYTES),
            read_bounded(stderr, MAX_STDERR_BYTES)
        );
        let status = child.wait().await;
        (status, out, err)
    };
    let (status, stdout, stderr) = tokio::time::timeout(GIT_TIMEOUT, run).await.map_err(|_| {
        Error::precondition(
            "GIT_TIMEOUT",
            format!(
                "`{shown}` in {} did not finish within {}s",
                dir.display(),
                GIT_TIMEOUT.as_secs()
            ),
        )
    })?;
    let status = status.map_err(|err| Error::Internal(format!("waiting for `{shown}`: {err}")))?;
    let output = GitOutput {
        success: status.success(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: one_line(&String::from_utf8_lossy(&stderr)),
    };
    tracing::debug!(dir = %dir.display(), command = %shown, success = output.success, stderr = %output.stderr, "git");
    Ok(output)
}

/// Reads a child's pipe: keeps the first `limit` bytes, reads and drops the rest
/// (so the child never blocks on a full pipe).
async fn read_bounded<R: AsyncRead + Unpin>(pipe: Option<R>, limit: usize) -> Vec<u8> {
    let Some(mut pipe) = pipe else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
            }
        }
    }
}

/// The environment of every git command: the server's `PATH` and `HOME` (for the
/// user's git configuration), English messages, no prompts — and nothing else.
fn clean_env() -> Vec<(String, String)> {
    let mut env = vec![
        ("LC_ALL".to_owned(), "C".to_owned()),
        ("GIT_TERMINAL_PROMPT".to_owned(), "0".to_owned()),
        (
            "PATH".to_owned(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        ),
    ];
    if let Ok(home) = std::env::var("HOME") {
        env.push(("HOME".to_owned(), home));
    }
    env
}

/// git's stderr as one line: `fatal: …` lines joined with `; `.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Refuses values git would read as options (`-x`), and empty or oversized ones.
fn check_argument(field: &str, value: &str) -> Result<()> {
    if value.starts_with('-') {
        return Err(Error::invalid(
            field,
            format!("{value:?} must not start with '-'"),
        ));
    }
    crate::domain::names::validate_text(field, value, 1024)?;
    Ok(())
}

/// Checks a worktree request without changing anything (see the module doc).
///
/// Errors: INVALID_ARGUMENT (missing fields, repository that does not exist or is
/// not a git repository, invalid branch name, unknown base ref), PERMISSION_DENIED
/// (repository outside `roots`), FAILED_PRECONDITION (the branch is checked out in
/// another worktree; git missing).
pub async fn plan(request: &WorktreeRequest, roots: &AllowedRoots) -> Result<Plan> {
    const REPOSITORY: &str = "session.worktree.repository";
    const BRANCH: &str = "session.worktree.branch";
    const BASE_REF: &str = "session.worktree.base_ref";
    if request.repository.is_empty() {
        return Err(Error::invalid(REPOSITORY, "is required"));
    }
    if request.branch.is_empty() {
        return Err(Error::invalid(BRANCH, "is required"));
    }
    check_argument(BRANCH, &request.branch)?;
    if !request.base_ref.is_empty() {
        check_argument(BASE_REF, &request.base_ref)?;
    }
    let repository = roots.resolve_dir(REPOSITORY, &request.repository).await?;

    let common = git(
        &repository,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
        &[],
    )
    .await?;
    if !common.success {
        return Err(Error::invalid(
            REPOSITORY,
            format!(
                "{} is not a git repository (git: {})",
                repository.display(),
                common.stderr
            ),
        ));
    }
    // The repository's git dir must be under a root too (a work tree inside a root
    // may belong to a repository outside every root, via a `.git` file).
    let common_dir = tokio::fs::canonicalize(common.stdout.trim())
        .await
        .unwrap_or_else(|_| PathBuf::from(common.stdout.trim()));
    check_root(REPOSITORY, &common_dir, roots)?;

    let format = git(
        &repository,
        &["check-ref-format", "--branch", &request.branch],
        &[],
    )
    .await?;
    if !format.success {
        return Err(Error::invalid(
            BRANCH,
            format!(
                "{:?} is not a valid branch name (git: {})",
                request.branch, format.stderr
            ),
        ));
    }

    let branch_ref = format!("refs/heads/{}", request.branch);
    let exists = git(
        &repository,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &branch_ref,
        ],
        &[],
    )
    .await?
    .success;
    let new_branch_from = if exists {
        if let Some(at) = checked_out_at(&repository, &branch_ref).await? {
            return Err(Error::precondition(
                "BRANCH_CHECKED_OUT",
                format!(
                    "branch {:?} is already checked out in the worktree at {}; git allows a branch in one worktree only: choose another branch",
                    request.branch,
                    at.display()
                ),
            ));
        }
        None
    } else {
        let base = if request.base_ref.is_empty() {
            "HEAD".to_owned()
        } else {
            request.base_ref.clone()
        };
        let spec = format!("{base}^{{commit}}");
        let commit = git(
            &repository,
            &["rev-parse", "--verify", "--end-of-options", &spec],
            &[],
        )
        .await?;
        if !commit.success {
            return Err(Error::invalid(
                BASE_REF,
                format!(
                    "{base:?} does not name a commit in {} (git: {})",
                    repository.display(),
                    commit.stderr
                ),
            ));
        }
        Some((base, commit.stdout.trim().to_owned()))
    };
    Ok(Plan {
        repository,
        branch: request.branch.clone(),
        new_branch_from,
    })
}

/// The worktree where `branch_ref` is checked out, from `git worktree list
/// --porcelain`.
async fn checked_out_at(repository: &Path, branch_ref: &str) -> Result<Option<PathBuf>> {
    let list = git(repository, &["worktree", "list", "--porcelain"], &[]).await?;
    if !list.success {
        return Ok(None);
    }
    let mut current: Option<&str> = None;
    for line in list.stdout.lines() {
        if let Some(path) = line.strip_prefix("worktree ") {
            current = Some(path);
        } else if line.strip_prefix("branch ") == Some(branch_ref) {
            return Ok(current.map(PathBuf::from));
        }
    }
    Ok(None)
}

/// Refuses a canonical path outside every allowed root (PERMISSION_DENIED).
pub fn check_root(field: &str, path: &Path, roots: &AllowedRoots) -> Result<()> {
    if roots.contains(path) {
        return Ok(());
    }
    Err(Error::PermissionDenied {
        message: format!(
            "{field}: {} is outside the directories this server may use (--allowed-root: {})",
            path.display(),
            roots.describe()
        ),
    })
}

/// Creates the worktree of `plan` at `dest` (which must not exist).
///
/// Errors: FAILED_PRECONDITION with git's message when git refuses; nothing is
/// left behind then (see [`undo_add`]).
pub async fn add(plan: &Plan, dest: &Path) -> Result<()> {
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|err| Error::Internal(format!("cannot create {}: {err}", parent.display())))?;
    }
    let dest_text = dest.display().to_string();
    let output = match &plan.new_branch_from {
        Some((_, commit)) => {
            git(
                &plan.repository,
                &["worktree", "add", "-b", &plan.branch, &dest_text, commit],
                &[],
            )
            .await?
        }
        None => {
            git(
                &plan.repository,
                &["worktree", "add", &dest_text, &plan.branch],
                &[],
            )
            .await?
        }
    };
    if output.success {
        tracing::info!(repository = %plan.repository.display(), branch = %plan.branch, path = %dest.display(), "worktree added");
        return Ok(());
    }
    undo_add(plan, dest).await;
    Err(Error::precondition(
        "GIT_WORKTREE_ADD_FAILED",
        format!(
            "git refused to add a worktree of {} for branch {:?}: {}",
            plan.repository.display(),
            plan.branch,
            output.stderr
        ),
    ))
}

/// Removes what [`add`] made (or half-made): the worktree, its administrative
/// files, and the branch when `add` was to create it. Best effort; logs failures.
pub async fn undo_add(plan: &Plan, dest: &Path) {
    if tokio::fs::try_exists(dest).await.unwrap_or(false) {
        let dest_text = dest.display().to_string();
        let removed = git(
            &plan.repository,
            &["worktree", "remove", "--force", &dest_text],
            &[],
        )
        .await;
        if !removed.as_ref().is_ok_and(|o| o.success) {
            // Not a registered worktree (git failed before registering it): a plain
            // directory git created; nothing of the user's is in it.
            if let Err(err) = tokio::fs::remove_dir_all(dest).await {
                tracing::warn!(path = %dest.display(), %err, "removing a half-created worktree");
            }
        }
    }
    let _ = git(&plan.repository, &["worktree", "prune"], &[]).await;
    if plan.new_branch_from.is_some() {
        let branch_ref = format!("refs/heads/{}", plan.branch);
        let exists = git(
            &plan.repository,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                &branch_ref,
            ],
            &[],
        )
        .await
        .is_ok_and(|o| o.success);
        if exists {
            match git(&plan.repository, &["branch", "-D", &plan.branch], &[]).await {
                Ok(o) if o.success => {}
                Ok(o) => {
                    tracing::warn!(branch = %plan.branch, stderr = %o.stderr, "deleting a branch made for a worktree that was undone")
                }
                Err(err) => {
                    tracing::warn!(branch = %plan.branch, %err, "deleting a branch made for a worktree that was undone")
                }
            }
        }
    }
}

/// The repository of the linked worktree at `worktree`: its common git directory
/// (`<repo>/.git`, or a bare repository itself), where [`retire`]'s git commands
/// can run. `None` when `worktree` is not a linked worktree of some repository
/// (a main working tree, a plain directory, git missing or failing).
pub async fn repository_of(worktree: &Path) -> Option<PathBuf> {
    let out = git(
        worktree,
        &[
            "rev-parse",
            "--path-format=absolute",
            "--git-dir",
            "--git-common-dir",
        ],
        &[],
    )
    .await
    .ok()?;
    if !out.success {
        return None;
    }
    let mut lines = out.stdout.lines().map(str::trim);
    let (git_dir, common_dir) = (lines.next()?, lines.next()?);
    // A linked worktree's git dir is `<common dir>/worktrees/<name>`.
    (!git_dir.is_empty() && git_dir != common_dir).then(|| PathBuf::from(common_dir))
}

/// What [`retire`] needs to know about a session's worktree.
#[derive(Clone, Debug)]
pub struct Retire<'a> {
    /// The repository the worktree belongs to (git commands run there).
    pub repository: &'a Path,
    /// The worktree's directory.
    pub worktree: &'a Path,
    /// The worktree's branch (deleted only with `delete_branch`).
    pub branch: &'a str,
    /// The session's id (names the saved ref).
    pub session_id: &'a str,
    /// The session's display name (in the saved commit's message).
    pub session_name: &'a str,
    /// Delete the branch after removing the worktree.
    pub delete_branch: bool,
    /// A directory for the scratch index file.
    pub scratch_dir: &'a Path,
}

/// Saves the worktree's uncommitted changes and untracked files on
/// `refs/corral/<session id>`, then removes the worktree, then (when asked)
/// deletes the branch. When the worktree is already gone, only stale worktree
/// records are pruned.
///
/// A worktree git refuses to remove (e.g. one locked with `git worktree lock`) is
/// kept, with the reason in [`Retired::kept`] (and its branch is not deleted).
///
/// Errors: FAILED_PRECONDITION with git's message when saving fails (the worktree
/// is then left in place: nothing is removed before the save succeeded). A
/// failure to delete the branch is logged, not returned.
pub async fn retire(request: &Retire<'_>) -> Result<Retired> {
    let mut retired = Retired::default();
    if !tokio::fs::try_exists(request.worktree)
        .await
        .unwrap_or(false)
    {
        let _ = git(request.repository, &["worktree", "prune"], &[]).await;
    } else {
        retired.saved_ref = save_changes(request).await?;
        let path = request.worktree.display().to_string();
        let removed = git(
            request.repository,
            &["worktree", "remove", "--force", &path],
            &[],
        )
        .await?;
        if !removed.success {
            retired.kept = Some(format!(
                "git could not remove the worktree at {}: {}",
                request.worktree.display(),
                removed.stderr
            ));
            return Ok(retired);
        }
        retired.removed = true;
        tracing::info!(path = %path, saved_ref = ?retired.saved_ref, "worktree removed");
    }
    if request.delete_branch && !request.branch.is_empty() {
        if retired.saved_ref.is_none() {
            // Keep the branch's commits reachable even though the branch goes.
            retired.saved_ref = keep_branch_tip(request).await;
        }
        match git(request.repository, &["branch", "-D", request.branch], &[]).await? {
            o if o.success => retired.branch_deleted = true,
            o => {
                tracing::warn!(branch = %request.branch, stderr = %o.stderr, "the branch of a deleted worktree session was not deleted")
            }
        }
    }
    Ok(retired)
}

/// Points the saved ref at the branch's tip (before the branch is deleted).
async fn keep_branch_tip(request: &Retire<'_>) -> Option<String> {
    let saved_ref = format!("{SAVED_REF_PREFIX}{}", request.session_id);
    let branch_ref = format!("refs/heads/{}", request.branch);
    let updated = git(
        request.repository,
        &[
            "update-ref",
            "-m",
            "corral: tip of a deleted branch",
            &saved_ref,
            &branch_ref,
        ],
        &[],
    )
    .await
    .ok()?;
    updated.success.then_some(saved_ref)
}

/// Saves the dirty state of a worktree as a commit on `refs/corral/<session id>`
/// (see the module doc). `None` when the worktree is clean.
async fn save_changes(request: &Retire<'_>) -> Result<Option<String>> {
    let dir = request.worktree;
    let failed = |what: &str, stderr: &str| {
        Error::precondition(
            "GIT_SAVE_FAILED",
            format!(
                "could not save the changes of the worktree at {} ({what}: {stderr}); the worktree was kept",
                dir.display()
            ),
        )
    };
    let status = git(
        dir,
        &[
            "status",
            "--porcelain",
            "--untracked-files=all",
            "--ignore-submodules=none",
        ],
        &[],
    )
    .await?;
    if !status.success {
        return Err(failed("git status", &status.stderr));
    }
    if status.stdout.trim().is_empty() {
        return Ok(None);
    }
    let head = git(dir, &["rev-parse", "--verify", "HEAD"], &[]).await?;
    if !head.success {
        return Err(failed("git rev-parse HEAD", &head.stderr));
    }
    let head = head.stdout.trim().to_owned();

    // A scratch copy of the worktree's index: `git add -A` into it stages
    // everything without touching the worktree's own index.
    let scratch = request.scratch_dir.join(format!(
        ".index-{}-{}",
        request.session_id,
        uuid::Uuid::new_v4().simple()
    ));
    let result = async {
        let index = git(dir, &["rev-parse", "--path-format=absolute", "--git-path", "index"], &[]).await?;
        if index.success {
            let index = PathBuf::from(index.stdout.trim());
            if tokio::fs::try_exists(&index).await.unwrap_or(false)
                && let Err(err) = tokio::fs::copy(&index, &scratch).await
            {
                return Err(failed("copying the index", &err.to_string()));
            }
        }
        let scratch_text = scratch.display().to_string();
        let with_index = [("GIT_INDEX_FILE", scratch_text.as_str())];
        let add = git(dir, &["add", "-A"], &with_index).await?;
        if !add.success {
            return Err(failed("git add -A", &add.stderr));
        }
        let tree = git(dir, &["write-tree"], &with_index).await?;
        if !tree.success {
            return Err(failed("git write-tree", &tree.stderr));
        }
        let message = format!(
            "corral: uncommitted changes of session {} ({}) when it was deleted",
            request.session_name, request.session_id
        );
        let (name, email) = SAVE_IDENTITY;
        let identity = [
            ("GIT_AUTHOR_NAME", name),
            ("GIT_AUTHOR_EMAIL", email),
            ("GIT_COMMITTER_NAME", name),
            ("GIT_COMMITTER_EMAIL", email),
        ];
        let tree = tree.stdout.trim();
        let saved_ref = format!("{SAVED_REF_PREFIX}{}", request.session_id);
        // An earlier save of this session (a retirement interrupted after saving)
        // stays reachable as the second parent, so a later save never replaces it;
        // an identical save is not made twice.
        let previous = git(dir, &["rev-parse", "--verify", "--quiet", &format!("{saved_ref}^{{commit}}")], &[]).await?;
        let previous = previous.success.then(|| previous.stdout.trim().to_owned());
        if let Some(previous) = &previous {
            let same = git(dir, &["rev-parse", &format!("{previous}^{{tree}}"), &format!("{previous}^1")], &[]).await?;
            if same.success && same.stdout.split_whitespace().eq([tree, head.as_str()]) {
                return Ok(Some(saved_ref));
            }
        }
        let mut args = vec!["commit-tree", tree, "-p", &head];
        if let Some(previous) = &previous {
            args.extend(["-p", previous.as_str()]);
        }
        args.extend(["-m", &message]);
        let commit = git(dir, &args, &identity).await?;
        if !commit.success {
            return Err(failed("git commit-tree", &commit.stderr));
        }
        // Conditional on the ref's old value: two servers retiring at once cannot
        // overwrite each other's save.
        let expected = previous.clone().unwrap_or_default();
        let update = git(
            dir,
            &["update-ref", "-m", "corral: save before deleting the worktree", &saved_ref, commit.stdout.trim(), &expected],
            &[],
        )
        .await?;
        if !update.success {
            return Err(failed("git update-ref", &update.stderr));
        }
        tracing::info!(worktree = %dir.display(), %saved_ref, commit = %commit.stdout.trim(), "worktree changes saved");
        Ok(Some(saved_ref))
    }
    .await;
    let _ = tokio::fs::remove_file(&scratch).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_messages_become_one_line() {
        assert_eq!(
            one_line("Preparing worktree\nfatal: 'x' is already used by worktree at '/w'\n"),
            "Preparing worktree; fatal: 'x' is already used by worktree at '/w'"
        );
        assert_eq!(one_line("\n\n"), "");
    }

    #[test]
    fn option_like_values_are_refused() {
        assert!(check_argument("b", "--upload-pack=evil").is_err());
        assert!(check_argument("b", "-b").is_err());
        assert!(check_argument("b", "feature/x").is_ok());
    }

    #[test]
    fn the_environment_is_clean() {
        let env = clean_env();
        assert!(
            env.iter()
                .all(|(key, _)| !key.starts_with("GIT_") || key == "GIT_TERMINAL_PROMPT")
        );
        assert!(
            env.iter()
                .any(|(key, value)| key == "LC_ALL" && value == "C")
        );
    }
}
