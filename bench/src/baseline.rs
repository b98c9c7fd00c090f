//! The baselines and what every scenario shares: the data file, start triggers
//! (FIFOs), a program in a raw PTY read straight from its master, and a private
//! tmux server with attached clients.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use portable_pty::{Child, CommandBuilder, MasterPty, PtySize, native_pty_system};

/// How long a trigger waits for its program to open the FIFO.
const TRIGGER_TIMEOUT: Duration = Duration::from_secs(30);

/// Length of one line of the data file, newline included, in bytes.
const LINE: usize = 80;

/// Files, FIFOs and a private home shared by the scenarios of one run.
pub struct Fixture {
    dir: tempfile::TempDir,
    /// The data file the throughput workers `cat`.
    pub file: PathBuf,
    /// Its size, in bytes.
    pub size: u64,
    /// An empty home for baseline programs.
    pub home: PathBuf,
    fifos: AtomicU64,
}

impl Fixture {
    /// Writes a data file of `size` bytes: lines of printable ASCII, like a
    /// program's log output.
    pub fn new(size: u64) -> Result<Fixture> {
        let dir = tempfile::Builder::new()
            .prefix("corral-bench-data-")
            .tempdir()
            .context("creating the bench's temporary directory")?;
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).context("creating the baseline home")?;
        let file = dir.path().join("data.txt");
        let mut out = std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(&file).context("creating the data file")?,
        );
        let mut written = 0u64;
        let mut line_no = 0u64;
        let mut line = Vec::with_capacity(LINE);
        while written < size {
            line.clear();
            let _ = write!(line, "{line_no:010} corral-bench output ");
            while line.len() < LINE - 1 {
                line.push(b'a' + ((line.len() as u64 + line_no) % 26) as u8);
            }
            line.push(b'\n');
            let take = line.len().min((size - written) as usize);
            out.write_all(&line[..take])
                .context("writing the data file")?;
            written += take as u64;
            line_no += 1;
        }
        out.flush().context("writing the data file")?;
        Ok(Fixture {
            dir,
            file,
            size,
            home,
            fifos: AtomicU64::new(0),
        })
    }

    /// A new FIFO: programs wait on it (`read _ < fifo`) until [`trigger`].
    pub fn fifo(&self) -> Result<PathBuf> {
        let n = self.fifos.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.path().join(format!("start-{n}"));
        nix::unistd::mkfifo(
            &path,
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        )
        .with_context(|| format!("mkfifo {}", path.display()))?;
        Ok(path)
    }

    /// The environment of baseline programs: `PATH` and `TERM`, a private `HOME`.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "PATH".into(),
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            ),
            ("HOME".into(), self.home.display().to_string()),
            ("TERM".into(), "xterm-256color".into()),
            ("SHELL".into(), "/bin/sh".into()),
        ]
    }

    /// A scratch directory (for tmux's socket).
    pub fn scratch(&self, name: &str) -> Result<PathBuf> {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(path)
    }
}

/// Starts the program waiting on `fifo`: opens it for writing (once the program
/// has opened it for reading) and writes a newline. Blocking; returns the instant
/// the newline was written.
pub fn trigger(fifo: &Path) -> Result<Instant> {
    let deadline = Instant::now() + TRIGGER_TIMEOUT;
    let mut file = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(fifo)
        {
            Ok(file) => break file,
            // ENXIO: nobody has it open for reading yet.
            Err(err) if err.raw_os_error() == Some(nix::libc::ENXIO) => {
                if Instant::now() > deadline {
                    bail!(
                        "the program did not open {} within {TRIGGER_TIMEOUT:?}",
                        fifo.display()
                    );
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(err) => return Err(err).with_context(|| format!("opening {}", fifo.display())),
        }
    };
    let start = Instant::now();
    file.write_all(b"\n")
        .with_context(|| format!("writing {}", fifo.display()))?;
    Ok(start)
}

/// argv of the throughput program: raw mode (the bytes pass unchanged), wait for
/// the trigger, then `cat` the file.
pub fn cat_argv(fifo: &Path, file: &Path) -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        r#"stty raw -echo; read _ < "$1"; exec cat "$2""#.into(),
        "sh".into(),
        fifo.display().to_string(),
        file.display().to_string(),
    ]
}

/// argv of one of several concurrent floods: like [`cat_argv`], but the program
/// writes only the first `bytes` bytes of `file` (`head -c`).
pub fn head_argv(fifo: &Path, file: &Path, bytes: u64) -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        r#"stty raw -echo; read _ < "$1"; exec head -c "$3" "$2""#.into(),
        "sh".into(),
        fifo.display().to_string(),
        file.display().to_string(),
        bytes.to_string(),
    ]
}

/// argv of the echo program: raw mode without echo, print `R` (ready), then `cat`
/// sends every byte typed straight back.
pub fn echo_argv() -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        "stty raw -echo; printf R; exec cat".into(),
    ]
}

/// The byte typed for echo sample `i`: a letter (consecutive samples differ, and
/// a multiplexer draws each one as itself, never as a cursor movement).
pub fn echo_key(i: usize) -> u8 {
    const KEYS: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    KEYS[i % KEYS.len()]
}

/// A program in a PTY of its own, read and written through the master.
pub struct RawPty {
    _master: Box<dyn MasterPty + Send>,
    child: Box<dyn Child + Send + Sync>,
    reader: Option<Box<dyn Read + Send>>,
    writer: Box<dyn Write + Send>,
}

impl RawPty {
    /// Opens a 24×80 PTY and starts `argv` in it with exactly `env`.
    pub fn spawn(argv: &[String], env: &[(String, String)]) -> Result<RawPty> {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: 24,
                cols: 80,
                pixel_width: 0,
                pixel_height: 0,
            })
            .map_err(|e| anyhow!("openpty: {e:#}"))?;
        let mut command = CommandBuilder::from_argv(argv.iter().map(Into::into).collect());
        command.env_clear();
        for (key, value) in env {
            command.env(key, value);
        }
        if let Some((_, home)) = env.iter().find(|(key, _)| key == "HOME") {
            command.cwd(home);
        }
        let child = pair
            .slave
            .spawn_command(command)
            .map_err(|e| anyhow!("spawning {argv:?} in a PTY: {e:#}"))?;
        // Without this the master never reports EOF.
        drop(pair.slave);
        let reader = pair
            .master
            .try_clone_reader()
            .map_err(|e| anyhow!("PTY reader: {e:#}"))?;
        let writer = pair
            .master
            .take_writer()
            .map_err(|e| anyhow!("PTY writer: {e:#}"))?;
        Ok(RawPty {
            _master: pair.master,
            child,
            reader: Some(reader),
            writer,
        })
    }

    /// The master's reading end (once).
    pub fn take_reader(&mut self) -> Result<Box<dyn Read + Send>> {
        self.reader
            .take()
            .ok_or_else(|| anyhow!("the PTY reader was taken already"))
    }

    /// The master's writing end.
    pub fn writer(&mut self) -> &mut (dyn Write + Send) {
        &mut *self.writer
    }

    /// Waits for the program to exit.
    pub fn wait(&mut self) -> Result<()> {
        self.child.wait().context("waiting for the PTY's program")?;
        Ok(())
    }
}

impl Drop for RawPty {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads `reader` until it ends, adding the bytes read to `count`.
pub fn drain(mut reader: Box<dyn Read + Send>, count: std::sync::Arc<AtomicU64>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                count.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            // EIO: the program and every other holder of the slave are gone.
            Err(_) => break,
        }
    }
}

/// Strips terminal escape sequences from a byte stream (state kept across
/// calls), leaving what a terminal would print.
#[derive(Default)]
pub struct EscapeFilter {
    state: EscState,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum EscState {
    #[default]
    Ground,
    Escape,
    Intermediate,
    Csi,
    /// OSC, DCS and the like: up to BEL or ESC `\`.
    String,
    StringEscape,
}

impl EscapeFilter {
    /// True when `data` contains `byte` outside escape sequences.
    pub fn contains(&mut self, data: &[u8], byte: u8) -> bool {
        let mut found = false;
        for &b in data {
            self.state = match self.state {
                EscState::Ground if b == 0x1b => EscState::Escape,
                EscState::Ground => {
                    found |= b == byte;
                    EscState::Ground
                }
                EscState::Escape => match b {
                    b'[' => EscState::Csi,
                    b']' | b'P' | b'_' | b'^' => EscState::String,
                    0x20..=0x2f => EscState::Intermediate,
                    _ => EscState::Ground,
                },
                EscState::Intermediate if (0x20..=0x2f).contains(&b) => EscState::Intermediate,
                EscState::Intermediate => EscState::Ground,
                EscState::Csi if (0x40..=0x7e).contains(&b) => EscState::Ground,
                EscState::Csi => EscState::Csi,
                EscState::String if b == 0x07 => EscState::Ground,
                EscState::String if b == 0x1b => EscState::StringEscape,
                EscState::String => EscState::String,
                EscState::StringEscape => EscState::Ground,
            };
        }
        found
    }
}

/// A private tmux server (its own socket in a temporary directory, no
/// configuration file, the status line off).
pub struct Tmux {
    socket: String,
    env: Vec<(String, String)>,
}

impl Tmux {
    /// The tmux server of this run, or why there is none (tmux not installed).
    pub fn new(fixture: &Fixture) -> Result<Tmux> {
        let version = Command::new("tmux")
            .arg("-V")
            .output()
            .map_err(|e| anyhow!("tmux is not available ({e})"))?;
        if !version.status.success() {
            bail!("tmux -V failed");
        }
        let mut env = fixture.env();
        env.push((
            "TMUX_TMPDIR".into(),
            fixture.scratch("tmux")?.display().to_string(),
        ));
        Ok(Tmux {
            socket: format!("corral-bench-{}", std::process::id()),
            env,
        })
    }

    /// tmux's version line.
    pub fn version() -> Option<String> {
        let out = Command::new("tmux").arg("-V").output().ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn argv(&self) -> Vec<String> {
        vec![
            "tmux".into(),
            "-L".into(),
            self.socket.clone(),
            "-f".into(),
            "/dev/null".into(),
        ]
    }

    fn command(&self) -> Command {
        let argv = self.argv();
        let mut command = Command::new(&argv[0]);
        command.args(&argv[1..]).env_clear().envs(self.env.clone());
        command
    }

    /// Runs a tmux command; returns its standard output.
    pub fn run(&self, args: &[String]) -> Result<String> {
        let out = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running tmux")?;
        if !out.status.success() {
            bail!(
                "tmux {}: {}",
                args.first().map_or("", String::as_str),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A detached 80×24 session `name` running `argv`.
    pub fn new_session(&self, name: &str, argv: &[String]) -> Result<()> {
        let mut args: Vec<String> = ["new-session", "-d", "-s", name, "-x", "80", "-y", "24"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        args.push(shell_words::join(argv));
        args.extend(
            [";", "set", "-g", "status", "off"]
                .iter()
                .map(|s| (*s).to_owned()),
        );
        self.run(&args).map(drop)
    }

    /// A tmux client attached to session `name`, in a PTY of its own.
    pub fn attach(&self, name: &str) -> Result<RawPty> {
        let mut argv = self.argv();
        argv.extend(["attach-session".into(), "-t".into(), name.into()]);
        RawPty::spawn(&argv, &self.env)
    }

    /// Starts `tmux wait-for channel` (exits once the channel is signalled).
    pub fn wait_for(&self, channel: &str) -> Result<std::process::Child> {
        self.command()
            .args(["wait-for", channel])
            .stdin(Stdio::null())
            .spawn()
            .context("running tmux wait-for")
    }

    /// The tmux server's process id.
    pub fn server_pid(&self) -> Result<i32> {
        let out = self.run(&["display-message".into(), "-p".into(), "#{pid}".into()])?;
        out.trim()
            .parse()
            .with_context(|| format!("tmux server pid {out:?}"))
    }

    /// Ends session `name` (its clients exit); nothing when it ended already.
    pub fn kill_session(&self, name: &str) {
        let _ = self.run(&["kill-session".into(), "-t".into(), name.into()]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self
            .command()
            .arg("kill-server")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_not_text() {
        let mut filter = EscapeFilter::default();
        assert!(!filter.contains(b"\x1b[?25h\x1b[1;1H\x1b(B", b'h'));
        assert!(!filter.contains(b"\x1b(B", b'B'));
        assert!(filter.contains(b"\x1b[Kx", b'x'));
        // A sequence split across reads.
        assert!(!filter.contains(b"\x1b[2", b'a'));
        assert!(!filter.contains(b"5l", b'l'));
        assert!(filter.contains(b"l", b'l'));
        // OSC up to BEL, and up to ESC backslash.
        assert!(!filter.contains(b"\x1b]0;title a\x07", b'a'));
        assert!(!filter.contains(b"\x1b]0;title b\x1b\\", b'b'));
        assert!(filter.contains(b"b", b'b'));
    }

    #[test]
    fn the_data_file_has_the_size_asked_for() {
        let fixture = Fixture::new(1000).unwrap();
        assert_eq!(std::fs::metadata(&fixture.file).unwrap().len(), 1000);
        let text = std::fs::read_to_string(&fixture.file).unwrap();
        assert!(text.lines().next().unwrap().len() == LINE - 1);
    }
}
