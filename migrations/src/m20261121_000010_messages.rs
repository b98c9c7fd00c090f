//! The conversation of sessions' agent workers (`messages`) and its full-text index.
//!
//! One row per message, read from an agent's transcript or sent with SendMessage.
//! `sequence` is the message's position in its session's conversation (from 1);
//! `source_key` identifies where it came from (a transcript line and content block,
//! or a SendMessage call), so reading a transcript again never duplicates a message.
//!
//! The full-text index differs per backend, behind the same queries of
//! `corral_server::store::messages`:
//! - SQLite: an FTS5 virtual table over `messages.text` (external content, kept in
//!   step by triggers), ranked with `bm25`, snippets with `snippet()`.
//! - PostgreSQL: a generated `tsvector` column (`to_tsvector('simple', text)`) with a
//!   GIN index, ranked with `ts_rank`, snippets with `ts_headline`.
//!
//! The `simple` configuration (no stemming, no stop words) matches FTS5's
//! `unicode61` tokenizer closely, so both backends find the same words.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261121_000010_messages"
    }
}

const SQLITE: &[&str] = &[
    "CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        worker_id TEXT NOT NULL DEFAULT '',
        sequence BIGINT NOT NULL,
        role TEXT NOT NULL,
        text TEXT NOT NULL,
        tool_name TEXT NOT NULL DEFAULT '',
        create_time BIGINT NOT NULL,
        origin TEXT NOT NULL,
        source_key TEXT NOT NULL
    )",
    "CREATE UNIQUE INDEX messages_session_sequence ON messages (session_id, sequence)",
    "CREATE UNIQUE INDEX messages_session_source ON messages (session_id, source_key)",
    "CREATE VIRTUAL TABLE messages_fts USING fts5 (
        text, content = 'messages', content_rowid = 'id', tokenize = 'unicode61'
    )",
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text);
    END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text);
    END",
];

const POSTGRES: &[&str] = &[
    "CREATE TABLE messages (
        id BIGSERIAL PRIMARY KEY,
        session_id VARCHAR NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        worker_id VARCHAR NOT NULL DEFAULT '',
        sequence BIGINT NOT NULL,
        role VARCHAR NOT NULL,
        text TEXT NOT NULL,
        tool_name VARCHAR NOT NULL DEFAULT '',
        create_time BIGINT NOT NULL,
        origin VARCHAR NOT NULL,
        source_key VARCHAR NOT NULL,
        text_tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED
    )",
    "CREATE UNIQUE INDEX messages_session_sequence ON messages (session_id, sequence)",
    "CREATE UNIQUE INDEX messages_session_source ON messages (session_id, source_key)",
    "CREATE INDEX messages_text_tsv ON messages USING GIN (text_tsv)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let statements = match db.get_database_backend() {
            DbBackend::Postgres => POSTGRES,
            _ => SQLITE,
        };
        for statement in statements {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() != DbBackend::Postgres {
            db.execute_unprepared("DROP TABLE IF EXISTS messages_fts")
                .await?;
        }
        db.execute_unprepared("DROP TABLE IF EXISTS messages")
            .await?;
        Ok(())
    }
}
