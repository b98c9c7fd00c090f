//! Messages: the conversation of sessions' agent workers, and full-text search over
//! it (SQLite FTS5 or PostgreSQL `tsvector`, see the migration
//! `m20261121_000010_messages`).
//!
//! Inserting is idempotent per `source_key` (a transcript line and block, or a
//! SendMessage call), so a transcript read twice stores each message once. A
//! prompt sent with SendMessage and then found in the agent's transcript stays one
//! message: the transcript's copy *claims* the SendMessage row (its key becomes the
//! transcript's) instead of being inserted.
//!
//! Sequences and counts: an insert runs in one write transaction that first
//! touches the session row (`UPDATE sessions … WHERE id = ?`), which serializes
//! writers of one session on PostgreSQL (SQLite serializes all writers), then
//! numbers the new messages after the session's highest sequence and adds them to
//! `message_count` / `user_messages` / `assistant_messages`. The session's
//! `version` (its etag) does not change: messages are not an edit of the session.

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query, SelectStatement};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
};

use super::{Store, filter_condition};
use crate::clock::Micros;
use crate::domain::filter::Expr as Filter;
use crate::error::Result;

/// `messages`: one row per message (the entity's generated items are SeaORM's).
#[allow(missing_docs)]
pub mod message {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "messages")]
    pub struct Model {
        #[sea_orm(primary_key)]
        /// The row id (the full-text index's rowid on SQLite).
        pub id: i64,
        /// The session's id.
        pub session_id: String,
        /// The agent worker's id (empty when unknown).
        pub worker_id: String,
        /// Position in the session's conversation, from 1.
        pub sequence: i64,
        /// `USER`, `ASSISTANT`, `TOOL`, `SYSTEM`.
        pub role: String,
        /// The text (a tool call's input as JSON, a tool result's output).
        pub text: String,
        /// The tool of a tool call or result.
        pub tool_name: String,
        /// When it was written (µs).
        pub create_time: i64,
        /// `TRANSCRIPT` or `SEND_MESSAGE`.
        pub origin: String,
        /// Where it came from: `t:<transcript key>` or `send:<uuid>` (until claimed).
        pub source_key: String,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// Stored origins (`corral.v1.Message.Origin` names).
pub mod origin {
    /// Read from the agent's transcript.
    pub const TRANSCRIPT: &str = "TRANSCRIPT";
    /// Sent with SendMessage.
    pub const SEND_MESSAGE: &str = "SEND_MESSAGE";
}

/// Prefix of the keys of SendMessage rows not claimed by a transcript line yet.
const SEND_KEY_PREFIX: &str = "send:";
/// Keys looked up per query.
const KEY_BATCH: usize = 500;

/// A message to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    /// The agent worker's id.
    pub worker_id: String,
    /// `USER`, `ASSISTANT`, `TOOL`, `SYSTEM`.
    pub role: String,
    /// The text.
    pub text: String,
    /// The tool of a tool call or result.
    pub tool_name: String,
    /// When it was written (µs).
    pub create_time: Micros,
    /// `TRANSCRIPT` or `SEND_MESSAGE`.
    pub origin: String,
    /// Stable identity (see [`message::Model::source_key`]).
    pub source_key: String,
}

impl NewMessage {
    /// The key of a SendMessage prompt.
    pub fn send_key(id: uuid::Uuid) -> String {
        format!("{SEND_KEY_PREFIX}{id}")
    }
}

/// One search hit: the columns of [`message::Model`], a score and a snippet.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, FromQueryResult)]
pub struct SearchHit {
    pub id: i64,
    pub session_id: String,
    pub worker_id: String,
    pub sequence: i64,
    pub role: String,
    pub text: String,
    pub tool_name: String,
    pub create_time: i64,
    pub origin: String,
    pub source_key: String,
    /// Higher is better.
    pub score: f64,
    /// The text around the matches, matches in `[` `]`.
    pub snippet: String,
}

impl SearchHit {
    /// The message part of the hit.
    pub fn message(&self) -> message::Model {
        message::Model {
            id: self.id,
            session_id: self.session_id.clone(),
            worker_id: self.worker_id.clone(),
            sequence: self.sequence,
            role: self.role.clone(),
            text: self.text.clone(),
            tool_name: self.tool_name.clone(),
            create_time: self.create_time,
            origin: self.origin.clone(),
            source_key: self.source_key.clone(),
        }
    }
}

/// The FTS5 query for the words of `query`: each word a quoted string (so
/// operators and punctuation are plain text), all of them required.
pub fn fts5_query(query: &str) -> String {
    query
        .split_whitespace()
        .map(|word| format!("\"{}\"", word.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn col(name: &str) -> Expr {
    Expr::col((Alias::new("messages"), Alias::new(name)))
}

impl Store {
    /// Stores the messages of `new` that are not stored yet (by `source_key`) for
    /// session `session_id`, numbering them after the last one. A transcript USER
    /// message equal (trimmed) to an unclaimed SendMessage prompt of the same
    /// worker claims that row instead. Returns the rows inserted; nothing when the
    /// session no longer exists.
    pub async fn insert_messages(
        &self,
        session_id: &str,
        new: Vec<NewMessage>,
    ) -> Result<Vec<message::Model>> {
        if new.is_empty() {
            return Ok(Vec::new());
        }
        let txn = self.begin_write().await?;
        // Touch the session row: the lock that orders this session's writers.
        let touched = txn
            .execute(
                Query::update()
                    .table(Alias::new("sessions"))
                    .value(
                        Alias::new("message_count"),
                        Expr::col(Alias::new("message_count")),
                    )
                    .and_where(Expr::col(Alias::new("id")).eq(session_id)),
            )
            .await?;
        if touched.rows_affected() == 0 {
            txn.rollback().await?;
            return Ok(Vec::new());
        }
        let mut existing = std::collections::HashSet::new();
        let keys: Vec<String> = new.iter().map(|m| m.source_key.clone()).collect();
        for batch in keys.chunks(KEY_BATCH) {
            let found: Vec<String> = message::Entity::find()
                .select_only()
                .column(message::Column::SourceKey)
                .filter(message::Column::SessionId.eq(session_id))
                .filter(message::Column::SourceKey.is_in(batch.iter().cloned()))
                .into_tuple()
                .all(&*txn)
                .await?;
            existing.extend(found);
        }
        let mut pending: Vec<message::Model> = if new
            .iter()
            .any(|m| m.origin == origin::TRANSCRIPT && m.role == "USER")
        {
            message::Entity::find()
                .filter(message::Column::SessionId.eq(session_id))
                .filter(message::Column::Origin.eq(origin::SEND_MESSAGE))
                .filter(message::Column::SourceKey.starts_with(SEND_KEY_PREFIX))
                .order_by_asc(message::Column::Sequence)
                .all(&*txn)
                .await?
        } else {
            Vec::new()
        };
        let last: Option<i64> = message::Entity::find()
            .select_only()
            .column_as(message::Column::Sequence.max(), "max")
            .filter(message::Column::SessionId.eq(session_id))
            .into_tuple::<Option<i64>>()
            .one(&*txn)
            .await?
            .flatten();
        let mut sequence = last.unwrap_or(0);
        let mut rows = Vec::new();
        for message in new {
            if !existing.insert(message.source_key.clone()) {
                continue;
            }
            if message.origin == origin::TRANSCRIPT && message.role == "USER" {
                let claim = pending.iter().position(|p| {
                    p.worker_id == message.worker_id && p.text.trim() == message.text.trim()
                });
                if let Some(index) = claim {
                    let sent = pending.remove(index);
                    message::Entity::update_many()
                        .col_expr(
                            message::Column::SourceKey,
                            Expr::value(message.source_key.clone()),
                        )
                        .filter(message::Column::Id.eq(sent.id))
                        .exec(&*txn)
                        .await?;
                    continue;
                }
            }
            sequence += 1;
            rows.push(message::Model {
                id: 0,
                session_id: session_id.to_owned(),
                worker_id: message.worker_id,
                sequence,
                role: message.role,
                text: message.text,
                tool_name: message.tool_name,
                create_time: message.create_time,
                origin: message.origin,
                source_key: message.source_key,
            });
        }
        let mut inserted = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut active = row.clone().into_active_model();
            active.not_set(message::Column::Id);
            let result = message::Entity::insert(active).exec(&*txn).await?;
            let mut row = row.clone();
            row.id = result.last_insert_id;
            inserted.push(row);
        }
        if !inserted.is_empty() {
            let count = |role: &str| inserted.iter().filter(|m| m.role == role).count() as i64;
            txn.execute(
                Query::update()
                    .table(Alias::new("sessions"))
                    .value(
                        Alias::new("message_count"),
                        Expr::col(Alias::new("message_count")).add(inserted.len() as i64),
                    )
                    .value(
                        Alias::new("user_messages"),
                        Expr::col(Alias::new("user_messages")).add(count("USER")),
                    )
                    .value(
                        Alias::new("assistant_messages"),
                        Expr::col(Alias::new("assistant_messages")).add(count("ASSISTANT")),
                    )
                    .and_where(Expr::col(Alias::new("id")).eq(session_id)),
            )
            .await?;
        }
        txn.commit().await?;
        Ok(inserted)
    }

    /// Removes a message that was stored but could not be delivered (SendMessage
    /// whose write to the PTY failed), taking it out of the session's counts.
    pub async fn delete_message(&self, row: &message::Model) -> Result<()> {
        let txn = self.begin_write().await?;
        let deleted = message::Entity::delete_many()
            .filter(message::Column::Id.eq(row.id))
            .exec(&*txn)
            .await?;
        if deleted.rows_affected > 0 {
            let role = |name: &str| i64::from(row.role == name);
            txn.execute(
                Query::update()
                    .table(Alias::new("sessions"))
                    .value(
                        Alias::new("message_count"),
                        Expr::col(Alias::new("message_count")).sub(1),
                    )
                    .value(
                        Alias::new("user_messages"),
                        Expr::col(Alias::new("user_messages")).sub(role("USER")),
                    )
                    .value(
                        Alias::new("assistant_messages"),
                        Expr::col(Alias::new("assistant_messages")).sub(role("ASSISTANT")),
                    )
                    .and_where(Expr::col(Alias::new("id")).eq(row.session_id.as_str())),
            )
            .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Messages of a session after sequence `after`, oldest first, at most `limit`.
    pub async fn list_messages(
        &self,
        session_id: &str,
        after: i64,
        limit: u64,
    ) -> Result<Vec<message::Model>> {
        Ok(message::Entity::find()
            .filter(message::Column::SessionId.eq(session_id))
            .filter(message::Column::Sequence.gt(after))
            .order_by_asc(message::Column::Sequence)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// The number of messages of a session.
    pub async fn count_messages(&self, session_id: &str) -> Result<u64> {
        use sea_orm::PaginatorTrait;
        Ok(message::Entity::find()
            .filter(message::Column::SessionId.eq(session_id))
            .count(&self.db)
            .await?)
    }

    /// Full-text search: messages of sessions that are not deleted, match
    /// `filter` and (when `creator` is given) were created by that principal,
    /// containing every word of `query`, best first; `offset` rows skipped, at most
    /// `limit` returned. Ties are ordered by session and sequence so pages are
    /// stable.
    pub async fn search_messages(
        &self,
        query: &str,
        filter: Option<&Filter>,
        creator: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<SearchHit>> {
        let backend = self.db.get_database_backend();
        let mut select = Query::select();
        for name in [
            "id",
            "session_id",
            "worker_id",
            "sequence",
            "role",
            "text",
            "tool_name",
            "create_time",
            "origin",
            "source_key",
        ] {
            select.expr_as(col(name), Alias::new(name));
        }
        // Custom expressions bind their values with `$1` on PostgreSQL and `?` on
        // SQLite (sea-query's placeholder syntax per backend).
        match backend {
            DbBackend::Postgres => {
                select
                    .from(Alias::new("messages"))
                    .expr_as(
                        Expr::cust_with_values(
                            "CAST(ts_rank(messages.text_tsv, plainto_tsquery('simple', $1)) AS DOUBLE PRECISION)",
                            [query],
                        ),
                        Alias::new("score"),
                    )
                    .expr_as(
                        Expr::cust_with_values(
                            "ts_headline('simple', messages.text, plainto_tsquery('simple', $1), 'StartSel=[, StopSel=], MaxWords=24, MinWords=8, MaxFragments=2, FragmentDelimiter=\" … \"')",
                            [query],
                        ),
                        Alias::new("snippet"),
                    )
                    .and_where(Expr::cust_with_values(
                        "messages.text_tsv @@ plainto_tsquery('simple', $1)",
                        [query],
                    ));
            }
            _ => {
                select
                    .from(Alias::new("messages_fts"))
                    .inner_join(
                        Alias::new("messages"),
                        col("id").equals((Alias::new("messages_fts"), Alias::new("rowid"))),
                    )
                    .expr_as(Expr::cust("-bm25(messages_fts)"), Alias::new("score"))
                    .expr_as(
                        Expr::cust("snippet(messages_fts, 0, '[', ']', ' … ', 24)"),
                        Alias::new("snippet"),
                    )
                    .and_where(Expr::cust_with_values(
                        "messages_fts MATCH ?",
                        [fts5_query(query)],
                    ));
            }
        }
        select
            .inner_join(
                Alias::new("sessions"),
                Expr::col((Alias::new("sessions"), Alias::new("id")))
                    .equals((Alias::new("messages"), Alias::new("session_id"))),
            )
            .and_where(Expr::col((Alias::new("sessions"), Alias::new("delete_time"))).is_null());
        if let Some(filter) = filter {
            select.cond_where(filter_condition(filter));
        }
        if let Some(creator) = creator {
            select
                .and_where(Expr::col((Alias::new("sessions"), Alias::new("creator"))).eq(creator));
        }
        order_hits(&mut select);
        select.limit(limit).offset(offset);
        let statement = backend.build(&select);
        Ok(SearchHit::find_by_statement(statement)
            .all(&self.db)
            .await?)
    }
}

fn order_hits(select: &mut SelectStatement) {
    select
        .order_by(Alias::new("score"), Order::Desc)
        .order_by(
            (Alias::new("messages"), Alias::new("session_id")),
            Order::Asc,
        )
        .order_by((Alias::new("messages"), Alias::new("sequence")), Order::Asc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts5_queries_quote_every_word() {
        assert_eq!(fts5_query("  pancake  recipe "), "\"pancake\" \"recipe\"");
        assert_eq!(
            fts5_query("say \"hi\" OR x"),
            "\"say\" \"\"\"hi\"\"\" \"OR\" \"x\""
        );
        assert_eq!(fts5_query(""), "");
    }
}
