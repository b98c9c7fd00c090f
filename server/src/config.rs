//! Every setting of `corrald`, with its default, flag and environment variable, in
//! one place.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// `corrald`: runs and supervises AI coding-agent sessions and terminals, served
/// over gRPC (package corral.v1).
#[derive(Clone, Debug, Parser)]
#[command(name = "corrald", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on: `host:port`, or `unix:/path/to.sock` for a Unix socket
    /// (created with mode 0600). Non-loopback addresses are refused unless
    /// authentication (tokens or client certificates) is configured.
    #[arg(long, env = "CORRAL_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: ListenAddr,

    /// Directory for the embedded database, worktrees and state. Default:
    /// `$XDG_DATA_HOME/corral` or `~/.local/share/corral`.
    #[arg(long, env = "CORRAL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Database URL: `postgres://user@host/db` for PostgreSQL, or `sqlite://path`.
    /// Default: `sqlite://<data-dir>/corral.db?mode=rwc`.
    #[arg(long, env = "CORRAL_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Bytes of terminal output kept in memory per worker (the scrollback ring).
    #[arg(long, env = "CORRAL_SCROLLBACK_BYTES", default_value_t = 1 << 20)]
    pub scrollback_bytes: usize,

    /// Time between SIGTERM and SIGKILL when stopping, e.g. `10s`, `500ms`.
    #[arg(long, env = "CORRAL_STOP_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub stop_grace: Duration,

    /// How long a STOPPED session can be resumed, e.g. `7d`.
    #[arg(long, env = "CORRAL_RESUME_WINDOW", default_value = "7d", value_parser = humantime::parse_duration)]
    pub resume_window: Duration,

    /// How long a deleted session's tombstone is kept before it is purged.
    #[arg(long, env = "CORRAL_TOMBSTONE_RETENTION", default_value = "30d", value_parser = humantime::parse_duration)]
    pub tombstone_retention: Duration,

    /// Retries of a failing session: when the last allowed retry fails too, the
    /// session is discarded automatically (seed 000: "Intento 1/3 … 3/3").
    #[arg(long, env = "CORRAL_MAX_RETRIES", default_value_t = 3)]
    pub max_retries: u32,

    /// Largest Attach input frame, in bytes (larger → RESOURCE_EXHAUSTED).
    #[arg(long, env = "CORRAL_MAX_INPUT_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_input_frame_bytes: usize,

    /// Largest gRPC message, in bytes, both ways.
    #[arg(long, env = "CORRAL_MAX_MESSAGE_BYTES", default_value_t = 4 << 20)]
    pub max_message_bytes: usize,

    /// Largest PTY, in rows and in columns.
    #[arg(long, env = "CORRAL_MAX_PTY_ROWS", default_value_t = 1000)]
    pub max_pty_rows: u16,
    #[arg(long, env = "CORRAL_MAX_PTY_COLS", default_value_t = 1000)]
    pub max_pty_cols: u16,

    /// Most workers in one session.
    #[arg(long, env = "CORRAL_MAX_WORKERS_PER_SESSION", default_value_t = 64)]
    pub max_workers_per_session: usize,

    /// Most clients attached to one worker at once.
    #[arg(long, env = "CORRAL_MAX_CLIENTS_PER_WORKER", default_value_t = 64)]
    pub max_clients_per_worker: u32,

    /// The shell of terminal workers without a command. Default: `$SHELL`, else
    /// `/bin/sh`.
    #[arg(long, env = "CORRAL_SHELL")]
    pub shell: Option<PathBuf>,

    /// Environment variables set for every worker, `NAME=value` (repeatable);
    /// they override what workers inherit (e.g. `--worker-env LANG=C.UTF-8`).
    #[arg(long = "worker-env", value_name = "NAME=VALUE", value_parser = parse_env_pair)]
    pub worker_env: Vec<(String, String)>,

    /// How often the retention task runs (auto-archiving STOPPED sessions past the
    /// resume window, purging tombstones past their purge time), e.g. `60s`.
    #[arg(long, env = "CORRAL_REAPER_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub reaper_interval: Duration,

    /// A TOML file of agent profiles (`[profiles.<name>]` tables) that adds
    /// profiles or overrides fields of the built-in ones (claude, codex, gemini,
    /// aider, custom).
    #[arg(long, env = "CORRAL_PROFILES", value_name = "FILE")]
    pub profiles: Option<PathBuf>,

    /// Largest SendMessage prompt, in bytes.
    #[arg(long, env = "CORRAL_MAX_PROMPT_BYTES", default_value_t = 64 * 1024)]
    pub max_prompt_bytes: usize,

    /// How long an agent checkpoint is kept, e.g. `7d`.
    #[arg(long, env = "CORRAL_CHECKPOINT_TTL", default_value = "7d", value_parser = humantime::parse_duration)]
    pub checkpoint_ttl: Duration,

    /// Crashes in a row (non-zero exits while ACTIVE) after which an agent's
    /// session goes to ERROR; after each earlier crash the agent is restarted
    /// automatically from its last checkpoint.
    #[arg(long, env = "CORRAL_AGENT_MAX_CRASHES", default_value_t = 3)]
    pub agent_max_crashes: u32,

    /// Wait before restarting a crashed agent; doubled after each further crash.
    #[arg(long, env = "CORRAL_AGENT_RESTART_BACKOFF", default_value = "1s", value_parser = humantime::parse_duration)]
    pub agent_restart_backoff: Duration,

    /// How long a resumed agent has to show it loaded its conversation before
    /// Corral falls back to a new conversation.
    #[arg(long, env = "CORRAL_RESUME_VERIFY_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub resume_verify_timeout: Duration,

    /// How often agents' transcripts are read for new lines.
    #[arg(long, env = "CORRAL_TRANSCRIPT_POLL", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub transcript_poll: Duration,

    /// How long an agent's screen must show the same thing before its activity
    /// changes (a redraw in progress must not flip it).
    #[arg(long, env = "CORRAL_ACTIVITY_SETTLE", default_value = "300ms", value_parser = humantime::parse_duration)]
    pub activity_settle: Duration,

    /// What start-up does with sessions a previous run of the server left
    /// STARTING, ACTIVE or PAUSED: `resume` starts their workers again (terminals
    /// in the same directory, agents with their agent session id, scrollback
    /// kept; PAUSED sessions come back paused), `stop` marks them STOPPED
    /// (resumable). Either way leftover processes of the previous run are reaped.
    #[arg(long, env = "CORRAL_RESTART_POLICY", value_enum, default_value_t = RestartPolicy::Resume)]
    pub restart_policy: RestartPolicy,

    /// How long events are kept before the reaper purges them, e.g. `7d`.
    #[arg(long, env = "CORRAL_EVENT_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub event_retention: Duration,

    /// How often WatchEvents looks for events written by other server processes
    /// when LISTEN/NOTIFY is not available (SQLite), e.g. `500ms`.
    #[arg(long, env = "CORRAL_EVENT_POLL_INTERVAL", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub event_poll_interval: Duration,

    /// Scrollback is persisted when this many bytes of output are pending
    /// (pending output is looked at every 100 ms, and saved at most once per
    /// 100 ms: output faster than a ring per 100 ms is stored as the last ring
    /// of each; rows hold at most this many bytes)...
    #[arg(long, env = "CORRAL_SCROLLBACK_FLUSH_BYTES", default_value_t = 64 * 1024)]
    pub scrollback_flush_bytes: usize,

    /// ...or when the oldest pending byte is this old, e.g. `1s`; and when a
    /// worker stops or the server shuts down.
    #[arg(long, env = "CORRAL_SCROLLBACK_FLUSH_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub scrollback_flush_interval: Duration,

    /// Log filter (tracing `EnvFilter` syntax), e.g. `info,corral_server=debug`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log: String,

    /// A file of accepted tokens, one `name:sha256-hex[:admin]` per line (`#`
    /// comments). Only SHA-256 hashes are stored; `corrald token new NAME` makes a
    /// token and its line. With tokens configured every RPC but health needs
    /// `authorization: Bearer <token>` (or HTTP Basic `name:token`).
    #[arg(long, env = "CORRAL_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// More accepted tokens, in the format of `--token-file`, separated by commas
    /// or white space.
    #[arg(
        long,
        env = "CORRAL_TOKENS",
        hide_env_values = true,
        value_name = "ENTRIES"
    )]
    pub tokens: Option<String>,

    /// Who may use gRPC server reflection: `open` (anyone who can connect),
    /// `authenticated` (like every other RPC), or `off` (not served).
    #[arg(long, env = "CORRAL_REFLECTION", value_enum, default_value_t = ReflectionAccess::Authenticated)]
    pub reflection: ReflectionAccess,

    /// TLS certificate chain (PEM) of the server; with `--tls-key`, the server
    /// speaks TLS (rustls) only.
    #[arg(
        long,
        env = "CORRAL_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM) of the server.
    #[arg(
        long,
        env = "CORRAL_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// CA certificates (PEM) that sign client certificates: every client must then
    /// present one (mutual TLS). Without tokens, a client certificate is the
    /// credential: its principal is `cert:<first 16 hex digits of its SHA-256>`.
    #[arg(
        long,
        env = "CORRAL_TLS_CLIENT_CA",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_client_ca: Option<PathBuf>,

    /// Directories sessions may work in (repeatable; `:`-separated in the
    /// environment): a quick session's work dir and a worktree session's
    /// repository must lie inside one of them, both as written (after `..`) and
    /// once every symlink is resolved, else PERMISSION_DENIED.
    #[arg(
        long = "allowed-root",
        env = "CORRAL_ALLOWED_ROOTS",
        value_delimiter = ':',
        default_value = "/",
        value_name = "DIR"
    )]
    pub allowed_roots: Vec<PathBuf>,

    /// What terminal workers may run: `any` command, only the server's `shell`, or
    /// only the programs of `--allowed-command` (`list`). Refusals are
    /// PERMISSION_DENIED.
    #[arg(long, env = "CORRAL_TERMINAL_COMMANDS", value_enum, default_value_t = TerminalCommands::Any)]
    pub terminal_commands: TerminalCommands,

    /// A program terminal workers may run under `--terminal-commands list`
    /// (repeatable), matched exactly against the command's first word; the server's
    /// shell must be listed for workers without a command.
    #[arg(long = "allowed-command", value_name = "PROGRAM")]
    pub allowed_commands: Vec<String>,

    /// Most sessions stored at once (tombstones excluded).
    #[arg(long, env = "CORRAL_MAX_SESSIONS", default_value_t = 10_000)]
    pub max_sessions: u64,

    /// Most sessions one principal may have at once (tombstones excluded).
    #[arg(
        long,
        env = "CORRAL_MAX_SESSIONS_PER_PRINCIPAL",
        default_value_t = 1_000
    )]
    pub max_sessions_per_principal: u64,

    /// Input bytes per second one Attach stream may send (a token bucket holding one
    /// second's worth); a frame over the budget is refused with an `error` frame
    /// (RESOURCE_EXHAUSTED). 0: unlimited.
    #[arg(long, env = "CORRAL_MAX_INPUT_BYTES_PER_SECOND", default_value_t = 1 << 20)]
    pub max_input_bytes_per_second: u64,

    /// Most concurrent streams (calls) on one HTTP/2 connection
    /// (SETTINGS_MAX_CONCURRENT_STREAMS; clients queue beyond it).
    #[arg(long, env = "CORRAL_MAX_CONCURRENT_STREAMS", default_value_t = 128)]
    pub max_concurrent_streams: u32,

    /// Time a unary call may take, and a streaming call may take to open, before it
    /// is answered DEADLINE_EXCEEDED (the work itself still completes).
    #[arg(long, env = "CORRAL_UNARY_DEADLINE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub unary_deadline: Duration,

    /// An Attach stream with no frame either way for this long ends with
    /// DEADLINE_EXCEEDED. `0s`: never.
    #[arg(long, env = "CORRAL_STREAM_IDLE_TIMEOUT", default_value = "1h", value_parser = humantime::parse_duration)]
    pub stream_idle_timeout: Duration,

    /// An Attach or WatchEvents stream open this long ends with DEADLINE_EXCEEDED
    /// (WatchEvents: reconnect with the last sequence seen). `0s`: never.
    #[arg(long, env = "CORRAL_STREAM_MAX_DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub stream_max_duration: Duration,

    /// Tools that run instead of the server.
    #[command(subcommand)]
    pub tool: Option<Tool>,
}

/// Where the server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix-domain socket at this path (`unix:/path`).
    Unix(PathBuf),
}

impl ListenAddr {
    /// True when only this machine can connect: a loopback TCP address or a Unix
    /// socket.
    pub fn is_local(&self) -> bool {
        match self {
            ListenAddr::Tcp(addr) => addr.ip().is_loopback(),
            ListenAddr::Unix(_) => true,
        }
    }
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(format!(
                    "{text:?}: the socket path must be absolute (unix:/path)"
                ));
            }
            return Ok(ListenAddr::Unix(path));
        }
        text.parse::<SocketAddr>()
            .map(ListenAddr::Tcp)
            .map_err(|_| {
                format!("{text:?} is neither host:port (e.g. 127.0.0.1:50051) nor unix:/path")
            })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl From<SocketAddr> for ListenAddr {
    fn from(addr: SocketAddr) -> Self {
        ListenAddr::Tcp(addr)
    }
}

/// Who may use gRPC server reflection (`--reflection`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReflectionAccess {
    /// Served to anyone who can connect, like health.
    Open,
    /// Served to authenticated callers only.
    Authenticated,
    /// Not served (UNIMPLEMENTED).
    Off,
}

/// What terminal workers may run (`--terminal-commands`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TerminalCommands {
    /// Any command.
    Any,
    /// Only the server's shell (workers without a command).
    Shell,
    /// Only the programs given with `--allowed-command`.
    List,
}

impl fmt::Display for TerminalCommands {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TerminalCommands::Any => "any",
            TerminalCommands::Shell => "shell",
            TerminalCommands::List => "list",
        })
    }
}

/// `corrald` tools that run instead of the server.
#[derive(Clone, Debug, Subcommand)]
pub enum Tool {
    /// Make and hash access tokens for `--token-file` / `CORRAL_TOKENS`.
    #[command(subcommand)]
    Token(TokenTool),
}

/// `corrald token …`
#[derive(Clone, Debug, Subcommand)]
pub enum TokenTool {
    /// Generate a random token: prints the token (give it to the client) and its
    /// `--token-file` line (give that to the server).
    New {
        /// The principal's name (letters, digits, `.`, `_`, `-`, `@`).
        name: String,
        /// The principal sees and acts on every session, not only its own.
        #[arg(long)]
        admin: bool,
    },
    /// Read a token from standard input and print its `--token-file` line.
    Hash {
        /// The principal's name.
        name: String,
        /// The principal sees and acts on every session, not only its own.
        #[arg(long)]
        admin: bool,
    },
}

impl Config {
    /// Settings with every default and `data_dir` (for tests and embedding).
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = Config::parse_from(["corrald"]);
        config.data_dir = Some(data_dir.into());
        config.database_url = None;
        config.listen = ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 0)));
        config
    }

    /// The data directory, defaulted.
    pub fn data_dir(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(xdg).join("corral");
        }
        match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".local/share/corral"),
            None => PathBuf::from("/var/lib/corral"),
        }
    }

    /// The database URL, defaulted to SQLite in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir().join("corral.db").display()
            ),
        }
    }

    /// The shell of terminal workers, defaulted.
    pub fn shell(&self) -> PathBuf {
        if let Some(shell) = &self.shell {
            return shell.clone();
        }
        std::env::var_os("SHELL")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/bin/sh"))
    }

    /// Checks values that clap cannot, including the security settings (see
    /// [`Security::load`](crate::security::Security::load): token file, TLS files,
    /// allowed roots, and that a non-local listener has authentication): returns
    /// what is wrong, in words. Reads files: call it before the runtime starts or
    /// from a blocking task.
    pub fn validate(&self) -> Result<(), String> {
        self.check().map(|_| ())
    }

    /// [`validate`](Self::validate), returning the loaded security settings.
    pub fn check(&self) -> Result<crate::security::Security, String> {
        if self.reaper_interval.is_zero() {
            return Err("--reaper-interval must be longer than 0s".into());
        }
        if self.scrollback_bytes < 1024 {
            return Err(format!(
                "--scrollback-bytes {} is too small; use at least 1024",
                self.scrollback_bytes
            ));
        }
        if self.scrollback_flush_bytes == 0 || self.scrollback_flush_bytes > 4 << 20 {
            return Err(format!(
                "--scrollback-flush-bytes {} must be between 1 and {}",
                self.scrollback_flush_bytes,
                4 << 20
            ));
        }
        if self.scrollback_flush_interval.is_zero() || self.event_poll_interval.is_zero() {
            return Err(
                "--scrollback-flush-interval and --event-poll-interval must be above zero".into(),
            );
        }
        if self.max_input_frame_bytes == 0 || self.max_input_frame_bytes > self.max_message_bytes {
            return Err(format!(
                "--max-input-frame-bytes must be between 1 and --max-message-bytes ({})",
                self.max_message_bytes
            ));
        }
        if self.max_input_bytes_per_second != 0
            && self.max_input_bytes_per_second < self.max_input_frame_bytes as u64
        {
            return Err(format!(
                "--max-input-bytes-per-second {} is below --max-input-frame-bytes {}: the largest frame could never be sent (use 0 for unlimited)",
                self.max_input_bytes_per_second, self.max_input_frame_bytes
            ));
        }
        if self.max_prompt_bytes == 0 || self.max_prompt_bytes > self.max_message_bytes {
            return Err(format!(
                "--max-prompt-bytes must be between 1 and --max-message-bytes ({})",
                self.max_message_bytes
            ));
        }
        if self.transcript_poll.is_zero() {
            return Err("--transcript-poll must be more than 0".into());
        }
        crate::agent::Profiles::load(self.profiles.as_deref())?;
        if self.max_concurrent_streams == 0 {
            return Err("--max-concurrent-streams must be at least 1".into());
        }
        if self.unary_deadline.is_zero() {
            return Err("--unary-deadline must be longer than 0s".into());
        }
        if self.terminal_commands == TerminalCommands::List && self.allowed_commands.is_empty() {
            return Err(
                "--terminal-commands list needs at least one --allowed-command PROGRAM".into(),
            );
        }
        let url = self.database_url();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(format!(
                "--database-url {url:?} is not supported; use postgres://… or sqlite://…"
            ));
        }
        crate::security::Security::load(self)
    }
}

/// What start-up does with sessions a previous run left running (see
/// [`Config::restart_policy`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RestartPolicy {
    /// Start the workers again; PAUSED sessions come back paused.
    Resume,
    /// Mark the sessions STOPPED (they can be resumed later).
    Stop,
}

impl RestartPolicy {
    /// The flag's value (`resume`, `stop`).
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Resume => "resume",
            RestartPolicy::Stop => "stop",
        }
    }
}

/// Parses `NAME=value`.
fn parse_env_pair(pair: &str) -> Result<(String, String), String> {
    let (name, value) = pair
        .split_once('=')
        .ok_or_else(|| format!("{pair:?} is not NAME=value"))?;
    let valid = !name.is_empty()
        && !name.as_bytes()[0].is_ascii_digit()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(format!(
            "{name:?} is not a variable name (letters, digits, '_')"
        ));
    }
    Ok((name.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let config = Config::with_data_dir("/tmp/corral-test");
        assert_eq!(config.scrollback_bytes, 1 << 20);
        assert_eq!(config.stop_grace, Duration::from_secs(10));
        assert_eq!(config.resume_window, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(config.allowed_roots, vec![PathBuf::from("/")]);
        assert_eq!(config.reaper_interval, Duration::from_secs(60));
        assert_eq!(config.restart_policy, RestartPolicy::Resume);
        assert_eq!(config.event_retention, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(config.scrollback_flush_bytes, 64 * 1024);
        assert_eq!(config.scrollback_flush_interval, Duration::from_secs(1));
        assert_eq!(
            config.database_url(),
            "sqlite:///tmp/corral-test/corral.db?mode=rwc"
        );
        assert!(config.validate().is_ok());
    }

    #[test]
    fn worker_env_pairs() {
        assert_eq!(parse_env_pair("A_1=x=y"), Ok(("A_1".into(), "x=y".into())));
        assert!(parse_env_pair("noequals").is_err());
        assert!(parse_env_pair("1A=x").is_err());
        assert!(parse_env_pair("=x").is_err());
    }

    #[test]
    fn allowed_roots_are_repeatable_and_checked() {
        let config =
            Config::parse_from(["corrald", "--allowed-root", "/tmp", "--allowed-root", "/"]);
        assert_eq!(
            config.allowed_roots,
            vec![PathBuf::from("/tmp"), PathBuf::from("/")]
        );
        assert!(config.validate().is_ok());
        let relative = Config::parse_from(["corrald", "--allowed-root", "work"]);
        assert!(relative.validate().unwrap_err().contains("absolute"));
        let missing = Config::parse_from(["corrald", "--allowed-root", "/nonexistent/corral"]);
        assert!(
            missing
                .validate()
                .unwrap_err()
                .contains("--allowed-root /nonexistent/corral")
        );
    }

    #[test]
    fn non_loopback_listen_is_refused_without_authentication() {
        let mut config = Config::with_data_dir("/tmp/x");
        config.listen = "0.0.0.0:50051".parse().unwrap();
        let refusal = config.validate().unwrap_err();
        assert!(refusal.contains("without authentication"), "{refusal}");
        assert!(
            refusal.contains("--token-file"),
            "says what to do: {refusal}"
        );
    }

    #[test]
    fn non_loopback_listen_is_allowed_with_tokens() {
        let mut config = Config::with_data_dir("/tmp/x");
        config.listen = "0.0.0.0:50051".parse().unwrap();
        config.tokens = Some(format!(
            "ci:{}",
            crate::auth::tokens::hash_token("a-long-random-token")
        ));
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            "127.0.0.1:1".parse::<ListenAddr>(),
            Ok(ListenAddr::Tcp("127.0.0.1:1".parse().unwrap()))
        );
        assert_eq!(
            "unix:/run/corral.sock".parse::<ListenAddr>(),
            Ok(ListenAddr::Unix("/run/corral.sock".into()))
        );
        assert!("unix:relative.sock".parse::<ListenAddr>().is_err());
        assert!("localhost".parse::<ListenAddr>().is_err());
        assert!(ListenAddr::Unix("/x".into()).is_local());
        assert!(!"[::]:1".parse::<ListenAddr>().unwrap().is_local());
        assert_eq!(
            ListenAddr::Unix("/x.sock".into()).to_string(),
            "unix:/x.sock"
        );
    }

    #[test]
    fn input_rate_must_fit_the_largest_frame() {
        let mut config = Config::with_data_dir("/tmp/x");
        config.max_input_bytes_per_second = 10;
        assert!(config.validate().unwrap_err().contains("per-second"));
        config.max_input_bytes_per_second = 0;
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn command_list_needs_commands() {
        let mut config = Config::with_data_dir("/tmp/x");
        config.terminal_commands = TerminalCommands::List;
        assert!(config.validate().unwrap_err().contains("--allowed-command"));
    }
}
