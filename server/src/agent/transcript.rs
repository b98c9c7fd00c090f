//! Reading agents' own transcripts: Claude Code's JSONL, Codex CLI's rollout JSONL
//! and Gemini CLI's chat JSONL, one JSON object per line, and aider's Markdown
//! chat history.
//!
//! Parsing is pure ([`TranscriptParser::parse_line`]) and forgiving: the formats
//! grow with every release, so a line of an unknown `type`, an unknown field, a
//! block of an unknown kind or a line that is not JSON at all is skipped, never an
//! error. Each message gets a `key` that is stable across readings of the same
//! file (the line's `uuid` for Claude Code, the file and byte offset for Codex),
//! so indexing a transcript twice stores each message once.
//!
//! Claude Code (after `daaain/claude-code-log`'s description of the format, and the
//! fixtures in `tests/fixtures/claude-code/`): a line has `type` (`user`,
//! `assistant`, `system`, `summary`, …), `uuid`, `sessionId`, `cwd`, `timestamp`
//! and `message` (`role`, `content` as a string or a list of `text` / `thinking` /
//! `tool_use` / `tool_result` / `image` blocks, and for assistants `model` and
//! `stop_reason`). Sidechain lines (sub-agents) and meta lines are not part of the
//! conversation.
//!
//! Codex CLI: lines `{"timestamp", "type", "payload"}` where `session_meta` carries
//! the id and cwd, `response_item` a `message` / `function_call` /
//! `function_call_output`, and `event_msg` a `task_complete` at the end of a turn;
//! older files have the items themselves on each line.
//!
//! Gemini CLI (after `chatRecordingService` of `@google/gemini-cli-core` 0.61): the
//! first line is the session (`sessionId`, `projectHash` = hex SHA-256 of the
//! project directory, `startTime`); then each message as a record `{id, timestamp,
//! type, content, displayContent?}` of type `user`, `gemini` (with `model` and the
//! completed `toolCalls`: `id`, `name`, `args`, `result`), `info`, `warning` or
//! `error`. A message is appended again, whole, whenever it changes (its tool calls
//! complete, its token counts arrive), so keys name the message and the part
//! (`<id>#text`, `<id>#call:<call id>`, `<id>#result:<call id>`, the last two at
//! the call's own `timestamp`) and a repeated record adds only its new parts.
//! `{"$set": …}` lines update the session (a `messages` list there is a compacted
//! copy, read like records), `{"$rewindTo": id}` drops messages from Gemini CLI's
//! view (Corral keeps what it read). Tool results come back as `user` records of
//! `functionResponse` parts, which carry no prompt. Gemini CLI writes nothing when
//! a turn ends: a prompt that follows an answer closes the turn before it
//! ([`ParsedLine::closes_turn`]).
//!
//! aider (after `aider/io.py` of aider 0.86): one Markdown file per directory,
//! `.aider.chat.history.md`, to which each run appends `# aider chat started at
//! <local time>` and then its chat: a prompt as `#### ` lines (an empty input as
//! `<blank>`), aider's own notes (start-up, token counts, applied edits, questions
//! and their answers) as `> ` lines, and the answer as the Markdown between. A
//! block is emitted when the next one starts or the file ends
//! ([`TranscriptParser::finish`]; aider appends each piece in one write), keyed by
//! the file and its first byte. Like aider's own reader, a `#### ` or
//! `> ` line inside an answer is taken for a prompt or a note. The conversation is
//! named by the start time of its first chat and goes on in the later chats
//! (`--restore-chat-history` continues the whole history); a prompt after an
//! answer closes the turn before it, as for Gemini CLI.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;

use super::activity::TurnSignal;
use super::profile::{TranscriptFormat, TranscriptSpec, Vars, expand};
use crate::clock::Micros;

/// Longest message text kept, in bytes; longer texts (huge tool outputs) are cut
/// with a note saying how much was left out.
pub const MAX_MESSAGE_TEXT_BYTES: usize = 128 * 1024;
/// Tool-use ids remembered per transcript to name tool results.
const MAX_TOOL_NAMES: usize = 10_000;

/// The role of a message (`corral.v1.Message.Role` names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A person's prompt.
    User,
    /// The agent's answer.
    Assistant,
    /// A tool call (its input) or result (its output).
    Tool,
    /// A note of the agent program itself.
    System,
}

impl Role {
    /// The stored name (`ASSISTANT`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "USER",
            Role::Assistant => "ASSISTANT",
            Role::Tool => "TOOL",
            Role::System => "SYSTEM",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Role> {
        [Role::User, Role::Assistant, Role::Tool, Role::System]
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}

/// One message read from a transcript.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedMessage {
    /// Stable identity within the session (see the module doc).
    pub key: String,
    /// Who speaks.
    pub role: Role,
    /// The text (a tool call's input as JSON).
    pub text: String,
    /// For tool calls and results: the tool.
    pub tool_name: String,
    /// When the agent wrote it (µs), if the line says.
    pub time: Option<Micros>,
}

/// What one transcript line contributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedLine {
    /// The messages of the line, in order.
    pub messages: Vec<ParsedMessage>,
    /// Whether the line opens/continues a turn or ends one; `None` when it says
    /// nothing about turns.
    pub turn: Option<TurnSignal>,
    /// The agent's conversation id, when the line carries it.
    pub session_id: Option<String>,
    /// The agent's working directory, when the line carries it.
    pub cwd: Option<String>,
    /// The model that answered, when the line carries it.
    pub model: Option<String>,
    /// Gemini CLI: the hex SHA-256 of the agent's project directory, when the line
    /// carries it.
    pub project_hash: Option<String>,
    /// The line shows that the turn before it ended (Gemini CLI: a prompt after an
    /// answer); counted before [`turn`](Self::turn).
    pub closes_turn: bool,
}

/// A stateful reader of one transcript: remembers tool-use ids to name results.
#[derive(Debug)]
pub struct TranscriptParser {
    format: TranscriptFormat,
    /// Prefix of keys for lines without their own id (the file's name).
    file_tag: String,
    tool_names: HashMap<String, String>,
    /// Gemini CLI and aider: an answer was read since the last prompt.
    answered: bool,
    /// aider: the chat (its start time as the file writes it) whose lines, and
    /// the later chats', are read; empty reads the whole file.
    chat: String,
    /// aider: inside the chat that is read (or a later one).
    in_chat: bool,
    /// aider: the block being read, emitted when the next one starts or the
    /// file ends.
    block: Option<AiderBlock>,
}

/// A run of aider history lines of one kind: a prompt (`#### ` lines), aider's own
/// notes (`> ` lines) or the answer (the lines between).
#[derive(Debug)]
struct AiderBlock {
    role: Role,
    /// Where its first line starts in the file (bytes): the message's key.
    offset: u64,
    /// Its lines, each ending in `\n`, up to [`MAX_MESSAGE_TEXT_BYTES`].
    text: String,
    /// Bytes of lines past that, counted, not kept.
    dropped: usize,
}

impl AiderBlock {
    fn push_line(&mut self, line: &str) {
        let room = MAX_MESSAGE_TEXT_BYTES.saturating_sub(self.text.len());
        if line.len() < room {
            self.text.push_str(line);
            self.text.push('\n');
        } else {
            let kept = super::activity::truncate(line, room);
            self.text.push_str(&kept);
            self.dropped += line.len() + 1 - kept.len();
        }
    }
}

impl TranscriptParser {
    /// A parser for a transcript of `format` stored in a file called `file_name`.
    pub fn new(format: TranscriptFormat, file_name: &str) -> Self {
        TranscriptParser {
            format,
            file_tag: file_name.to_owned(),
            tool_names: HashMap::new(),
            answered: false,
            chat: String::new(),
            in_chat: true,
            block: None,
        }
    }

    /// aider: reads only the chat that started at `chat` (the time of its
    /// `# aider chat started at` line) and the chats after it, which continue it
    /// (`--restore-chat-history`). An empty `chat` reads the whole file; other
    /// formats ignore it (a file is one conversation).
    #[must_use]
    pub fn from_chat(mut self, chat: &str) -> Self {
        self.chat = chat.to_owned();
        self.in_chat = chat.is_empty() || self.format != TranscriptFormat::AiderMarkdown;
        self
    }

    /// Parses one line (without its newline) that starts at byte `offset` of the
    /// file. Never fails: what it does not understand it skips. An aider line
    /// gives the block it ends, if any (see [`finish`](Self::finish)).
    pub fn parse_line(&mut self, line: &[u8], offset: u64) -> ParsedLine {
        if self.format == TranscriptFormat::AiderMarkdown {
            return self.aider(&String::from_utf8_lossy(line), offset);
        }
        let Ok(value) = serde_json::from_slice::<Value>(line) else {
            return ParsedLine::default();
        };
        if !value.is_object() {
            return ParsedLine::default();
        }
        match self.format {
            TranscriptFormat::ClaudeJsonl => self.claude(&value, offset),
            TranscriptFormat::CodexJsonl => self.codex(&value, offset),
            TranscriptFormat::GeminiJsonl => self.gemini(&value),
            TranscriptFormat::AiderMarkdown => ParsedLine::default(),
        }
    }

    /// Closes what the lines read so far leave open (aider's last block) and
    /// returns its message; call it at the end of the file. Empty for the JSONL
    /// formats.
    pub fn finish(&mut self) -> ParsedLine {
        let mut parsed = ParsedLine::default();
        self.aider_close(&mut parsed);
        parsed
    }

    /// One line of aider's history (after `aider/io.py` of aider 0.86:
    /// `append_chat_history`, `user_input`, `ai_output`, `tool_output`; and
    /// `utils.split_chat_history_markdown`, which reads it back).
    fn aider(&mut self, line: &str, offset: u64) -> ParsedLine {
        let mut parsed = ParsedLine::default();
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(started) = line.strip_prefix("# aider chat started at ") {
            self.aider_close(&mut parsed);
            let started = started.trim();
            self.in_chat |= started == self.chat;
            parsed.session_id = Some(started.to_owned());
            return parsed;
        }
        if !self.in_chat {
            return parsed;
        }
        // Lines written with a line break end in two spaces (Markdown's hard break).
        let (role, text) = if let Some(prompt) = line.strip_prefix("#### ") {
            (Role::User, prompt.trim_end())
        } else if let Some(note) = line.strip_prefix("> ") {
            (Role::System, note.trim_end())
        } else if line.trim().is_empty() {
            // A blank line belongs to an answer; it ends a prompt (each input is
            // written after one) or a run of notes.
            match self.block.as_mut() {
                Some(block) if block.role == Role::Assistant => block.push_line(""),
                _ => self.aider_close(&mut parsed),
            }
            return parsed;
        } else {
            (Role::Assistant, line)
        };
        if self.block.as_ref().is_some_and(|b| b.role != role) {
            self.aider_close(&mut parsed);
        }
        self.block
            .get_or_insert_with(|| AiderBlock {
                role,
                offset,
                text: String::new(),
                dropped: 0,
            })
            .push_line(text);
        parsed
    }

    /// Emits the aider block being read into `parsed`.
    fn aider_close(&mut self, parsed: &mut ParsedLine) {
        let Some(block) = self.block.take() else {
            return;
        };
        let text = block.text.trim_end();
        // An empty input is logged as `<blank>`.
        if text.trim().is_empty() || (block.role == Role::User && text == "<blank>") {
            return;
        }
        match block.role {
            Role::User => {
                parsed.closes_turn |= std::mem::take(&mut self.answered);
                parsed.turn = Some(TurnSignal::Open);
            }
            Role::Assistant => {
                self.answered = true;
                parsed.turn = Some(TurnSignal::Open);
            }
            Role::Tool | Role::System => {}
        }
        let text = match block.dropped {
            0 => text.to_owned(),
            dropped => format!("{text}\n… [{dropped} more bytes not kept by Corral]"),
        };
        parsed.messages.push(ParsedMessage {
            key: format!("{}#{}", self.file_tag, block.offset),
            role: block.role,
            text,
            tool_name: String::new(),
            time: None,
        });
    }

    fn remember_tool(&mut self, id: &str, name: &str) {
        if self.tool_names.len() >= MAX_TOOL_NAMES {
            self.tool_names.clear();
        }
        self.tool_names.insert(id.to_owned(), name.to_owned());
    }

    fn claude(&mut self, line: &Value, offset: u64) -> ParsedLine {
        let mut parsed = ParsedLine {
            session_id: str_field(line, "sessionId"),
            cwd: str_field(line, "cwd"),
            ..Default::default()
        };
        let kind = line.get("type").and_then(Value::as_str).unwrap_or_default();
        if !matches!(kind, "user" | "assistant" | "system")
            || line.get("isSidechain").and_then(Value::as_bool) == Some(true)
            || line.get("isMeta").and_then(Value::as_bool) == Some(true)
        {
            return parsed;
        }
        let base = str_field(line, "uuid").unwrap_or_else(|| format!("{}:{offset}", self.file_tag));
        let time = line
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(parse_time);
        let mut out = Messages::new(base, time);
        if kind == "system" {
            if let Some(text) = line.get("content").and_then(Value::as_str) {
                out.push(Role::System, text, "");
            }
            parsed.messages = out.done();
            return parsed;
        }
        let message = line.get("message").unwrap_or(&Value::Null);
        let content = message.get("content").unwrap_or(&Value::Null);
        if kind == "user" {
            match content {
                Value::String(text) => {
                    out.push(Role::User, text, "");
                    parsed.turn = Some(TurnSignal::Open);
                }
                Value::Array(blocks) => {
                    let mut text = Vec::new();
                    for block in blocks {
                        match block.get("type").and_then(Value::as_str) {
                            Some("text") => {
                                if let Some(t) = block.get("text").and_then(Value::as_str) {
                                    text.push(t.to_owned());
                                }
                            }
                            Some("image") => text.push("[image]".into()),
                            Some("tool_result") => {
                                let name = block
                                    .get("tool_use_id")
                                    .and_then(Value::as_str)
                                    .and_then(|id| self.tool_names.get(id))
                                    .cloned()
                                    .unwrap_or_default();
                                let output = block_text(block.get("content"));
                                out.push(Role::Tool, &output, &name);
                            }
                            _ => {}
                        }
                    }
                    if !text.is_empty() {
                        out.push_first(Role::User, &text.join("\n\n"));
                    }
                    if !out.is_empty() {
                        parsed.turn = Some(TurnSignal::Open);
                    }
                }
                _ => {}
            }
        } else {
            parsed.model = str_field(message, "model");
            if let Value::Array(blocks) = content {
                let mut text: Vec<String> = Vec::new();
                for block in blocks {
                    match block.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            if let Some(t) = block.get("text").and_then(Value::as_str) {
                                text.push(t.to_owned());
                            }
                        }
                        Some("tool_use") => {
                            if !text.is_empty() {
                                out.push(Role::Assistant, &text.join("\n\n"), "");
                                text.clear();
                            }
                            let name = str_field(block, "name").unwrap_or_default();
                            if let Some(id) = block.get("id").and_then(Value::as_str) {
                                self.remember_tool(id, &name);
                            }
                            let input =
                                block.get("input").map(Value::to_string).unwrap_or_default();
                            out.push(Role::Tool, &input, &name);
                        }
                        _ => {}
                    }
                }
                if !text.is_empty() {
                    out.push(Role::Assistant, &text.join("\n\n"), "");
                }
            } else if let Value::String(text) = content {
                out.push(Role::Assistant, text, "");
            }
            parsed.turn = Some(match message.get("stop_reason").and_then(Value::as_str) {
                Some(reason) if reason != "tool_use" => TurnSignal::Ended,
                _ => TurnSignal::Open,
            });
        }
        parsed.messages = out.done();
        parsed
    }

    fn codex(&mut self, line: &Value, offset: u64) -> ParsedLine {
        let mut parsed = ParsedLine::default();
        let kind = line.get("type").and_then(Value::as_str).unwrap_or_default();
        let payload = line.get("payload").unwrap_or(&Value::Null);
        let time = line
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(parse_time);
        let item = match kind {
            "session_meta" => {
                parsed.session_id = str_field(payload, "id");
                parsed.cwd = str_field(payload, "cwd");
                return parsed;
            }
            "turn_context" => {
                parsed.model = str_field(payload, "model");
                parsed.cwd = str_field(payload, "cwd");
                return parsed;
            }
            "event_msg" => {
                if payload.get("type").and_then(Value::as_str) == Some("task_complete") {
                    parsed.turn = Some(TurnSignal::Ended);
                }
                return parsed;
            }
            "response_item" => payload,
            // Older rollouts: the first line is the session, then bare items.
            "" => {
                if line.get("instructions").is_some() || line.get("git").is_some() {
                    parsed.session_id = str_field(line, "id");
                }
                return parsed;
            }
            _ => line,
        };
        let mut out = Messages::new(format!("{}:{offset}", self.file_tag), time);
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                let role = item.get("role").and_then(Value::as_str).unwrap_or_default();
                let text = match item.get("content") {
                    Some(Value::Array(blocks)) => blocks
                        .iter()
                        .filter_map(|b| b.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join("\n\n"),
                    Some(Value::String(text)) => text.clone(),
                    _ => String::new(),
                };
                let injected = text.trim_start().starts_with("<environment_context>")
                    || text.trim_start().starts_with("<user_instructions>");
                match role {
                    "user" if !injected => {
                        out.push(Role::User, &text, "");
                        parsed.turn = Some(TurnSignal::Open);
                    }
                    "assistant" => {
                        out.push(Role::Assistant, &text, "");
                        parsed.turn = Some(TurnSignal::Open);
                    }
                    _ => {}
                }
            }
            Some("function_call" | "custom_tool_call") => {
                let name = str_field(item, "name").unwrap_or_default();
                if let Some(id) = item.get("call_id").and_then(Value::as_str) {
                    self.remember_tool(id, &name);
                }
                let input = match item.get("arguments").or_else(|| item.get("input")) {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                out.push(Role::Tool, &input, &name);
                parsed.turn = Some(TurnSignal::Open);
            }
            Some("local_shell_call") => {
                let action = item.get("action").map(Value::to_string).unwrap_or_default();
                if let Some(id) = item.get("call_id").and_then(Value::as_str) {
                    self.remember_tool(id, "shell");
                }
                out.push(Role::Tool, &action, "shell");
                parsed.turn = Some(TurnSignal::Open);
            }
            Some("function_call_output" | "custom_tool_call_output") => {
                let name = item
                    .get("call_id")
                    .and_then(Value::as_str)
                    .and_then(|id| self.tool_names.get(id))
                    .cloned()
                    .unwrap_or_default();
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Object(o)) => o
                        .get("content")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_else(|| Value::Object(o.clone()).to_string()),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                out.push(Role::Tool, &output, &name);
                parsed.turn = Some(TurnSignal::Open);
            }
            _ => {}
        }
        parsed.messages = out.done();
        parsed
    }

    fn gemini(&mut self, line: &Value) -> ParsedLine {
        let mut parsed = ParsedLine::default();
        if line.get("$rewindTo").is_some() {
            return parsed;
        }
        let (session, messages) = match line.get("$set") {
            Some(set) => (set, set.get("messages")),
            None if line.get("id").and_then(Value::as_str).is_some() => {
                self.gemini_message(line, &mut parsed);
                return parsed;
            }
            // The first line (or, in files converted from the older JSON, the
            // whole conversation on one line).
            None => (line, line.get("messages")),
        };
        parsed.session_id = str_field(session, "sessionId");
        parsed.project_hash = str_field(session, "projectHash");
        if let Some(Value::Array(messages)) = messages {
            for message in messages {
                self.gemini_message(message, &mut parsed);
            }
        }
        parsed
    }

    /// Adds the parts of one Gemini CLI message record to `parsed`.
    fn gemini_message(&mut self, record: &Value, parsed: &mut ParsedLine) {
        let Some(id) = record.get("id").and_then(Value::as_str) else {
            return;
        };
        let time = record
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(parse_time);
        let message = |key: String, role: Role, text: String, tool_name: String| ParsedMessage {
            key,
            role,
            text: cut(&text),
            tool_name,
            time,
        };
        // A tool call's parts carry the call's own time (when it completed).
        let at = |mut message: ParsedMessage, call: &Value| {
            if let Some(call_time) = call
                .get("timestamp")
                .and_then(Value::as_str)
                .and_then(parse_time)
            {
                message.time = Some(call_time);
            }
            message
        };
        match record.get("type").and_then(Value::as_str) {
            Some("user") => {
                let shown = record
                    .get("displayContent")
                    .filter(|v| !v.is_null())
                    .or_else(|| record.get("content"));
                let text = gemini_parts_text(shown);
                let trimmed = text.trim();
                // Gemini CLI's own `isIgnoredUserContent`: commands and injected
                // context are not prompts; tool results have no text at all.
                let ignored = trimmed.is_empty()
                    || trimmed.starts_with('/')
                    || trimmed.starts_with('?')
                    || trimmed.starts_with("<session_context>")
                    || trimmed.starts_with("<hook_context>");
                if ignored {
                    return;
                }
                parsed
                    .messages
                    .push(message(format!("{id}#0"), Role::User, text, String::new()));
                parsed.closes_turn |= std::mem::take(&mut self.answered);
                parsed.turn = Some(TurnSignal::Open);
            }
            Some("gemini") => {
                if let Some(model) = str_field(record, "model") {
                    parsed.model = Some(model);
                }
                let text = gemini_parts_text(record.get("content"));
                if !text.trim().is_empty() {
                    parsed.messages.push(message(
                        format!("{id}#text"),
                        Role::Assistant,
                        text,
                        String::new(),
                    ));
                }
                let calls = record.get("toolCalls").and_then(Value::as_array);
                for call in calls.into_iter().flatten() {
                    let call_id = call.get("id").and_then(Value::as_str).unwrap_or_default();
                    let name = str_field(call, "name").unwrap_or_default();
                    let args = call.get("args").map(Value::to_string).unwrap_or_default();
                    parsed.messages.push(at(
                        message(
                            format!("{id}#call:{call_id}"),
                            Role::Tool,
                            args,
                            name.clone(),
                        ),
                        call,
                    ));
                    if let Some(result) = call.get("result").filter(|r| !r.is_null()) {
                        let text = gemini_result_text(result);
                        parsed.messages.push(at(
                            message(format!("{id}#result:{call_id}"), Role::Tool, text, name),
                            call,
                        ));
                    }
                }
                self.answered = true;
                parsed.turn = Some(TurnSignal::Open);
            }
            Some("info" | "warning" | "error") => {
                let text = gemini_parts_text(record.get("content"));
                if !text.trim().is_empty() {
                    parsed.messages.push(message(
                        format!("{id}#0"),
                        Role::System,
                        text,
                        String::new(),
                    ));
                }
            }
            _ => {}
        }
    }
}

/// Collects the messages of one line with keys `<base>#<index>`.
struct Messages {
    base: String,
    time: Option<Micros>,
    items: Vec<(Role, String, String)>,
}

impl Messages {
    fn new(base: String, time: Option<Micros>) -> Self {
        Messages {
            base,
            time,
            items: Vec::new(),
        }
    }

    fn push(&mut self, role: Role, text: &str, tool: &str) {
        if text.trim().is_empty() && role != Role::Tool {
            return;
        }
        self.items.push((role, cut(text), tool.to_owned()));
    }

    fn push_first(&mut self, role: Role, text: &str) {
        if text.trim().is_empty() {
            return;
        }
        self.items.insert(0, (role, cut(text), String::new()));
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn done(self) -> Vec<ParsedMessage> {
        self.items
            .into_iter()
            .enumerate()
            .map(|(i, (role, text, tool_name))| ParsedMessage {
                key: format!("{}#{i}", self.base),
                role,
                text,
                tool_name,
                time: self.time,
            })
            .collect()
    }
}

fn str_field(value: &Value, field: &str) -> Option<String> {
    value
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The text of a `tool_result` content: a string, or a list of text blocks.
fn block_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| match b.get("type").and_then(Value::as_str) {
                Some("text") => b.get("text").and_then(Value::as_str).map(str::to_owned),
                Some("image") => Some("[image]".into()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The text of a Gemini CLI `PartListUnion`: a string, a part, or a list of
/// parts and strings; `text` parts are joined, other parts (thoughts, images,
/// files, function calls and responses) are left out.
fn gemini_parts_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(gemini_part_text)
            .collect::<Vec<_>>()
            .join(""),
        Some(part) => gemini_part_text(part).unwrap_or_default().to_owned(),
        None => String::new(),
    }
}

/// The text of one Gemini CLI part: a string, or a `text` part that is not a
/// thought.
fn gemini_part_text(part: &Value) -> Option<&str> {
    match part {
        Value::String(s) => Some(s),
        part if part.get("thought").and_then(Value::as_bool) == Some(true) => None,
        part => part.get("text").and_then(Value::as_str),
    }
}

/// The text of a Gemini CLI tool call's `result`: its `functionResponse`s'
/// `response.output` (or `error`, or the response as JSON) and its text parts.
fn gemini_result_text(result: &Value) -> String {
    let parts: Vec<&Value> = match result {
        Value::Array(parts) => parts.iter().collect(),
        Value::String(s) => return s.clone(),
        other => vec![other],
    };
    parts
        .into_iter()
        .filter_map(|part| {
            if let Some(response) = part.get("functionResponse").map(|f| &f["response"]) {
                return Some(
                    match response.get("output").or_else(|| response.get("error")) {
                        Some(Value::String(s)) => s.clone(),
                        _ => response.to_string(),
                    },
                );
            }
            part.get("text").and_then(Value::as_str).map(str::to_owned)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text`, cut to [`MAX_MESSAGE_TEXT_BYTES`] with a note.
fn cut(text: &str) -> String {
    if text.len() <= MAX_MESSAGE_TEXT_BYTES {
        return text.to_owned();
    }
    let kept = super::activity::truncate(text, MAX_MESSAGE_TEXT_BYTES);
    format!(
        "{kept}\n… [{} more bytes not kept by Corral]",
        text.len() - kept.len()
    )
}

/// Parses an RFC 3339 time to µs since the epoch.
pub fn parse_time(text: &str) -> Option<Micros> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_micros())
}

/// The pattern of transcript file names of a profile, with the conversation id as
/// the capture group `id` (`{session_id}`) or its first 8 characters as `id8`
/// (`{session_id8}`). Conversation ids of the known formats are UUIDs, which also
/// keeps other files of the directory (a sub-agent's `agent-*.jsonl`) out.
/// `None` only if the pattern does not compile (every piece is escaped, so only
/// a name too long for the regex engine's size limit).
pub fn file_pattern(spec: &TranscriptSpec, vars: &Vars<'_>) -> Option<regex::Regex> {
    // Marks for the two placeholders, which no expansion produces.
    const ID: char = '\u{0}';
    const ID8: char = '\u{1}';
    let template = expand(
        &spec.file.replace("{session_id8}", &ID8.to_string()),
        &Vars {
            session_id: "\u{0}",
            ..vars.clone()
        },
    );
    let mut pattern = String::from("^");
    let mut literal = String::new();
    let flush = |literal: &mut String, pattern: &mut String| {
        let pieces: Vec<String> = literal.split('*').map(regex::escape).collect();
        pattern.push_str(&pieces.join(".*"));
        literal.clear();
    };
    for c in template.chars() {
        match c {
            ID | ID8 => {
                flush(&mut literal, &mut pattern);
                pattern.push_str(if c == ID { UUID_PATTERN } else { UUID8_PATTERN });
            }
            c => literal.push(c),
        }
    }
    flush(&mut literal, &mut pattern);
    pattern.push('$');
    regex::Regex::new(&pattern).ok()
}

const UUID_PATTERN: &str =
    "(?P<id>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})";
const UUID8_PATTERN: &str = "(?P<id8>[0-9a-fA-F]{8})";

/// Files under `dir` (and its subdirectories, at most 4 deep, when `recursive`)
/// whose names match `pattern`, with their modification times. Blocking: call it
/// on the blocking pool.
fn matching_files(
    dir: &Path,
    pattern: &regex::Regex,
    recursive: bool,
) -> Vec<(PathBuf, SystemTime)> {
    fn walk(dir: &Path, pattern: &regex::Regex, depth: u32, out: &mut Vec<(PathBuf, SystemTime)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let path = entry.path();
            if meta.is_dir() {
                if depth > 0 {
                    walk(&path, pattern, depth - 1, out);
                }
            } else if pattern.is_match(&entry.file_name().to_string_lossy()) {
                out.push((path, meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, pattern, if recursive { 4 } else { 0 }, &mut out);
    out
}

/// Finds the transcript of conversation `vars.session_id`: the expected path, or
/// (when the file name has wildcards, the directory is searched recursively, or
/// Claude Code shortened a long directory name) the newest matching file. A name
/// made with `{session_id8}` is only the id's start: the file's first line must
/// name the whole id. Blocking.
pub fn locate(spec: &TranscriptSpec, vars: &Vars<'_>) -> Option<PathBuf> {
    let dir = spec.dir(vars);
    let name = expand(&spec.file, vars);
    let by_prefix = spec.file.contains("{session_id8}");
    if !name.contains('*') && !by_prefix {
        let path = dir.join(&name);
        if path.is_file() {
            return Some(path);
        }
    }
    let exact = regex::Regex::new(&format!(
        "^{}$",
        name.split('*')
            .map(regex::escape)
            .collect::<Vec<_>>()
            .join(".*")
    ))
    .ok()?;
    let mut found = matching_files(&dir, &exact, spec.recursive);
    if found.is_empty() && super::profile::cwd_slug(vars.cwd).len() >= 200 {
        // A long path: Claude Code appended a hash to the shortened name.
        let parent = dir.parent()?;
        let prefix = dir.file_name()?.to_string_lossy().into_owned();
        for entry in std::fs::read_dir(parent).ok()?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                found.extend(matching_files(&entry.path(), &exact, false));
            }
        }
    }
    if by_prefix {
        found.retain(|(path, _)| {
            first_line(path, spec.format)
                .and_then(|head| head.session_id)
                .as_deref()
                == Some(vars.session_id)
        });
    }
    found
        .into_iter()
        .max_by_key(|(_, mtime)| *mtime)
        .map(|(p, _)| p)
}

/// The path a new transcript of conversation `vars.session_id` gets, when the name
/// has no wildcard (Claude Code); used to restore a transcript that is gone.
pub fn expected_path(spec: &TranscriptSpec, vars: &Vars<'_>) -> Option<PathBuf> {
    let name = expand(&spec.file, vars);
    (!name.contains('*')).then(|| spec.dir(vars).join(name))
}

/// The newest transcript in the profile's directory modified at or after `since`,
/// other than the files in `exclude`, with the conversation id read from its name
/// (or, for names made with `{session_id8}`, from its first line; for aider's
/// history, the start time of its last chat). For formats
/// whose directory is not per working directory, only files whose first line
/// names `vars.cwd` count: Codex's `session_meta.cwd`, Gemini CLI's `projectHash`.
/// Blocking.
pub fn newest_since(
    spec: &TranscriptSpec,
    vars: &Vars<'_>,
    since: SystemTime,
    exclude: &[PathBuf],
) -> Option<(PathBuf, String)> {
    let dir = spec.dir(vars);
    let pattern = file_pattern(spec, vars)?;
    let mut candidates: Vec<(PathBuf, SystemTime)> = matching_files(&dir, &pattern, spec.recursive)
        .into_iter()
        .filter(|(path, mtime)| *mtime >= since && !exclude.contains(path))
        .collect();
    candidates.sort_by_key(|(_, mtime)| std::cmp::Reverse(*mtime));
    for (path, _) in candidates {
        if spec.format == TranscriptFormat::AiderMarkdown {
            // The directory's one history: the conversation is its newest chat,
            // if that started since (not a chat of an earlier run that wrote just
            // before this one began).
            match last_aider_chat(&path) {
                Some(chat) if aider_chat_started(&chat).is_none_or(|t| t >= floor_secs(since)) => {
                    return Some((path, chat));
                }
                _ => continue,
            }
        }
        let name = path.file_name()?.to_string_lossy().into_owned();
        let Some(captures) = pattern.captures(&name) else {
            continue;
        };
        let head = match spec.format {
            TranscriptFormat::ClaudeJsonl if captures.name("id8").is_none() => None,
            format => match first_line(&path, format) {
                Some(head) if is_of_directory(format, &head, vars.cwd) => Some(head),
                _ => continue,
            },
        };
        let id = match (captures.name("id"), captures.name("id8")) {
            (Some(id), _) => id.as_str().to_owned(),
            (None, Some(id8)) => match head.and_then(|h| h.session_id) {
                Some(id) if id.starts_with(id8.as_str()) => id,
                _ => continue,
            },
            (None, None) => continue,
        };
        return Some((path.clone(), id));
    }
    None
}

/// The first line of the transcript at `path`, parsed (at most 256 KiB read).
/// Blocking.
fn first_line(path: &Path, format: TranscriptFormat) -> Option<ParsedLine> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).ok()?;
    let mut first = Vec::new();
    let mut reader = std::io::BufReader::new(file).take(256 * 1024);
    reader.read_until(b'\n', &mut first).ok()?;
    let mut parser = TranscriptParser::new(format, "");
    Some(parser.parse_line(first.trim_ascii_end(), 0))
}

/// The start time of the last chat of the aider history at `path` (the text of
/// its last `# aider chat started at` line), which names the conversation.
/// Blocking.
fn last_aider_chat(path: &Path) -> Option<String> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).ok()?;
    let mut last = None;
    for line in std::io::BufReader::new(file).split(b'\n') {
        let line = line.ok()?;
        if let Some(started) = line.strip_prefix(b"# aider chat started at ") {
            last = Some(String::from_utf8_lossy(started).trim().to_owned());
        }
    }
    last.filter(|chat| !chat.is_empty())
}

/// When an aider chat started: its name is aider's local time to the second
/// (`2026-12-08 09:15:02`). `None` when the name is not such a time.
fn aider_chat_started(chat: &str) -> Option<SystemTime> {
    let local = chrono::NaiveDateTime::parse_from_str(chat, "%Y-%m-%d %H:%M:%S").ok()?;
    let time = local.and_local_timezone(chrono::Local).earliest()?;
    let secs = u64::try_from(time.timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// `time` without its fraction of a second.
fn floor_secs(time: SystemTime) -> SystemTime {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

/// Whether the transcript whose first line is `head` is of directory `cwd`.
/// Claude Code keeps one folder per directory, and aider one file, so their
/// files always are.
fn is_of_directory(format: TranscriptFormat, head: &ParsedLine, cwd: &str) -> bool {
    match format {
        TranscriptFormat::ClaudeJsonl | TranscriptFormat::AiderMarkdown => true,
        TranscriptFormat::CodexJsonl => head.cwd.as_deref() == Some(cwd),
        TranscriptFormat::GeminiJsonl => head
            .project_hash
            .as_deref()
            .is_some_and(|hash| project_hashes(cwd).iter().any(|h| h == hash)),
    }
}

/// Gemini CLI's project hash (hex SHA-256 of the directory's path) of `cwd`, and
/// of its canonical path when that differs (Gemini CLI may resolve symbolic
/// links). Blocking.
fn project_hashes(cwd: &str) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let hash = |path: &str| format!("{:x}", Sha256::digest(path.as_bytes()));
    let mut hashes = vec![hash(cwd)];
    if let Ok(real) = std::fs::canonicalize(cwd)
        && let Some(real) = real.to_str()
        && real != cwd
    {
        hashes.push(hash(real));
    }
    hashes
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPRESENTATIVE: &str =
        include_str!("../../../tests/fixtures/claude-code/representative_messages.jsonl");
    const SESSION_B: &str = include_str!("../../../tests/fixtures/claude-code/session_b.jsonl");
    const TODOWRITE: &str =
        include_str!("../../../tests/fixtures/claude-code/todowrite_examples.jsonl");
    const GEMINI: &str = include_str!("../../../tests/fixtures/gemini-cli/session.jsonl");
    const GEMINI_ID: &str = "5b1a0c9e-3f2d-4e8a-9b7c-1d2e3f4a5b6c";
    const AIDER: &str = include_str!("../../../tests/fixtures/aider/chat.history.md");

    fn parse_all(format: TranscriptFormat, text: &str) -> Vec<ParsedLine> {
        let mut parser = TranscriptParser::new(format, "t.jsonl");
        let mut offset = 0u64;
        text.split_inclusive('\n')
            .map(|line| {
                let parsed = parser.parse_line(line.trim_end().as_bytes(), offset);
                offset += line.len() as u64;
                parsed
            })
            .collect()
    }

    fn messages(lines: &[ParsedLine]) -> Vec<&ParsedMessage> {
        lines.iter().flat_map(|l| &l.messages).collect()
    }

    #[test]
    fn claude_fixture_messages_roles_and_tools() {
        let lines = parse_all(TranscriptFormat::ClaudeJsonl, REPRESENTATIVE);
        let all = messages(&lines);
        let count = |role| all.iter().filter(|m| m.role == role).count();
        assert_eq!(count(Role::User), 4);
        assert_eq!(count(Role::Assistant), 3);
        // Two tool calls (Edit, Bash) and their two results, named after the call.
        assert_eq!(count(Role::Tool), 4);
        let first = all[0];
        assert_eq!(first.role, Role::User);
        assert!(first.text.starts_with("Hello Claude!"));
        assert_eq!(first.key, "msg_001#0");
        assert_eq!(first.time, parse_time("2025-06-14T10:00:00Z"));
        let edit = all.iter().find(|m| m.tool_name == "Edit").unwrap();
        assert!(edit.text.contains("decorator_example.py"), "{}", edit.text);
        let results: Vec<_> = all
            .iter()
            .filter(|m| m.role == Role::Tool && !m.text.starts_with('{'))
            .collect();
        assert_eq!(results[0].tool_name, "Edit");
        assert!(results[0].text.contains("File created successfully"));
        assert_eq!(results[1].tool_name, "Bash");
        // The summary line is metadata, not a message.
        assert!(lines.last().unwrap().messages.is_empty());
        assert_eq!(lines[0].session_id.as_deref(), Some("test_session"));
    }

    #[test]
    fn claude_turns_end_on_a_final_stop_reason() {
        let lines = parse_all(TranscriptFormat::ClaudeJsonl, REPRESENTATIVE);
        let turns: Vec<_> = lines.iter().map(|l| l.turn).collect();
        assert_eq!(turns[0], Some(TurnSignal::Open));
        assert_eq!(turns[1], Some(TurnSignal::Ended), "end_turn");
        assert_eq!(
            turns[3],
            Some(TurnSignal::Open),
            "tool_use continues the turn"
        );
        let ended = turns
            .iter()
            .filter(|t| **t == Some(TurnSignal::Ended))
            .count();
        assert_eq!(ended, 3);
        assert_eq!(lines[1].model.as_deref(), Some("claude-3-sonnet-20240229"));
    }

    #[test]
    fn claude_string_content_and_todo_tools() {
        let lines = parse_all(TranscriptFormat::ClaudeJsonl, TODOWRITE);
        let all = messages(&lines);
        assert_eq!(all[0].role, Role::User);
        assert!(all[0].text.contains("proper task management"));
        let todos = all.iter().filter(|m| m.tool_name == "TodoWrite").count();
        assert_eq!(todos, 6, "three calls, three results");
        let b = parse_all(TranscriptFormat::ClaudeJsonl, SESSION_B);
        assert_eq!(messages(&b).len(), 3);
        assert_eq!(b[0].session_id.as_deref(), Some("session_b"));
    }

    #[test]
    fn unknown_lines_and_fields_are_skipped() {
        let text = concat!(
            "not json at all\n",
            "[1,2,3]\n",
            "{\"type\":\"file-history-snapshot\",\"snapshot\":{}}\n",
            "{\"type\":\"user\",\"uuid\":\"u1\",\"brandNewField\":{\"x\":1},\"message\":{\"role\":\"user\",\"content\":[{\"type\":\"hologram\"},{\"type\":\"text\",\"text\":\"hi\"}]}}\n",
            "{\"type\":\"assistant\",\"uuid\":\"a1\",\"isSidechain\":true,\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"sub-agent\"}]}}\n",
            "{\"type\":\"user\",\"uuid\":\"m1\",\"isMeta\":true,\"message\":{\"content\":\"caveat\"}}\n",
            "{\"type\":\"assistant\",\"uuid\":\"a2\",\"message\":{\"content\":[{\"type\":\"thinking\",\"thinking\":\"hmm\"},{\"type\":\"text\",\"text\":\"hello\"}],\"stop_reason\":\"end_turn\"}}\n",
        );
        let lines = parse_all(TranscriptFormat::ClaudeJsonl, text);
        let all = messages(&lines);
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].role, all[0].text.as_str()), (Role::User, "hi"));
        assert_eq!(
            (all[1].role, all[1].text.as_str()),
            (Role::Assistant, "hello")
        );
    }

    #[test]
    fn huge_texts_are_cut_with_a_note() {
        let big = "y".repeat(MAX_MESSAGE_TEXT_BYTES + 10);
        let line =
            serde_json::json!({"type":"user","uuid":"u","message":{"content":big}}).to_string();
        let mut parser = TranscriptParser::new(TranscriptFormat::ClaudeJsonl, "t");
        let parsed = parser.parse_line(line.as_bytes(), 0);
        assert!(
            parsed.messages[0]
                .text
                .ends_with("10 more bytes not kept by Corral]")
        );
    }

    #[test]
    fn codex_rollouts() {
        let text = concat!(
            "{\"timestamp\":\"2025-09-01T10:00:00Z\",\"type\":\"session_meta\",\"payload\":{\"id\":\"5973b6c0-94b8-487b-a530-2aeb6098ae0e\",\"cwd\":\"/srv/app\"}}\n",
            "{\"timestamp\":\"2025-09-01T10:00:01Z\",\"type\":\"response_item\",\"payload\":{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"<environment_context>cwd</environment_context>\"}]}}\n",
            "{\"timestamp\":\"2025-09-01T10:00:02Z\",\"type\":\"response_item\",\"payload\":{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"list files\"}]}}\n",
            "{\"timestamp\":\"2025-09-01T10:00:03Z\",\"type\":\"response_item\",\"payload\":{\"type\":\"function_call\",\"name\":\"shell\",\"arguments\":\"{\\\"command\\\":[\\\"ls\\\"]}\",\"call_id\":\"c1\"}}\n",
            "{\"timestamp\":\"2025-09-01T10:00:04Z\",\"type\":\"response_item\",\"payload\":{\"type\":\"function_call_output\",\"call_id\":\"c1\",\"output\":\"a.txt\"}}\n",
            "{\"timestamp\":\"2025-09-01T10:00:05Z\",\"type\":\"response_item\",\"payload\":{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"There is a.txt\"}]}}\n",
            "{\"timestamp\":\"2025-09-01T10:00:06Z\",\"type\":\"event_msg\",\"payload\":{\"type\":\"task_complete\"}}\n",
        );
        let lines = parse_all(TranscriptFormat::CodexJsonl, text);
        assert_eq!(
            lines[0].session_id.as_deref(),
            Some("5973b6c0-94b8-487b-a530-2aeb6098ae0e")
        );
        assert_eq!(lines[0].cwd.as_deref(), Some("/srv/app"));
        let all = messages(&lines);
        let roles: Vec<Role> = all.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            vec![Role::User, Role::Tool, Role::Tool, Role::Assistant]
        );
        assert_eq!(all[2].tool_name, "shell");
        assert_eq!(all[2].text, "a.txt");
        assert_eq!(lines.last().unwrap().turn, Some(TurnSignal::Ended));
    }

    #[test]
    fn file_patterns_capture_the_id() {
        let spec = TranscriptSpec {
            format: TranscriptFormat::CodexJsonl,
            dirs: vec!["{home}/.codex/sessions".into()],
            file: "rollout-*-{session_id}.jsonl".into(),
            recursive: true,
        };
        let pattern = file_pattern(&spec, &Vars::default()).unwrap();
        let caps = pattern
            .captures("rollout-2025-09-01T10-00-00-5973b6c0-94b8-487b-a530-2aeb6098ae0e.jsonl")
            .unwrap();
        assert_eq!(&caps["id"], "5973b6c0-94b8-487b-a530-2aeb6098ae0e");
        assert!(!pattern.is_match("notes.txt"));
    }

    #[test]
    fn locate_and_newest_since_search_the_directory() {
        let home = tempfile::tempdir().unwrap();
        let vars = Vars {
            session_id: "abc",
            home: home.path().to_str().unwrap(),
            cwd: "/srv/app",
            ..Default::default()
        };
        let profiles = super::super::profile::Profiles::builtin();
        let claude = profiles.get("claude").unwrap();
        let spec = claude.transcript.as_ref().unwrap();
        assert_eq!(locate(spec, &vars), None);
        let path = expected_path(spec, &vars).unwrap();
        assert!(path.ends_with(".claude/projects/-srv-app/abc.jsonl"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{}\n").unwrap();
        assert_eq!(locate(spec, &vars), Some(path.clone()));
        let newer = path.with_file_name("0b6f3c1e-8f6a-4c3e-9a51-3f1c2f4f9d10.jsonl");
        std::fs::write(path.with_file_name("agent-1234.jsonl"), "{}\n").unwrap();
        std::fs::write(&newer, "{}\n").unwrap();
        let since = SystemTime::UNIX_EPOCH;
        let (found, id) = newest_since(spec, &vars, since, std::slice::from_ref(&path)).unwrap();
        assert_eq!(
            (found, id.as_str()),
            (newer, "0b6f3c1e-8f6a-4c3e-9a51-3f1c2f4f9d10")
        );
    }

    #[test]
    fn gemini_chats_give_each_part_once_under_a_stable_key() {
        let lines = parse_all(TranscriptFormat::GeminiJsonl, GEMINI);
        assert_eq!(lines[0].session_id.as_deref(), Some(GEMINI_ID));
        assert_eq!(
            lines[0].project_hash.as_deref(),
            Some(project_hashes("/srv/app")[0].as_str())
        );
        // What the store keeps: the first message of each key.
        let mut seen = std::collections::HashSet::new();
        let kept: Vec<&ParsedMessage> = messages(&lines)
            .into_iter()
            .filter(|m| seen.insert(m.key.clone()))
            .collect();
        let shown: Vec<(Role, &str, &str)> = kept
            .iter()
            .map(|m| (m.role, m.text.as_str(), m.tool_name.as_str()))
            .collect();
        assert_eq!(
            shown,
            vec![
                // displayContent: what was typed, not the expanded @file.
                (Role::User, "List the files, @notes.md", ""),
                (Role::Assistant, "I'll list the files.", ""),
                (
                    Role::Tool,
                    r#"{"command":"ls","description":"List files"}"#,
                    "run_shell_command"
                ),
                (
                    Role::Tool,
                    "Command: ls\nStdout: a.txt\nb.txt",
                    "run_shell_command"
                ),
                (Role::Assistant, "There are two files: a.txt and b.txt.", ""),
                (Role::System, "Loop detected, stopping execution", ""),
                (Role::User, "Thanks", ""),
            ]
        );
        assert_eq!(kept[0].key, "0f8e2a6d-1c4b-4e3a-8d2f-6a7b8c9d0e1f#0");
        assert_eq!(
            kept[2].key,
            "7c3d9e1f-2a4b-4c5d-9e6f-0a1b2c3d4e5f#call:run_shell_command-1765101605123-0"
        );
        assert_eq!(kept[0].time, parse_time("2026-12-07T10:00:01Z"));
        // A tool call's parts: the call's time, not its message's.
        assert_eq!(kept[1].time, parse_time("2026-12-07T10:00:05Z"));
        assert_eq!(kept[3].time, parse_time("2026-12-07T10:00:06Z"));
        assert_eq!(lines[3].model.as_deref(), Some("gemini-2.5-pro"));
    }

    #[test]
    fn gemini_turns_close_at_the_next_prompt() {
        let lines = parse_all(TranscriptFormat::GeminiJsonl, GEMINI);
        let closed: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].closes_turn).collect();
        // Only "Thanks" (line 12) follows an answer; the first prompt, the tool
        // result and "/stats" do not close a turn.
        assert_eq!(closed, vec![12]);
        assert_eq!(lines[1].turn, Some(TurnSignal::Open));
        assert!(lines.iter().all(|l| l.turn != Some(TurnSignal::Ended)));
        // A compacted copy in `$set` is read like the records themselves.
        let compact = serde_json::json!({"$set": {"sessionId": GEMINI_ID, "messages": [
            {"id": "u", "type": "user", "content": "again"},
            {"id": "g", "type": "gemini", "content": [{"text": "why", "thought": true}, {"text": "ok"}]},
        ]}})
        .to_string();
        let mut parser = TranscriptParser::new(TranscriptFormat::GeminiJsonl, "t");
        let parsed = parser.parse_line(compact.as_bytes(), 0);
        let texts: Vec<&str> = parsed.messages.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, vec!["again", "ok"]);
        assert_eq!(parsed.session_id.as_deref(), Some(GEMINI_ID));
    }

    #[test]
    fn gemini_files_are_found_by_the_start_of_the_id_and_the_project_hash() {
        let home = tempfile::tempdir().unwrap();
        let cwd = "/srv/app";
        let vars = Vars {
            home: home.path().to_str().unwrap(),
            cwd,
            ..Default::default()
        };
        let profiles = super::super::profile::Profiles::builtin();
        let spec = profiles.get("gemini").unwrap().transcript.clone().unwrap();
        let chats = home.path().join(".gemini/tmp/app/chats");
        std::fs::create_dir_all(&chats).unwrap();
        let ours = chats.join("session-2026-12-07T10-00-5b1a0c9e.jsonl");
        std::fs::write(&ours, GEMINI).unwrap();
        // Another project's newer chat, and a sub-agent's chat of ours.
        let other_dir = home.path().join(".gemini/tmp/other/chats");
        std::fs::create_dir_all(other_dir.join(GEMINI_ID)).unwrap();
        let other_id = "d00dfeed-0000-4000-8000-000000000000";
        let other = serde_json::json!({"sessionId": other_id, "projectHash": project_hashes("/srv/other")[0]});
        std::fs::write(
            other_dir.join("session-2026-12-07T11-00-d00dfeed.jsonl"),
            format!("{other}\n"),
        )
        .unwrap();
        std::fs::write(
            other_dir.join(GEMINI_ID).join(format!("{other_id}.jsonl")),
            GEMINI,
        )
        .unwrap();
        let since = SystemTime::UNIX_EPOCH;
        let (found, id) = newest_since(&spec, &vars, since, &[]).unwrap();
        assert_eq!((found, id.as_str()), (ours.clone(), GEMINI_ID));
        let by_id = Vars {
            session_id: GEMINI_ID,
            ..vars.clone()
        };
        assert_eq!(locate(&spec, &by_id), Some(ours.clone()));
        // Same first 8 characters, another id: not this conversation.
        let twin = Vars {
            session_id: "5b1a0c9e-0000-4000-8000-000000000000",
            ..vars.clone()
        };
        assert_eq!(locate(&spec, &twin), None);
        assert_eq!(expected_path(&spec, &by_id), None);
        assert_eq!(newest_since(&spec, &vars, since, &[ours]), None);
    }

    /// The lines of an aider history read from the chat `chat`, as the tail hands
    /// them over (blank lines and indentation kept), then what the end closes.
    fn parse_aider(chat: &str, text: &str) -> Vec<ParsedLine> {
        let mut parser =
            TranscriptParser::new(TranscriptFormat::AiderMarkdown, ".aider.chat.history.md")
                .from_chat(chat);
        let mut offset = 0u64;
        let mut lines: Vec<ParsedLine> = text
            .split_inclusive('\n')
            .map(|line| {
                let parsed = parser.parse_line(line.trim_end_matches('\n').as_bytes(), offset);
                offset += line.len() as u64;
                parsed
            })
            .collect();
        lines.push(parser.finish());
        lines
    }

    #[test]
    fn aider_histories_are_read_from_the_chat_of_the_conversation() {
        let lines = parse_aider("2026-12-08 09:15:02", AIDER);
        let got: Vec<(Role, &str)> = messages(&lines)
            .iter()
            .map(|m| (m.role, m.text.as_str()))
            .collect();
        let answer = "I'll add the function.\n\nhello.py\n```python\n<<<<<<< SEARCH\n=======\n\
            def greet(name):\n    print(f\"Hello, {name}!\")\n\n>>>>>>> REPLACE\n```";
        assert_eq!(
            got,
            vec![
                (
                    Role::System,
                    "/usr/local/bin/aider --chat-history-file /srv/w/.aider.chat.history.md --no-auto-commits\nAider v0.86.2\nGit repo: .git with 1 files"
                ),
                (
                    Role::User,
                    "add a greet(name) function to hello.py\nthat prints a greeting"
                ),
                (Role::Assistant, answer),
                (
                    Role::System,
                    "Tokens: 2.3k sent, 54 received. Cost: $0.0077 message, $0.0077 session.\nApplied edit to hello.py"
                ),
                (Role::User, "/ask what does greet print?"),
                (Role::User, "what does greet print?"),
                (
                    Role::Assistant,
                    "It prints `Hello, ` followed by the name and `!`."
                ),
                (Role::System, "Tokens: 2.4k sent, 15 received."),
                // `<blank>` (an empty input) is no prompt.
                (Role::System, "Add file to the chat? (Y)es/(N)o [Yes]: y"),
                // The chat after it continues the conversation.
                (Role::System, "Aider v0.86.2"),
                (Role::User, "now make it return the string"),
                // The last answer, closed by the end of the run.
                (
                    Role::Assistant,
                    "Here is the change:\n\n    def greet(name):\n        return f\"Hello, {name}!\""
                ),
            ]
        );
        // Keys are the file and the block's first byte: stable across readings,
        // and different for each block.
        let keys: Vec<&str> = messages(&lines).iter().map(|m| m.key.as_str()).collect();
        let first = AIDER.find("> /usr/local/bin/aider").unwrap();
        assert_eq!(keys[0], format!(".aider.chat.history.md#{first}"));
        let mut unique = keys.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), keys.len());
        let again = parse_aider("2026-12-08 09:15:02", AIDER);
        assert_eq!(messages(&again), messages(&lines));
        // Each chat's start line names it.
        let chats: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.session_id.as_deref())
            .collect();
        assert_eq!(
            chats,
            vec![
                "2026-12-08 09:00:00",
                "2026-12-08 09:15:02",
                "2026-12-08 10:02:41"
            ]
        );
    }

    #[test]
    fn aider_turns_close_at_the_next_prompt() {
        let lines = parse_aider("2026-12-08 09:15:02", AIDER);
        let closing: Vec<&str> = lines
            .iter()
            .filter(|l| l.closes_turn)
            .flat_map(|l| &l.messages)
            .filter(|m| m.role == Role::User)
            .map(|m| m.text.as_str())
            .collect();
        // The first prompt of the chat and the one that repeats `/ask`'s question
        // follow no answer.
        assert_eq!(
            closing,
            vec![
                "/ask what does greet print?",
                "now make it return the string"
            ]
        );
        assert!(lines.iter().all(|l| l.turn != Some(TurnSignal::Ended)));
        // Without a chat, the whole history is read; an unknown chat reads nothing.
        let all = parse_aider("", AIDER);
        assert_eq!(
            messages(&all)[1].text,
            "what is in this repo?",
            "the first chat's prompt"
        );
        assert!(messages(&parse_aider("2026-12-08 08:00:00", AIDER)).is_empty());
    }

    #[test]
    fn aider_answers_are_kept_up_to_the_message_limit() {
        let line = "x".repeat(1000);
        let mut history = String::from("#### write a lot  \n\n");
        for _ in 0..300 {
            history.push_str(&line);
            history.push('\n');
        }
        history.push_str("#### and one long line  \n\n");
        history.push_str(&"y".repeat(MAX_MESSAGE_TEXT_BYTES + 10));
        history.push('\n');
        let lines = parse_aider("", &history);
        let answers: Vec<&str> = messages(&lines)
            .iter()
            .filter(|m| m.role == Role::Assistant)
            .map(|m| m.text.as_str())
            .collect();
        assert_eq!(answers.len(), 2);
        // 300 lines of 1001 bytes: the first MAX_MESSAGE_TEXT_BYTES are kept.
        let note = format!(
            "\n… [{} more bytes not kept by Corral]",
            300 * 1001 - MAX_MESSAGE_TEXT_BYTES
        );
        assert!(answers[0].ends_with(&note));
        assert_eq!(answers[0].len(), MAX_MESSAGE_TEXT_BYTES + note.len());
        assert!(answers[1].starts_with("yyy"));
        assert!(answers[1].ends_with("\n… [11 more bytes not kept by Corral]"));
    }

    #[test]
    fn aider_histories_are_found_in_the_directory_and_named_by_their_last_chat() {
        let cwd = tempfile::tempdir().unwrap();
        let vars = Vars {
            cwd: cwd.path().to_str().unwrap(),
            ..Default::default()
        };
        let profiles = super::super::profile::Profiles::builtin();
        let aider = profiles.get("aider").unwrap();
        let spec = aider.transcript.clone().unwrap();
        assert_eq!(spec.format, TranscriptFormat::AiderMarkdown);
        let since = SystemTime::UNIX_EPOCH;
        assert_eq!(newest_since(&spec, &vars, since, &[]), None);
        let history = cwd.path().join(".aider.chat.history.md");
        std::fs::write(&history, AIDER).unwrap();
        // Written a few seconds after the last chat began, as aider does.
        std::fs::File::options()
            .write(true)
            .open(&history)
            .unwrap()
            .set_modified(aider_chat_started("2026-12-08 10:02:50").unwrap())
            .unwrap();
        assert_eq!(
            newest_since(&spec, &vars, since, &[]),
            Some((history.clone(), "2026-12-08 10:02:41".to_owned()))
        );
        let by_chat = Vars {
            session_id: "2026-12-08 09:15:02",
            ..vars.clone()
        };
        assert_eq!(locate(&spec, &by_chat), Some(history.clone()));
        assert_eq!(
            newest_since(&spec, &vars, since, std::slice::from_ref(&history)),
            None
        );
        // A run that began after the last chat started has not written its own
        // yet: the earlier run's chat is not taken for it.
        let after = aider_chat_started("2026-12-08 10:02:42").unwrap();
        assert_eq!(newest_since(&spec, &vars, after, &[]), None);
        let same_second = after - std::time::Duration::from_millis(500);
        assert_eq!(
            newest_since(&spec, &vars, same_second, &[]).map(|(_, chat)| chat),
            Some("2026-12-08 10:02:41".to_owned())
        );
        // aider is told to write the history where Corral reads it.
        let argv = aider.argv(
            &super::super::profile::Launch::Start { session_id: None },
            "",
            &[],
            &vars,
        );
        assert_eq!(
            argv,
            vec![
                "aider".to_owned(),
                "--chat-history-file".to_owned(),
                history.to_string_lossy().into_owned(),
            ]
        );
    }
}
