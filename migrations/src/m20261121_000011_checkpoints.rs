//! Checkpoints of agent workers (seed 003): versioned snapshots written after each
//! agent turn, on stop and on a crash.
//!
//! A checkpoint keeps the transcript lines written since the previous checkpoint of
//! its worker (`transcript_delta`, starting at byte `delta_offset` of the file at
//! `transcript_path`), so the chain of a worker's checkpoints rebuilds its
//! transcript. Rows expire at `expire_time` (7 days after creation by default) and
//! go with their session.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261121_000011_checkpoints"
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
                    .table("checkpoints")
                    .col(string("id").primary_key())
                    .col(string("session_id"))
                    .col(string("worker_id"))
                    .col(big_integer("version"))
                    .col(string("trigger"))
                    .col(string("agent_session_id").default(""))
                    .col(integer("turn_count").default(0))
                    .col(string("model").default(""))
                    .col(text("work_dir"))
                    .col(text("transcript_path").default(""))
                    .col(big_integer("transcript_bytes").default(0))
                    .col(big_integer("delta_offset").default(0))
                    .col(blob("transcript_delta"))
                    .col(blob("scrollback_tail"))
                    .col(big_integer("create_time"))
                    .col(big_integer("expire_time"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("checkpoints", "session_id")
                            .to("sessions", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("checkpoints_worker_version")
                    .table("checkpoints")
                    .col("worker_id")
                    .col("version")
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("checkpoints_session_time")
                    .table("checkpoints")
                    .col("session_id")
                    .col("create_time")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("checkpoints_expire_time")
                    .table("checkpoints")
                    .col("expire_time")
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("checkpoints").to_owned())
            .await
    }
}
