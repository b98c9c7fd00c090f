//! Drops the index `sessions_state` (`state` alone). Its column is the leading
//! column of `sessions_state_stop_time` and `sessions_state_purge_time`, and both
//! SQLite and PostgreSQL answer a query on `state` alone from either of those, so
//! it only cost one more index entry to rewrite under the write lock at every
//! transition of a session.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000001_drop_sessions_state"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("sessions_state")
                    .table("sessions")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("sessions_state")
                    .table("sessions")
                    .col("state")
                    .to_owned(),
            )
            .await
    }
}
