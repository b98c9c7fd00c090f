//! Rendering a session's conversation for ExportSession: JSON, CSV (RFC 4180) and
//! Markdown, written piece by piece so a long conversation streams in bounded
//! chunks instead of being built in memory.
//!
//! Each format is a header (the session's metadata), one piece per message, and a
//! footer; concatenating the pieces gives the document:
//! - JSON: `{"session": {...}, "messages": [{...}, ...]}`.
//! - CSV: a header row, then one row per message with the session's name and
//!   display name on every row; fields with `,`, `"`, CR or LF are quoted, quotes
//!   doubled, rows end with CRLF (RFC 4180 §2).
//! - Markdown: a title and a metadata table, then each message under a heading;
//!   tool input and output in code fences longer than any backtick run inside.

use serde_json::{Value, json};

use crate::clock::{Micros, to_datetime};

/// An export format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `{"session": {...}, "messages": [...]}`.
    Json,
    /// RFC 4180, one row per message.
    Csv,
    /// A readable transcript.
    Markdown,
}

impl Format {
    /// The MIME type of the document.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8; header=present",
            Format::Markdown => "text/markdown; charset=utf-8",
        }
    }

    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Markdown => "md",
        }
    }
}

/// One message as exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportMessage {
    /// `sessions/{session}/messages/{sequence}`.
    pub name: String,
    /// Position in the conversation, from 1.
    pub sequence: i64,
    /// `USER`, `ASSISTANT`, `TOOL`, `SYSTEM`.
    pub role: String,
    /// The text.
    pub text: String,
    /// The tool of a tool call or result.
    pub tool_name: String,
    /// When it was written (µs).
    pub create_time: Micros,
    /// `sessions/{session}/workers/{worker}`, empty when unknown.
    pub worker: String,
    /// The worker's display name, empty when unknown.
    pub worker_display_name: String,
    /// `TRANSCRIPT` or `SEND_MESSAGE`.
    pub origin: String,
}

/// RFC 3339 with µs, UTC.
fn rfc3339(micros: Micros) -> String {
    to_datetime(micros).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Renders the pieces of one document.
#[derive(Debug)]
pub struct Renderer {
    format: Format,
    /// The session's metadata, a JSON object (`name`, `display_name`, …).
    session: Value,
    first: bool,
}

const CSV_COLUMNS: [&str; 10] = [
    "session",
    "session_display_name",
    "sequence",
    "create_time",
    "role",
    "worker",
    "worker_display_name",
    "tool_name",
    "origin",
    "text",
];

impl Renderer {
    /// A renderer of `format` for a session described by `session` (an object with
    /// at least `name` and `display_name`).
    pub fn new(format: Format, session: Value) -> Self {
        Renderer {
            format,
            session,
            first: true,
        }
    }

    fn field(&self, key: &str) -> String {
        match self.session.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        }
    }

    /// The beginning of the document.
    pub fn header(&self) -> String {
        match self.format {
            Format::Json => format!("{{\"session\":{},\"messages\":[", self.session),
            Format::Csv => csv_row(CSV_COLUMNS.iter().map(|c| c.to_string())),
            Format::Markdown => self.markdown_header(),
        }
    }

    /// One message.
    pub fn message(&mut self, message: &ExportMessage) -> String {
        let first = std::mem::replace(&mut self.first, false);
        match self.format {
            Format::Json => {
                let value = json!({
                    "name": message.name,
                    "sequence": message.sequence,
                    "role": message.role,
                    "text": message.text,
                    "tool_name": message.tool_name,
                    "create_time": rfc3339(message.create_time),
                    "worker": message.worker,
                    "worker_display_name": message.worker_display_name,
                    "origin": message.origin,
                });
                if first {
                    format!("\n{value}")
                } else {
                    format!(",\n{value}")
                }
            }
            Format::Csv => csv_row(
                [
                    self.field("name"),
                    self.field("display_name"),
                    message.sequence.to_string(),
                    rfc3339(message.create_time),
                    message.role.clone(),
                    message.worker.clone(),
                    message.worker_display_name.clone(),
                    message.tool_name.clone(),
                    message.origin.clone(),
                    message.text.clone(),
                ]
                .into_iter(),
            ),
            Format::Markdown => markdown_message(message),
        }
    }

    /// The end of the document.
    pub fn footer(&self) -> String {
        match self.format {
            Format::Json => "\n]}\n".into(),
            Format::Csv => String::new(),
            Format::Markdown if self.first => "_No messages._\n".into(),
            Format::Markdown => String::new(),
        }
    }

    fn markdown_header(&self) -> String {
        let mut out = format!("# {}\n\n", md_inline(&self.field("display_name")));
        let description = self.field("description");
        if !description.is_empty() {
            out.push_str(&format!("{}\n\n", description.trim()));
        }
        out.push_str("| | |\n|---|---|\n");
        let mut row = |key: &str, value: String| {
            if !value.is_empty() {
                out.push_str(&format!("| {key} | {} |\n", md_cell(&value)));
            }
        };
        row("Session", format!("`{}`", self.field("name")));
        row("State", self.field("state"));
        row("Kind", self.field("kind"));
        row("Directory", format!("`{}`", self.field("work_dir")));
        if let Some(Value::Object(labels)) = self.session.get("labels") {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            row("Labels", labels.join(", "));
        }
        for (key, title) in [
            ("create_time", "Created"),
            ("start_time", "Started"),
            ("stop_time", "Stopped"),
            ("archive_time", "Archived"),
        ] {
            row(title, self.field(key));
        }
        row(
            "Messages",
            format!(
                "{} (user {}, assistant {})",
                self.field("message_count"),
                self.field("user_messages"),
                self.field("assistant_messages")
            ),
        );
        if let Some(Value::Array(workers)) = self.session.get("workers") {
            for worker in workers {
                let get = |k: &str| worker.get(k).and_then(Value::as_str).unwrap_or_default();
                let mut text = format!("{} ({})", get("display_name"), get("kind").to_lowercase());
                if !get("profile").is_empty() {
                    text.push_str(&format!(", profile {}", get("profile")));
                }
                if !get("model").is_empty() {
                    text.push_str(&format!(", model {}", get("model")));
                }
                if !get("agent_session_id").is_empty() {
                    text.push_str(&format!(", conversation `{}`", get("agent_session_id")));
                }
                row("Worker", text);
            }
        }
        row("Last error", self.field("last_error"));
        row("Exported", self.field("export_time"));
        out.push_str("\n---\n\n");
        out
    }
}

/// One CSV row (RFC 4180), CRLF-terminated.
pub fn csv_row(fields: impl Iterator<Item = String>) -> String {
    let mut row = fields
        .map(|field| {
            if field.contains([',', '"', '\r', '\n']) {
                format!("\"{}\"", field.replace('"', "\"\""))
            } else {
                field
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    row.push_str("\r\n");
    row
}

fn md_inline(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

fn md_cell(text: &str) -> String {
    md_inline(text).replace('|', "\\|")
}

/// A code fence longer than any run of backticks in `text`.
fn fence(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    "`".repeat((longest + 1).max(3))
}

fn markdown_message(message: &ExportMessage) -> String {
    let role = match message.role.as_str() {
        "USER" => "User",
        "ASSISTANT" => "Assistant",
        "TOOL" => "Tool",
        "SYSTEM" => "System",
        other => other,
    };
    let mut heading = format!("### {} · {role}", message.sequence);
    if !message.tool_name.is_empty() {
        heading.push_str(&format!(" `{}`", md_inline(&message.tool_name)));
    }
    heading.push_str(&format!(
        " · {}",
        to_datetime(message.create_time).format("%Y-%m-%d %H:%M:%S UTC")
    ));
    if !message.worker_display_name.is_empty() {
        heading.push_str(&format!(" · {}", md_inline(&message.worker_display_name)));
    }
    if message.origin == "SEND_MESSAGE" {
        heading.push_str(" · sent with SendMessage");
    }
    let body = if message.role == "TOOL" || message.role == "SYSTEM" {
        let fence = fence(&message.text);
        format!("{fence}\n{}\n{fence}", message.text.trim_end())
    } else {
        message.text.trim_end().to_owned()
    };
    format!("{heading}\n\n{body}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Value {
        json!({
            "name": "sessions/7d0c1f5e-0000-4000-8000-000000000001",
            "display_name": "demo",
            "state": "ARCHIVED",
            "labels": {"task": "JIRA-12"},
            "message_count": 2,
            "user_messages": 1,
            "assistant_messages": 1,
            "workers": [{"display_name": "claude", "kind": "AGENT", "profile": "claude", "agent_session_id": "abc"}],
        })
    }

    fn message(sequence: i64, role: &str, text: &str) -> ExportMessage {
        ExportMessage {
            name: format!("sessions/x/messages/{sequence}"),
            sequence,
            role: role.into(),
            text: text.into(),
            tool_name: String::new(),
            create_time: 1_750_000_000_000_000,
            worker: "sessions/x/workers/y".into(),
            worker_display_name: "claude".into(),
            origin: "TRANSCRIPT".into(),
        }
    }

    fn render(format: Format, messages: &[ExportMessage]) -> String {
        let mut renderer = Renderer::new(format, session());
        let mut out = renderer.header();
        for m in messages {
            out.push_str(&renderer.message(m));
        }
        out.push_str(&renderer.footer());
        out
    }

    #[test]
    fn json_parses_back() {
        let messages = [
            message(1, "USER", "say \"hi\"\nplease"),
            message(2, "ASSISTANT", "hi"),
        ];
        let doc: Value = serde_json::from_str(&render(Format::Json, &messages)).unwrap();
        assert_eq!(doc["session"]["display_name"], "demo");
        assert_eq!(doc["messages"][0]["text"], "say \"hi\"\nplease");
        assert_eq!(doc["messages"][1]["sequence"], 2);
        let empty: Value = serde_json::from_str(&render(Format::Json, &[])).unwrap();
        assert_eq!(empty["messages"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn csv_quotes_commas_quotes_and_newlines() {
        assert_eq!(
            csv_row(
                [
                    "a".to_string(),
                    "b,c".into(),
                    "say \"x\"".into(),
                    "l1\nl2".into()
                ]
                .into_iter()
            ),
            "a,\"b,c\",\"say \"\"x\"\"\",\"l1\nl2\"\r\n"
        );
        let text = render(Format::Csv, &[message(1, "USER", "a, \"b\"\r\nc")]);
        assert!(text.starts_with("session,session_display_name,sequence,"));
        assert!(text.ends_with("\"a, \"\"b\"\"\r\nc\"\r\n"));
    }

    #[test]
    fn markdown_has_metadata_and_fences_tool_output() {
        let mut tool = message(2, "TOOL", "```rust\nfn main() {}\n```");
        tool.tool_name = "Read".into();
        let text = render(Format::Markdown, &[message(1, "USER", "hello"), tool]);
        assert!(text.starts_with("# demo\n"));
        assert!(text.contains("| State | ARCHIVED |"));
        assert!(text.contains("| Labels | task=JIRA-12 |"));
        assert!(text.contains("conversation `abc`"));
        assert!(text.contains("### 1 · User · 2025-06-15"));
        assert!(text.contains("### 2 · Tool `Read`"));
        assert!(text.contains("````\n```rust"), "{text}");
        assert!(render(Format::Markdown, &[]).ends_with("_No messages._\n"));
    }
}
