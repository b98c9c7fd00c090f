//! `corral events`: the event log, once (`ListEvents`, page after page until caught
//! up) or followed (`WatchEvents`, reconnecting with backoff from the last sequence
//! seen when the stream breaks).
//!
//! Each event is one line, `<seq> <time> <type> <session> <detail>`, or one JSON
//! object per line with `-o json`. With a state file, the sequence of every printed
//! event is saved (atomically: written aside, then renamed) so that `--resume`
//! continues after it, across runs and reconnects.
//!
//! `ListEvents` has no type filter, so `--type` is applied here for it; `WatchEvents`
//! filters on the server.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use corral::pb;
use corral::pb::session_service_client::SessionServiceClient;
use corral::pb::worker_service_client::WorkerServiceClient;
use tonic::Code;

use super::Context;
use crate::cli::EventsArgs;
use crate::client::AuthChannel;
use crate::error::{CliError, code_name};
use crate::names::{last_segment, session_name};
use crate::output::display::{
    event_type, exit_long, local_rfc3339, session_action, session_state, worker_activity,
};
use crate::output::{Output, notice};

/// Events per `ListEvents` page (the server's maximum).
const PAGE_SIZE: i32 = 1000;
/// First reconnect delay; doubled after each failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest reconnect delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs `corral events`.
pub async fn run(ctx: &Context, args: EventsArgs) -> Result<(), CliError> {
    let state_file = match (&args.state_file, args.resume) {
        (Some(Some(path)), _) => Some(path.clone()),
        (Some(None), _) | (None, true) => Some(default_state_file()?),
        (None, false) => None,
    };
    let after = match (&state_file, args.resume) {
        (Some(path), true) => read_state(path)?,
        _ => args.after.unwrap_or(0),
    };
    let mut printer = Printer {
        out: ctx.out,
        state_file,
        last: after,
        sessions: ctx.clients.sessions(),
        workers: ctx.clients.workers(),
        names: HashMap::new(),
    };
    let filter = Filter {
        session: args
            .session
            .as_deref()
            .map(session_name)
            .unwrap_or_default(),
        types: args.types,
    };
    if args.follow {
        follow(ctx, &filter, &mut printer).await
    } else {
        list(ctx, &filter, &mut printer).await
    }
}

/// Which events to print.
struct Filter {
    /// `sessions/{session}`, or empty for all.
    session: String,
    /// Only these types; empty for all.
    types: Vec<pb::event::Type>,
}

impl Filter {
    fn matches(&self, event: &pb::Event) -> bool {
        self.types.is_empty() || self.types.iter().any(|t| *t as i32 == event.r#type)
    }
}

/// `ListEvents` until a page comes back empty.
async fn list(ctx: &Context, filter: &Filter, printer: &mut Printer) -> Result<(), CliError> {
    let mut client = ctx.clients.events();
    let mut after = printer.last;
    loop {
        let response = client
            .list_events(pb::ListEventsRequest {
                after_sequence: after,
                session: filter.session.clone(),
                page_size: PAGE_SIZE,
            })
            .await?
            .into_inner();
        if response.events.is_empty() {
            return Ok(());
        }
        let mut next = response.last_sequence;
        for event in &response.events {
            next = next.max(event.sequence);
            if filter.matches(event) {
                printer.print(event).await?;
            }
        }
        if next <= after {
            // No progress: the server would return the same page again.
            return Ok(());
        }
        after = next;
    }
}

/// `WatchEvents` forever, reconnecting with backoff after the last sequence seen.
async fn follow(ctx: &Context, filter: &Filter, printer: &mut Printer) -> Result<(), CliError> {
    let mut client = ctx.clients.events();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let request = pb::WatchEventsRequest {
            after_sequence: printer.last,
            session: filter.session.clone(),
            types: filter.types.iter().map(|t| *t as i32).collect(),
        };
        let reason = match client.watch_events(request).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(event)) => {
                            backoff = FIRST_BACKOFF;
                            // After a reconnect the server starts after `last`; skip
                            // anything older all the same.
                            if event.sequence > printer.last && filter.matches(&event) {
                                printer.print(&event).await?;
                            }
                        }
                        Ok(None) => break "the server ended the stream".to_owned(),
                        Err(status) if is_retryable(status.code()) => {
                            break format!("{}: {}", code_name(status.code()), status.message());
                        }
                        Err(status) => return Err(status.into()),
                    }
                }
            }
            Err(status) if is_retryable(status.code()) => {
                format!("{}: {}", code_name(status.code()), status.message())
            }
            Err(status) => return Err(status.into()),
        };
        notice(format!(
            "[events: {reason}; reconnecting in {}s after sequence {}]",
            backoff.as_secs(),
            printer.last
        ));
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Whether a failed stream is worth reopening: the server or the network may come
/// back; a bad request or a missing permission will not change by waiting.
fn is_retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
    )
}

/// Display names remembered at most; the cache starts over past this.
const MAX_NAMES: usize = 10_000;

/// Prints events and records the last one.
struct Printer {
    out: Output,
    state_file: Option<PathBuf>,
    /// The sequence of the last event printed (or the starting point).
    last: i64,
    /// For the display names of the sessions and workers events name by id.
    sessions: SessionServiceClient<AuthChannel>,
    workers: WorkerServiceClient<AuthChannel>,
    /// `sessions/{id}` or `sessions/{id}/workers/{id}` → what to print for it:
    /// its display name, or its id when it has none or is gone.
    names: HashMap<String, String>,
}

impl Printer {
    async fn print(&mut self, event: &pb::Event) -> Result<(), CliError> {
        if self.out.is_json() {
            self.out.json_line(event)?;
        } else {
            let session = self.label(&event.session).await;
            let worker = self.label(&event.worker).await;
            self.out
                .line(format_event(&self.out, event, &session, &worker))?;
        }
        self.last = self.last.max(event.sequence);
        if let Some(path) = &self.state_file {
            write_state(path, self.last)?;
        }
        Ok(())
    }
}

impl Printer {
    /// What to print for the session or worker `name`: its display name (asked
    /// once per resource with GetSession or GetWorker), else its id; `-` for none.
    async fn label(&mut self, name: &str) -> String {
        if name.is_empty() {
            return "-".into();
        }
        if let Some(label) = self.names.get(name) {
            return label.clone();
        }
        let display_name = if name.contains("/workers/") {
            let request = pb::GetWorkerRequest { name: name.into() };
            self.workers
                .get_worker(request)
                .await
                .map(|w| w.into_inner().display_name)
        } else {
            let request = pb::GetSessionRequest { name: name.into() };
            self.sessions
                .get_session(request)
                .await
                .map(|s| s.into_inner().display_name)
        };
        let label = match display_name {
            Ok(display_name) if !display_name.is_empty() => display_name,
            _ => last_segment(name).to_owned(),
        };
        if self.names.len() >= MAX_NAMES {
            self.names.clear();
        }
        self.names.insert(name.to_owned(), label.clone());
        label
    }
}

/// `<seq> <time> <type> <session> <detail>`, with `session` and `worker` the
/// labels to print for the event's resources.
fn format_event(out: &Output, event: &pb::Event, session: &str, worker: &str) -> String {
    let mut line = format!(
        "{} {} {} {session}",
        event.sequence,
        local_rfc3339(event.time.as_ref()),
        event_type(event.r#type)
    );
    let mut detail = Vec::new();
    if !event.worker.is_empty() {
        detail.push(format!("worker={worker}"));
    }
    match &event.detail {
        Some(pb::event::Detail::StateChange(change)) => {
            detail.push(format!(
                "{}->{}",
                session_state(change.from),
                out.paint_state(&session_state(change.to))
            ));
            let action = session_action(change.action);
            if !action.is_empty() {
                detail.push(format!("action={}", action.to_ascii_lowercase()));
            }
            if !change.reason.is_empty() {
                detail.push(format!("reason={:?}", change.reason));
            }
        }
        Some(pb::event::Detail::WorkerExit(exit)) => {
            if let Some(status) = &exit.exit_status {
                detail.push(format!("exit={:?}", exit_long(status)));
            }
        }
        Some(pb::event::Detail::ActivityChange(change)) => {
            detail.push(format!(
                "activity={}->{}",
                worker_activity(change.from),
                worker_activity(change.to)
            ));
            if let Some(evidence) = &change.evidence
                && !evidence.rule.is_empty()
            {
                detail.push(format!("rule={}", evidence.rule));
            }
        }
        Some(pb::event::Detail::CheckpointSaved(saved)) => {
            detail.push(format!("checkpoint={}", saved.checkpoint));
            detail.push(format!("version={}", saved.version));
        }
        None => {}
    }
    if !detail.is_empty() {
        line.push(' ');
        line.push_str(&detail.join(" "));
    }
    line
}

/// `$XDG_STATE_HOME/corral/events.seq`, else `~/.local/state/corral/events.seq`.
fn default_state_file() -> Result<PathBuf, CliError> {
    let xdg = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let home = || {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .map(|home| home.join(".local/state"))
    };
    xdg.or_else(home)
        .map(|dir| dir.join("corral/events.seq"))
        .ok_or_else(|| {
            CliError::Usage(
                "cannot find a state directory (XDG_STATE_HOME and HOME are unset); \
                 give --state-file PATH"
                    .into(),
            )
        })
}

/// The sequence stored in the state file; 0 when the file does not exist yet.
fn read_state(path: &Path) -> Result<i64, CliError> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse::<i64>().map_err(|_| {
            CliError::Other(format!(
                "state file {} does not hold a sequence number",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(CliError::io(format!("reading {}", path.display()), e)),
    }
}

/// Stores `sequence` in the state file: written next to it, then renamed over it,
/// so a crash never leaves a half-written number.
fn write_state(path: &Path, sequence: i64) -> Result<(), CliError> {
    let context = || format!("writing the state file {}", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| CliError::io(context(), e))?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, format!("{sequence}\n")).map_err(|e| CliError::io(context(), e))?;
    std::fs::rename(&temporary, path).map_err(|e| CliError::io(context(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::OutputFormat;

    fn event(detail: Option<pb::event::Detail>) -> pb::Event {
        pb::Event {
            sequence: 42,
            r#type: pb::event::Type::SessionStateChanged as i32,
            time: None,
            session: "sessions/demo".into(),
            worker: String::new(),
            detail,
        }
    }

    #[test]
    fn event_lines() {
        let out = Output::uncoloured(OutputFormat::Table);
        let line = format_event(
            &out,
            &event(Some(pb::event::Detail::StateChange(pb::StateChange {
                from: pb::session::State::Active as i32,
                to: pb::session::State::Paused as i32,
                action: pb::session::Action::Pause as i32,
                reason: String::new(),
            }))),
            "demo",
            "-",
        );
        assert_eq!(
            line,
            "42 - SESSION_STATE_CHANGED demo ACTIVE->PAUSED action=pause"
        );
        let mut exit = event(Some(pb::event::Detail::WorkerExit(pb::WorkerExit {
            exit_status: Some(pb::ExitStatus {
                code: Some(0),
                description: "exited with code 0".into(),
                ..Default::default()
            }),
        })));
        exit.r#type = pb::event::Type::WorkerExited as i32;
        exit.worker = "sessions/demo/workers/shell".into();
        assert_eq!(
            format_event(&out, &exit, "demo", "shell"),
            "42 - WORKER_EXITED demo worker=shell exit=\"exited with code 0\""
        );
    }

    #[test]
    fn type_filter() {
        let filter = Filter {
            session: String::new(),
            types: vec![pb::event::Type::WorkerExited],
        };
        assert!(!filter.matches(&event(None)));
        let all = Filter {
            session: String::new(),
            types: vec![],
        };
        assert!(all.matches(&event(None)));
    }

    #[test]
    fn state_file_round_trip() {
        let dir = std::env::temp_dir().join(format!("corral-cli-test-{}", std::process::id()));
        let path = dir.join("nested/events.seq");
        assert_eq!(read_state(&path).unwrap(), 0);
        write_state(&path, 17).unwrap();
        assert_eq!(read_state(&path).unwrap(), 17);
        write_state(&path, 18).unwrap();
        assert_eq!(read_state(&path).unwrap(), 18);
        std::fs::write(&path, "garbage").unwrap();
        assert!(read_state(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn retryable_codes() {
        assert!(is_retryable(Code::Unavailable));
        assert!(!is_retryable(Code::InvalidArgument));
        assert!(!is_retryable(Code::Unauthenticated));
    }
}
