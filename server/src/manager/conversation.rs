//! The conversation of a session: SendMessage, ListMessages, ExportSession and
//! SearchMessages.
//!
//! Messages come from the agents' transcripts (indexed by the run monitors, see
//! `agents.rs`) and from SendMessage. Reading is allowed in every state, tombstones
//! included (seed 002 CA07: export works for any session); sending only while the
//! session is ACTIVE (CA04: paused sessions take no messages; CA05/RF10: ended
//! ones are read-only).

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::sessions::{page_size, parse_id, state_of};
use super::workers::worker_kind;
use super::{Manager, SessionView};
use crate::agent::export::{ExportMessage, Format, Renderer};
use crate::clock::to_datetime;
use crate::domain::filter;
use crate::domain::names::{self, Ref};
use crate::domain::state::State;
use crate::error::{Error, Result, not_in_state};
use crate::store::messages::{NewMessage, SearchHit, message, origin};

/// A search hit (the message, its score and snippet).
pub type SearchResult = SearchHit;

/// An export in progress: its format, a file name, and the document's chunks in
/// order (an error ends the stream).
#[derive(Debug)]
pub struct Export {
    /// The document's format.
    pub format: Format,
    /// `<display name>.<json|csv|md>`.
    pub filename: String,
    /// The document, piece by piece.
    pub chunks: mpsc::Receiver<Result<Bytes>>,
}

/// Messages per database page while exporting.
const EXPORT_PAGE: u64 = 500;
/// Bytes gathered before a chunk is sent.
const EXPORT_CHUNK_BYTES: usize = 32 * 1024;
/// Chunks queued for a slow reader before the exporter waits.
const EXPORT_QUEUE: usize = 4;
/// Longest search query, in bytes.
const MAX_QUERY_BYTES: usize = 1024;

/// Bracketed paste markers (xterm): the agent takes what is between them as one
/// pasted text, newlines included, instead of keys.
const PASTE_START: &str = "\x1b[200~";
const PASTE_END: &str = "\x1b[201~";

/// The resource name of a message.
pub fn message_name(session_id: &str, sequence: i64) -> String {
    format!("sessions/{session_id}/messages/{sequence}")
}

impl Manager {
    /// SendMessage: types `text` into the session's agent worker (`worker`, or the
    /// first agent worker) and records it as a USER message. The text is pasted
    /// (bracketed paste when the profile says the agent supports it), then Enter
    /// is typed. An agent that just started and shows nothing its screen rules
    /// know yet is given up to `--resume-verify-timeout` to get ready first.
    ///
    /// Errors: INVALID_ARGUMENT (empty or too long text, a terminal worker),
    /// NOT_FOUND, FAILED_PRECONDITION (session not ACTIVE — PAUSED, STOPPED,
    /// ARCHIVED… —, no agent worker, the agent is not running).
    pub async fn send_message(
        &self,
        session: &Ref,
        worker: Option<&Ref>,
        text: String,
    ) -> Result<message::Model> {
        if text.trim().is_empty() {
            return Err(Error::invalid("text", "is required: the prompt to send"));
        }
        let limit = self.agents.settings.max_prompt_bytes;
        if text.len() > limit {
            return Err(Error::invalid(
                "text",
                format!(
                    "is {} bytes; the limit is {limit} bytes (--max-prompt-bytes)",
                    text.len()
                ),
            ));
        }
        names::validate_text("text", &text, limit)?;
        let row = self.load(session).await?;
        let state = state_of(&row)?;
        match state {
            State::Active => {}
            State::Paused => {
                return Err(not_in_state(
                    "SESSION_PAUSED",
                    &row.model.display_name,
                    state,
                    "messages are refused",
                    "until it is resumed (ResumeSession)",
                ));
            }
            State::Stopped | State::Archived | State::Deleted => {
                return Err(not_in_state(
                    "SESSION_READ_ONLY",
                    &row.model.display_name,
                    state,
                    "it is read-only:",
                    "messages can be sent only while a session is ACTIVE",
                ));
            }
            _ => {
                return Err(not_in_state(
                    "SESSION_NOT_ACTIVE",
                    &row.model.display_name,
                    state,
                    "messages can be sent",
                    "only while the session is ACTIVE",
                ));
            }
        }
        let model = match worker {
            Some(worker) => {
                let model = self
                    .store
                    .find_worker(&row.model.id, worker)
                    .await?
                    .ok_or_else(|| {
                        Error::worker_not_found(format!("sessions/{session}/workers/{worker}"))
                    })?;
                if model.kind != worker_kind::AGENT {
                    return Err(Error::invalid(
                        "worker",
                        format!(
                            "worker {:?} is a terminal; SendMessage types into agent workers (attach to type into a terminal)",
                            model.display_name
                        ),
                    ));
                }
                model
            }
            None => self
                .store
                .list_workers(&row.model.id)
                .await?
                .into_iter()
                .find(|w| w.kind == worker_kind::AGENT)
                .ok_or_else(|| {
                    Error::precondition(
                        "SESSION_HAS_NO_AGENT",
                        format!(
                            "session {:?} has no agent worker to send a message to; add one with CreateWorker",
                            row.model.display_name
                        ),
                    )
                })?,
        };
        let worker_id = parse_id(&model.id)?;
        let handle = self
            .supervisor
            .handle(worker_id)
            .filter(|h| h.is_running())
            .ok_or_else(|| {
                Error::precondition(
                    "WORKER_NOT_RUNNING",
                    format!(
                        "agent worker {:?} is not running (it is {}{}); wait for it to restart or resume the session",
                        model.display_name,
                        model.state,
                        if model.last_error.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", model.last_error)
                        }
                    ),
                )
            })?;
        let profile = self.agents.profiles.get(&model.agent_profile);
        let bracketed = profile.as_ref().is_some_and(|p| p.bracketed_paste);
        if profile.is_some_and(|p| !p.screen_rules.is_empty()) {
            // An agent that just started may not read its terminal yet (input
            // typed before it switches to raw mode is flushed): wait, bounded,
            // until its screen shows something its rules know.
            let mut activity = self.agents.worker(worker_id).activity.subscribe();
            let _ = tokio::time::timeout(
                self.agents.settings.resume_verify,
                activity.wait_for(|state| state.activity != crate::agent::Activity::Unknown),
            )
            .await;
        }
        // Recorded first, so the transcript's copy of the prompt (read moments
        // later) claims this row instead of becoming a second message.
        let stored = self
            .store
            .insert_messages(
                &row.model.id,
                vec![NewMessage {
                    worker_id: model.id.clone(),
                    role: "USER".into(),
                    text: text.clone(),
                    tool_name: String::new(),
                    create_time: self.now(),
                    origin: origin::SEND_MESSAGE.into(),
                    source_key: NewMessage::send_key(Uuid::new_v4()),
                }],
            )
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::session_not_found(format!("sessions/{session}")))?;
        let typed = if bracketed {
            // The end marker inside the text would end the paste early.
            format!("{PASTE_START}{}{PASTE_END}", text.replace(PASTE_END, ""))
        } else {
            text.replace("\r\n", "\r").replace('\n', "\r")
        };
        let written = async {
            handle.write(Bytes::from(typed)).await?;
            handle.write(Bytes::from_static(b"\r")).await
        };
        if written.await.is_err() {
            self.store.delete_message(&stored).await?;
            return Err(Error::precondition(
                "WORKER_NOT_RUNNING",
                format!(
                    "agent worker {:?} ended before the prompt could be typed",
                    model.display_name
                ),
            ));
        }
        tracing::info!(session_id = %row.model.id, worker_id = %model.id, sequence = stored.sequence, bytes = text.len(), "prompt sent");
        Ok(stored)
    }

    /// ListMessages: the conversation oldest first, paginated, with the total.
    pub async fn list_messages(
        &self,
        session: &Ref,
        page: i32,
        token: &str,
    ) -> Result<(Vec<message::Model>, String, u64)> {
        let row = self.load(session).await?;
        let size = page_size(page, 100)?;
        let scope = format!("ListMessages\n{}", row.model.id);
        let after: i64 = if token.is_empty() {
            0
        } else {
            self.store.page_tokens().decode(&scope, token)?
        };
        let mut messages = self
            .store
            .list_messages(&row.model.id, after, size + 1)
            .await?;
        let next = if messages.len() as u64 > size {
            messages.truncate(size as usize);
            messages
                .last()
                .map(|m| self.store.page_tokens().encode(&scope, &m.sequence))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let total = self.store.count_messages(&row.model.id).await?;
        Ok((messages, next, total))
    }

    /// ExportSession: the session's metadata and conversation in `format`,
    /// streamed in chunks. Any state, tombstones included.
    ///
    /// Errors (before any chunk): NOT_FOUND. Later database errors end the stream.
    pub async fn export_session(&self, session: &Ref, format: Format) -> Result<Export> {
        let row = self.load(session).await?;
        let view = self.view(row).await?;
        let metadata = session_json(&view, self.now());
        let names: HashMap<String, String> = view
            .workers
            .iter()
            .map(|w| (w.model.id.clone(), w.model.display_name.clone()))
            .collect();
        let session_id = view.row.model.id.clone();
        let filename = format!("{}.{}", view.row.model.display_name, format.extension());
        let (tx, rx) = mpsc::channel(EXPORT_QUEUE);
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut renderer = Renderer::new(format, metadata);
            let mut buffer = renderer.header();
            let mut after = 0;
            loop {
                let page = match store.list_messages(&session_id, after, EXPORT_PAGE).await {
                    Ok(page) => page,
                    Err(err) => {
                        let _ = tx.send(Err(err)).await;
                        return;
                    }
                };
                let Some(last) = page.last() else { break };
                after = last.sequence;
                for message in &page {
                    buffer.push_str(&renderer.message(&export_message(message, &names)));
                    if buffer.len() >= EXPORT_CHUNK_BYTES
                        && tx
                            .send(Ok(Bytes::from(std::mem::take(&mut buffer))))
                            .await
                            .is_err()
                    {
                        // The client went away.
                        return;
                    }
                }
                if (page.len() as u64) < EXPORT_PAGE {
                    break;
                }
            }
            buffer.push_str(&renderer.footer());
            let _ = tx.send(Ok(Bytes::from(buffer))).await;
        });
        Ok(Export {
            format,
            filename,
            chunks: rx,
        })
    }

    /// SearchMessages: messages of every session (not deleted, matching `filter`)
    /// containing every word of `query`, best first.
    ///
    /// Errors: INVALID_ARGUMENT (empty or too long query, bad filter, bad token).
    pub async fn search_messages(
        &self,
        query: &str,
        filter_text: &str,
        page: i32,
        token: &str,
    ) -> Result<(Vec<SearchResult>, String)> {
        let query = query.trim();
        if query.is_empty() {
            return Err(Error::invalid("query", "is required: the words to find"));
        }
        if query.len() > MAX_QUERY_BYTES {
            return Err(Error::invalid(
                "query",
                format!("is {} bytes; the limit is {MAX_QUERY_BYTES}", query.len()),
            ));
        }
        names::validate_text("query", query, MAX_QUERY_BYTES)?;
        let filter = filter::parse(filter_text)?;
        let size = page_size(page, 50)?;
        let scope = format!(
            "SearchMessages\n{query}\n{}\n{}",
            filter_text.trim(),
            crate::auth::visible_creator().unwrap_or_default()
        );
        let offset: u64 = if token.is_empty() {
            0
        } else {
            self.store.page_tokens().decode(&scope, token)?
        };
        // A principal limited to its own sessions searches only those.
        let creator = crate::auth::visible_creator();
        let mut hits = self
            .store
            .search_messages(query, filter.as_ref(), creator.as_deref(), offset, size + 1)
            .await?;
        let next = if hits.len() as u64 > size {
            hits.truncate(size as usize);
            self.store.page_tokens().encode(&scope, &(offset + size))
        } else {
            String::new()
        };
        Ok((hits, next))
    }
}

fn export_message(message: &message::Model, names: &HashMap<String, String>) -> ExportMessage {
    ExportMessage {
        name: message_name(&message.session_id, message.sequence),
        sequence: message.sequence,
        role: message.role.clone(),
        text: message.text.clone(),
        tool_name: message.tool_name.clone(),
        create_time: message.create_time,
        worker: if message.worker_id.is_empty() {
            String::new()
        } else {
            format!(
                "sessions/{}/workers/{}",
                message.session_id, message.worker_id
            )
        },
        worker_display_name: names.get(&message.worker_id).cloned().unwrap_or_default(),
        origin: message.origin.clone(),
    }
}

/// The session's metadata for an export (JSON object).
fn session_json(view: &SessionView, now: i64) -> Value {
    let model = &view.row.model;
    let time = |t: Option<i64>| t.map(|t| to_datetime(t).to_rfc3339());
    let workers: Vec<Value> = view
        .workers
        .iter()
        .map(|w| {
            json!({
                "name": format!("sessions/{}/workers/{}", model.id, w.model.id),
                "display_name": w.model.display_name,
                "kind": w.model.kind,
                "state": w.model.state,
                "profile": w.model.agent_profile,
                "model": w.model.model,
                "agent_session_id": w.model.agent_session_id,
            })
        })
        .collect();
    json!({
        "name": format!("sessions/{}", model.id),
        "id": model.id,
        "display_name": model.display_name,
        "description": model.description,
        "labels": view.row.labels,
        "kind": model.kind,
        "work_dir": model.work_dir,
        "state": model.state,
        "state_reason": model.state_reason,
        "last_error": model.last_error,
        "create_time": time(Some(model.create_time)),
        "start_time": time(model.start_time),
        "stop_time": time(model.stop_time),
        "archive_time": time(model.archive_time),
        "delete_time": time(model.delete_time),
        "message_count": model.message_count,
        "user_messages": model.user_messages,
        "assistant_messages": model.assistant_messages,
        "workers": workers,
        "export_time": to_datetime(now).to_rfc3339(),
    })
}
