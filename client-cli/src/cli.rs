//! The command line: every subcommand, option and help text, as clap derive types.
//!
//! This module only *describes* the command line. Parsing of individual values that
//! need more than clap's built-ins (`k=v` pairs, argv strings, replay specs, signals,
//! detach keys, event types) lives in [`crate::parse`] and [`crate::detach`]; turning
//! the parsed arguments into RPCs lives in [`crate::commands`].
//!
//! Global options (`--server`, `--token`, `--output`) are `global = true`, so they may
//! be given before or after the subcommand (`corral -o json session list` and
//! `corral session list -o json` are the same).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use corral::pb;

use crate::detach::DetachKeys;
use crate::parse::{Argv, KeyValue, ReplaySpec};

/// The address used when neither `--server` nor `CORRAL_SERVER` is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";

/// corral: the command-line client of Corral, the supervisor of AI coding-agent
/// sessions and terminals.
///
/// A session is named by its display name or its id (`demo`, `sessions/demo` and
/// `sessions/<uuid>` all work); a worker by its display name or id within its
/// session.
#[derive(Debug, Parser)]
#[command(
    name = "corral",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// The server: `host:port`, `http://host:port`, `https://host:port` (TLS) or
    /// `unix:/path/to.sock`.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "CORRAL_SERVER",
        default_value = DEFAULT_SERVER,
        value_name = "URL"
    )]
    pub server: String,

    /// Bearer token sent as `authorization: Bearer <TOKEN>` on every call.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "CORRAL_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// CA certificates (PEM) that sign an https:// server's certificate (default:
    /// the Mozilla roots).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "CORRAL_TLS_CA",
        value_name = "PEM"
    )]
    pub tls_ca: Option<PathBuf>,

    /// A client certificate (PEM) for servers that require one (with --tls-key).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "CORRAL_TLS_CERT",
        value_name = "PEM"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "CORRAL_TLS_KEY",
        value_name = "PEM"
    )]
    pub tls_key: Option<PathBuf>,

    /// Output format: tables for people, or the response message as proto3 JSON.
    #[arg(
        short,
        long,
        global = true,
        help_heading = "Global options",
        value_enum,
        default_value_t = OutputFormat::Table,
        value_name = "FORMAT"
    )]
    pub output: OutputFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// How results are printed: tables and plain lines for people, or the response
/// message as proto3 JSON (one object per line for event streams).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// The top-level subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, inspect, list, change and drive sessions through their lifecycle.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Manage the workers (agents and terminals) of a session.
    #[command(subcommand)]
    Worker(WorkerCommand),
    /// Attach this terminal to a worker (detach with ctrl-p,ctrl-q by default).
    Attach(AttachArgs),
    /// List the conversation of a session's agent workers, oldest first.
    Messages(MessagesArgs),
    /// Type a prompt into a session's agent worker.
    Send(SendArgs),
    /// Export a session's metadata and conversation as JSON, CSV or Markdown.
    Export(ExportArgs),
    /// Full-text search over every session's conversation.
    Search(SearchArgs),
    /// List, inspect, delete and resume from agent checkpoints.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
    /// Print the event log; with --follow, keep streaming new events.
    Events(EventsArgs),
    /// List the agent profiles the server offers (for `--agent`).
    Profiles,
}

// ---------------------------------------------------------------------------------
// session
// ---------------------------------------------------------------------------------

/// `corral session ...`
#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Create a session (state CREATED; nothing runs until `session start`).
    Create(SessionCreateArgs),
    /// Show a session with its workers.
    Get(SessionRefArgs),
    /// List sessions, newest first.
    #[command(visible_alias = "ls")]
    List(SessionListArgs),
    /// Change display name, description or labels.
    Update(SessionUpdateArgs),
    /// Delete a session (CREATED, STOPPED or ARCHIVED).
    #[command(visible_alias = "rm")]
    Delete(SessionDeleteArgs),
    /// Start a CREATED session: spawn every worker.
    Start(SessionRefArgs),
    /// Suspend every process of an ACTIVE session (SIGSTOP).
    Pause(SessionRefArgs),
    /// Resume a PAUSED session, or a STOPPED one within the resume window.
    Resume(SessionRefArgs),
    /// Stop every process (SIGTERM, then SIGKILL after the grace period).
    Stop(SessionStopArgs),
    /// Stop and start every worker of an ACTIVE session, keeping history.
    Restart(SessionRefArgs),
    /// Archive a STOPPED session (kept permanently, read-only).
    Archive(SessionRefArgs),
    /// Reopen an ARCHIVED session (back to STOPPED).
    Reopen(SessionRefArgs),
    /// Retry starting a session in ERROR.
    Retry(SessionRefArgs),
    /// Discard a session in ERROR (→ DELETED).
    Discard(SessionRefArgs),
}

/// A session and an optional etag: the arguments of most lifecycle actions.
#[derive(Debug, Args)]
pub struct SessionRefArgs {
    /// The session: display name, id, or `sessions/<name-or-id>`.
    #[arg(value_name = "SESSION", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub session: String,
    /// Only act if the session's etag still equals this (ABORTED otherwise).
    #[arg(long, value_name = "ETAG")]
    pub etag: Option<String>,
}

/// `corral session create`
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("source").required(true).args(["work_dir", "repository"])
))]
pub struct SessionCreateArgs {
    /// Quick session in an existing directory (made absolute against the current
    /// directory before sending).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["repository", "branch", "base_ref"])]
    pub work_dir: Option<PathBuf>,
    /// Worktree session: the git repository to add a worktree to (made absolute).
    #[arg(long, value_name = "PATH", requires = "branch")]
    pub repository: Option<PathBuf>,
    /// Worktree session: the branch to check out (created from --base-ref if new).
    #[arg(long, value_name = "BRANCH", requires = "repository")]
    pub branch: Option<String>,
    /// Worktree session: where a new branch starts (default HEAD).
    #[arg(long, value_name = "REF", requires = "repository")]
    pub base_ref: Option<String>,
    /// Display name (default: the work dir's base name plus a short suffix).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Free-text description.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// A label `key=value` (repeatable), e.g. `--label task=JIRA-12`.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<KeyValue>,
    /// A terminal worker `NAME=COMMAND` (repeatable); the command is split like a
    /// shell would; an empty command runs the user's shell.
    #[arg(long = "terminal", value_name = "NAME=COMMAND")]
    pub terminals: Vec<KeyValue>,
    /// An agent worker started from this server-side profile (see `corral profiles`).
    #[arg(long, value_name = "PROFILE")]
    pub agent: Option<String>,
    /// The agent's model.
    #[arg(long, value_name = "MODEL", requires = "agent")]
    pub model: Option<String>,
    /// An extra argument for the agent (repeatable).
    #[arg(
        long = "agent-arg",
        value_name = "ARG",
        requires = "agent",
        allow_hyphen_values = true
    )]
    pub agent_args: Vec<String>,
    /// Only validate: print the would-be session, create nothing.
    #[arg(long)]
    pub validate_only: bool,
}

/// Session states, for `session list --state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    Created,
    Starting,
    Active,
    Paused,
    Stopped,
    Archived,
    Error,
    Deleted,
}

impl StateArg {
    /// The proto enum value this argument names.
    pub fn to_pb(self) -> pb::session::State {
        use pb::session::State;
        match self {
            Self::Created => State::Created,
            Self::Starting => State::Starting,
            Self::Active => State::Active,
            Self::Paused => State::Paused,
            Self::Stopped => State::Stopped,
            Self::Archived => State::Archived,
            Self::Error => State::Error,
            Self::Deleted => State::Deleted,
        }
    }
}

/// Session kinds, for `session list --kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Quick,
    Worktree,
}

impl KindArg {
    /// The proto enum value this argument names.
    pub fn to_pb(self) -> pb::session::Kind {
        match self {
            Self::Quick => pb::session::Kind::Quick,
            Self::Worktree => pb::session::Kind::Worktree,
        }
    }
}

/// `corral session list`
#[derive(Debug, Args)]
pub struct SessionListArgs {
    /// Only sessions in this state (repeatable; several are OR'ed).
    #[arg(long = "state", value_enum, ignore_case = true, value_name = "STATE")]
    pub states: Vec<StateArg>,
    /// Only sessions of this kind.
    #[arg(long, value_enum, ignore_case = true)]
    pub kind: Option<KindArg>,
    /// Only sessions with this label value (repeatable; all must match).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<KeyValue>,
    /// An extra AIP-160 filter expression, AND'ed with the options above, e.g.
    /// `display_name = "demo" OR labels.workflow = "review"`.
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    /// `create_time` (default) or `update_time`, optionally followed by ` desc`/` asc`.
    #[arg(long, value_name = "FIELD")]
    pub order_by: Option<String>,
    /// Include DELETED tombstones.
    #[arg(long)]
    pub show_deleted: bool,
    #[command(flatten)]
    pub page: PageArgs,
}

/// Pagination options shared by the list commands.
#[derive(Debug, Args)]
pub struct PageArgs {
    /// At most this many results per page (server default when omitted).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub page_size: Option<i32>,
    /// Continue from the `next_page_token` of a previous call.
    #[arg(long, value_name = "TOKEN", conflicts_with = "all")]
    pub page_token: Option<String>,
    /// Follow `next_page_token` until every page is read.
    #[arg(long)]
    pub all: bool,
}

/// `corral session update`
#[derive(Debug, Args)]
pub struct SessionUpdateArgs {
    /// The session: display name, id, or `sessions/<name-or-id>`.
    #[arg(value_name = "SESSION", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub session: String,
    /// New display name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// New description (`--description ''` clears it).
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Set a label `key=value` (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<KeyValue>,
    /// Remove a label (repeatable).
    #[arg(long = "remove-label", value_name = "KEY")]
    pub remove_labels: Vec<String>,
    /// Only update if the session's etag still equals this (ABORTED otherwise).
    #[arg(long, value_name = "ETAG")]
    pub etag: Option<String>,
}

/// `corral session delete`
#[derive(Debug, Args)]
pub struct SessionDeleteArgs {
    #[command(flatten)]
    pub target: SessionRefArgs,
    /// Also delete the worktree's branch (worktree sessions only).
    #[arg(long)]
    pub delete_branch: bool,
}

/// `corral session stop`
#[derive(Debug, Args)]
pub struct SessionStopArgs {
    #[command(flatten)]
    pub target: SessionRefArgs,
    /// Milliseconds between SIGTERM and SIGKILL (default: the server's grace).
    #[arg(long, value_name = "MS")]
    pub grace_ms: Option<u32>,
}

// ---------------------------------------------------------------------------------
// worker
// ---------------------------------------------------------------------------------

/// `corral worker ...`
#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// Add a terminal (default) or agent worker to a session.
    Create(WorkerCreateArgs),
    /// List the workers of a session.
    #[command(visible_alias = "ls")]
    List(WorkerListArgs),
    /// Show one worker.
    Get(WorkerRefArgs),
    /// Remove a worker (a running process is ended first).
    #[command(visible_alias = "rm")]
    Delete(WorkerRefArgs),
    /// Set a worker's terminal size.
    Resize(WorkerResizeArgs),
    /// Send a signal to a worker's processes.
    Signal(WorkerSignalArgs),
    /// Attach this terminal to a worker (same as `corral attach`).
    Attach(AttachArgs),
}

/// A session and one of its workers.
#[derive(Debug, Args)]
pub struct WorkerRefArgs {
    /// The session: display name, id, or `sessions/<name-or-id>`.
    #[arg(value_name = "SESSION", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub session: String,
    /// The worker: display name or id within the session.
    #[arg(value_name = "WORKER", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub worker: String,
}

/// `corral worker list`
#[derive(Debug, Args)]
pub struct WorkerListArgs {
    /// The session: display name, id, or `sessions/<name-or-id>`.
    #[arg(value_name = "SESSION", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub session: String,
}

/// `corral worker create`
#[derive(Debug, Args)]
pub struct WorkerCreateArgs {
    /// The session: display name, id, or `sessions/<name-or-id>`.
    #[arg(value_name = "SESSION", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub session: String,
    /// Display name (default: `terminal-N` for terminals, the profile for agents).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Terminal: the command line, split like a shell would (default: the user's
    /// shell), e.g. `--command "tail -f /var/log/syslog"`.
    #[arg(long, value_name = "COMMAND", conflicts_with_all = ["agent", "argv"])]
    pub command: Option<Argv>,
    /// Terminal: the command as separate arguments after `--`, e.g.
    /// `corral worker create demo --name logs -- tail -f app.log`.
    #[arg(last = true, value_name = "ARGV", conflicts_with = "agent")]
    pub argv: Vec<String>,
    /// Terminal: an extra environment variable `NAME=value` (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE", conflicts_with = "agent")]
    pub env: Vec<KeyValue>,
    /// Agent: start this server-side profile (see `corral profiles`).
    #[arg(long, value_name = "PROFILE")]
    pub agent: Option<String>,
    /// Agent: the model.
    #[arg(long, value_name = "MODEL", requires = "agent")]
    pub model: Option<String>,
    /// Agent: an extra argument (repeatable).
    #[arg(
        long = "agent-arg",
        value_name = "ARG",
        requires = "agent",
        allow_hyphen_values = true
    )]
    pub agent_args: Vec<String>,
}

/// `corral worker resize`
#[derive(Debug, Args)]
pub struct WorkerResizeArgs {
    #[command(flatten)]
    pub target: WorkerRefArgs,
    /// Rows (lines).
    #[arg(long, value_name = "ROWS", value_parser = clap::value_parser!(u32).range(1..))]
    pub rows: u32,
    /// Columns (characters per line).
    #[arg(long, value_name = "COLS", value_parser = clap::value_parser!(u32).range(1..))]
    pub cols: u32,
}

/// Who receives a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SignalTargetArg {
    /// The terminal's foreground process group, as a key typed at it would.
    Foreground,
    /// The worker's own process group.
    ProcessGroup,
    /// Every process of the terminal's session.
    Session,
}

impl SignalTargetArg {
    /// The proto enum value this argument names.
    pub fn to_pb(self) -> pb::signal_worker_request::Target {
        use pb::signal_worker_request::Target;
        match self {
            Self::Foreground => Target::Foreground,
            Self::ProcessGroup => Target::ProcessGroup,
            Self::Session => Target::Session,
        }
    }
}

/// `corral worker signal`
#[derive(Debug, Args)]
pub struct WorkerSignalArgs {
    #[command(flatten)]
    pub target: WorkerRefArgs,
    /// The signal: `INT`, `SIGINT`, `sigint` or `2`. One of HUP INT QUIT KILL USR1
    /// USR2 TERM CONT STOP TSTP WINCH.
    #[arg(value_name = "SIGNAL", value_parser = crate::parse::parse_signal)]
    pub signal: pb::Signal,
    /// Who receives it (default: the foreground process group).
    #[arg(long = "target", value_enum, value_name = "TARGET")]
    pub to: Option<SignalTargetArg>,
}

// ---------------------------------------------------------------------------------
// attach
// ---------------------------------------------------------------------------------

/// `corral attach` / `corral worker attach`
#[derive(Debug, Args)]
#[command(after_help = "\
When stdin is a terminal it is put in raw mode: every key goes to the worker, and the \
detach keys (default ctrl-p,ctrl-q) leave without stopping it. When stdin is not a \
terminal its bytes are forwarded as they are; at end of input the output keeps coming \
until the worker has been quiet for half a second, then the client detaches. The exit \
code is the worker's when it exits while attached, 0 after a detach.")]
pub struct AttachArgs {
    /// The session: display name, id, or `sessions/<name-or-id>`.
    #[arg(value_name = "SESSION", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub session: String,
    /// The worker (default: the session's first worker).
    #[arg(value_name = "WORKER", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub worker: Option<String>,
    /// The key sequence that detaches: comma-separated keys, each `ctrl-<letter>`,
    /// `ctrl-@`, `ctrl-[`, `ctrl-\`, `ctrl-]`, `ctrl-^`, `ctrl-_` or one printable
    /// character.
    #[arg(long, value_name = "KEYS", default_value = "ctrl-p,ctrl-q")]
    pub detach_keys: DetachKeys,
    /// History to replay first: `all` (the scrollback), `none`, `last:N` (the last N
    /// bytes) or `from:N` (from absolute output offset N).
    #[arg(long, value_name = "SPEC", default_value = "all")]
    pub replay: ReplaySpec,
    /// Watch only: do not read stdin; leave with Ctrl-C.
    #[arg(long)]
    pub read_only: bool,
}

// ---------------------------------------------------------------------------------
// conversation
// ---------------------------------------------------------------------------------

/// `corral messages`
#[derive(Debug, Args)]
pub struct MessagesArgs {
    /// The session: display name, id, or `sessions/<name-or-id>`.
    #[arg(value_name = "SESSION", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub session: String,
    #[command(flatten)]
    pub page: PageArgs,
}

/// `corral send`
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The session: display name, id, or `sessions/<name-or-id>`.
    #[arg(value_name = "SESSION", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub session: String,
    /// The prompt; `-` reads it from stdin.
    #[arg(value_name = "TEXT", allow_hyphen_values = true)]
    pub text: String,
    /// The agent worker (default: the session's first agent worker).
    #[arg(long, value_name = "WORKER")]
    pub worker: Option<String>,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormatArg {
    /// One JSON document `{"session": {...}, "messages": [...]}`.
    Json,
    /// RFC 4180 CSV, one row per message.
    Csv,
    /// A readable transcript.
    Markdown,
}

impl ExportFormatArg {
    /// The proto enum value this argument names.
    pub fn to_pb(self) -> pb::export_session_request::Format {
        use pb::export_session_request::Format;
        match self {
            Self::Json => Format::Json,
            Self::Csv => Format::Csv,
            Self::Markdown => Format::Markdown,
        }
    }
}

/// `corral export`
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The session: display name, id, or `sessions/<name-or-id>`.
    #[arg(value_name = "SESSION", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub session: String,
    /// The document format.
    #[arg(long, value_enum, default_value_t = ExportFormatArg::Markdown)]
    pub format: ExportFormatArg,
    /// Write to this file instead of stdout (removed again if the export fails).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// `corral search`
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Words to find; every word must match.
    #[arg(value_name = "QUERY")]
    pub query: String,
    /// Restrict the sessions searched (same syntax as `session list --filter`).
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
    #[command(flatten)]
    pub page: PageArgs,
}

// ---------------------------------------------------------------------------------
// checkpoint
// ---------------------------------------------------------------------------------

/// `corral checkpoint ...`
#[derive(Debug, Subcommand)]
pub enum CheckpointCommand {
    /// List the checkpoints of a session or of one of its workers, newest first.
    #[command(visible_alias = "ls")]
    List(CheckpointListArgs),
    /// Show one checkpoint (with its transcript delta and scrollback tail with --full).
    Get(CheckpointGetArgs),
    /// Delete one checkpoint.
    #[command(visible_alias = "rm")]
    Delete(CheckpointNameArgs),
    /// Start the agent again from a checkpoint (restoring its transcript if gone).
    Resume(CheckpointNameArgs),
}

/// `corral checkpoint list`
#[derive(Debug, Args)]
pub struct CheckpointListArgs {
    /// The session: display name, id, or `sessions/<name-or-id>`.
    #[arg(value_name = "SESSION", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub session: String,
    /// Only this worker's checkpoints.
    #[arg(value_name = "WORKER", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub worker: Option<String>,
    /// Ask for the FULL view (transcript delta and scrollback tail).
    #[arg(long)]
    pub full: bool,
}

/// `corral checkpoint get`
#[derive(Debug, Args)]
pub struct CheckpointGetArgs {
    /// The full resource name:
    /// `sessions/<s>/workers/<w>/checkpoints/<c>` (as `checkpoint list` prints it).
    #[arg(value_name = "NAME", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub name: String,
    /// Print the transcript delta and scrollback tail too.
    #[arg(long)]
    pub full: bool,
}

/// A checkpoint's resource name.
#[derive(Debug, Args)]
pub struct CheckpointNameArgs {
    /// The full resource name:
    /// `sessions/<s>/workers/<w>/checkpoints/<c>` (as `checkpoint list` prints it).
    #[arg(value_name = "NAME", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub name: String,
}

// ---------------------------------------------------------------------------------
// events
// ---------------------------------------------------------------------------------

/// `corral events`
#[derive(Debug, Args)]
#[command(after_help = "\
Each event is printed as `<seq> <time> <type> <session> <detail>` (or one JSON object \
per line with -o json). With --follow, a broken stream is reconnected with backoff \
(1s, 2s, 4s ... 30s) from the last sequence seen.")]
pub struct EventsArgs {
    /// Keep streaming new events after the stored ones (WatchEvents).
    #[arg(short, long)]
    pub follow: bool,
    /// Start after this sequence number (default 0: from the oldest kept event).
    #[arg(long, value_name = "SEQ", conflicts_with = "resume")]
    pub after: Option<i64>,
    /// Only events of this session.
    #[arg(long, value_name = "SESSION")]
    pub session: Option<String>,
    /// Only events of this type (repeatable), e.g. `session-state-changed` or
    /// `WORKER_EXITED`.
    #[arg(long = "type", value_name = "TYPE", value_parser = crate::parse::parse_event_type)]
    pub types: Vec<pb::event::Type>,
    /// Write the last printed sequence to this file after each event. Without a
    /// value: `$XDG_STATE_HOME/corral/events.seq` (or
    /// `~/.local/state/corral/events.seq`).
    #[arg(long, value_name = "PATH", num_args = 0..=1)]
    pub state_file: Option<Option<PathBuf>>,
    /// Start after the sequence stored in the state file (and keep updating it).
    #[arg(long)]
    pub resume: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("corral").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli = parse(&["session", "list", "-o", "json", "--server", "h:1"]).unwrap();
        assert_eq!(cli.output, OutputFormat::Json);
        assert_eq!(cli.server, "h:1");
    }

    #[test]
    fn create_needs_exactly_one_source() {
        assert!(parse(&["session", "create"]).is_err());
        assert!(parse(&["session", "create", "--work-dir", "."]).is_ok());
        assert!(parse(&["session", "create", "--repository", "r", "--branch", "b"]).is_ok());
        assert!(parse(&["session", "create", "--repository", "r"]).is_err());
        assert!(
            parse(&[
                "session",
                "create",
                "--work-dir",
                ".",
                "--repository",
                "r",
                "--branch",
                "b"
            ])
            .is_err()
        );
        assert!(parse(&["session", "create", "--work-dir", ".", "--model", "m"]).is_err());
    }

    #[test]
    fn states_are_case_insensitive_and_repeatable() {
        let cli = parse(&["session", "list", "--state", "ACTIVE", "--state", "paused"]).unwrap();
        let Command::Session(SessionCommand::List(args)) = cli.command else {
            panic!("not a session list");
        };
        assert_eq!(args.states, [StateArg::Active, StateArg::Paused]);
        assert!(parse(&["session", "list", "--state", "bogus"]).is_err());
    }

    #[test]
    fn attach_values_are_checked_by_clap() {
        let cli = parse(&[
            "attach",
            "demo",
            "--replay",
            "last:100",
            "--detach-keys",
            "ctrl-a,d",
        ])
        .unwrap();
        let Command::Attach(args) = cli.command else {
            panic!("not attach");
        };
        assert_eq!(args.replay, ReplaySpec::Last(100));
        assert_eq!(args.detach_keys.as_bytes(), [1, b'd']);
        assert!(args.worker.is_none());
        let bad = parse(&["attach", "demo", "--detach-keys", "ctrl-1"]).unwrap_err();
        assert_eq!(bad.exit_code(), 2);
        assert!(parse(&["worker", "attach", "demo", "shell", "--replay", "nope"]).is_err());
    }

    #[test]
    fn worker_create_takes_a_command_or_argv_or_an_agent() {
        let cli = parse(&["worker", "create", "demo", "--", "tail", "-f", "x"]).unwrap();
        let Command::Worker(WorkerCommand::Create(args)) = cli.command else {
            panic!("not worker create");
        };
        assert_eq!(args.argv, ["tail", "-f", "x"]);
        assert!(parse(&["worker", "create", "demo", "--command", "ls", "--", "ls"]).is_err());
        assert!(
            parse(&[
                "worker", "create", "demo", "--agent", "claude", "--env", "A=1"
            ])
            .is_err()
        );
        assert!(parse(&["worker", "create", "demo", "--command", "'unterminated"]).is_err());
    }

    #[test]
    fn signals_and_event_types() {
        let cli = parse(&["worker", "signal", "demo", "shell", "sigterm"]).unwrap();
        let Command::Worker(WorkerCommand::Signal(args)) = cli.command else {
            panic!("not worker signal");
        };
        assert_eq!(args.signal, pb::Signal::Sigterm);
        assert!(parse(&["worker", "signal", "demo", "shell", "BOGUS"]).is_err());
        let cli = parse(&["events", "--type", "worker-exited", "--state-file"]).unwrap();
        let Command::Events(args) = cli.command else {
            panic!("not events");
        };
        assert_eq!(args.types, [pb::event::Type::WorkerExited]);
        assert_eq!(args.state_file, Some(None));
        assert!(parse(&["events", "--after", "3", "--resume"]).is_err());
    }

    #[test]
    fn send_accepts_a_dash_for_stdin() {
        let cli = parse(&["send", "demo", "-"]).unwrap();
        let Command::Send(args) = cli.command else {
            panic!("not send");
        };
        assert_eq!(args.text, "-");
    }
}
