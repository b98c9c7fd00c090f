//! SeaORM entities, one module per table of `corral-migrations`.
//!
//! Times are `i64` microseconds since the Unix epoch (UTC); ids are text UUIDs;
//! states and kinds are their upper-case names; lists and maps are JSON text.

/// `sessions`: one row per session, tombstones included.
pub mod session {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub display_name: String,
        pub description: String,
        pub kind: String,
        pub work_dir: String,
        pub repository: Option<String>,
        pub branch: Option<String>,
        pub base_ref: Option<String>,
        pub worktree_path: Option<String>,
        pub saved_ref: Option<String>,
        pub state: String,
        /// Incremented by every write; the optimistic-concurrency token and the etag.
        pub version: i64,
        pub state_reason: String,
        pub last_error: String,
        pub auto_archived: bool,
        pub creator: String,
        pub create_time: i64,
        pub update_time: i64,
        pub start_time: Option<i64>,
        pub pause_time: Option<i64>,
        pub resume_time: Option<i64>,
        pub stop_time: Option<i64>,
        pub archive_time: Option<i64>,
        pub delete_time: Option<i64>,
        pub purge_time: Option<i64>,
        pub pause_count: i32,
        pub resume_count: i32,
        pub retry_count: i32,
        pub restart_count: i32,
        pub message_count: i64,
        pub user_messages: i64,
        pub assistant_messages: i64,
        /// The server (`servers.id`) that runs, or last ran, the session's
        /// processes; set when the session (re)starts. Start-up reconciliation
        /// leaves alone what a live server owns.
        pub server_id: Option<String>,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// `session_labels`: one row per (session, key).
pub mod session_label {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "session_labels")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub session_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub value: String,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// `workers`: one row per worker of a session.
pub mod worker {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "workers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub session_id: String,
        pub display_name: String,
        /// Order of creation within the session, from 0.
        pub position: i32,
        pub kind: String,
        /// JSON array of strings (argv); `[]` means the user's shell.
        pub command: String,
        /// JSON object of extra environment variables.
        pub env: String,
        pub agent_profile: String,
        pub model: String,
        /// JSON array of strings.
        pub extra_args: String,
        pub agent_session_id: String,
        pub state: String,
        pub last_error: String,
        pub exit_code: Option<i32>,
        pub exit_signal: Option<String>,
        pub pid: Option<i32>,
        /// Field 22 of `/proc/<pid>/stat` (clock ticks since boot) of `pid`.
        pub process_start_ticks: Option<i64>,
        /// `/proc/sys/kernel/random/boot_id` when `pid` was recorded.
        pub boot_id: Option<String>,
        pub rows: i32,
        pub cols: i32,
        pub create_time: i64,
        pub start_time: Option<i64>,
        pub exit_time: Option<i64>,
        pub restart_count: i32,
        /// Agents: `WORKING`, `WAITING_FOR_INPUT`, `IDLE`, `UNKNOWN`; empty for terminals.
        pub activity: String,
        /// Agents: JSON of the evidence for `activity` (`agent::Evidence`).
        pub activity_evidence: String,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// `events`: the event log, keyed by its gap-free sequence.
pub mod event {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub sequence: i64,
        pub time: i64,
        #[sea_orm(column_name = "type")]
        pub kind: String,
        pub session_id: String,
        pub worker_id: String,
        /// JSON object; its shape depends on `kind`.
        pub payload: String,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// `settings`: server-wide key/value settings (e.g. the page-token key).
pub mod setting {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "settings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub value: String,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// `scrollback_chunks`: batches of a worker's output, persisted so its scrollback
/// survives a server restart.
pub mod scrollback_chunk {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "scrollback_chunks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub worker_id: String,
        /// Absolute offset of the first byte in the worker's output.
        #[sea_orm(primary_key, auto_increment = false)]
        pub start_offset: i64,
        /// One past the last byte (`start_offset + data.len()`).
        pub end_offset: i64,
        pub data: Vec<u8>,
        pub write_time: i64,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// `servers`: one row per start of a server process, kept while the server is
/// alive, runs on another machine, or is named by a session (start-up
/// reconciliation deletes the others).
pub mod server {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "servers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// `/etc/machine-id` (or the host name when it is missing).
        pub machine_id: String,
        /// `/proc/sys/kernel/random/boot_id` at start.
        pub boot_id: String,
        pub pid: i32,
        /// Field 22 of `/proc/<pid>/stat` of the server process.
        pub process_start_ticks: i64,
        pub hostname: String,
        pub start_time: i64,
        /// Set by a clean shutdown.
        pub stop_time: Option<i64>,
    }

    impl ActiveModelBehavior for ActiveModel {}
}
