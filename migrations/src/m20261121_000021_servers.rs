//! `servers`: every start of a Corral server process, and `sessions.server_id`:
//! which of them runs (or last ran) a session's processes.
//!
//! Start-up reconciliation needs to know whether the server that spawned a
//! session's processes is still alive before touching them: several servers may
//! share one PostgreSQL database, and one must never reap or restart what another
//! live server runs. A server is identified by the machine it runs on
//! (`machine_id`), the boot (`boot_id`), and its process (`pid` with
//! `process_start_ticks`, field 22 of `/proc/<pid>/stat`, since pids are reused);
//! `stop_time` is set when it shut down cleanly.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261121_000021_servers"
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
                    .table("servers")
                    .col(string("id").primary_key())
                    .col(string("machine_id"))
                    .col(string("boot_id"))
                    .col(integer("pid"))
                    .col(big_integer("process_start_ticks"))
                    .col(string("hostname").default(""))
                    .col(big_integer("start_time"))
                    .col(big_integer_null("stop_time"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("sessions")
                    .add_column(string_null("server_id"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("sessions")
                    .drop_column("server_id")
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table("servers").to_owned())
            .await
    }
}
