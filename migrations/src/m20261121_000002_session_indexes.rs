//! Indexes for listing sessions by `update_time` and for the retention task's
//! queries (STOPPED sessions by `stop_time`, tombstones by `purge_time`).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261121_000002_session_indexes"
    }
}

/// (index name, columns).
const INDEXES: [(&str, &[&str]); 3] = [
    // ListSessions `order_by = update_time`: keyset pagination on (update_time, id).
    ("sessions_update_time", &["update_time", "id"]),
    // Auto-archive: `state = 'STOPPED' AND stop_time < ?`.
    ("sessions_state_stop_time", &["state", "stop_time"]),
    // Purge: `state = 'DELETED' AND purge_time <= ?`.
    ("sessions_state_purge_time", &["state", "purge_time"]),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, columns) in INDEXES {
            let mut index = Index::create();
            index.name(name).table("sessions");
            for column in columns {
                index.col(*column);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, _) in INDEXES {
            manager
                .drop_index(Index::drop().name(name).table("sessions").to_owned())
                .await?;
        }
        Ok(())
    }
}
