//! SQLite only: a trigger that keeps the `counters` row `event_sequence` at the
//! highest `events.sequence` inserted, so that appending one event is one
//! statement (`INSERT … VALUES ((SELECT value FROM counters …) + 1, …) RETURNING`)
//! instead of a counter bump then an insert: on SQLite each statement is a round
//! trip to the connection's thread while the database's single write lock is held.
//!
//! The trigger only ever raises the counter (`value < NEW.sequence`), so the
//! two-statement append, which bumps the counter first and inserts sequences at
//! or below it, goes through it unchanged. PostgreSQL keeps its single-statement
//! CTE (see the store) and gets no trigger.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261121_000023_events_sequence_trigger"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared(
                r#"CREATE TRIGGER "events_sequence_counter" AFTER INSERT ON "events"
                   BEGIN
                     UPDATE "counters" SET "value" = NEW."sequence"
                     WHERE "name" = 'event_sequence' AND "value" < NEW."sequence";
                   END"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared(r#"DROP TRIGGER IF EXISTS "events_sequence_counter""#)
            .await?;
        Ok(())
    }
}
