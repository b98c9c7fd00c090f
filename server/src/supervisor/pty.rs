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
//!   [`diagnose_exec_failure`] says why in plain words.
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
            SpawnError::Program {
                program: program.clone(),
                // portable-pty's errors are multi-line anyhow chains: keep one line.
                reason: format!("{e:#}").replace('\n', " "),
            }
        })?;
    // Trap: drop our slave now, or EOF never comes.
    drop(pair.slave);
    let master = pair.master;

    let pid = child
        .process_id()
        .and_then(|pid| i32::try_from(pid).ok())
        .ok_or_else(|| SpawnError::Pty("the child has no process id".into()))?;
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
/// never having exec'd (see the module doc).
pub fn diagnose_exec_failure(program: &Program, path_env: Option<&str>) -> String {
    let argv0 = match program {
        Program::LoginShell(shell) => shell.display().to_string(),
        Program::Argv(argv) => argv.first().cloned().unwrap_or_default(),
    };
    let resolved = if argv0.contains('/') {
        Some(PathBuf::from(&argv0))
    } else {
        path_env.and_then(|paths| {
            std::env::split_paths(paths)
                .map(|dir| dir.join(&argv0))
                .find(|candidate| candidate.is_file())
        })
    };
    let Some(path) = resolved else {
        return format!("exec of {argv0:?} failed: command not found");
    };
    match std::fs::read(&path) {
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
