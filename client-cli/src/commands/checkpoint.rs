//! `corral checkpoint ...`: list, get, delete and resume from agent checkpoints.

use chrono::Utc;
use comfy_table::Cell;
use corral::pb;

use super::{Context, fetch_pages};
use crate::cli::{CheckpointCommand, CheckpointListArgs};
use crate::error::CliError;
use crate::names::{session_name, worker_name};
use crate::output::display::{age, checkpoint_trigger, local_time, plural, sanitize};
use crate::output::{KeyValues, Output};

/// The view to ask for.
fn view(full: bool) -> i32 {
    if full {
        pb::checkpoint::View::Full as i32
    } else {
        pb::checkpoint::View::Basic as i32
    }
}

/// Runs one `checkpoint` subcommand.
pub async fn run(ctx: &Context, command: CheckpointCommand) -> Result<(), CliError> {
    let mut client = ctx.clients.checkpoints();
    match command {
        CheckpointCommand::List(args) => list(ctx, args).await,
        CheckpointCommand::Get(args) => {
            let checkpoint = client
                .get_checkpoint(pb::GetCheckpointRequest {
                    name: args.name,
                    view: view(args.full),
                })
                .await?
                .into_inner();
            print_checkpoint(&ctx.out, &checkpoint)
        }
        CheckpointCommand::Delete(args) => {
            let response = client
                .delete_checkpoint(pb::DeleteCheckpointRequest {
                    name: args.name.clone(),
                })
                .await?
                .into_inner();
            if ctx.out.is_json() {
                return ctx.out.json(&response);
            }
            ctx.out.line(format!("deleted {}", args.name))
        }
        CheckpointCommand::Resume(args) => {
            let response = client
                .resume_from_checkpoint(pb::ResumeFromCheckpointRequest { name: args.name })
                .await?
                .into_inner();
            if ctx.out.is_json() {
                return ctx.out.json(&response);
            }
            let mut kv = KeyValues::default();
            kv.text("session", &response.session);
            kv.text("description", &response.description);
            ctx.out.key_values(kv)
        }
    }
}

/// `checkpoint list`: every page, newest first.
async fn list(ctx: &Context, args: CheckpointListArgs) -> Result<(), CliError> {
    let parent = match &args.worker {
        Some(worker) => worker_name(&args.session, worker),
        None => session_name(&args.session),
    };
    let view = view(args.full);
    let client = ctx.clients.checkpoints();
    let response = fetch_pages(String::new(), true, |page_token| {
        let mut client = client.clone();
        let request = pb::ListCheckpointsRequest {
            parent: parent.clone(),
            page_size: 0,
            page_token,
            view,
        };
        async move { client.list_checkpoints(request).await }
    })
    .await?;
    let out = &ctx.out;
    if out.is_json() {
        return out.json(&response);
    }
    let now = Utc::now();
    let mut table = out.list_table(&[
        "NAME",
        "VERSION",
        "TRIGGER",
        "TURNS",
        "MODEL",
        "TRANSCRIPT",
        "AGE",
    ]);
    for c in &response.checkpoints {
        table.add_row(vec![
            Cell::new(&c.name),
            Cell::new(c.version),
            Cell::new(checkpoint_trigger(c.trigger)),
            Cell::new(c.turn_count),
            Cell::new(&c.model),
            Cell::new(plural(c.transcript_bytes, "byte")),
            Cell::new(age(c.create_time.as_ref(), now)),
        ]);
    }
    out.table(&table)
}

/// The full view of a checkpoint; with the FULL view, its transcript delta and
/// scrollback tail follow as text (control characters made visible).
fn print_checkpoint(out: &Output, checkpoint: &pb::Checkpoint) -> Result<(), CliError> {
    if out.is_json() {
        return out.json(checkpoint);
    }
    let mut kv = KeyValues::default();
    kv.text("name", &checkpoint.name);
    kv.text("version", checkpoint.version.to_string());
    kv.text("trigger", checkpoint_trigger(checkpoint.trigger));
    kv.text("agent_session_id", &checkpoint.agent_session_id);
    kv.text("turn_count", checkpoint.turn_count.to_string());
    kv.text("model", &checkpoint.model);
    kv.text("work_dir", &checkpoint.work_dir);
    kv.text("transcript_path", &checkpoint.transcript_path);
    kv.text(
        "transcript_bytes",
        plural(checkpoint.transcript_bytes, "byte"),
    );
    kv.text("create_time", local_time(checkpoint.create_time.as_ref()));
    kv.text("expire_time", local_time(checkpoint.expire_time.as_ref()));
    out.key_values(kv)?;
    for (title, data) in [
        ("transcript delta", &checkpoint.transcript_delta),
        ("scrollback tail", &checkpoint.scrollback_tail),
    ] {
        if data.is_empty() {
            continue;
        }
        let size = i64::try_from(data.len()).unwrap_or(i64::MAX);
        out.line(format!("\n--- {title} ({}) ---", plural(size, "byte")))?;
        out.line(sanitize(&String::from_utf8_lossy(data)).trim_end())?;
    }
    Ok(())
}
