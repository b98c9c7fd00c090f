//! Every setting of `corrald`, with its default, flag and environment variable, in
//! one place.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// `corrald`: runs and supervises AI coding-agent sessions and terminals, served
/// over gRPC (package corral.v1).
#[derive(Clone, Debug, Parser)]
#[command(name = "corrald", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on. Non-loopback addresses are refused unless
    /// authentication is configured.
    #[arg(long, env = "CORRAL_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

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

    /// A directory under which work dirs and git repositories may lie
    /// (repeatable; default `/`). A quick session's work dir or a worktree
    /// session's repository outside every root is refused with PERMISSION_DENIED.
    /// Roots are canonicalized (symlinks resolved) at start-up. The environment
    /// variable takes a `:`-separated list, like `PATH`.
    #[arg(
        long = "allowed-root",
        env = "CORRAL_ALLOWED_ROOTS",
        value_name = "DIR",
        value_delimiter = ':',
        default_value = "/"
    )]
    pub allowed_roots: Vec<PathBuf>,

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

    /// Log filter (tracing `EnvFilter` syntax), e.g. `info,corral_server=debug`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log: String,
}

impl Config {
    /// Settings with every default and `data_dir` (for tests and embedding).
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = Config::parse_from(["corrald"]);
        config.data_dir = Some(data_dir.into());
        config.database_url = None;
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
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

    /// The allowed roots, canonicalized; a root that cannot be resolved is kept as
    /// given (and [`validate`](Self::validate) reports it).
    pub fn allowed_roots(&self) -> Vec<PathBuf> {
        self.allowed_roots
            .iter()
            .map(|root| std::fs::canonicalize(root).unwrap_or_else(|_| root.clone()))
            .collect()
    }

    /// Checks values that clap cannot: returns what is wrong, in words.
    pub fn validate(&self) -> Result<(), String> {
        if self.allowed_roots.is_empty() {
            return Err("--allowed-root: give at least one directory (default /)".into());
        }
        for root in &self.allowed_roots {
            if !root.is_absolute() {
                return Err(format!(
                    "--allowed-root {} is not an absolute path",
                    root.display()
                ));
            }
            if !root.is_dir() {
                return Err(format!(
                    "--allowed-root {} is not an existing directory",
                    root.display()
                ));
            }
        }
        if self.reaper_interval.is_zero() {
            return Err("--reaper-interval must be longer than 0s".into());
        }
        if self.scrollback_bytes < 1024 {
            return Err(format!(
                "--scrollback-bytes {} is too small; use at least 1024",
                self.scrollback_bytes
            ));
        }
        if self.max_input_frame_bytes == 0 || self.max_input_frame_bytes > self.max_message_bytes {
            return Err(format!(
                "--max-input-frame-bytes must be between 1 and --max-message-bytes ({})",
                self.max_message_bytes
            ));
        }
        if !self.listen.ip().is_loopback() {
            return Err(format!(
                "refusing to listen on {} without authentication: Corral serves shells; listen on 127.0.0.1 (or ::1)",
                self.listen
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
        let url = self.database_url();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(format!(
                "--database-url {url:?} is not supported; use postgres://… or sqlite://…"
            ));
        }
        Ok(())
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
                .contains("existing directory")
        );
    }

    #[test]
    fn non_loopback_listen_is_refused() {
        let mut config = Config::with_data_dir("/tmp/x");
        config.listen = "0.0.0.0:50051".parse().unwrap();
        assert!(
            config
                .validate()
                .unwrap_err()
                .contains("without authentication")
        );
    }
}
