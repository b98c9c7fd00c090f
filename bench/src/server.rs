//! The server under test: a `corrald` child process on an ephemeral loopback port,
//! with its own temporary data directory, database and worker home, and the
//! `/proc` figures (resident memory, CPU time) of that process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use sea_orm::{ConnectionTrait, Database};
use tonic::transport::{Channel, Endpoint};

/// How long corrald may take to start listening (migrations on PostgreSQL
/// included).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long corrald may take to shut down after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Lines of corrald's log kept to explain a failure.
const LOG_TAIL: usize = 40;

/// Finds the `corrald` binary to benchmark.
///
/// `explicit` wins. Otherwise, when the bench runs under `cargo run` (the `CARGO`
/// variable is set), `cargo build --workspace --bin corrald` is run with the
/// bench's own profile first, so the server measured is never older than the
/// source; then the binary next to the bench's executable is used.
///
/// The nested build resolves features for the whole workspace, as the outer
/// build did, and runs without the per-crate variables `cargo run` gave the
/// bench (`CARGO_MANIFEST_DIR`, `OUT_DIR`…): either difference would make cargo
/// rebuild dependencies (ring's build script tracks such variables), which takes
/// minutes, instead of finding corrald up to date.
pub fn find_corrald(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        if !path.is_file() {
            bail!("--corrald {}: no such file", path.display());
        }
        return Ok(path.to_owned());
    }
    let exe = std::env::current_exe().context("locating the bench executable")?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("the bench executable {} has no directory", exe.display()))?;
    if let Some(cargo) = std::env::var_os("CARGO") {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .ok_or_else(|| anyhow!("the bench crate has no parent directory"))?;
        let mut build = Command::new(cargo);
        build
            .current_dir(workspace)
            .args(["build", "--quiet", "--workspace", "--bin", "corrald"]);
        const PER_CRATE: [&str; 8] = [
            "OUT_DIR",
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
            "CARGO_RUSTC_CURRENT_DIR",
        ];
        for (key, _) in std::env::vars_os() {
            if PER_CRATE
                .iter()
                .any(|prefix| key.to_string_lossy().starts_with(prefix))
            {
                build.env_remove(key);
            }
        }
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        eprintln!(
            "corral-bench: building corrald ({} profile)",
            if cfg!(debug_assertions) {
                "dev"
            } else {
                "release"
            }
        );
        let status = build.status().context("running cargo build for corrald")?;
        if !status.success() {
            bail!("cargo build --workspace --bin corrald failed ({status})");
        }
    }
    let path = dir.join("corrald");
    if !path.is_file() {
        bail!(
            "{} does not exist: run `cargo build --release -p corral-server --bin corrald` \
             (or use `cargo run --release -p corral-bench`, which builds it), or pass --corrald PATH",
            path.display()
        );
    }
    Ok(path)
}

/// What database the server under test uses.
pub enum Db {
    /// A SQLite file in the server's temporary data directory.
    Sqlite,
    /// A fresh PostgreSQL database made for this run on the server that
    /// `admin_url` reaches, dropped afterwards.
    Postgres { admin_url: String },
}

/// A fresh PostgreSQL database, dropped by [`PgDatabase::drop_database`].
struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    async fn create(admin_url: &str) -> Result<PgDatabase> {
        let name = format!("corral_bench_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(admin_url)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {admin_url}"))?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        admin.close().await.ok();
        let base = admin_url
            .split('?')
            .next()
            .and_then(|url| url.rsplit_once('/'))
            .map(|(base, _)| base.to_owned())
            .ok_or_else(|| anyhow!("{admin_url} is not a postgres://user@host/db URL"))?;
        Ok(PgDatabase {
            admin_url: admin_url.to_owned(),
            url: format!("{base}/{name}"),
            name,
        })
    }

    async fn drop_database(&self) {
        if let Ok(admin) = Database::connect(&self.admin_url).await {
            let _ = admin
                .execute_unprepared(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .await;
            admin.close().await.ok();
        }
    }
}

/// Settings of the server under test that scenarios depend on.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// Scrollback ring per worker, in bytes.
    pub scrollback_bytes: usize,
    /// Most workers in one session (raised for the scale scenario).
    pub max_workers_per_session: usize,
}

/// A running `corrald` child process.
pub struct Corrald {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    pg: Option<PgDatabase>,
    log: Arc<Mutex<Vec<String>>>,
    settings: ServerSettings,
}

impl Corrald {
    /// Starts `binary` on `127.0.0.1:0` with a temporary data directory, the
    /// database `db`, `/bin/sh` as the shell and a private, empty `HOME` for
    /// workers (no dotfiles of the host run). Returns once it listens.
    pub async fn start(binary: &Path, db: &Db, settings: ServerSettings) -> Result<Corrald> {
        let dir = tempfile::Builder::new()
            .prefix("corral-bench-")
            .tempdir()
            .context("creating the server's temporary directory")?;
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).context("creating the workers' home")?;
        let pg = match db {
            Db::Sqlite => None,
            Db::Postgres { admin_url } => Some(PgDatabase::create(admin_url).await?),
        };
        let database_url = match &pg {
            Some(pg) => pg.url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("corral.db").display()
            ),
        };
        let mut command = Command::new(binary);
        // Nothing of the caller's Corral configuration (tokens, limits) applies.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CORRAL_") {
                command.env_remove(key);
            }
        }
        command
            .arg("--listen=127.0.0.1:0")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--database-url={database_url}"))
            .arg("--shell=/bin/sh")
            .arg(format!("--worker-env=HOME={}", home.display()))
            .arg(format!("--scrollback-bytes={}", settings.scrollback_bytes))
            .arg(format!(
                "--max-workers-per-session={}",
                settings.max_workers_per_session
            ))
            .arg("--stop-grace=2s")
            // Quiet, except the line that says where it listens.
            .arg("--log=warn,corral_server::server=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("corrald's stderr is not piped"))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut addr_tx = Some(addr_tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("corrald listening")
                        && let Some(addr) = line
                            .split_whitespace()
                            .find_map(|word| word.strip_prefix("addr="))
                            .and_then(|addr| addr.parse::<SocketAddr>().ok())
                        && let Some(tx) = addr_tx.take()
                    {
                        let _ = tx.send(addr);
                    }
                    if let Ok(mut log) = log.lock() {
                        if log.len() == LOG_TAIL {
                            log.remove(0);
                        }
                        log.push(line);
                    }
                }
            });
        }
        let started = Instant::now();
        let addr = loop {
            match addr_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(addr) => break addr,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().ok();
                    bail!(
                        "corrald exited before listening ({}):\n{}",
                        status.map_or("unknown status".into(), |s| s.to_string()),
                        tail(&log)
                    );
                }
            }
            if let Some(status) = child.try_wait().context("waiting for corrald")? {
                bail!(
                    "corrald exited before listening ({status}):\n{}",
                    tail(&log)
                );
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = child.kill();
                bail!(
                    "corrald did not listen within {START_TIMEOUT:?}:\n{}",
                    tail(&log)
                );
            }
        };
        Ok(Corrald {
            child,
            addr,
            dir,
            pg,
            log,
            settings,
        })
    }

    /// The server's process id.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(i32::MAX)
    }

    /// The server's settings.
    pub fn settings(&self) -> &ServerSettings {
        &self.settings
    }

    /// A directory for sessions to work in (inside the server's temporary
    /// directory).
    pub fn work_dir(&self) -> Result<PathBuf> {
        let path = self.dir.path().join("work");
        std::fs::create_dir_all(&path).context("creating the work dir")?;
        Ok(path)
    }

    /// A new HTTP/2 connection to the server (one per simulated client).
    pub async fn connect(&self) -> Result<Channel> {
        connect(self.addr).await
    }

    /// The server's gRPC address (loopback, ephemeral port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Resident memory of the server process (`VmRSS`), in bytes.
    pub fn rss_bytes(&self) -> Result<u64> {
        rss_bytes(self.pid())
    }

    /// CPU time of the server process so far (user + system), in seconds.
    pub fn cpu_seconds(&self) -> Result<f64> {
        cpu_seconds(self.pid())
    }

    /// The last lines corrald logged (warnings and errors).
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }

    /// SIGTERM, then waits for the server to end its workers and exit (SIGKILL
    /// after a while); drops a PostgreSQL database made for the run.
    pub async fn stop(mut self) -> Result<()> {
        let pid = nix::unistd::Pid::from_raw(self.pid());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if self.child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(pg) = self.pg.take() {
            pg.drop_database().await;
        }
        Ok(())
    }
}

impl Drop for Corrald {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn tail(log: &Mutex<Vec<String>>) -> String {
    log.lock().map(|lines| lines.join("\n")).unwrap_or_default()
}

/// Resident memory (`VmRSS` of `/proc/<pid>/status`) of process `pid`, in bytes.
pub fn rss_bytes(pid: i32) -> Result<u64> {
    let status = procfs::process::Process::new(pid)
        .and_then(|p| p.status())
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .vmrss
        .map(|kib| kib * 1024)
        .ok_or_else(|| anyhow!("/proc/{pid}/status has no VmRSS"))
}

/// CPU time (`utime + stime` of `/proc/<pid>/stat`) of process `pid`, in seconds.
pub fn cpu_seconds(pid: i32) -> Result<f64> {
    let stat = procfs::process::Process::new(pid)
        .and_then(|p| p.stat())
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    Ok((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

/// A new channel (its own TCP connection, `TCP_NODELAY`, frames up to
/// [`corral::CLIENT_MAX_FRAME_BYTES`]) to corrald at `addr`,
/// driven by the runtime this is called on.
pub async fn connect(addr: SocketAddr) -> Result<Channel> {
    Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .max_frame_size(corral::CLIENT_MAX_FRAME_BYTES)
        .connect()
        .await
        .with_context(|| format!("connecting to corrald at {addr}"))
}
