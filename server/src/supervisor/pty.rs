//! Opening a PTY and spawning a worker's program in it, with portable-pty.
//!
//! Traps of portable-pty, and how this module avoids them:
//! - **Drop the slave after spawn.** The child holds its own copies; if we kept
//!   ours, reading the master would never report EOF/EIO when the child is gone.
//! - **A missing working directory silently becomes `$HOME`** (portable-pty falls
//!   back to the home directory). We check the directory ourselves first.
//! - **Exec failures can look like success.** portable-pty's pre-exec hook closes
//!   every descriptor above 2, including the pipe std uses to report a failed
//!   `execve` to the parent, so `spawn` returns `Ok` for a child that never ran the
//!   program. We fork from a thread named [`SPAWN_THREAD_NAME`]: a child that
//!   exits still carrying that name in `/proc/<pid>/stat` never exec'd, and
//!   [`diagnose_exec_failure`] says why in plain words. [`spawn`] waits (briefly,
//!   on the blocking pool) until the child's name changes — `execve` succeeded — or
//!   it dies under the old name, so a start fails *as* a start failure; the actor
//!   checks again at exit for a child that took longer than [`EXEC_WAIT`].
//! - **Its reader is blocking.** We never use it: the master is duplicated, set
//!   `O_NONBLOCK`, and registered with tokio ([`tokio::io::unix::AsyncFd`]), so
//!   1000 PTYs cost no thread each. Child exit is watched through a pidfd the same
//!   way instead of a thread blocked in `wait`.
//! - **Keep the master alive until reading is done**, and close it last: closing
//!   it hangs up the terminal (SIGHUP to the session).

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use portable_pty::{Child, CommandBuilder, MasterPty, PtySize, native_pty_system};

/// The name of the thread that forks workers; a child still called this after it
/// exited never reached `execve`.
pub const SPAWN_THREAD_NAME: &str = "corral-spawn";

/// How long [`spawn`] waits for the child to reach `execve` (it normally takes
/// well under a millisecond; a loaded machine may take longer).
pub const EXEC_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// A terminal size in character cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

impl Default for WindowSize {
    /// 24 × 80, the VT100's size.
    fn default() -> Self {
        WindowSize { rows: 24, cols: 80 }
    }
}

impl From<WindowSize> for PtySize {
    fn from(size: WindowSize) -> Self {
        PtySize {
            rows: size.rows,
            cols: size.cols,
            pixel_width: 0,
            pixel_height: 0,
        }
    }
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    /// This shell as a login shell (argv[0] `-bash`), like a terminal emulator.
    LoginShell(PathBuf),
    /// argv; `argv[0]` is looked up in `PATH` when it contains no `/`.
    Argv(Vec<String>),
}

/// Everything needed to start a worker's process.
#[derive(Clone, Debug)]
pub struct SpawnSpec {
    pub program: Program,
    /// The working directory; must exist.
    pub cwd: PathBuf,
    /// The complete environment of the child (nothing is inherited).
    pub env: Vec<(String, String)>,
    pub size: WindowSize,
}

/// Why a worker's process could not start, in words for `last_error`.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("working directory {path}: {reason}")]
    WorkDir { path: PathBuf, reason: String },
    #[error("cannot start {program:?}: {reason}")]
    Program { program: String, reason: String },
    #[error("cannot open a PTY: {0}")]
    Pty(String),
}

/// A spawned process in its PTY. Dropping it closes the PTY (see the module doc
/// for the order).
pub struct Spawned {
    /// The PTY's master side: resize, foreground group.
    pub master: Box<dyn MasterPty + Send>,
    /// The child; reaped with `try_wait` once `exit_fd` is readable.
    pub child: Box<dyn Child + Send + Sync>,
    /// The child's pid (= its session id and process group id).
    pub pid: i32,
    /// A duplicate of the master descriptor in non-blocking mode, for reads and writes.
    pub io_fd: OwnedFd,
    /// A pidfd of the child: readable once it has exited.
    pub exit_fd: OwnedFd,
    /// The program that was started.
    pub program: Program,
    /// `PATH` of the child's environment (to explain an exec failure).
    pub path_env: Option<String>,
}

impl std::fmt::Debug for Spawned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawned")
            .field("pid", &self.pid)
            .field("program", &self.program)
            .finish_non_exhaustive()
    }
}

impl Program {
    /// A short description for messages: the shell or the command line.
    pub fn describe(&self) -> String {
        match self {
            Program::LoginShell(shell) => shell.display().to_string(),
            Program::Argv(argv) => shell_words::join(argv),
        }
    }
}

/// Opens a PTY of `spec.size` and starts `spec.program` in it, as the leader of a
/// new session with the PTY as its controlling terminal. Blocking (fork + exec):
/// call it on the blocking pool.
pub fn spawn(spec: &SpawnSpec) -> Result<Spawned, SpawnError> {
    check_work_dir(&spec.cwd)?;
    let pair = native_pty_system()
        .openpty(spec.size.into())
        .map_err(|e| SpawnError::Pty(format!("{e:#}")))?;

    let mut command = match &spec.program {
        Program::LoginShell(shell) => {
            let mut command = CommandBuilder::new_default_prog();
            command.env("SHELL", shell);
            command
        }
        Program::Argv(argv) => {
            if argv.is_empty() || argv[0].is_empty() {
                return Err(SpawnError::Program {
                    program: String::new(),
                    reason: "the command is empty".into(),
                });
            }
            CommandBuilder::from_argv(argv.iter().map(Into::into).collect())
        }
    };
    command.env_clear();
    for (key, value) in &spec.env {
        command.env(key, value);
    }
    if let Program::LoginShell(shell) = &spec.program {
        command.env("SHELL", shell);
    }
    command.cwd(&spec.cwd);

    let program = spec.program.describe();
    let path_env = spec
        .env
        .iter()
        .find(|(key, _)| key == "PATH")
        .map(|(_, value)| value.clone());
    let child =
        with_thread_name(SPAWN_THREAD_NAME, || pair.slave.spawn_command(command)).map_err(|e| {
            // portable-pty's errors are multi-line anyhow chains: keep one line.
            let raw = format!("{e:#}").replace('\n', " ");
            SpawnError::Program {
                program: program.clone(),
                // It searches PATH itself and refuses with "No viable candidates":
                // say which of not found / not executable / a directory it was.
                reason: if raw.contains("No viable candidates") {
                    diagnose_exec_failure(&spec.program, path_env.as_deref())
                } else {
                    raw
                },
            }
        })?;
    // Trap: drop our slave now, or EOF never comes.
    drop(pair.slave);
    let master = pair.master;

    let pid = child
        .process_id()
        .and_then(|pid| i32::try_from(pid).ok())
        .ok_or_else(|| SpawnError::Pty("the child has no process id".into()))?;
    let mut child = child;
    if let ExecOutcome::Failed = wait_for_exec(pid) {
        // Reap it (it has exited), then say why execve failed.
        let status = child.wait().ok();
        return Err(SpawnError::Program {
            program,
            reason: format!(
                "{}{}",
                diagnose_exec_failure(&spec.program, path_env.as_deref()),
                status
                    .map(|s| format!(" (the child exited with code {})", s.exit_code()))
                    .unwrap_or_default()
            ),
        });
    }
    let exit_fd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).ok_or_else(|| SpawnError::Pty("pid 0".into()))?,
        rustix::process::PidfdFlags::empty(),
    )
    .map_err(|e| SpawnError::Pty(format!("pidfd_open({pid}): {e}")))?;

    let raw = master
        .as_raw_fd()
        .ok_or_else(|| SpawnError::Pty("the PTY master has no descriptor".into()))?;
    let io_fd = super::sys::dup_raw(raw, &master)
        .map_err(|e| SpawnError::Pty(format!("dup of the PTY master: {e}")))?;
    let flags = fcntl(&io_fd, FcntlArg::F_GETFL).map_err(|e| SpawnError::Pty(e.to_string()))?;
    fcntl(
        &io_fd,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .map_err(|e| SpawnError::Pty(format!("O_NONBLOCK on the PTY master: {e}")))?;

    Ok(Spawned {
        master,
        child,
        pid,
        io_fd,
        exit_fd,
        program: spec.program.clone(),
        path_env,
    })
}

fn check_work_dir(cwd: &Path) -> Result<(), SpawnError> {
    match std::fs::metadata(cwd) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(SpawnError::WorkDir {
            path: cwd.to_owned(),
            reason: "is not a directory".into(),
        }),
        Err(err) => Err(SpawnError::WorkDir {
            path: cwd.to_owned(),
            reason: match err.kind() {
                std::io::ErrorKind::NotFound => "does not exist (was it removed?)".into(),
                std::io::ErrorKind::PermissionDenied => "permission denied".into(),
                _ => err.to_string(),
            },
        }),
    }
}

/// Whether a freshly forked child reached `execve`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExecOutcome {
    /// Its name changed: it runs the program (or ran it and exited).
    Execed,
    /// It ended still named [`SPAWN_THREAD_NAME`]: `execve` failed.
    Failed,
    /// Still not exec'd after [`EXEC_WAIT`]; the actor will tell at exit.
    Unknown,
}

/// Polls `/proc/<pid>/stat` until the child's name is no longer
/// [`SPAWN_THREAD_NAME`] (exec'd) or it is a zombie (or gone) under that name
/// (exec failed). Blocking; at most [`EXEC_WAIT`].
fn wait_for_exec(pid: i32) -> ExecOutcome {
    let deadline = std::time::Instant::now() + EXEC_WAIT;
    let mut pause = std::time::Duration::from_micros(100);
    loop {
        match super::process::member(pid) {
            None => return ExecOutcome::Unknown,
            Some(member) => {
                let named_spawn = super::process::comm(pid).is_some_and(|c| c == SPAWN_THREAD_NAME);
                if !named_spawn {
                    return ExecOutcome::Execed;
                }
                if matches!(member.state, 'Z' | 'X') {
                    return ExecOutcome::Failed;
                }
            }
        }
        if std::time::Instant::now() >= deadline {
            return ExecOutcome::Unknown;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(5));
    }
}

/// Runs `f` with the current thread renamed to `name`, restoring the old name after.
fn with_thread_name<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let previous = nix::sys::prctl::get_name().ok();
    if let Ok(name) = CString::new(name) {
        let _ = nix::sys::prctl::set_name(&name);
    }
    let result = f();
    if let Some(previous) = previous {
        let _ = nix::sys::prctl::set_name(&previous);
    }
    result
}

/// Explains why `execve` of `program` most likely failed, for a child detected as
/// never having exec'd (see the module doc): the errno itself is lost with the
/// pipe std would have reported it on, so this retraces `execvp(3)` — search
/// `PATH` for a name without `/`, skipping candidates that cannot be executed —
/// and names the first reason that applies: not found, a directory, permission
/// denied (no execute permission), a `#!` interpreter that does not exist, or a
/// file that is neither a binary nor a script.
pub fn diagnose_exec_failure(program: &Program, path_env: Option<&str>) -> String {
    let argv0 = match program {
        Program::LoginShell(shell) => shell.display().to_string(),
        Program::Argv(argv) => argv.first().cloned().unwrap_or_default(),
    };
    let candidates: Vec<PathBuf> = if argv0.contains('/') {
        vec![PathBuf::from(&argv0)]
    } else {
        path_env
            .map(|paths| {
                std::env::split_paths(paths)
                    .map(|dir| dir.join(&argv0))
                    .collect()
            })
            .unwrap_or_default()
    };
    // execvp goes on after EACCES and reports it only if nothing else runs.
    let mut denied: Option<String> = None;
    for path in &candidates {
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        if meta.is_dir() {
            denied.get_or_insert_with(|| {
                format!("exec of {} failed: it is a directory", path.display())
            });
            continue;
        }
        if nix::unistd::access(path.as_path(), nix::unistd::AccessFlags::X_OK).is_err() {
            denied.get_or_insert_with(|| {
                format!(
                    "exec of {} failed: permission denied (the file is not executable)",
                    path.display()
                )
            });
            continue;
        }
        return explain_file(path);
    }
    if let Some(denied) = denied {
        return denied;
    }
    if argv0.contains('/') {
        format!("exec of {argv0:?} failed: no such file or directory")
    } else {
        format!("exec of {argv0:?} failed: command not found in PATH")
    }
}

/// Why an existing, executable file would not run.
fn explain_file(path: &Path) -> String {
    match std::fs::read(path) {
        Err(err) => format!("exec of {} failed: {err}", path.display()),
        Ok(bytes) => {
            if let Some(line) = bytes.strip_prefix(b"#!") {
                let line =
                    String::from_utf8_lossy(line.split(|b| *b == b'\n').next().unwrap_or_default());
                let interpreter = line
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                if !Path::new(&interpreter).exists() {
                    return format!(
                        "exec of {} failed: its interpreter {interpreter:?} (from the #! line) does not exist",
                        path.display()
                    );
                }
            } else if !bytes.starts_with(b"\x7fELF") {
                return format!(
                    "exec of {} failed: exec format error (not a binary and no #! line)",
                    path.display()
                );
            }
            format!("exec of {} failed", path.display())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn argv(program: &str) -> Program {
        Program::Argv(vec![program.to_owned()])
    }

    #[test]
    fn a_missing_command_is_not_found() {
        let why = diagnose_exec_failure(&argv("corral-no-such-command"), Some("/usr/bin:/bin"));
        assert!(why.contains("command not found"), "{why}");
        let why = diagnose_exec_failure(&argv("/nonexistent/tool"), Some("/usr/bin"));
        assert!(why.contains("no such file"), "{why}");
    }

    #[test]
    fn a_file_without_execute_permission_is_denied() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("tool.sh");
        std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
        let why = diagnose_exec_failure(&argv(&script.display().to_string()), None);
        assert!(why.contains("permission denied"), "{why}");
        // Found through PATH too.
        let path = dir.path().display().to_string();
        let why = diagnose_exec_failure(&argv("tool.sh"), Some(&path));
        assert!(why.contains("permission denied"), "{why}");
    }

    #[test]
    fn a_directory_and_a_bad_interpreter_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let why = diagnose_exec_failure(&argv(&dir.path().display().to_string()), None);
        assert!(why.contains("is a directory"), "{why}");
        let script = dir.path().join("old.py");
        std::fs::write(&script, "#!/nonexistent/python9\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let why = diagnose_exec_failure(&argv(&script.display().to_string()), None);
        assert!(
            why.contains("interpreter \"/nonexistent/python9\""),
            "{why}"
        );
        let junk = dir.path().join("junk");
        std::fs::write(&junk, "not a program").unwrap();
        std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o755)).unwrap();
        let why = diagnose_exec_failure(&argv(&junk.display().to_string()), None);
        assert!(why.contains("exec format error"), "{why}");
    }

    #[test]
    fn spawn_reports_an_exec_failure_as_a_start_failure() {
        // portable-pty finds the file and forks; execve fails in the child (ENOENT
        // for the interpreter), which portable-pty cannot see.
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("old.py");
        std::fs::write(&script, "#!/nonexistent/python9\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let spec = SpawnSpec {
            program: argv(&script.display().to_string()),
            cwd: dir.path().to_owned(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            size: WindowSize::default(),
        };
        match spawn(&spec) {
            Err(SpawnError::Program { reason, .. }) => {
                assert!(reason.contains("/nonexistent/python9"), "{reason}")
            }
            Err(other) => panic!("unexpected error: {other}"),
            Ok(_) => panic!("spawn of a missing command succeeded"),
        }
    }

    #[test]
    fn spawn_of_a_real_program_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let spec = SpawnSpec {
            program: Program::Argv(vec!["sleep".into(), "5".into()]),
            cwd: dir.path().to_owned(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            size: WindowSize::default(),
        };
        let mut spawned = spawn(&spec).expect("sleep starts");
        assert_ne!(
            super::super::process::comm(spawned.pid).as_deref(),
            Some(SPAWN_THREAD_NAME)
        );
        spawned.child.kill().unwrap();
        spawned.child.wait().unwrap();
    }
}
