//! Process trees of workers, read from `/proc` and signalled with `kill(2)`.
//!
//! A worker's main process is the leader of its own session (`posix_spawn` with
//! `POSIX_SPAWN_SETSID`, the PTY as its controlling terminal; see `pty.rs`), so
//! "every process of the worker" is every process whose session id is the
//! leader's pid. Shell job control puts each job in its own process group, so
//! signalling the leader's process group alone misses the jobs: these functions
//! always cover every group of the session.
//!
//! Everything here does blocking syscalls and reads `/proc`; callers run it on
//! tokio's blocking pool.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// One process of a worker's PTY session, from `/proc/<pid>/stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub pid: i32,
    pub pgid: i32,
    /// The state letter (`R`, `S`, `T`, `Z`, ...).
    pub state: char,
    /// Field 22: start time in clock ticks after boot.
    pub start_ticks: u64,
}

/// Every live process whose session id is `sid` (zombies included).
///
/// Lists the pids in `/proc` and asks each one's session with `getsid(2)`, one
/// syscall that opens nothing; only members have their `/proc/<pid>/stat` read
/// (`openat` + `read` + `close`, into a stack buffer, parsed up to field 22).
/// This runs at every stop (twice): reading the stat file of every process on
/// the machine instead took about a fifth of corrald's CPU in `corral-bench
/// lifecycle` (procfs's `do_task_stat`, and a dentry per file; BENCHMARKS.md).
/// For the same reason it does not go through `procfs`'s `Process`, which also
/// opens each process's directory and parses all 52 fields into owned values.
///
/// The kernel does not reuse a pid while a session or process group still bears
/// it, so every process whose session is `sid` belongs to the leader's session.
pub fn session_members(sid: i32) -> Vec<Member> {
    use rustix::fd::AsFd;
    use rustix::fs::{CWD, Dir, Mode, OFlags, openat};
    let Ok(proc_dir) = openat(
        CWD,
        "/proc",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return Vec::new();
    };
    let Ok(mut entries) = Dir::read_from(&proc_dir) else {
        return Vec::new();
    };
    let mut buffer = [0u8; STAT_BUFFER];
    let mut members = Vec::new();
    while let Some(Ok(entry)) = entries.read() {
        let Some(pid) = std::str::from_utf8(entry.file_name().to_bytes())
            .ok()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        // ESRCH: gone since the listing. The stat file says the session again:
        // the pid may have been reused in between.
        if nix::unistd::getsid(Some(Pid::from_raw(pid))) != Ok(Pid::from_raw(sid)) {
            continue;
        }
        let path = format!("{pid}/stat");
        if let Some(stat) = read_stat(proc_dir.as_fd(), &path, pid, &mut buffer)
            && stat.session == sid
        {
            members.push(stat.member);
        }
    }
    members
}

/// The stat of one process, if it exists.
pub fn member(pid: i32) -> Option<Member> {
    let path = format!("/proc/{pid}/stat");
    read_stat(rustix::fs::CWD, &path, pid, &mut [0u8; STAT_BUFFER]).map(|stat| stat.member)
}

/// Room for the fields [`parse_stat`] needs: they come within the first 22 fields
/// (at most ~500 bytes with a 64-byte kernel-thread name); the rest of the line is
/// not read.
const STAT_BUFFER: usize = 1024;

/// A process's [`Member`] fields and its session id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StatFields {
    member: Member,
    session: i32,
}

/// Reads the stat file of `pid` at `path` (relative to `dir`) into `buffer` and
/// parses it; `None` when the process is gone (or unreadable).
fn read_stat(
    dir: rustix::fd::BorrowedFd<'_>,
    path: &str,
    pid: i32,
    buffer: &mut [u8; STAT_BUFFER],
) -> Option<StatFields> {
    use rustix::fs::{Mode, OFlags, openat};
    let file = openat(dir, path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    // procfs fills a read of the stat file in one go, from offset 0.
    let read = rustix::io::read(&file, &mut buffer[..]).ok()?;
    parse_stat(pid, &buffer[..read])
}

/// Parses the start of a `/proc/<pid>/stat` line (proc(5)): `pid (comm) state ppid
/// pgrp session … starttime …`. The comm may hold spaces and parentheses, so the
/// fields are counted after the last `)`.
fn parse_stat(pid: i32, line: &[u8]) -> Option<StatFields> {
    let close = line.iter().rposition(|b| *b == b')')?;
    let mut fields = line.get(close + 2..)?.split(|b| *b == b' ');
    let number =
        |field: Option<&[u8]>| -> Option<i64> { std::str::from_utf8(field?).ok()?.parse().ok() };
    // Field 3 (state) is the first after the comm.
    let state = *fields.next()?.first()? as char;
    let _ppid = fields.next()?;
    let pgid = i32::try_from(number(fields.next())?).ok()?;
    let session = i32::try_from(number(fields.next())?).ok()?;
    // Fields 7 to 21, then 22: starttime.
    let start_ticks = u64::try_from(number(fields.nth(15))?).ok()?;
    Some(StatFields {
        member: Member {
            pid,
            pgid,
            state,
            start_ticks,
        },
        session,
    })
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks after
/// boot. Together with the boot id it identifies a process across pid reuse.
pub fn start_ticks(pid: i32) -> Option<u64> {
    member(pid).map(|m| m.start_ticks)
}

/// `/proc/sys/kernel/random/boot_id`: changes at every boot.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The comm (`/proc/<pid>/stat` field 2) of a process, zombies included.
pub fn comm(pid: i32) -> Option<String> {
    Some(procfs::process::Process::new(pid).ok()?.stat().ok()?.comm)
}

fn send_group(pgid: i32, signal: Signal) {
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(err) => tracing::warn!(pgid, ?signal, %err, "killpg failed"),
    }
}

fn send_pid(pid: i32, signal: Signal) {
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(err) => tracing::warn!(pid, ?signal, %err, "kill failed"),
    }
}

/// The process groups of the session led by `leader`: the leader's own group first,
/// then the terminal's foreground group, then the others in ascending order.
fn groups_in_order(leader: i32, foreground: Option<i32>, members: &[Member]) -> Vec<i32> {
    let mut order = vec![leader];
    if let Some(fg) = foreground.filter(|fg| *fg > 0 && *fg != leader) {
        order.push(fg);
    }
    let rest: BTreeSet<i32> = members
        .iter()
        .map(|m| m.pgid)
        .filter(|pgid| !order.contains(pgid))
        .collect();
    order.extend(rest);
    order
}

/// How long [`pause`] waits for a process group to reach the stopped state before
/// it moves on (a process in uninterruptible sleep stops only when it wakes).
const STOP_WAIT: Duration = Duration::from_secs(2);
/// Rounds of [`pause`] signalling the processes that are still not stopped (e.g.
/// forked while the first round was sent).
const STRAGGLER_ROUNDS: usize = 50;

/// True for the states of a process that is stopped (`T`, or `t` under a tracer)
/// or can no longer run (`Z`ombie, `X` dead).
fn is_stopped_or_gone(state: char) -> bool {
    matches!(state, 'T' | 't' | 'Z' | 'X')
}

/// Waits until every process of group `pgid` in the session led by `leader` is
/// stopped (or gone), at most [`STOP_WAIT`]. Returns false on timeout.
fn wait_group_stopped(leader: i32, pgid: i32) -> bool {
    let deadline = Instant::now() + STOP_WAIT;
    loop {
        let running = session_members(leader)
            .iter()
            .any(|m| m.pgid == pgid && !is_stopped_or_gone(m.state));
        if !running {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Suspends every process of the session led by `leader` with SIGSTOP, and
/// returns the processes it stopped (every member stopped at the end that was not
/// stopped before: a job the user suspended with ctrl-Z stays the user's
/// business, while a child forked during the pause — between a scan and the
/// SIGSTOP to its group — is included, or [`resume`] would leave it stopped and
/// its parent waiting on it forever).
///
/// Order matters for an interactive shell: its foreground job runs in its own
/// process group (`tcgetpgrp`), and a shell that sees its job stop prints
/// "Stopped" and takes the terminal back. So the leader's group (the shell) is
/// stopped first, and only once `/proc` shows it stopped (a SIGSTOP takes effect
/// when the target next runs, and a shell woken in `wait4` could otherwise still
/// see its child stop) is the foreground job stopped, then every other group.
/// Processes still running after that (forked meanwhile, or moved between groups)
/// are stopped one by one until `/proc/<pid>/stat` shows every member in state `T`.
pub fn pause(leader: i32, foreground: Option<i32>) -> Vec<Member> {
    let already: Vec<Member> = session_members(leader)
        .into_iter()
        .filter(|m| is_stopped_or_gone(m.state))
        .collect();
    send_group(leader, Signal::SIGSTOP);
    if !wait_group_stopped(leader, leader) {
        tracing::warn!(leader, "the worker's process group did not stop in time");
    }
    let members = session_members(leader);
    for pgid in groups_in_order(leader, foreground, &members)
        .into_iter()
        .skip(1)
    {
        send_group(pgid, Signal::SIGSTOP);
    }
    let mut all_stopped = false;
    for _ in 0..STRAGGLER_ROUNDS {
        let running: Vec<Member> = session_members(leader)
            .into_iter()
            .filter(|m| !is_stopped_or_gone(m.state))
            .collect();
        if running.is_empty() {
            all_stopped = true;
            break;
        }
        for member in running {
            send_pid(member.pid, Signal::SIGSTOP);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    if !all_stopped {
        tracing::warn!(leader, "some processes of the worker did not stop");
    }
    let was_stopped = |m: &Member| {
        already
            .iter()
            .any(|a| a.pid == m.pid && a.start_ticks == m.start_ticks)
    };
    session_members(leader)
        .into_iter()
        .filter(|m| m.state != 'Z' && m.state != 'X' && !was_stopped(m))
        .collect()
}

/// Continues what [`pause`] stopped, in the reverse order: the jobs first (the
/// foreground job before the others), the shell's group last. (SIGCONT clears a
/// stopped child's pending stop report at once, in the sender's `kill`, so the
/// shell resumes to find its job running and prints nothing.) A process is
/// continued only if it is still the one that was stopped (same start time: pids
/// are reused). With an empty `stopped` list (nothing recorded), every group of
/// the session is continued.
pub fn resume(leader: i32, foreground: Option<i32>, stopped: &[Member]) {
    if stopped.is_empty() {
        let members = session_members(leader);
        let mut order = groups_in_order(leader, foreground, &members);
        order.reverse();
        for pgid in order {
            send_group(pgid, Signal::SIGCONT);
        }
        return;
    }
    let rank = |m: &Member| {
        if m.pgid == leader {
            2
        } else if Some(m.pgid) == foreground {
            0
        } else {
            1
        }
    };
    let mut order: Vec<&Member> = stopped.iter().collect();
    order.sort_by_key(|m| (rank(m), m.pid));
    for target in order {
        if member(target.pid).is_some_and(|now| now.start_ticks == target.start_ticks) {
            send_pid(target.pid, Signal::SIGCONT);
        }
    }
}

/// Asks every process of the session led by `leader` to end: SIGCONT (a stopped
/// process cannot act on a signal), then SIGHUP (what a closed terminal sends; an
/// interactive shell ignores SIGTERM but not SIGHUP), then SIGTERM, to every group.
pub fn terminate(leader: i32, foreground: Option<i32>) {
    let members = session_members(leader);
    for pgid in groups_in_order(leader, foreground, &members) {
        send_group(pgid, Signal::SIGCONT);
        send_group(pgid, Signal::SIGHUP);
        send_group(pgid, Signal::SIGTERM);
    }
}

/// SIGKILL to every process of the session led by `leader`. Returns how many
/// processes were signalled.
pub fn kill_all(leader: i32) -> usize {
    let members = session_members(leader);
    let mut groups: BTreeSet<i32> = members.iter().map(|m| m.pgid).collect();
    groups.insert(leader);
    for pgid in &groups {
        send_group(*pgid, Signal::SIGKILL);
    }
    for member in &members {
        send_pid(member.pid, Signal::SIGKILL);
    }
    members.iter().filter(|m| m.state != 'Z').count()
}

/// Sends `signal` to one process group.
pub fn signal_group(pgid: i32, signal: Signal) {
    send_group(pgid, signal);
}

/// Sends `signal` to every process group of the session led by `leader`.
pub fn signal_session(leader: i32, signal: Signal) {
    let members = session_members(leader);
    for pgid in groups_in_order(leader, None, &members) {
        send_group(pgid, signal);
    }
}

/// True while any process of the session led by `leader` is alive (not a zombie).
pub fn session_alive(leader: i32) -> bool {
    session_members(leader).iter().any(|m| m.state != 'Z')
}

/// An identifier of this machine that survives reboots: `/etc/machine-id` (or
/// `/var/lib/dbus/machine-id`), else the host name.
pub fn machine_id() -> String {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|id| id.trim().to_owned())
        .find(|id| !id.is_empty())
        .unwrap_or_else(|| format!("host:{}", hostname()))
}

/// The host name (`/proc/sys/kernel/hostname`), or empty.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}

/// True when the process `pid` exists (zombies excluded) and started at
/// `start_ticks` (field 22 of its stat): the same process, not one that reused
/// its pid.
pub fn is_same_process(pid: i32, start_ticks: u64) -> bool {
    member(pid).is_some_and(|m| m.start_ticks == start_ticks && m.state != 'Z')
}

/// SIGKILL to process `pid` only if it is the process that started at
/// `start_ticks`. The check and the signal go through a pidfd: once the pidfd is
/// open it names that process for good, so a pid reused between the check and the
/// signal cannot be hit. Returns true when the signal was sent.
pub fn kill_verified(pid: i32, start_ticks: u64) -> bool {
    use rustix::process::{Pid as RPid, PidfdFlags, pidfd_open, pidfd_send_signal};
    let Some(raw) = RPid::from_raw(pid) else {
        return false;
    };
    let Ok(pidfd) = pidfd_open(raw, PidfdFlags::empty()) else {
        return false;
    };
    // The pidfd refers to whatever process had `pid` when it was opened; check
    // that this is the one we mean, then signal through the pidfd.
    if !is_same_process(pid, start_ticks) {
        return false;
    }
    pidfd_send_signal(&pidfd, rustix::process::Signal::KILL).is_ok()
}

/// Reaps what is left of a worker of a previous server run: the process tree of
/// the PTY session led by `leader`, recorded as having started at
/// `leader_start_ticks`.
///
/// - `leader` alive with another start time: the pid was reused by an unrelated
///   process; nothing is signalled.
/// - `leader` alive with that start time: it and every process of its session
///   are killed (SIGKILL).
/// - `leader` gone: the processes whose session id is still `leader` are the
///   leftovers of that session (Linux does not hand out a pid again while it is
///   in use as a session or process group id), and they are killed.
///
/// Each process is checked and signalled through a pidfd ([`kill_verified`]);
/// processes that started before the leader are never touched. Repeats while
/// members keep appearing (a process forking while it is being killed), a few
/// times at most. Returns how many processes were signalled.
pub fn reap_leftovers(leader: i32, leader_start_ticks: u64) -> usize {
    if let Some(found) = member(leader)
        && found.start_ticks != leader_start_ticks
    {
        return 0;
    }
    let mut killed = 0;
    for _ in 0..5 {
        let members: Vec<Member> = session_members(leader)
            .into_iter()
            .filter(|m| m.state != 'Z' && m.start_ticks >= leader_start_ticks)
            .collect();
        if members.is_empty() {
            break;
        }
        for m in members {
            if kill_verified(m.pid, m.start_ticks) {
                killed += 1;
            }
        }
    }
    killed
}

/// A live process started by a Corral worker, found by its environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tagged {
    pub pid: i32,
    pub start_ticks: u64,
    /// `CORRAL_SESSION_ID` of its environment.
    pub session_id: String,
    /// `CORRAL_SERVER_ID` of its environment: the server process that spawned
    /// the worker it descends from.
    pub server_id: String,
}

/// Every live process (readable by this user) whose initial environment holds
/// both `CORRAL_SESSION_ID` and `CORRAL_SERVER_ID`: the processes of Corral
/// workers and their descendants, including those that left the worker's PTY
/// session (`setsid`, daemons) or were spawned just before a crash and never
/// recorded.
pub fn tagged_processes() -> Vec<Tagged> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    all.filter_map(Result::ok)
        .filter(|process| process.pid != me)
        .filter_map(|process| {
            let environ = process.environ().ok()?;
            let session_id = environ.get(std::ffi::OsStr::new("CORRAL_SESSION_ID"))?;
            let server_id = environ.get(std::ffi::OsStr::new("CORRAL_SERVER_ID"))?;
            let stat = process.stat().ok()?;
            (stat.state != 'Z').then(|| Tagged {
                pid: stat.pid,
                start_ticks: stat.starttime,
                session_id: session_id.to_string_lossy().into_owned(),
                server_id: server_id.to_string_lossy().into_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_ordered_leader_foreground_rest() {
        let members = [
            Member {
                pid: 10,
                pgid: 10,
                state: 'S',
                start_ticks: 0,
            },
            Member {
                pid: 30,
                pgid: 30,
                state: 'S',
                start_ticks: 0,
            },
            Member {
                pid: 20,
                pgid: 20,
                state: 'R',
                start_ticks: 0,
            },
            Member {
                pid: 21,
                pgid: 20,
                state: 'R',
                start_ticks: 0,
            },
        ];
        assert_eq!(groups_in_order(10, Some(30), &members), vec![10, 30, 20]);
        assert_eq!(groups_in_order(10, Some(10), &members), vec![10, 20, 30]);
        assert_eq!(groups_in_order(10, None, &members), vec![10, 20, 30]);
    }

    /// A child in its own session (like a PTY worker), with a grandchild.
    fn spawn_session() -> std::process::Child {
        std::process::Command::new("setsid")
            .args(["sh", "-c", "sleep 600 & sleep 600"])
            .spawn()
            .expect("setsid sh")
    }

    fn wait_until(what: &str, check: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !check() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[test]
    fn a_reused_pid_is_not_signalled() {
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let ticks = start_ticks(pid).unwrap();
        // The record says another process (an earlier start) had this pid.
        assert!(!kill_verified(pid, ticks - 1));
        assert_eq!(reap_leftovers(pid, ticks - 1), 0);
        assert!(child.try_wait().unwrap().is_none(), "still running");
        // The right identity is signalled.
        assert!(kill_verified(pid, ticks));
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
    }

    #[test]
    fn leftovers_are_reaped_with_their_whole_session() {
        let mut child = spawn_session();
        // Not a process group leader, so setsid(1) calls setsid(2) itself
        // without forking: the child leads the new session.
        let leader = child.id() as i32;
        wait_until("the session has its sh and two sleeps", || {
            session_members(leader).len() >= 2
        });
        let ticks = start_ticks(leader).unwrap();
        let members = session_members(leader);
        assert!(reap_leftovers(leader, ticks) >= 2);
        let _ = child.wait();
        wait_until("every member is gone", || {
            members
                .iter()
                .all(|m| !is_same_process(m.pid, m.start_ticks))
        });
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id() as i32;
        let info = member(me).expect("own /proc entry");
        assert_eq!(info.pid, me);
        assert!(info.start_ticks > 0);
        assert!(boot_id().is_some_and(|id| id.len() >= 32));
    }

    #[test]
    fn stat_lines_parse_whatever_the_comm_holds() {
        // proc(5): pid (comm) state ppid pgrp session tty_nr tpgid flags minflt
        // cminflt majflt cmajflt utime stime cutime cstime priority nice
        // num_threads itrealvalue starttime vsize ...
        let tail = "S 1 42 40 34816 42 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 ...";
        for comm in ["sh", "a b", "x) S 9 9 9 (y", "(", ")", ""] {
            let line = format!("123 ({comm}) {tail}");
            let stat = parse_stat(123, line.as_bytes()).expect(&line);
            assert_eq!(
                stat,
                StatFields {
                    member: Member {
                        pid: 123,
                        pgid: 42,
                        state: 'S',
                        start_ticks: 987_654,
                    },
                    session: 40,
                },
                "{line}"
            );
        }
        // Truncated or garbled lines are refused, not misread.
        assert_eq!(parse_stat(1, b"1 (sh) S 1 42 40 0 0"), None);
        assert_eq!(parse_stat(1, b"1 (sh S 1 42 40"), None);
        assert_eq!(parse_stat(1, b""), None);
    }

    #[test]
    fn the_direct_reader_agrees_with_procfs() {
        let mut child = spawn_session();
        let leader = child.id() as i32;
        wait_until("both sleeps run", || {
            session_members(leader)
                .iter()
                .filter(|m| comm(m.pid).as_deref() == Some("sleep"))
                .count()
                == 2
        });
        let expected: Vec<Member> = procfs::process::all_processes()
            .unwrap()
            .filter_map(Result::ok)
            .filter_map(|p| p.stat().ok())
            .filter(|stat| stat.session == leader)
            .map(|stat| Member {
                pid: stat.pid,
                pgid: stat.pgrp,
                state: stat.state,
                start_ticks: stat.starttime,
            })
            .collect();
        let found = session_members(leader);
        let pids = |members: &[Member]| members.iter().map(|m| m.pid).collect::<BTreeSet<_>>();
        assert_eq!(pids(&found), pids(&expected));
        for m in &found {
            let e = expected.iter().find(|e| e.pid == m.pid).unwrap();
            assert_eq!((m.pgid, m.start_ticks), (e.pgid, e.start_ticks));
        }
        let _ = child.kill();
        let _ = child.wait();
        kill_all(leader);
    }
}
