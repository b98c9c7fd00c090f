//! Sessions, their labels and workers, the event log and its sequence counter, and
//! server settings.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261121_000001_initial"
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
                    .table("sessions")
                    .col(string("id").primary_key())
                    .col(string("display_name"))
                    .col(text("description").default(""))
                    .col(string("kind"))
                    .col(text("work_dir"))
                    .col(text_null("repository"))
                    .col(text_null("branch"))
                    .col(text_null("base_ref"))
                    .col(text_null("worktree_path"))
                    .col(text_null("saved_ref"))
                    .col(string("state"))
                    .col(big_integer("version"))
                    .col(text("state_reason").default(""))
                    .col(text("last_error").default(""))
                    .col(boolean("auto_archived").default(false))
                    .col(string("creator").default(""))
                    .col(big_integer("create_time"))
                    .col(big_integer("update_time"))
                    .col(big_integer_null("start_time"))
                    .col(big_integer_null("pause_time"))
                    .col(big_integer_null("resume_time"))
                    .col(big_integer_null("stop_time"))
                    .col(big_integer_null("archive_time"))
                    .col(big_integer_null("delete_time"))
                    .col(big_integer_null("purge_time"))
                    .col(integer("pause_count").default(0))
                    .col(integer("resume_count").default(0))
                    .col(integer("retry_count").default(0))
                    .col(integer("restart_count").default(0))
                    .col(big_integer("message_count").default(0))
                    .col(big_integer("user_messages").default(0))
                    .col(big_integer("assistant_messages").default(0))
                    .to_owned(),
            )
            .await?;
        // Display names are unique among sessions that are not deleted; tombstones
        // free their name. Partial indexes exist on both SQLite and PostgreSQL.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX sessions_display_name_live ON sessions (display_name) \
                 WHERE delete_time IS NULL",
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("sessions_create_time")
                    .table("sessions")
                    .col("create_time")
                    .col("id")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("sessions_state")
                    .table("sessions")
                    .col("state")
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("session_labels")
                    .col(string("session_id"))
                    .col(string("key"))
                    .col(text("value"))
                    .primary_key(Index::create().col("session_id").col("key"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("session_labels", "session_id")
                            .to("sessions", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("session_labels_key_value")
                    .table("session_labels")
                    .col("key")
                    .col("value")
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("workers")
                    .col(string("id").primary_key())
                    .col(string("session_id"))
                    .col(string("display_name"))
                    .col(integer("position"))
                    .col(string("kind"))
                    .col(text("command").default("[]"))
                    .col(text("env").default("{}"))
                    .col(string("agent_profile").default(""))
                    .col(string("model").default(""))
                    .col(text("extra_args").default("[]"))
                    .col(string("agent_session_id").default(""))
                    .col(string("state"))
                    .col(text("last_error").default(""))
                    .col(integer_null("exit_code"))
                    .col(string_null("exit_signal"))
                    .col(integer_null("pid"))
                    .col(big_integer_null("process_start_ticks"))
                    .col(string_null("boot_id"))
                    .col(integer("rows"))
                    .col(integer("cols"))
                    .col(big_integer("create_time"))
                    .col(big_integer_null("start_time"))
                    .col(big_integer_null("exit_time"))
                    .col(integer("restart_count").default(0))
                    .foreign_key(
                        ForeignKey::create()
                            .from("workers", "session_id")
                            .to("sessions", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("workers_session_display_name")
                    .table("workers")
                    .col("session_id")
                    .col("display_name")
                    .unique()
                    .to_owned(),
            )
            .await?;

        // The event log. `sequence` is assigned from the `counters` row
        // `event_sequence` inside the writing transaction, which serializes writers
        // so sequences are gap-free and commit in order.
        manager
            .create_table(
                Table::create()
                    .table("events")
                    .col(big_integer("sequence").primary_key())
                    .col(big_integer("time"))
                    .col(string("type"))
                    .col(string("session_id").default(""))
                    .col(string("worker_id").default(""))
                    .col(text("payload").default("{}"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("events_session")
                    .table("events")
                    .col("session_id")
                    .col("sequence")
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("counters")
                    .col(string("name").primary_key())
                    .col(big_integer("value"))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table("counters")
                    .columns(["name", "value"])
                    .values_panic(["event_sequence".into(), 0i64.into()])
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("settings")
                    .col(string("key").primary_key())
                    .col(text("value"))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "settings",
            "counters",
            "events",
            "workers",
            "session_labels",
            "sessions",
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
