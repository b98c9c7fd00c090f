//! `corral session ...`: create, get, list, update, delete and the lifecycle actions.
//!
//! `create`, `get` and `update` print the session in full (a key/value table and its
//! workers); the lifecycle actions and `delete` print one line with the new state;
//! `list` prints one row per session. With `-o json` each prints the response
//! message.

use chrono::Utc;
use comfy_table::Cell;
use corral::pb;
use prost_types::FieldMask;

use super::{Context, fetch_pages, to_map};
use crate::cli::{
    SessionCommand, SessionCreateArgs, SessionDeleteArgs, SessionListArgs, SessionRefArgs,
    SessionStopArgs, SessionUpdateArgs,
};
use crate::error::CliError;
use crate::filter::SessionFilter;
use crate::names::{session_name, short_id};
use crate::output::display::{
    age, exit_short, local_time, session_action, session_kind, session_state, size, worker_kind,
    worker_state,
};
use crate::output::{KeyValues, Output};

/// Runs one `session` subcommand.
pub async fn run(ctx: &Context, command: SessionCommand) -> Result<(), CliError> {
    let mut client = ctx.clients.sessions();
    // Sends a `{name, etag}` lifecycle request and returns the session.
    macro_rules! transition {
        ($method:ident, $request:ident, $args:expr) => {{
            let args: SessionRefArgs = $args;
            client
                .$method(pb::$request {
                    name: session_name(&args.session),
                    etag: args.etag.unwrap_or_default(),
                })
                .await?
                .into_inner()
        }};
    }
    let session = match command {
        SessionCommand::Create(args) => return create(ctx, args).await,
        SessionCommand::Get(args) => {
            let session = client
                .get_session(pb::GetSessionRequest {
                    name: session_name(&args.session),
                })
                .await?
                .into_inner();
            return print_session(&ctx.out, &session);
        }
        SessionCommand::List(args) => return list(ctx, args).await,
        SessionCommand::Update(args) => return update(ctx, args).await,
        SessionCommand::Delete(args) => return delete(ctx, args).await,
        SessionCommand::Stop(args) => stop(ctx, args).await?,
        SessionCommand::Start(args) => transition!(start_session, StartSessionRequest, args),
        SessionCommand::Pause(args) => transition!(pause_session, PauseSessionRequest, args),
        SessionCommand::Resume(args) => transition!(resume_session, ResumeSessionRequest, args),
        SessionCommand::Restart(args) => {
            transition!(restart_session, RestartSessionRequest, args)
        }
        SessionCommand::Archive(args) => {
            transition!(archive_session, ArchiveSessionRequest, args)
        }
        SessionCommand::Reopen(args) => transition!(reopen_session, ReopenSessionRequest, args),
        SessionCommand::Retry(args) => transition!(retry_session, RetrySessionRequest, args),
        SessionCommand::Discard(args) => {
            transition!(discard_session, DiscardSessionRequest, args)
        }
    };
    print_summary(&ctx.out, &session)
}

/// `session create`
async fn create(ctx: &Context, args: SessionCreateArgs) -> Result<(), CliError> {
    let source = match (args.work_dir, args.repository) {
        (Some(dir), _) => pb::session::Source::Quick(pb::QuickSource {
            work_dir: absolute(&dir, "--work-dir")?,
        }),
        (None, Some(repository)) => pb::session::Source::Worktree(pb::WorktreeSource {
            repository: absolute(&repository, "--repository")?,
            branch: args.branch.unwrap_or_default(),
            base_ref: args.base_ref.unwrap_or_default(),
            ..Default::default()
        }),
        (None, None) => {
            return Err(CliError::Usage(
                "give --work-dir DIR, or --repository PATH --branch BRANCH".into(),
            ));
        }
    };
    let mut workers = Vec::new();
    for terminal in &args.terminals {
        let command = shell_words::split(&terminal.value).map_err(|e| {
            CliError::Usage(format!(
                "--terminal {}: cannot split {:?}: {e}",
                terminal.key, terminal.value
            ))
        })?;
        workers.push(pb::Worker {
            display_name: terminal.key.clone(),
            spec: Some(pb::worker::Spec::Terminal(pb::TerminalSpec {
                command,
                env: Default::default(),
            })),
            ..Default::default()
        });
    }
    if let Some(profile) = args.agent {
        workers.push(pb::Worker {
            spec: Some(pb::worker::Spec::Agent(pb::AgentSpec {
                profile,
                model: args.model.unwrap_or_default(),
                extra_args: args.agent_args,
                ..Default::default()
            })),
            ..Default::default()
        });
    }
    let request = pb::CreateSessionRequest {
        session: Some(pb::Session {
            display_name: args.name.unwrap_or_default(),
            description: args.description.unwrap_or_default(),
            labels: to_map(&args.labels, "--label")?,
            source: Some(source),
            ..Default::default()
        }),
        workers,
        validate_only: args.validate_only,
    };
    let session = ctx
        .clients
        .sessions()
        .create_session(request)
        .await?
        .into_inner();
    if args.validate_only && !ctx.out.is_json() {
        crate::output::notice("valid (--validate-only: nothing was created)");
    }
    print_session(&ctx.out, &session)
}

/// `path` made absolute against the current directory (the server's differs), as
/// UTF-8 text.
fn absolute(path: &std::path::Path, option: &str) -> Result<String, CliError> {
    let absolute = std::path::absolute(path)
        .map_err(|e| CliError::io(format!("{option} {}", path.display()), e))?;
    absolute
        .into_os_string()
        .into_string()
        .map_err(|p| CliError::Usage(format!("{option} {p:?} is not valid UTF-8")))
}

/// `session list`
async fn list(ctx: &Context, args: SessionListArgs) -> Result<(), CliError> {
    let filter = SessionFilter {
        states: args.states.iter().map(|s| s.to_pb()).collect(),
        kind: args.kind.map(|k| k.to_pb()),
        labels: args
            .labels
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect(),
        expression: args.filter,
    }
    .build()
    .map_err(CliError::Usage)?;
    let request = pb::ListSessionsRequest {
        page_size: args.page.page_size.unwrap_or_default(),
        page_token: String::new(),
        filter,
        order_by: args.order_by.unwrap_or_default(),
        show_deleted: args.show_deleted,
    };
    let client = ctx.clients.sessions();
    let response = fetch_pages(
        args.page.page_token.unwrap_or_default(),
        args.page.all,
        |page_token| {
            let mut client = client.clone();
            let request = pb::ListSessionsRequest {
                page_token,
                ..request.clone()
            };
            async move { client.list_sessions(request).await }
        },
    )
    .await?;
    if ctx.out.is_json() {
        return ctx.out.json(&response);
    }
    let out = &ctx.out;
    let now = Utc::now();
    let mut table = out.list_table(&[
        "NAME", "ID", "STATE", "KIND", "WORK DIR", "WORKERS", "CLIENTS", "AGE",
    ]);
    for s in &response.sessions {
        table.add_row(vec![
            Cell::new(&s.display_name),
            Cell::new(short_id(&s.id)),
            out.state_cell(&session_state(s.state)),
            Cell::new(session_kind(s.kind)),
            Cell::new(&s.work_dir),
            Cell::new(s.workers.len()),
            Cell::new(s.attached_clients),
            Cell::new(age(s.create_time.as_ref(), now)),
        ]);
    }
    out.table(&table)?;
    if !response.next_page_token.is_empty() {
        out.line(format!(
            "\nnext page token: {} (pass it to --page-token, or use --all)",
            response.next_page_token
        ))?;
    }
    Ok(())
}

/// `session update`
async fn update(ctx: &Context, args: SessionUpdateArgs) -> Result<(), CliError> {
    let labels = to_map(&args.labels, "--label")?;
    let mut paths = Vec::new();
    if args.name.is_some() {
        paths.push("display_name".to_owned());
    }
    if args.description.is_some() {
        paths.push("description".to_owned());
    }
    let mut keys: Vec<&String> = labels.keys().collect();
    keys.sort();
    paths.extend(keys.into_iter().map(|key| format!("labels.{key}")));
    for key in &args.remove_labels {
        if labels.contains_key(key) {
            return Err(CliError::Usage(format!(
                "label {key:?} is both set (--label) and removed (--remove-label)"
            )));
        }
        let path = format!("labels.{key}");
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        return Err(CliError::Usage(
            "nothing to update: give --name, --description, --label or --remove-label".into(),
        ));
    }
    let request = pb::UpdateSessionRequest {
        session: Some(pb::Session {
            name: session_name(&args.session),
            display_name: args.name.unwrap_or_default(),
            description: args.description.unwrap_or_default(),
            labels,
            etag: args.etag.unwrap_or_default(),
            ..Default::default()
        }),
        update_mask: Some(FieldMask { paths }),
    };
    let session = ctx
        .clients
        .sessions()
        .update_session(request)
        .await?
        .into_inner();
    print_session(&ctx.out, &session)
}

/// `session delete`
async fn delete(ctx: &Context, args: SessionDeleteArgs) -> Result<(), CliError> {
    let session = ctx
        .clients
        .sessions()
        .delete_session(pb::DeleteSessionRequest {
            name: session_name(&args.target.session),
            etag: args.target.etag.unwrap_or_default(),
            delete_branch: args.delete_branch,
        })
        .await?
        .into_inner();
    print_summary(&ctx.out, &session)
}

/// `session stop`
async fn stop(ctx: &Context, args: SessionStopArgs) -> Result<pb::Session, CliError> {
    Ok(ctx
        .clients
        .sessions()
        .stop_session(pb::StopSessionRequest {
            name: session_name(&args.target.session),
            etag: args.target.etag.unwrap_or_default(),
            grace_ms: args.grace_ms.unwrap_or_default(),
        })
        .await?
        .into_inner())
}

/// One line after a lifecycle action: `demo (0190a5b4): ACTIVE`, plus the reason,
/// the last error and (after delete) when the tombstone is purged.
fn print_summary(out: &Output, session: &pb::Session) -> Result<(), CliError> {
    if out.is_json() {
        return out.json(session);
    }
    let mut line = format!(
        "{} ({}): {}",
        session.display_name,
        short_id(&session.id),
        out.paint_state(&session_state(session.state))
    );
    if !session.state_reason.is_empty() {
        line.push_str(&format!(" ({})", session.state_reason));
    }
    if session.purge_time.is_some() {
        line.push_str(&format!(
            "; purged after {}",
            local_time(session.purge_time.as_ref())
        ));
    }
    if let Some(pb::session::Source::Worktree(worktree)) = &session.source
        && !worktree.saved_ref.is_empty()
    {
        line.push_str(&format!("; changes saved in {}", worktree.saved_ref));
    }
    out.line(line)?;
    if !session.last_error.is_empty() {
        out.line(format!("last error: {}", session.last_error))?;
    }
    Ok(())
}

/// The full view of a session: every non-empty field, then its workers (or, when
/// it has none, a line saying what starting it adds).
pub fn print_session(out: &Output, session: &pb::Session) -> Result<(), CliError> {
    if out.is_json() {
        return out.json(session);
    }
    let mut kv = KeyValues::default();
    kv.text("name", session.name.clone());
    kv.text("id", session.id.clone());
    kv.text("display_name", session.display_name.clone());
    kv.text("description", session.description.clone());
    kv.text("kind", session_kind(session.kind));
    kv.text("work_dir", session.work_dir.clone());
    match &session.source {
        Some(pb::session::Source::Quick(quick)) if quick.work_dir != session.work_dir => {
            kv.text("quick.work_dir", quick.work_dir.clone());
        }
        Some(pb::session::Source::Worktree(w)) => {
            kv.text("repository", w.repository.clone());
            kv.text("branch", w.branch.clone());
            kv.text("base_ref", w.base_ref.clone());
            kv.text("worktree_path", w.worktree_path.clone());
            kv.text("saved_ref", w.saved_ref.clone());
        }
        _ => {}
    }
    let mut labels: Vec<String> = session
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.sort();
    kv.text("labels", labels.join("\n"));
    let state = session_state(session.state);
    if !state.is_empty() {
        kv.cell("state", out.state_cell(&state));
    }
    kv.text("state_reason", session.state_reason.clone());
    kv.text("last_error", session.last_error.clone());
    let actions: Vec<String> = session
        .available_actions
        .iter()
        .map(|a| session_action(*a).to_ascii_lowercase())
        .collect();
    kv.text("available_actions", actions.join(", "));
    if session.auto_archived {
        kv.text("auto_archived", "true");
    }
    kv.text("creator", session.creator.clone());
    for (key, ts) in [
        ("create_time", &session.create_time),
        ("update_time", &session.update_time),
        ("start_time", &session.start_time),
        ("pause_time", &session.pause_time),
        ("resume_time", &session.resume_time),
        ("stop_time", &session.stop_time),
        ("archive_time", &session.archive_time),
        ("delete_time", &session.delete_time),
        ("purge_time", &session.purge_time),
        ("resume_deadline", &session.resume_deadline),
    ] {
        kv.text(key, local_time(ts.as_ref()));
    }
    for (key, count) in [
        ("pause_count", session.pause_count),
        ("resume_count", session.resume_count),
        ("retry_count", session.retry_count),
        ("restart_count", session.restart_count),
        ("attached_clients", session.attached_clients),
    ] {
        kv.text(key, count.to_string());
    }
    for (key, count) in [
        ("message_count", session.message_count),
        ("user_messages", session.user_messages),
        ("assistant_messages", session.assistant_messages),
    ] {
        kv.text(key, count.to_string());
    }
    kv.text("etag", session.etag.clone());
    out.key_values(kv)?;
    out.line("")?;
    if session.workers.is_empty() {
        // The server gives a session without workers one whenever it starts
        // (StartSession, and a resume or retry), so an empty table would look
        // like a mistake.
        return out.line(
            "no workers: starting the session adds a terminal worker `shell` running \
             corrald's shell (its --shell, else $SHELL, else /bin/sh)",
        );
    }
    print_workers(out, &session.workers)
}

/// The workers table: NAME, ID, KIND, STATE, PID, CLIENTS, SIZE, EXIT.
pub fn print_workers(out: &Output, workers: &[pb::Worker]) -> Result<(), CliError> {
    let mut table = out.list_table(&[
        "NAME", "ID", "KIND", "STATE", "PID", "CLIENTS", "SIZE", "EXIT",
    ]);
    for w in workers {
        table.add_row(vec![
            Cell::new(&w.display_name),
            Cell::new(short_id(&w.id)),
            Cell::new(worker_kind(w.kind)),
            out.state_cell(&worker_state(w.state)),
            Cell::new(if w.pid > 0 {
                w.pid.to_string()
            } else {
                String::new()
            }),
            Cell::new(w.attached_clients),
            Cell::new(size(w.size.as_ref())),
            Cell::new(exit_short(w.exit_status.as_ref())),
        ]);
    }
    out.table(&table)
}
