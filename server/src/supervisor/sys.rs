//! The places where the supervisor needs `unsafe`, each with a local safety
//! argument: registering descriptors with tokio, and `posix_spawn(3)`.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::OwnedFd;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Registers an owned descriptor with tokio's reactor.
pub fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is a valid open descriptor, closed only when the
    // `AsyncFd` drops it, and its `as_raw_fd` never changes.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)
}

/// A program to start as the leader of a new session whose controlling terminal
/// is the PTY slave at `tty`.
pub struct SessionSpawn<'a> {
    /// The executable's path (no `PATH` search happens here).
    pub path: &'a CStr,
    /// `argv`, `argv[0]` included.
    pub argv: &'a [CString],
    /// The whole environment, as `KEY=value` strings.
    pub env: &'a [CString],
    /// The working directory.
    pub cwd: &'a CStr,
    /// The PTY slave's path (`/dev/pts/N`).
    pub tty: &'a CStr,
}

/// Starts `spec` with `posix_spawn(3)` and returns its pid.
///
/// glibc runs the child on the parent's memory until `execve` (`CLONE_VFORK`), so
/// the cost does not grow with the server's size, and reports a failed `execve`
/// as this call's error. In the child, in this order (glibc's `__spawni_child`):
/// signal dispositions reset to default and the mask cleared, `setsid()`, then the
/// file actions: `chdir(cwd)`, `open(tty, O_RDWR)` as descriptor 0 — a session
/// leader without a controlling terminal that opens a terminal without
/// `O_NOCTTY` acquires it (Linux `tty_open_proc_set_tty`, as `login_tty(3)` relies
/// on) — then 1 and 2 as copies of 0, and every descriptor from 3 up closed
/// (`closefrom`, glibc ≥ 2.34), whether or not it was `O_CLOEXEC`.
///
/// Errors: the `errno` of the step that failed (e.g. `ENOENT`, `EACCES`,
/// `ENOEXEC` from `execve`; `ENOENT` from `chdir`).
pub fn spawn_session(spec: &SessionSpawn<'_>) -> Result<i32, rustix::io::Errno> {
    let argv = null_terminated(spec.argv);
    let env = null_terminated(spec.env);
    let actions = FileActions::new()?;
    let attr = Attributes::new()?;
    // SAFETY: every pointer passed below is valid for the duration of the call:
    // `actions` and `attr` are initialised and live until the end of this
    // function (their Drop destroys them); `spec`'s strings are borrowed and
    // NUL-terminated; `argv` and `env` point into them and end with a null.
    unsafe {
        let actions_ptr = actions.0.get();
        check(libc::posix_spawn_file_actions_addchdir_np(
            actions_ptr,
            spec.cwd.as_ptr(),
        ))?;
        check(libc::posix_spawn_file_actions_addopen(
            actions_ptr,
            0,
            spec.tty.as_ptr(),
            libc::O_RDWR,
            0,
        ))?;
        check(libc::posix_spawn_file_actions_adddup2(actions_ptr, 0, 1))?;
        check(libc::posix_spawn_file_actions_adddup2(actions_ptr, 0, 2))?;
        check(libc::posix_spawn_file_actions_addclosefrom_np(
            actions_ptr,
            3,
        ))?;

        let attr_ptr = attr.0.get();
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        check(libc::posix_spawnattr_setsigdefault(attr_ptr, &all))?;
        check(libc::posix_spawnattr_setsigmask(attr_ptr, &none))?;
        let flags = libc::POSIX_SPAWN_SETSID
            | libc::POSIX_SPAWN_SETSIGDEF as libc::c_short
            | libc::POSIX_SPAWN_SETSIGMASK as libc::c_short;
        check(libc::posix_spawnattr_setflags(attr_ptr, flags))?;

        let mut pid: libc::pid_t = 0;
        check(libc::posix_spawn(
            &mut pid,
            spec.path.as_ptr(),
            actions_ptr,
            attr_ptr,
            argv.as_ptr(),
            env.as_ptr(),
        ))?;
        Ok(pid)
    }
}

/// `posix_spawn`'s functions return the error number instead of setting `errno`.
fn check(code: libc::c_int) -> Result<(), rustix::io::Errno> {
    if code == 0 {
        Ok(())
    } else {
        Err(rustix::io::Errno::from_raw_os_error(code))
    }
}

/// Pointers to `strings`, then a null, as `execve` takes them.
fn null_terminated(strings: &[CString]) -> Vec<*mut libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect()
}

/// An initialised `posix_spawn_file_actions_t`, destroyed on drop. Boxed: the
/// object must not move once initialised.
struct FileActions(Box<std::cell::UnsafeCell<libc::posix_spawn_file_actions_t>>);

impl FileActions {
    fn new() -> Result<Self, rustix::io::Errno> {
        // SAFETY: an all-zero `posix_spawn_file_actions_t` is valid storage for
        // `posix_spawn_file_actions_init`, which initialises it in place.
        let actions = Box::new(std::cell::UnsafeCell::new(unsafe { std::mem::zeroed() }));
        check(unsafe { libc::posix_spawn_file_actions_init(actions.get()) })?;
        Ok(FileActions(actions))
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised in `new` and destroyed only here.
        unsafe { libc::posix_spawn_file_actions_destroy(self.0.get()) };
    }
}

/// An initialised `posix_spawnattr_t`, destroyed on drop (boxed, like
/// [`FileActions`]).
struct Attributes(Box<std::cell::UnsafeCell<libc::posix_spawnattr_t>>);

impl Attributes {
    fn new() -> Result<Self, rustix::io::Errno> {
        // SAFETY: as for `FileActions::new`.
        let attr = Box::new(std::cell::UnsafeCell::new(unsafe { std::mem::zeroed() }));
        check(unsafe { libc::posix_spawnattr_init(attr.get()) })?;
        Ok(Attributes(attr))
    }
}

impl Drop for Attributes {
    fn drop(&mut self) {
        // SAFETY: initialised in `new` and destroyed only here.
        unsafe { libc::posix_spawnattr_destroy(self.0.get()) };
    }
}
