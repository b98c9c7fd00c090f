//! The event log: what [`NewEvent`] a change records, and how sequences are assigned.
//!
//! Events are written in the same transaction as the change they describe. Their
//! `sequence` comes from the `counters` row `event_sequence`, incremented with
//! `UPDATE … RETURNING` inside that transaction: the row lock serializes writers on
//! PostgreSQL (SQLite serializes all writers anyway), so sequences have no gaps and
//! become visible in order — a reader that saw sequence N will never later find an
//! event below N appear.

use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait};
use serde::{Deserialize, Serialize};

use super::entities::event;
use crate::clock::Micros;

/// What happened. Stored as its upper-case name, the same as `corral.v1.Event.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    SessionCreated,
    SessionUpdated,
    SessionStateChanged,
    SessionDeleted,
    SessionPurged,
    WorkerCreated,
    WorkerStarted,
    WorkerExited,
    WorkerDeleted,
    ActivityChanged,
    CheckpointSaved,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 11] = [
        EventKind::SessionCreated,
        EventKind::SessionUpdated,
        EventKind::SessionStateChanged,
        EventKind::SessionDeleted,
        EventKind::SessionPurged,
        EventKind::WorkerCreated,
        EventKind::WorkerStarted,
        EventKind::WorkerExited,
        EventKind::WorkerDeleted,
        EventKind::ActivityChanged,
        EventKind::CheckpointSaved,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SessionCreated => "SESSION_CREATED",
            EventKind::SessionUpdated => "SESSION_UPDATED",
            EventKind::SessionStateChanged => "SESSION_STATE_CHANGED",
            EventKind::SessionDeleted => "SESSION_DELETED",
            EventKind::SessionPurged => "SESSION_PURGED",
            EventKind::WorkerCreated => "WORKER_CREATED",
            EventKind::WorkerStarted => "WORKER_STARTED",
            EventKind::WorkerExited => "WORKER_EXITED",
            EventKind::WorkerDeleted => "WORKER_DELETED",
            EventKind::ActivityChanged => "ACTIVITY_CHANGED",
            EventKind::CheckpointSaved => "CHECKPOINT_SAVED",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

/// The detail of an event, stored as JSON in `events.payload`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventPayload {
    /// State changes: the state before.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    /// State changes: the state after.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub to: String,
    /// State changes: the action, empty for automatic transitions.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action: String,
    /// Why, in plain words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Worker exits: the exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Worker exits: the signal name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exit_signal: String,
    /// Activity changes: the evidence (rule that matched).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rule: String,
    /// Activity changes: where the evidence comes from (`screen`, `transcript`, `corral`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// Activity changes: the text that matched (at most 200 bytes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub matched_text: String,
    /// Checkpoints: the checkpoint's resource name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub checkpoint: String,
    /// Checkpoints: its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

/// An event about to be written.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub kind: EventKind,
    pub session_id: String,
    pub worker_id: String,
    pub payload: EventPayload,
}

impl NewEvent {
    /// An event about a session.
    pub fn session(kind: EventKind, session_id: &str, payload: EventPayload) -> Self {
        NewEvent {
            kind,
            session_id: session_id.to_owned(),
            worker_id: String::new(),
            payload,
        }
    }

    /// An event about a worker of a session.
    pub fn worker(
        kind: EventKind,
        session_id: &str,
        worker_id: &str,
        payload: EventPayload,
    ) -> Self {
        NewEvent {
            kind,
            session_id: session_id.to_owned(),
            worker_id: worker_id.to_owned(),
            payload,
        }
    }
}

/// Writes `events` with consecutive sequences, inside the caller's transaction.
/// Returns the sequence of the last event written (0 when `events` is empty).
pub(crate) async fn append<C: ConnectionTrait>(
    txn: &C,
    now: Micros,
    events: Vec<NewEvent>,
) -> Result<i64, DbErr> {
    if events.is_empty() {
        return Ok(0);
    }
    let count = events.len() as i64;
    let bump = Query::update()
        .table("counters")
        .value("value", Expr::col("value").add(count))
        .and_where(Expr::col("name").eq("event_sequence"))
        .returning_col("value")
        .to_owned();
    let last: i64 = txn
        .query_one(&bump)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("counters.event_sequence".into()))?
        .try_get("", "value")?;
    let first = last - count + 1;
    let rows = events
        .into_iter()
        .enumerate()
        .map(|(i, event)| event::ActiveModel {
            sequence: Set(first + i as i64),
            time: Set(now),
            kind: Set(event.kind.as_str().to_owned()),
            session_id: Set(event.session_id),
            worker_id: Set(event.worker_id),
            payload: Set(serde_json::to_string(&event.payload).unwrap_or_else(|_| "{}".into())),
        });
    event::Entity::insert_many(rows).exec(txn).await?;
    Ok(last)
}
