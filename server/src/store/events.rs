//! The event log: what [`NewEvent`] a change records, and how sequences are assigned.
//!
//! Events are written in the same transaction as the change they describe. Their
//! `sequence` comes from the `counters` row `event_sequence`, incremented with
//! `UPDATE … RETURNING` inside that transaction: the row lock serializes writers on
//! PostgreSQL (SQLite serializes all writers anyway), so sequences have no gaps and
//! become visible in order — a reader that saw sequence N will never later find an
//! event below N appear.
//!
//! Announcing new events: on PostgreSQL, [`append`] also runs
//! `pg_notify('corral_events', '<last sequence>')` in the writing transaction, so
//! every server LISTENing on the channel hears of it when (and only if) the
//! transaction commits, in commit order. Within one server the store also
//! announces the last sequence it committed on a `watch` channel
//! ([`Store::committed_events`]); for writers in other processes on SQLite the
//! event feed polls the `counters` row. A notification carries only "events up to
//! N are committed": readers fetch the events themselves, so the database stays
//! the one source of truth and a lost notification delays but never loses an
//! event.

use sea_orm::QueryTrait;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::Store;
use super::entities::{event, session};
use crate::clock::Micros;
use crate::error::Result;

/// The PostgreSQL channel on which committed event sequences are announced.
pub const NOTIFY_CHANNEL: &str = "corral_events";

/// Rows deleted per statement when purging, so a purge never holds the write
/// lock (SQLite) or a huge transaction (PostgreSQL) for long.
const PURGE_BATCH: i64 = 5_000;

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
    /// The payload as stored: JSON text (`{}` if it cannot be serialized).
    fn payload_json(&self) -> String {
        serde_json::to_string(&self.payload).unwrap_or_else(|_| "{}".into())
    }

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
    if txn.get_database_backend() == DbBackend::Postgres {
        return append_postgres(txn, now, events).await;
    }
    if let [event] = events.as_slice() {
        return append_one_sqlite(txn, now, event).await;
    }
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
            payload: Set(event.payload_json()),
            session_id: Set(event.session_id),
            worker_id: Set(event.worker_id),
        });
    event::Entity::insert_many(rows).exec(txn).await?;
    Ok(last)
}

/// [`append`] of one event on SQLite, in one statement: the sequence is the
/// counter's value plus one, and the trigger `events_sequence_counter` (migration
/// `m20261121_000023`) raises the counter to it. The caller's write transaction
/// holds SQLite's write lock, so no other writer reads the counter in between.
async fn append_one_sqlite<C: ConnectionTrait>(
    txn: &C,
    now: Micros,
    event: &NewEvent,
) -> Result<i64, DbErr> {
    let sql = r#"INSERT INTO "events" ("sequence", "time", "type", "session_id", "worker_id", "payload") VALUES ((SELECT "value" FROM "counters" WHERE "name" = 'event_sequence') + 1, ?, ?, ?, ?, ?) RETURNING "sequence""#;
    let values: Vec<sea_orm::Value> = vec![
        now.into(),
        event.kind.as_str().into(),
        event.session_id.clone().into(),
        event.worker_id.clone().into(),
        event.payload_json().into(),
    ];
    txn.query_one_raw(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        sql,
        values,
    ))
    .await?
    .ok_or_else(|| DbErr::RecordNotFound("counters.event_sequence".into()))?
    .try_get("", "sequence")
}

/// [`append`] on PostgreSQL, in one statement: the counter's bump, the rows and
/// the `pg_notify` (delivered to every listener when the transaction commits;
/// never if it rolls back). The bump takes the counter row's lock, held until
/// COMMIT; one round trip instead of three keeps that serialized stretch short
/// (BENCHMARKS.md, lifecycle on PostgreSQL).
async fn append_postgres<C: ConnectionTrait>(
    txn: &C,
    now: Micros,
    events: Vec<NewEvent>,
) -> Result<i64, DbErr> {
    use std::fmt::Write as _;
    let count = events.len();
    // $1 count, $2 channel, $3 time; then four per event.
    let mut values: Vec<sea_orm::Value> =
        vec![(count as i64).into(), NOTIFY_CHANNEL.into(), now.into()];
    let mut sql = String::from(
        r#"WITH bump AS (UPDATE "counters" SET "value" = "value" + $1 WHERE "name" = 'event_sequence' RETURNING "value") INSERT INTO "events" ("sequence", "time", "type", "session_id", "worker_id", "payload") VALUES "#,
    );
    for (i, event) in events.into_iter().enumerate() {
        let n = values.len();
        let separator = if i == 0 { "" } else { ", " };
        // The i-th of `count` new sequences ends at the bumped value.
        let _ = write!(
            sql,
            r#"{separator}((SELECT "value" FROM bump) - {}, $3, ${}, ${}, ${}, ${})"#,
            count - 1 - i,
            n + 1,
            n + 2,
            n + 3,
            n + 4
        );
        let payload = event.payload_json();
        values.extend([
            event.kind.as_str().into(),
            event.session_id.into(),
            event.worker_id.into(),
            payload.into(),
        ]);
    }
    sql.push_str(
        r#" RETURNING (SELECT "value" FROM bump) AS "last", pg_notify($2, (SELECT "value" FROM bump)::text)::text AS "notified""#,
    );
    txn.query_one_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        values,
    ))
    .await?
    .ok_or_else(|| DbErr::RecordNotFound("counters.event_sequence".into()))?
    .try_get("", "last")
}

/// Which stored events a reader wants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only this session's events (its id). `None`: all.
    pub session_id: Option<String>,
    /// Only these kinds. Empty: all.
    pub kinds: Vec<EventKind>,
    /// Only events of sessions this principal created (a caller limited to its
    /// own sessions, see `auth::visible_creator`). `None`: every session's events,
    /// and server-wide events without a session.
    pub creator: Option<String>,
}

impl Store {
    /// A receiver of the highest event sequence known to be committed: updated by
    /// this store after each of its commits, and by the event feed for writers in
    /// other processes. A `watch` keeps only the newest value, so a slow reader
    /// costs no memory.
    pub fn committed_events(&self) -> watch::Receiver<i64> {
        self.committed.subscribe()
    }

    /// Records that events up to `sequence` are committed (never moves back).
    pub fn announce(&self, sequence: i64) {
        self.committed.send_if_modified(|head| {
            if sequence > *head {
                *head = sequence;
                true
            } else {
                false
            }
        });
    }

    /// The highest committed sequence, read from the `counters` row (0 when no
    /// event was ever written).
    pub async fn event_head(&self) -> Result<i64> {
        let query = Query::select()
            .column("value")
            .from("counters")
            .and_where(Expr::col("name").eq("event_sequence"))
            .to_owned();
        let row = self.db.query_one(&query).await?;
        Ok(match row {
            Some(row) => row.try_get::<i64>("", "value")?,
            None => 0,
        })
    }

    /// Stored events with `sequence > after` matching `filter`, oldest first, at
    /// most `limit` (≥ 1).
    pub async fn list_events(
        &self,
        after: i64,
        filter: &EventFilter,
        limit: u64,
    ) -> Result<Vec<event::Model>> {
        let mut query = event::Entity::find().filter(event::Column::Sequence.gt(after));
        if let Some(session_id) = &filter.session_id {
            query = query.filter(event::Column::SessionId.eq(session_id.as_str()));
        }
        if !filter.kinds.is_empty() {
            query =
                query.filter(event::Column::Kind.is_in(filter.kinds.iter().map(|k| k.as_str())));
        }
        if let Some(creator) = &filter.creator {
            let theirs = Query::select()
                .column(session::Column::Id)
                .from(session::Entity)
                .and_where(session::Column::Creator.eq(creator.as_str()))
                .to_owned();
            query = query.filter(event::Column::SessionId.in_subquery(theirs));
        }
        Ok(query
            .order_by_asc(event::Column::Sequence)
            .limit(std::cmp::max(limit, 1))
            .all(&self.db)
            .await?)
    }

    /// The sequence of the oldest event kept, if any.
    pub async fn oldest_event(&self) -> Result<Option<i64>> {
        Ok(event::Entity::find()
            .select_only()
            .column_as(event::Column::Sequence.min(), "min")
            .into_tuple::<Option<i64>>()
            .one(&self.db)
            .await?
            .flatten())
    }

    /// Deletes every event up to the newest one written before `before` (µs), so
    /// the kept events stay a contiguous run of sequences. Deletes in batches;
    /// idempotent, and safe when several servers purge at once (a row is deleted
    /// once, the others delete nothing). Returns the rows deleted by this call.
    pub async fn purge_events(&self, before: Micros) -> Result<u64> {
        let cutoff: Option<i64> = event::Entity::find()
            .select_only()
            .column_as(event::Column::Sequence.max(), "max")
            .filter(event::Column::Time.lt(before))
            .into_tuple::<Option<i64>>()
            .one(&self.db)
            .await?
            .flatten();
        let Some(cutoff) = cutoff else {
            return Ok(0);
        };
        let mut deleted = 0;
        let mut from = self.oldest_event().await?.unwrap_or(cutoff);
        while from <= cutoff {
            let upto = std::cmp::min(from.saturating_add(PURGE_BATCH - 1), cutoff);
            let purge = event::Entity::delete_many()
                .filter(event::Column::Sequence.lte(upto))
                .build(self.backend());
            deleted += self.execute_write(purge).await?.rows_affected();
            from = upto + 1;
        }
        Ok(deleted)
    }
}
