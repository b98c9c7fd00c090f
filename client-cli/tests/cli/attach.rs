//! `corral attach` against real workers: piped, read-only, refused, ended by the
//! worker's exit, and interactive inside a real pseudo-terminal.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Instant;

use corral::pb;
use corral::pb::session::State;
use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};

use crate::harness::{CORRAL, PATIENCE, Server, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_attach_forwards_stdin_and_detaches_at_end_of_input() {
    let server = Server::start().await;
    server.create("demo", &[]).await;
    server.ok(&["session", "start", "demo"]).await;

    let mut attach = server.spawn(&["attach", "demo", "--replay", "none"]);
    attach.write(b"echo hi-from-pipe-$((6*7))\n").await;
    // Only the shell's output has the computed value (the echoed line has the
    // expression).
    attach.expect("hi-from-pipe-42").await;
    let run = attach.finish().await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.stderr.trim(), "[detached]");
    // Detaching leaves the worker running.
    let shell = server.worker("demo", "shell").await.unwrap();
    assert_eq!(shell.state(), pb::worker::State::Running);
    eventually("the client is counted out", || async {
        server
            .worker("demo", "shell")
            .await
            .unwrap()
            .attached_clients
            == 0
    })
    .await;
    server.stop().await;
}

/// `printf 'cmd\n' | corral attach`: stdin ends before any output came back; the
/// output of the command is shown all the same, then the client detaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_attach_shows_the_output_of_input_that_already_ended() {
    let server = Server::start().await;
    server.create("demo", &[]).await;
    server.ok(&["session", "start", "demo"]).await;

    let mut attach = server.spawn(&["attach", "demo", "--replay", "none"]);
    attach
        .write(b"sleep 0.1; echo late-from-pipe-$((6*7))\n")
        .await;
    let run = attach.finish().await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(run.stdout.contains("late-from-pipe-42"), "{run:#?}");
    assert_eq!(run.stderr.trim(), "[detached]");
    let shell = server.worker("demo", "shell").await.unwrap();
    assert_eq!(shell.state(), pb::worker::State::Running);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_attach_leaves_on_ctrl_c() {
    let server = Server::start().await;
    server
        .create(
            "demo",
            &[
                "--terminal",
                "ticker=sh -c 'echo ready-$((40+2)); exec sleep 300'",
            ],
        )
        .await;
    server.ok(&["session", "start", "demo"]).await;

    let mut attach = server.spawn(&["attach", "demo", "ticker", "--read-only"]);
    // Output printed means the attach loop runs, and with it the Ctrl-C handler.
    attach.expect("ready-42").await;
    assert_eq!(
        server
            .worker("demo", "ticker")
            .await
            .unwrap()
            .attached_clients,
        1
    );
    send_signal(attach.pid(), libc::SIGINT);
    let run = attach.finish().await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.stderr.trim(), "[detached]");
    eventually("the client is counted out", || async {
        server
            .worker("demo", "ticker")
            .await
            .unwrap()
            .attached_clients
            == 0
    })
    .await;
    assert_eq!(
        server.worker("demo", "ticker").await.unwrap().state(),
        pb::worker::State::Running
    );
    server.stop().await;
}

/// Sends `signal` to process `pid`.
fn send_signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) with a pid we spawned and a valid signal number; no memory
    // is shared.
    let result = unsafe { libc::kill(pid, signal) };
    assert_eq!(result, 0, "kill({pid}, {signal})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_to_a_stopped_worker_exits_1_with_failed_precondition() {
    let server = Server::start().await;
    server.create("demo", &[]).await;
    server.ok(&["session", "start", "demo"]).await;
    server.ok(&["session", "stop", "demo"]).await;

    let message = server
        .corral(&["attach", "demo", "shell"])
        .await
        .assert_rpc_error("FAILED_PRECONDITION");
    assert!(message.contains("not running"), "{message}");
    server
        .corral(&["attach", "demo", "missing"])
        .await
        .assert_rpc_error("NOT_FOUND");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_exits_with_the_workers_exit_code() {
    let server = Server::start().await;
    server
        .create("demo", &["--terminal", "quit=sh -c 'read line; exit 7'"])
        .await;
    server.ok(&["session", "start", "demo"]).await;

    // Stdin stays open: the attach must end because the worker did.
    let mut attach = server.spawn(&["worker", "attach", "demo", "quit"]);
    attach.write(b"go\n").await;
    let run = attach.wait().await;
    assert_eq!(run.code, Some(7), "{run:#?}");
    assert_eq!(run.stderr.trim(), "[exited: exited with code 7]");
    // Its last worker gone, the session stopped on its own.
    eventually("the session stops", || async {
        server.session("demo").await.state() == State::Stopped
    })
    .await;
    let quit = server.worker("demo", "quit").await.unwrap();
    assert_eq!(quit.exit_status.unwrap().code, Some(7));
    server.stop().await;
}

/// Everything a program writes to a pseudo-terminal, read on a thread.
struct Screen {
    chunks: mpsc::Receiver<Vec<u8>>,
    bytes: Vec<u8>,
}

impl Screen {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// Waits until the screen shows `needle` `count` times.
    fn expect_count(&mut self, needle: &str, count: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.text().matches(needle).count() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.chunks.recv_timeout(left) {
                Ok(chunk) => self.bytes.extend(chunk),
                Err(_) => panic!(
                    "{needle:?} ×{count} did not appear within {PATIENCE:?} in:\n{}",
                    self.text()
                ),
            }
        }
    }
}

/// The outer terminal's `(ECHO, ICANON)` local flags.
fn echo_and_canonical(master: &dyn MasterPty) -> (bool, bool) {
    let termios = master.get_termios().expect("termios of the outer terminal");
    let flags = termios.local_flags.bits();
    (flags & libc::ECHO != 0, flags & libc::ICANON != 0)
}

fn pty_size(rows: u16, cols: u16) -> PtySize {
    PtySize {
        rows,
        cols,
        pixel_width: 0,
        pixel_height: 0,
    }
}

/// `corral attach` in a real pseudo-terminal (30×100) attached to a real shell:
/// raw mode while attached, the terminal's size sent in the open frame, a resize of
/// the outer terminal reaching the worker, the detach keys (`ctrl-p ctrl-p ctrl-q`
/// forwards one ctrl-p, then detaches), and the terminal restored afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_attach_in_a_pseudo_terminal() {
    let server = Server::start().await;
    server.create("demo", &[]).await;
    server.ok(&["session", "start", "demo"]).await;

    let pty = native_pty_system().openpty(pty_size(30, 100)).unwrap();
    assert_eq!(echo_and_canonical(&*pty.master), (true, true));
    let mut command = CommandBuilder::new(CORRAL);
    command.args([
        "--server",
        &server.addr.to_string(),
        "attach",
        "demo",
        "shell",
    ]);
    command.cwd(server.dir.path());
    command.env_remove("CORRAL_SERVER");
    command.env_remove("CORRAL_TOKEN");
    let mut child = pty.slave.spawn_command(command).unwrap();
    // The slave stays open here until the end, so that the outer terminal's modes
    // can still be read after the CLI exited.
    let mut reader = pty.master.try_clone_reader().unwrap();
    let mut writer = pty.master.take_writer().unwrap();
    let (tx, chunks) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buffer) {
            if n == 0 || tx.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut screen = Screen {
        chunks,
        bytes: Vec::new(),
    };

    // Raw mode: no echo, no line editing by the outer terminal.
    eventually("the outer terminal is in raw mode", || async {
        echo_and_canonical(&*pty.master) == (false, false)
    })
    .await;
    eventually("the client is attached", || async {
        server
            .worker("demo", "shell")
            .await
            .unwrap()
            .attached_clients
            == 1
    })
    .await;

    // The open frame carried the outer terminal's size.
    writer.write_all(b"stty size\n").unwrap();
    screen.expect_count("30 100", 1);

    // A resize of the outer terminal (SIGWINCH to the CLI) reaches the worker.
    pty.master.resize(pty_size(40, 120)).unwrap();
    eventually("the worker's PTY is resized", || async {
        let size = server.worker("demo", "shell").await.unwrap().size.unwrap();
        (size.rows, size.cols) == (40, 120)
    })
    .await;
    writer.write_all(b"stty size\n").unwrap();
    screen.expect_count("40 120", 1);

    // `cat -v` shows which control bytes reach the worker. Wait for it to run
    // (its marker line comes back) before typing the detach keys.
    writer.write_all(b"echo cat-$((1+1)); cat -v\n").unwrap();
    screen.expect_count("cat-2", 1);
    writer.write_all(&[0x10, 0x10, 0x11]).unwrap();
    screen.expect_count("[detached]", 1);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}\n{}", screen.text());
    // Restored: echo and line editing are back.
    assert_eq!(echo_and_canonical(&*pty.master), (true, true));
    drop(writer);
    drop(pty.slave);

    // The worker kept running; end cat's line and read what it got: one ctrl-p.
    let mut attach = server.spawn(&["attach", "demo", "shell", "--replay", "none"]);
    attach.write(b"\n\x04echo after-$((2+3))\n").await;
    attach.expect("after-5").await;
    let run = attach.finish().await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(run.stdout.contains("^P"), "{}", run.stdout);
    assert!(!run.stdout.contains("^P^P"), "{}", run.stdout);
    server.stop().await;
}
