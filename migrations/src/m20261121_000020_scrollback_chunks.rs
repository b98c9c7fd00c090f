//! `scrollback_chunks`: each worker's scrollback ring, persisted in batches so that
//! the history a client replays survives a server restart.
//!
//! One row per flushed batch: the absolute offset of its first byte in the
//! worker's output, one past its last, and the bytes. Rows of a worker are
//! contiguous and ordered by `start_offset`; the writer deletes rows that fell out
//! of the ring's capacity, so a worker keeps about one ring's worth. Deleting a
//! worker (or purging its session) deletes its rows.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261121_000020_scrollback_chunks"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("scrollback_chunks")
                    .col(string("worker_id"))
                    .col(big_integer("start_offset"))
                    .col(big_integer("end_offset"))
                    .col(blob("data"))
                    .col(big_integer("write_time"))
                    .primary_key(Index::create().col("worker_id").col("start_offset"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("scrollback_chunks", "worker_id")
                            .to("workers", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("scrollback_chunks").to_owned())
            .await
    }
}
