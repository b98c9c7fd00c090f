//! `corral worker ...` (except `attach`, see [`crate::attach`]) and `corral profiles`.

use comfy_table::Cell;
use corral::pb;

use super::session::print_workers;
use super::{Context, fetch_pages, to_map};
use crate::attach;
use crate::cli::{
    SignalTargetArg, WorkerCommand, WorkerCreateArgs, WorkerRefArgs, WorkerResizeArgs,
    WorkerSignalArgs,
};
use crate::error::CliError;
use crate::names::{session_name, worker_name};
use crate::output::display::{
    exit_long, local_time, size, worker_activity, worker_kind, worker_state,
};
use crate::output::{KeyValues, Output};

/// Runs one `worker` subcommand; returns the exit code (the worker's for `attach`).
pub async fn run(ctx: &Context, command: WorkerCommand) -> Result<i32, CliError> {
    match command {
        WorkerCommand::Attach(args) => return attach::run(&ctx.clients, &args).await,
        WorkerCommand::Create(args) => create(ctx, args).await?,
        WorkerCommand::List(args) => list(ctx, &args.session).await?,
        WorkerCommand::Get(args) => {
            let worker = ctx
                .clients
                .workers()
                .get_worker(pb::GetWorkerRequest {
                    name: target(&args),
                })
                .await?
                .into_inner();
            print_worker(&ctx.out, &worker)?;
        }
        WorkerCommand::Delete(args) => delete(ctx, &args).await?,
        WorkerCommand::Resize(args) => resize(ctx, args).await?,
        WorkerCommand::Signal(args) => signal(ctx, args).await?,
    }
    Ok(0)
}

/// `worker list`: every page.
async fn list(ctx: &Context, session: &str) -> Result<(), CliError> {
    let client = ctx.clients.workers();
    let parent = session_name(session);
    let response = fetch_pages(String::new(), true, |page_token| {
        let mut client = client.clone();
        let request = pb::ListWorkersRequest {
            parent: parent.clone(),
            page_size: 0,
            page_token,
        };
        async move { client.list_workers(request).await }
    })
    .await?;
    if ctx.out.is_json() {
        return ctx.out.json(&response);
    }
    print_workers(&ctx.out, &response.workers)
}

/// `worker delete`
async fn delete(ctx: &Context, args: &WorkerRefArgs) -> Result<(), CliError> {
    let name = target(args);
    let response = ctx
        .clients
        .workers()
        .delete_worker(pb::DeleteWorkerRequest { name: name.clone() })
        .await?
        .into_inner();
    if ctx.out.is_json() {
        return ctx.out.json(&response);
    }
    ctx.out.line(format!("deleted {name}"))
}

/// `worker resize`
async fn resize(ctx: &Context, args: WorkerResizeArgs) -> Result<(), CliError> {
    let worker = ctx
        .clients
        .workers()
        .resize_worker(pb::ResizeWorkerRequest {
            name: target(&args.target),
            size: Some(pb::WindowSize {
                rows: args.rows,
                cols: args.cols,
            }),
        })
        .await?
        .into_inner();
    if ctx.out.is_json() {
        return ctx.out.json(&worker);
    }
    ctx.out.line(format!(
        "{}: {} ({})",
        worker.display_name,
        size(worker.size.as_ref()),
        ctx.out.paint_state(&worker_state(worker.state))
    ))
}

/// `worker signal`
async fn signal(ctx: &Context, args: WorkerSignalArgs) -> Result<(), CliError> {
    let worker = ctx
        .clients
        .workers()
        .signal_worker(pb::SignalWorkerRequest {
            name: target(&args.target),
            signal: args.signal as i32,
            target: args.to.map_or(0, |t| t.to_pb() as i32),
        })
        .await?
        .into_inner();
    if ctx.out.is_json() {
        return ctx.out.json(&worker);
    }
    let to = match args.to {
        None | Some(SignalTargetArg::Foreground) => "foreground process group",
        Some(SignalTargetArg::ProcessGroup) => "process group",
        Some(SignalTargetArg::Session) => "terminal session",
    };
    ctx.out.line(format!(
        "sent {} to {} ({to}); now {}",
        args.signal.as_str_name(),
        worker.display_name,
        ctx.out.paint_state(&worker_state(worker.state))
    ))
}

/// `sessions/<s>/workers/<w>` from the arguments.
fn target(args: &WorkerRefArgs) -> String {
    worker_name(&args.session, &args.worker)
}

/// `worker create`
async fn create(ctx: &Context, args: WorkerCreateArgs) -> Result<(), CliError> {
    let spec = match args.agent {
        Some(profile) => pb::worker::Spec::Agent(pb::AgentSpec {
            profile,
            model: args.model.unwrap_or_default(),
            extra_args: args.agent_args,
            ..Default::default()
        }),
        None => pb::worker::Spec::Terminal(pb::TerminalSpec {
            command: match args.command {
                Some(argv) => argv.0,
                None => args.argv,
            },
            env: to_map(&args.env, "--env")?,
        }),
    };
    let worker = ctx
        .clients
        .workers()
        .create_worker(pb::CreateWorkerRequest {
            parent: session_name(&args.session),
            worker: Some(pb::Worker {
                display_name: args.name.unwrap_or_default(),
                spec: Some(spec),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    print_worker(&ctx.out, &worker)
}

/// The full view of one worker.
fn print_worker(out: &Output, worker: &pb::Worker) -> Result<(), CliError> {
    if out.is_json() {
        return out.json(worker);
    }
    let mut kv = KeyValues::default();
    kv.text("name", &worker.name);
    kv.text("id", &worker.id);
    kv.text("display_name", &worker.display_name);
    kv.text("kind", worker_kind(worker.kind));
    match &worker.spec {
        Some(pb::worker::Spec::Terminal(terminal)) => {
            let command = if terminal.command.is_empty() {
                "(the user's shell)".to_owned()
            } else {
                shell_words::join(&terminal.command)
            };
            kv.text("command", command);
            let mut env: Vec<String> = terminal
                .env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            env.sort();
            kv.text("env", env.join("\n"));
        }
        Some(pb::worker::Spec::Agent(agent)) => {
            kv.text("profile", &agent.profile);
            kv.text("model", &agent.model);
            kv.text("extra_args", shell_words::join(&agent.extra_args));
            kv.text("agent_session_id", &agent.agent_session_id);
        }
        None => {}
    }
    let state = worker_state(worker.state);
    if !state.is_empty() {
        kv.cell("state", out.state_cell(&state));
    }
    if worker.pid > 0 {
        kv.text("pid", worker.pid.to_string());
    }
    if let Some(status) = &worker.exit_status {
        kv.text("exit_status", exit_long(status));
    }
    kv.text("last_error", &worker.last_error);
    kv.text("activity", worker_activity(worker.activity));
    if let Some(evidence) = &worker.activity_evidence {
        let mut text = format!("{} ({})", evidence.rule, evidence.source);
        if !evidence.matched_text.is_empty() {
            text.push_str(&format!(": {:?}", evidence.matched_text));
        }
        kv.text("activity_evidence", text);
    }
    kv.text("attached_clients", worker.attached_clients.to_string());
    kv.text("size", size(worker.size.as_ref()));
    kv.text("output_offset", worker.output_offset.to_string());
    kv.text("create_time", local_time(worker.create_time.as_ref()));
    kv.text("start_time", local_time(worker.start_time.as_ref()));
    kv.text("exit_time", local_time(worker.exit_time.as_ref()));
    kv.text("restart_count", worker.restart_count.to_string());
    out.key_values(kv)
}

/// `corral profiles`
pub async fn profiles(ctx: &Context) -> Result<(), CliError> {
    let response = ctx
        .clients
        .workers()
        .list_agent_profiles(pb::ListAgentProfilesRequest {})
        .await?
        .into_inner();
    if ctx.out.is_json() {
        return ctx.out.json(&response);
    }
    let mut table = ctx.out.list_table(&[
        "NAME",
        "COMMAND",
        "MODELS",
        "RESUMABLE",
        "TRANSCRIPT",
        "DESCRIPTION",
    ]);
    for p in &response.profiles {
        table.add_row(vec![
            Cell::new(&p.name),
            Cell::new(&p.command),
            Cell::new(if p.models.is_empty() {
                "(any)".to_owned()
            } else {
                p.models.join(", ")
            }),
            Cell::new(if p.resumable { "yes" } else { "no" }),
            Cell::new(&p.transcript_format),
            Cell::new(&p.description),
        ]);
    }
    ctx.out.table(&table)
}
