//! Opening a PTY and starting a worker's program in it.
//!
//! The PTY comes from `posix_openpt(3)` (`O_CLOEXEC`, so no other child inherits
//! it); the program is started with `posix_spawn(3)` as the leader of a new
//! session whose controlling terminal is the slave (see [`sys::spawn_session`]).
//! We used portable-pty before and measured why it had to go (BENCHMARKS.md):
//! its `fork` copies the page tables of the whole server and its child closes
//! every inherited descriptor one at a time, so spawn `n` workers cost O(n²) —
//! 14.9 s for 1000 shells. A failed `execve` there looked like success too.
//!
//! - **The program is found in the child's `PATH`**, not the server's, the way
//!   `execvp(3)` would search it, and a failure is explained in plain words
//!   ([`diagnose_exec_failure`]): `posix_spawn` reports `execve`'s error to us.
//! - **The slave is opened only in the child.** The server holds no slave
//!   descriptor, so reading the master reports EOF/EIO once the session's last
//!   process is gone.
//! - **The working directory is checked first**, to say which of missing / not
//!   a directory / permission denied it is.
//! - **Reads never block a thread**: the master is duplicated, set `O_NONBLOCK`,
//!   and registered with tokio ([`tokio::io::unix::AsyncFd`]), so 1000 PTYs cost no
//!   thread each. Child exit is watched through a pidfd the same way instead of a
//!   thread blocked in `wait`.
//! - **Keep the master alive until reading is done**, and close it last: closing
//!   it hangs up the terminal (SIGHUP to the session).

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use rustix::process::{Pid, WaitOptions};

use super::exit::ExitInfo;
use super::sys;

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

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    /// This shell as a login shell (argv[0] `-bash`), like a terminal emulator.
    LoginShell(PathBuf),
    /// argv; `argv[0]` is looked up in the child's `PATH` when it contains no `/`.
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
/// for the order); the process is reaped with [`Spawned::try_reap`].
#[derive(Debug)]
pub struct Spawned {
    /// The PTY's master side: resize, foreground group. Closed last.
    pub master: OwnedFd,
    /// The child's pid (= its session id and process group id).
    pub pid: i32,
    /// A duplicate of the master descriptor in non-blocking mode, for reads and writes.
    pub io_fd: OwnedFd,
    /// A pidfd of the child: readable once it has exited.
    pub exit_fd: OwnedFd,
    /// The program that was started.
    pub program: Program,
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

impl Spawned {
    /// The PTY's foreground process group (`tcgetpgrp` on the master), if any.
    pub fn foreground_group(&self) -> Option<i32> {
        rustix::termios::tcgetpgrp(&self.master)
            .ok()
            .map(Pid::as_raw_nonzero)
            .map(|pid| pid.get())
    }

    /// Reaps the child if it has exited (`waitpid(pid, WNOHANG)`): `Ok(None)`
    /// while it runs. Errors: `waitpid` failed (e.g. `ECHILD`: reaped elsewhere).
    pub fn try_reap(&self) -> std::io::Result<Option<ExitInfo>> {
        let pid = Pid::from_raw(self.pid)
            .ok_or_else(|| std::io::Error::other("the child has no process id"))?;
        Ok(rustix::process::waitpid(Some(pid), WaitOptions::NOHANG)?
            .map(|(_, status)| ExitInfo::from_wait_status(status.as_raw())))
    }
}

/// Opens a PTY of `spec.size` and starts `spec.program` in it, as the leader of a
/// new session with the PTY as its controlling terminal. Blocking (a `chdir` check,
/// a `PATH` search and `posix_spawn`): call it on the blocking pool.
///
/// Errors: [`SpawnError::WorkDir`] for a working directory that is missing or not
/// a directory; [`SpawnError::Program`] when the program cannot be found or
/// `execve` fails, with the reason in plain words; [`SpawnError::Pty`] when the
/// system cannot open a PTY.
pub fn spawn(spec: &SpawnSpec) -> Result<Spawned, SpawnError> {
    check_work_dir(&spec.cwd)?;
    let program = spec.program.describe();
    let path_env = spec
        .env
        .iter()
        .find(|(key, _)| key == "PATH")
        .map(|(_, value)| value.as_str());
    let refuse = |reason: String| SpawnError::Program {
        program: program.clone(),
        reason,
    };
    let (path, argv) = match &spec.program {
        Program::LoginShell(shell) => {
            let name = shell
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|| shell.display().to_string());
            (shell.clone(), vec![format!("-{name}")])
        }
        Program::Argv(argv) => {
            let Some(first) = argv.first().filter(|first| !first.is_empty()) else {
                return Err(refuse("the command is empty".into()));
            };
            let path = find_program(first, path_env, &spec.cwd).ok_or_else(|| {
                refuse(diagnose_exec_failure(
                    &spec.program,
                    path_env,
                    &spec.cwd,
                    None,
                ))
            })?;
            (path, argv.clone())
        }
    };
    let c_string = |what: &str, bytes: &[u8]| {
        CString::new(bytes).map_err(|_| refuse(format!("{what} contains a NUL byte")))
    };
    let c_path = c_string("the program path", path.as_os_str().as_bytes())?;
    let c_argv = argv
        .iter()
        .map(|arg| c_string("an argument", arg.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let c_env = spec
        .env
        .iter()
        .map(|(key, value)| c_string("the environment", format!("{key}={value}").as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let c_cwd = CString::new(spec.cwd.as_os_str().as_bytes()).map_err(|_| SpawnError::WorkDir {
        path: spec.cwd.clone(),
        reason: "contains a NUL byte".into(),
    })?;

    let pty = |step: &str, err: rustix::io::Errno| SpawnError::Pty(format!("{step}: {err}"));
    let master = rustix::pty::openpt(
        rustix::pty::OpenptFlags::RDWR
            | rustix::pty::OpenptFlags::NOCTTY
            | rustix::pty::OpenptFlags::CLOEXEC,
    )
    .map_err(|e| pty("posix_openpt", e))?;
    rustix::pty::grantpt(&master).map_err(|e| pty("grantpt", e))?;
    rustix::pty::unlockpt(&master).map_err(|e| pty("unlockpt", e))?;
    let tty = rustix::pty::ptsname(&master, Vec::new()).map_err(|e| pty("ptsname", e))?;
    rustix::termios::tcsetwinsize(
        &master,
        rustix::termios::Winsize {
            ws_row: spec.size.rows,
            ws_col: spec.size.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .map_err(|e| pty("setting the window size", e))?;

    let pid = sys::spawn_session(&sys::SessionSpawn {
        path: &c_path,
        argv: &c_argv,
        env: &c_env,
        cwd: &c_cwd,
        tty: &tty,
    })
    .map_err(|errno| match check_work_dir(&spec.cwd) {
        // chdir failed: the directory went away (or changed) after the check.
        Err(dir) => dir,
        Ok(()) => refuse(diagnose_exec_failure(
            &spec.program,
            path_env,
            &spec.cwd,
            Some(errno),
        )),
    })?;

    let finish = || -> Result<(OwnedFd, OwnedFd), SpawnError> {
        let exit_fd = rustix::process::pidfd_open(
            Pid::from_raw(pid).ok_or_else(|| SpawnError::Pty("pid 0".into()))?,
            rustix::process::PidfdFlags::empty(),
        )
        .map_err(|e| SpawnError::Pty(format!("pidfd_open({pid}): {e}")))?;
        let io_fd = master
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| SpawnError::Pty(format!("dup of the PTY master: {e}")))?;
        let flags = fcntl(&io_fd, FcntlArg::F_GETFL).map_err(|e| SpawnError::Pty(e.to_string()))?;
        fcntl(
            &io_fd,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        )
        .map_err(|e| SpawnError::Pty(format!("O_NONBLOCK on the PTY master: {e}")))?;
        Ok((io_fd, exit_fd))
    };
    match finish() {
        Ok((io_fd, exit_fd)) => Ok(Spawned {
            master,
            pid,
            io_fd,
            exit_fd,
            program: spec.program.clone(),
        }),
        Err(err) => {
            // Nothing will watch this child: end and reap it now.
            if let Some(child) = Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(child, rustix::process::Signal::KILL);
                let _ = rustix::process::waitpid(Some(child), WaitOptions::empty());
            }
            Err(err)
        }
    }
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

/// The paths `execvp(3)` tries for `argv0` in a child whose working directory is
/// `cwd`: the name itself when it contains a `/`, else the name in each directory
/// of `path_env`, in order. A relative result (a relative name with a `/`, a
/// relative `PATH` entry, or an empty one, which POSIX reads as the current
/// directory) is taken from `cwd`, as the child resolves it after its `chdir`, not
/// from the server's own working directory.
fn candidates(argv0: &str, path_env: Option<&str>, cwd: &Path) -> Vec<PathBuf> {
    if argv0.contains('/') {
        return vec![cwd.join(argv0)];
    }
    path_env
        .map(|paths| {
            std::env::split_paths(paths)
                .map(|dir| cwd.join(dir).join(argv0))
                .collect()
        })
        .unwrap_or_default()
}

/// The executable `argv0` names in a child whose working directory is `cwd`, as
/// `execvp(3)` finds it there: a name containing `/` is taken as it is; any other
/// is the first regular, executable file of that name in `path_env`'s
/// directories. Relative paths are resolved from `cwd` (see [`candidates`]), so
/// the result is absolute when `cwd` is. `None`: nothing in `PATH` would run.
pub(crate) fn find_program(argv0: &str, path_env: Option<&str>, cwd: &Path) -> Option<PathBuf> {
    if argv0.contains('/') {
        return Some(cwd.join(argv0));
    }
    candidates(argv0, path_env, cwd)
        .into_iter()
        .find(|candidate| {
            std::fs::metadata(candidate).is_ok_and(|meta| meta.is_file())
                && nix::unistd::access(candidate.as_path(), nix::unistd::AccessFlags::X_OK).is_ok()
        })
}

/// Explains in plain words why `program` could not be started: retraces
/// `execvp(3)` — search `PATH` for a name without `/`, skipping candidates that
/// cannot be executed — and names the first reason that applies: not found, a
/// directory, permission denied (no execute permission), a `#!` interpreter that
/// does not exist, or a file that is neither a binary nor a script. `errno` is
/// what `execve` returned, when it was tried; it is named when nothing more
/// precise explains the failure. Relative paths are looked at from `cwd`, the
/// child's working directory.
pub fn diagnose_exec_failure(
    program: &Program,
    path_env: Option<&str>,
    cwd: &Path,
    errno: Option<rustix::io::Errno>,
) -> String {
    let argv0 = match program {
        Program::LoginShell(shell) => shell.display().to_string(),
        Program::Argv(argv) => argv.first().cloned().unwrap_or_default(),
    };
    let candidates = candidates(&argv0, path_env, cwd);
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
        return explain_file(path, errno);
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

/// Why an existing, executable file would not run (its first 256 bytes tell).
fn explain_file(path: &Path, errno: Option<rustix::io::Errno>) -> String {
    use std::io::Read;
    let mut head = Vec::with_capacity(256);
    let read = std::fs::File::open(path).and_then(|file| file.take(256).read_to_end(&mut head));
    if let Err(err) = read {
        return format!("exec of {} failed: {err}", path.display());
    }
    if let Some(line) = head.strip_prefix(b"#!") {
        let line = String::from_utf8_lossy(line.split(|b| *b == b'\n').next().unwrap_or_default());
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
    } else if !head.starts_with(b"\x7fELF") {
        return format!(
            "exec of {} failed: exec format error (not a binary and no #! line)",
            path.display()
        );
    }
    match errno {
        Some(errno) => format!("exec of {} failed: {errno}", path.display()),
        None => format!("exec of {} failed", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::PermissionsExt;

    fn argv(program: &str) -> Program {
        Program::Argv(vec![program.to_owned()])
    }

    #[test]
    fn a_missing_command_is_not_found() {
        let why = diagnose_exec_failure(
            &argv("corral-no-such-command"),
            Some("/usr/bin:/bin"),
            Path::new("/"),
            None,
        );
        assert!(why.contains("command not found"), "{why}");
        let why = diagnose_exec_failure(
            &argv("/nonexistent/tool"),
            Some("/usr/bin"),
            Path::new("/"),
            None,
        );
        assert!(why.contains("no such file"), "{why}");
    }

    #[test]
    fn a_file_without_execute_permission_is_denied() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("tool.sh");
        std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
        let why = diagnose_exec_failure(
            &argv(&script.display().to_string()),
            None,
            Path::new("/"),
            None,
        );
        assert!(why.contains("permission denied"), "{why}");
        // Found through PATH too.
        let path = dir.path().display().to_string();
        let why = diagnose_exec_failure(&argv("tool.sh"), Some(&path), Path::new("/"), None);
        assert!(why.contains("permission denied"), "{why}");
    }

    #[test]
    fn a_directory_and_a_bad_interpreter_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let why = diagnose_exec_failure(
            &argv(&dir.path().display().to_string()),
            None,
            Path::new("/"),
            None,
        );
        assert!(why.contains("is a directory"), "{why}");
        let script = dir.path().join("old.py");
        std::fs::write(&script, "#!/nonexistent/python9\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let why = diagnose_exec_failure(
            &argv(&script.display().to_string()),
            None,
            Path::new("/"),
            None,
        );
        assert!(
            why.contains("interpreter \"/nonexistent/python9\""),
            "{why}"
        );
        let junk = dir.path().join("junk");
        std::fs::write(&junk, "not a program").unwrap();
        std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o755)).unwrap();
        let why = diagnose_exec_failure(
            &argv(&junk.display().to_string()),
            None,
            Path::new("/"),
            None,
        );
        assert!(why.contains("exec format error"), "{why}");
    }

    #[test]
    fn spawn_reports_an_exec_failure_as_a_start_failure() {
        // The file exists and is executable; execve fails on its interpreter
        // (ENOENT), which posix_spawn reports.
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

    /// Spawns `argv` in a fresh directory; returns the directory too.
    fn spawn_in_temp(program: Program) -> (tempfile::TempDir, Spawned) {
        let dir = tempfile::tempdir().unwrap();
        let spec = SpawnSpec {
            program,
            cwd: dir.path().to_owned(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            size: WindowSize {
                rows: 33,
                cols: 101,
            },
        };
        let spawned = spawn(&spec).expect("the program starts");
        (dir, spawned)
    }

    /// Waits up to 5 s for `check` to hold.
    fn eventually(what: &str, check: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !check() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Kills the child and reaps it through `try_reap`.
    fn kill_and_reap(spawned: &Spawned) -> ExitInfo {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(spawned.pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        loop {
            if let Some(exit) = spawned.try_reap().unwrap() {
                return exit;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn spawn_starts_a_session_leader_on_its_pty() {
        // A descriptor the server leaks without O_CLOEXEC must not reach workers.
        let (leak_read, leak_write) = nix::unistd::pipe().unwrap();
        let (dir, spawned) = spawn_in_temp(Program::Argv(vec!["sleep".into(), "30".into()]));
        let pid = spawned.pid;
        // posix_spawn returns once execve has replaced the memory; the kernel
        // sets the name and argv a moment later.
        eventually("the name of the program", || {
            super::super::process::comm(pid).as_deref() == Some("sleep")
        });
        // Its own session and group, with the PTY as controlling terminal and
        // itself in the foreground.
        let nix_pid = nix::unistd::Pid::from_raw(pid);
        assert_eq!(nix::unistd::getsid(Some(nix_pid)).unwrap(), nix_pid);
        assert_eq!(spawned.foreground_group(), Some(pid));
        let size = rustix::termios::tcgetwinsize(&spawned.master).unwrap();
        assert_eq!((size.ws_row, size.ws_col), (33, 101));
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
            dir.path().canonicalize().unwrap()
        );
        // The leaked pipe never reaches the child. (Right after execve the
        // dynamic loader may still hold a library open as fd 3 for a moment, so
        // wait for the descriptors to settle; a leaked one would stay.)
        let pipe = std::fs::read_link(format!("/proc/self/fd/{}", leak_read.as_raw_fd())).unwrap();
        let fds = || -> Vec<PathBuf> {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|dir| {
                    dir.flatten()
                        .filter_map(|e| std::fs::read_link(e.path()).ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        assert!(!fds().contains(&pipe), "the pipe leaked: {:?}", fds());
        eventually("only stdin, stdout and stderr open in the child", || {
            fds().len() == 3
        });
        let tty = std::fs::read_link(format!("/proc/{pid}/fd/0")).unwrap();
        assert!(tty.starts_with("/dev/pts/"), "{}", tty.display());
        drop((leak_read, leak_write));

        assert_eq!(spawned.try_reap().unwrap(), None, "still running");
        assert_eq!(kill_and_reap(&spawned).signal, Some(libc::SIGKILL));
    }

    #[test]
    fn relative_path_entries_are_taken_from_the_workers_directory() {
        // execvp in the child resolves `bin` (and an empty entry, the current
        // directory) after its chdir: from the worker's directory, not from the
        // server's (the test's working directory has neither program).
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        for (path, marker) in [
            ("bin/corral-hello", "from-bin"),
            ("corral-here", "from-dot"),
        ] {
            let script = dir.path().join(path);
            std::fs::write(
                &script,
                format!("#!/bin/sh\ntouch {marker}\nexec sleep 30\n"),
            )
            .unwrap();
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let cases = [
            ("corral-hello", "bin:/usr/bin:/bin", "from-bin"),
            ("corral-here", ":/usr/bin:/bin", "from-dot"),
            ("./bin/corral-hello", "/usr/bin:/bin", "from-bin"),
        ];
        for (program, path, marker) in cases {
            let _ = std::fs::remove_file(dir.path().join(marker));
            let spec = SpawnSpec {
                program: argv(program),
                cwd: dir.path().to_owned(),
                env: vec![("PATH".into(), path.into())],
                size: WindowSize::default(),
            };
            let spawned =
                spawn(&spec).unwrap_or_else(|e| panic!("{program} with PATH={path}: {e}"));
            eventually(marker, || dir.path().join(marker).exists());
            kill_and_reap(&spawned);
        }
        // A failure names the path in the worker's directory.
        let why = diagnose_exec_failure(&argv("corral-hello"), Some("lib"), dir.path(), None);
        assert!(why.contains("command not found in PATH"), "{why}");
        std::fs::set_permissions(
            dir.path().join("bin/corral-hello"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let why = diagnose_exec_failure(&argv("corral-hello"), Some("bin"), dir.path(), None);
        let expected = dir.path().join("bin/corral-hello");
        assert!(
            why.contains(&expected.display().to_string()) && why.contains("permission denied"),
            "{why}"
        );
    }

    #[test]
    fn a_login_shell_gets_a_dash_in_argv0() {
        let (_dir, spawned) = spawn_in_temp(Program::LoginShell("/bin/sh".into()));
        let cmdline = format!("/proc/{}/cmdline", spawned.pid);
        eventually("argv of the shell", || {
            std::fs::read(&cmdline).is_ok_and(|argv| argv == b"-sh\0")
        });
        kill_and_reap(&spawned);
    }

    #[test]
    fn spawn_refuses_a_missing_program_and_working_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = SpawnSpec {
            program: argv("corral-no-such-command"),
            cwd: dir.path().to_owned(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            size: WindowSize::default(),
        };
        match spawn(&spec) {
            Err(SpawnError::Program { reason, .. }) => {
                assert!(reason.contains("command not found in PATH"), "{reason}")
            }
            other => panic!("unexpected: {other:?}"),
        }
        // The child's PATH is searched, not the server's.
        spec.program = argv("sleep");
        spec.env = vec![("PATH".into(), dir.path().display().to_string())];
        assert!(matches!(spawn(&spec), Err(SpawnError::Program { .. })));
        spec.env = vec![("PATH".into(), "/usr/bin:/bin".into())];
        spec.cwd = dir.path().join("gone");
        match spawn(&spec) {
            Err(SpawnError::WorkDir { reason, .. }) => {
                assert!(reason.contains("does not exist"), "{reason}")
            }
            other => panic!("unexpected: {other:?}"),
        }
    }
}
