//! `corral attach`: this terminal connected to a worker's PTY over the bidirectional
//! `WorkerService.Attach` stream.
//!
//! # Protocol
//!
//! The first request frame is `open` (worker, terminal size, replay, read-only);
//! then `input` (at most [`MAX_INPUT_FRAME`] bytes each), `resize` on SIGWINCH, and
//! `detach` to leave. Response frames: `output` is written to stdout as it is;
//! `exit` ends the attach with the worker's exit code; `detached` ends it with 0;
//! `error` (a refused frame, e.g. input while PAUSED) is shown and the attach goes
//! on; `attached`, `update` and `skipped` carry nothing to print (a notice for
//! `skipped` when not in raw mode). An error status ends it with exit code 1.
//!
//! # Modes
//!
//! * **Interactive** (stdin is a terminal): raw mode, initial size sent in `open`,
//!   SIGWINCH → `resize`, and the [detach keys](crate::detach) are watched for.
//! * **Piped** (stdin is not a terminal): stdin bytes are forwarded verbatim (no
//!   detach keys, they could be data). At end of input the output of what was
//!   typed keeps coming until the worker has printed nothing for
//!   [`QUIET_BEFORE_DETACH`] (or exits), then the client detaches: `printf 'make\n'
//!   | corral attach s` shows what `make` printed, as `ssh host < script` would.
//! * **Read-only** (`--read-only`): stdin is not read at all; Ctrl-C detaches (a
//!   second Ctrl-C leaves without waiting for the server's answer).
//!
//! # Terminal restoration and exit
//!
//! Raw mode is held by a guard that restores the terminal when dropped, which covers
//! normal returns and `?` errors; a panic hook restores it before the panic message
//! is printed. Messages such as `[detached]` are printed after the restore.
//!
//! Stdin is read on a dedicated thread feeding a channel: a blocking `read(2)` cannot
//! be cancelled, so the thread is simply left behind when the attach ends and
//! `main` ends the process with `std::process::exit` without waiting for it.

use std::io::{self, IsTerminal, Read, Write};
use std::sync::Once;
use std::time::Duration;

use corral::pb;
use corral::pb::attach_request::Frame as Request;
use corral::pb::attach_response::Frame as Response;
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use crate::cli::AttachArgs;
use crate::client::Clients;
use crate::detach::DetachMatcher;
use crate::error::CliError;
use crate::names::{session_name, worker_name};
use crate::output::display::{exit_long, plural};
use crate::output::{dim_notice, notice};

/// Largest `input` frame sent (the server's limit is 64 KiB by default).
pub const MAX_INPUT_FRAME: usize = 32 * 1024;
/// Request frames queued towards the server before sending waits.
const REQUEST_QUEUE: usize = 64;
/// How long to wait for `detached` after sending `detach` before leaving anyway.
const DETACH_TIMEOUT: Duration = Duration::from_secs(5);

/// Piped mode: after end of input, detach once the worker has printed nothing
/// for this long.
const QUIET_BEFORE_DETACH: Duration = Duration::from_millis(500);

/// How this attach uses stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// stdin is a terminal: raw mode, resizes, detach keys.
    Interactive,
    /// stdin is a pipe or file: forwarded as is; EOF detaches.
    Piped,
    /// stdin is not read; Ctrl-C detaches.
    ReadOnly,
}

/// How an attach ended (when it did not fail).
#[derive(Debug)]
enum End {
    /// The worker's process ended.
    Exited(pb::ExitStatus),
    /// We left (or the server closed the stream after our `detach`).
    Detached,
}

/// Runs `corral attach`; returns the exit code (the worker's, or 0 after a detach).
pub async fn run(clients: &Clients, args: &AttachArgs) -> Result<i32, CliError> {
    let mode = if args.read_only {
        Mode::ReadOnly
    } else if io::stdin().is_terminal() {
        Mode::Interactive
    } else {
        Mode::Piped
    };
    let worker = match &args.worker {
        Some(worker) => worker_name(&args.session, worker),
        None => session_name(&args.session),
    };
    let open = pb::AttachOpen {
        worker,
        size: if mode == Mode::Interactive {
            terminal_size()
        } else {
            None
        },
        replay: args.replay.to_pb(),
        read_only: args.read_only,
    };
    let (requests, request_queue) = mpsc::channel(REQUEST_QUEUE);
    requests
        .try_send(frame(Request::Open(open)))
        .map_err(|_| CliError::Other("cannot queue the open frame".into()))?;
    let responses = clients
        .workers()
        .attach(ReceiverStream::new(request_queue))
        .await?
        .into_inner();

    let mut attachment = Attachment {
        mode,
        requests,
        responses,
        matcher: (mode == Mode::Interactive).then(|| DetachMatcher::new(&args.detach_keys)),
        at_line_start: true,
    };
    let end = {
        let _raw = if mode == Mode::Interactive {
            Some(RawTerminal::enter()?)
        } else {
            None
        };
        attachment.run().await
        // The terminal is restored here, before anything below is printed.
    };
    let newline = if attachment.at_line_start { "" } else { "\n" };
    match end {
        Ok(End::Exited(status)) => {
            notice(format!("{newline}[exited: {}]", exit_long(&status)));
            Ok(exit_code(&status))
        }
        Ok(End::Detached) => {
            notice(format!("{newline}[detached]"));
            Ok(0)
        }
        Err(error) => {
            if !newline.is_empty() {
                notice("");
            }
            Err(error)
        }
    }
}

/// An `AttachRequest` holding `request`.
fn frame(request: Request) -> pb::AttachRequest {
    pb::AttachRequest {
        frame: Some(request),
    }
}

/// The terminal's size, if there is one.
fn terminal_size() -> Option<pb::WindowSize> {
    // crossterm answers (columns, rows).
    crossterm::terminal::size()
        .ok()
        .filter(|(cols, rows)| *cols > 0 && *rows > 0)
        .map(|(cols, rows)| pb::WindowSize {
            rows: rows.into(),
            cols: cols.into(),
        })
}

/// One attach stream in progress.
struct Attachment {
    mode: Mode,
    requests: mpsc::Sender<pb::AttachRequest>,
    responses: tonic::Streaming<pb::AttachResponse>,
    /// Watches for the detach keys (interactive mode only).
    matcher: Option<DetachMatcher>,
    /// Whether the last byte of output written was a newline (or nothing was).
    at_line_start: bool,
}

impl Attachment {
    /// Pumps frames both ways until the worker exits, we detach, or the stream fails.
    async fn run(&mut self) -> Result<End, CliError> {
        let mut stdin = match self.mode {
            Mode::ReadOnly => None,
            Mode::Interactive | Mode::Piped => Some(spawn_stdin_reader()?),
        };
        let mut resizes = match self.mode {
            Mode::Interactive => Some(
                signal(SignalKind::window_change())
                    .map_err(|e| CliError::io("watching terminal resizes", e))?,
            ),
            Mode::Piped | Mode::ReadOnly => None,
        };
        let mut interrupts = match self.mode {
            Mode::ReadOnly => Some(
                signal(SignalKind::interrupt()).map_err(|e| CliError::io("watching Ctrl-C", e))?,
            ),
            Mode::Interactive | Mode::Piped => None,
        };
        let mut stdout = tokio::io::stdout();
        // Set once `detach` is sent: leave at this time even without an answer.
        let mut detach_deadline: Option<Instant> = None;
        // Piped input ended: detach at this time, pushed back by every output.
        let mut quiet_until: Option<Instant> = None;

        loop {
            tokio::select! {
                response = self.responses.message() => {
                    let Some(response) = response? else {
                        return if detach_deadline.is_some() {
                            Ok(End::Detached)
                        } else {
                            Err(CliError::Other(
                                "the server closed the attach stream without a reason".into(),
                            ))
                        };
                    };
                    match response.frame {
                        Some(Response::Output(output)) => {
                            if quiet_until.is_some() {
                                quiet_until = Some(Instant::now() + QUIET_BEFORE_DETACH);
                            }
                            if let Some(last) = output.data.last() {
                                stdout.write_all(&output.data).await?;
                                stdout.flush().await?;
                                self.at_line_start = *last == b'\n';
                            }
                        }
                        Some(Response::Exit(status)) => return Ok(End::Exited(status)),
                        Some(Response::Detached(_)) => return Ok(End::Detached),
                        Some(Response::Error(error)) => self.show(&format!("[corral: {}]", error.message)),
                        Some(Response::Skipped(skipped)) => {
                            if self.mode != Mode::Interactive {
                                let dropped = skipped.to_offset.saturating_sub(skipped.from_offset);
                                dim_notice(&format!(
                                    "[corral: fell behind; {} of output skipped]",
                                    plural(dropped, "byte")
                                ));
                            }
                        }
                        Some(Response::Attached(_) | Response::Update(_)) | None => {}
                    }
                }
                input = recv(&mut stdin), if stdin.is_some() && detach_deadline.is_none() => {
                    match input {
                        Some(Ok(bytes)) => {
                            let (forward, detach) = match &mut self.matcher {
                                Some(matcher) => {
                                    let fed = matcher.feed(&bytes);
                                    (fed.forward, fed.detach)
                                }
                                None => (bytes, false),
                            };
                            for chunk in forward.chunks(MAX_INPUT_FRAME) {
                                self.send(Request::Input(bytes::Bytes::copy_from_slice(chunk))).await;
                            }
                            if detach {
                                stdin = None;
                                detach_deadline = Some(self.detach().await);
                            }
                        }
                        Some(Err(error)) => {
                            self.show(&format!("[corral: reading stdin: {error}]"));
                            stdin = None;
                            detach_deadline = Some(self.detach().await);
                        }
                        None => {
                            // End of input: let the output of what was typed come.
                            stdin = None;
                            quiet_until = Some(Instant::now() + QUIET_BEFORE_DETACH);
                        }
                    }
                }
                Some(()) = next_signal(&mut resizes), if resizes.is_some() => {
                    if let Some(size) = terminal_size() {
                        self.send(Request::Resize(size)).await;
                    }
                }
                Some(()) = next_signal(&mut interrupts), if interrupts.is_some() => {
                    if detach_deadline.is_some() {
                        // A second Ctrl-C: do not wait for the server's answer.
                        return Ok(End::Detached);
                    }
                    detach_deadline = Some(self.detach().await);
                }
                () = until(quiet_until), if quiet_until.is_some() && detach_deadline.is_none() => {
                    quiet_until = None;
                    detach_deadline = Some(self.detach().await);
                }
                () = until(detach_deadline), if detach_deadline.is_some() => {
                    return Ok(End::Detached);
                }
            }
        }
    }

    /// Queues a request frame. A closed queue means the call is over; the response
    /// stream reports why, so the frame is dropped silently.
    async fn send(&self, request: Request) {
        let _ = self.requests.send(frame(request)).await;
    }

    /// Sends `detach`; returns the time after which to leave without an answer.
    async fn detach(&self) -> Instant {
        self.send(Request::Detach(pb::Detach {})).await;
        Instant::now() + DETACH_TIMEOUT
    }

    /// Shows a message on stderr on a line of its own, also in raw mode.
    fn show(&mut self, message: &str) {
        let _ = write!(io::stderr().lock(), "\r\n{message}\r\n");
        self.at_line_start = true;
    }
}

/// The next chunk from the stdin thread; pending forever when there is none.
async fn recv(
    stdin: &mut Option<mpsc::Receiver<io::Result<Vec<u8>>>>,
) -> Option<io::Result<Vec<u8>>> {
    match stdin {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// The next delivery of a signal; pending forever when not watching.
async fn next_signal(signal: &mut Option<Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

/// Completes at `deadline`; pending forever without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Reads stdin on its own thread, in chunks of at most [`MAX_INPUT_FRAME`] bytes.
/// The channel closes at end of input (after an error, which is sent first).
fn spawn_stdin_reader() -> Result<mpsc::Receiver<io::Result<Vec<u8>>>, CliError> {
    let (sender, receiver) = mpsc::channel(16);
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = io::stdin().lock();
            let mut buffer = vec![0u8; MAX_INPUT_FRAME];
            loop {
                let chunk = match stdin.read(&mut buffer) {
                    Ok(0) => return,
                    Ok(n) => Ok(buffer[..n].to_vec()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
                let failed = chunk.is_err();
                if sender.blocking_send(chunk).is_err() || failed {
                    return;
                }
            }
        })
        .map_err(|e| CliError::io("starting the stdin reader", e))?;
    Ok(receiver)
}

/// Holds the terminal in raw mode; restores it when dropped.
struct RawTerminal;

impl RawTerminal {
    fn enter() -> Result<Self, CliError> {
        install_panic_hook();
        crossterm::terminal::enable_raw_mode()
            .map_err(|e| CliError::io("putting the terminal in raw mode", e))?;
        Ok(Self)
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// Makes a panic restore the terminal before its message is printed.
fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = crossterm::terminal::disable_raw_mode();
            previous(info);
        }));
    });
}

/// The exit code for a worker's exit: its code, else 128 + the signal's number (as
/// a shell reports it), else 1.
fn exit_code(status: &pb::ExitStatus) -> i32 {
    match status.code {
        Some(code) if (0..=255).contains(&code) => code,
        Some(_) => 1,
        None => signal_number(&status.signal).map_or(1, |n| 128 + n),
    }
}

/// The number of a signal given by name (`SIGKILL` or `KILL`) on this platform.
fn signal_number(name: &str) -> Option<i32> {
    let name = name.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    let number = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" => libc::SIGIO,
        "SYS" => libc::SIGSYS,
        _ => return None,
    };
    Some(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        let code = |code| pb::ExitStatus {
            code: Some(code),
            ..Default::default()
        };
        assert_eq!(exit_code(&code(0)), 0);
        assert_eq!(exit_code(&code(3)), 3);
        assert_eq!(exit_code(&code(-1)), 1);
        let signal = |name: &str| pb::ExitStatus {
            signal: name.into(),
            ..Default::default()
        };
        assert_eq!(exit_code(&signal("SIGKILL")), 128 + libc::SIGKILL);
        assert_eq!(exit_code(&signal("SIGTERM")), 128 + libc::SIGTERM);
        assert_eq!(exit_code(&signal("HUP")), 128 + libc::SIGHUP);
        assert_eq!(exit_code(&signal("SIGBOGUS")), 1);
        assert_eq!(exit_code(&pb::ExitStatus::default()), 1);
    }
}
