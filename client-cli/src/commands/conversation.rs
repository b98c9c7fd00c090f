//! The conversation commands: `messages`, `send`, `export` and `search`.

use std::io::{Read, Write};
use std::path::Path;

use comfy_table::Cell;
use corral::pb;

use super::{Context, fetch_pages};
use crate::cli::{ExportArgs, MessagesArgs, SearchArgs, SendArgs};
use crate::error::CliError;
use crate::names::{last_segment, session_name, strip_sessions, worker_name};
use crate::output::display::{local_time, message_role, one_line, plural, sanitize};
use crate::output::{Output, notice};

/// `corral messages`: the conversation as a readable transcript (or JSON).
pub async fn messages(ctx: &Context, args: MessagesArgs) -> Result<(), CliError> {
    let client = ctx.clients.sessions();
    let parent = session_name(&args.session);
    let page_size = args.page.page_size.unwrap_or_default();
    let response = fetch_pages(
        args.page.page_token.unwrap_or_default(),
        args.page.all,
        |page_token| {
            let mut client = client.clone();
            let request = pb::ListMessagesRequest {
                parent: parent.clone(),
                page_size,
                page_token,
            };
            async move { client.list_messages(request).await }
        },
    )
    .await?;
    let out = &ctx.out;
    if out.is_json() {
        return out.json(&response);
    }
    for (index, message) in response.messages.iter().enumerate() {
        if index > 0 {
            out.line("")?;
        }
        print_message(out, message)?;
    }
    print_next_page(out, &response.next_page_token)
}

/// One message: a header line, then the text indented.
fn print_message(out: &Output, message: &pb::Message) -> Result<(), CliError> {
    let mut header = format!(
        "#{}  {}  {}",
        message.sequence,
        local_time(message.create_time.as_ref()),
        message_role(message.role)
    );
    if !message.tool_name.is_empty() {
        header.push_str(&format!("  tool={}", message.tool_name));
    }
    if !message.worker.is_empty() {
        header.push_str(&format!("  worker={}", last_segment(&message.worker)));
    }
    out.line(header)?;
    for line in sanitize(&message.text).lines() {
        out.line(format!("    {line}"))?;
    }
    Ok(())
}

/// Prints the next page token, if any (table mode).
fn print_next_page(out: &Output, token: &str) -> Result<(), CliError> {
    if token.is_empty() {
        return Ok(());
    }
    out.line(format!(
        "\nnext page token: {token} (pass it to --page-token, or use --all)"
    ))
}

/// `corral send`
pub async fn send(ctx: &Context, args: SendArgs) -> Result<(), CliError> {
    let text = if args.text == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::io("reading the prompt from stdin", e))?;
        text.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        args.text
    };
    if text.trim().is_empty() {
        return Err(CliError::Usage("the prompt is empty".into()));
    }
    let response = ctx
        .clients
        .sessions()
        .send_message(pb::SendMessageRequest {
            name: session_name(&args.session),
            text,
            worker: args
                .worker
                .map(|w| worker_name(&args.session, &w))
                .unwrap_or_default(),
        })
        .await?
        .into_inner();
    if ctx.out.is_json() {
        return ctx.out.json(&response);
    }
    match &response.message {
        Some(message) => {
            let mut line = format!("sent message #{}", message.sequence);
            if !message.worker.is_empty() {
                line.push_str(&format!(" to {}", last_segment(&message.worker)));
            }
            ctx.out.line(line)
        }
        None => ctx.out.line("sent"),
    }
}

/// `corral export`: writes the chunks as they arrive, to the file or stdout.
pub async fn export(ctx: &Context, args: ExportArgs) -> Result<(), CliError> {
    let mut stream = ctx
        .clients
        .sessions()
        .export_session(pb::ExportSessionRequest {
            name: session_name(&args.session),
            format: args.format.to_pb() as i32,
        })
        .await?
        .into_inner();
    let Some(path) = args.file else {
        let mut stdout = std::io::stdout().lock();
        while let Some(chunk) = stream.message().await? {
            stdout.write_all(&chunk.data)?;
            stdout.flush()?;
        }
        return Ok(());
    };
    let mut file = std::fs::File::create(&path)
        .map_err(|e| CliError::io(format!("creating {}", path.display()), e))?;
    let result = async {
        let mut written: u64 = 0;
        while let Some(chunk) = stream.message().await? {
            file.write_all(&chunk.data)
                .map_err(|e| CliError::io(format!("writing {}", path.display()), e))?;
            written += chunk.data.len() as u64;
        }
        file.sync_all()
            .map_err(|e| CliError::io(format!("writing {}", path.display()), e))?;
        Ok::<_, CliError>(written)
    }
    .await;
    match result {
        Ok(written) => {
            notice(format!(
                "wrote {} to {}",
                plural(i64::try_from(written).unwrap_or(i64::MAX), "byte"),
                path.display()
            ));
            Ok(())
        }
        Err(error) => {
            remove_partial(&path);
            Err(error)
        }
    }
}

/// Removes a partly written export file; failing to do so is only reported.
fn remove_partial(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        notice(format!(
            "could not remove the partial file {}: {e}",
            path.display()
        ));
    }
}

/// `corral search`
pub async fn search(ctx: &Context, args: SearchArgs) -> Result<(), CliError> {
    let client = ctx.clients.sessions();
    let query = args.query;
    let filter = args.filter.unwrap_or_default();
    let page_size = args.page.page_size.unwrap_or_default();
    let response = fetch_pages(
        args.page.page_token.unwrap_or_default(),
        args.page.all,
        |page_token| {
            let mut client = client.clone();
            let request = pb::SearchMessagesRequest {
                query: query.clone(),
                filter: filter.clone(),
                page_size,
                page_token,
            };
            async move { client.search_messages(request).await }
        },
    )
    .await?;
    let out = &ctx.out;
    if out.is_json() {
        return out.json(&response);
    }
    let mut table = out.list_table(&["SESSION", "SEQ", "ROLE", "SCORE", "SNIPPET"]);
    for result in &response.results {
        let (sequence, role) = result
            .message
            .as_ref()
            .map(|m| (m.sequence.to_string(), message_role(m.role)))
            .unwrap_or_default();
        table.add_row(vec![
            Cell::new(strip_sessions(&result.session)),
            Cell::new(sequence),
            Cell::new(role),
            Cell::new(format!("{:.2}", result.score)),
            Cell::new(one_line(&sanitize(&result.snippet), 100)),
        ]);
    }
    out.table(&table)?;
    print_next_page(out, &response.next_page_token)
}
