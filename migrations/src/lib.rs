//! The schema of the Corral store, created and upgraded at server start-up.
//!
//! One migration per schema change, each run in a transaction on both SQLite and
//! PostgreSQL (`use_transaction = true`), so a server killed in the middle of a
//! migration leaves the schema as it was before it. Times are stored as BIGINT
//! microseconds since the Unix epoch (UTC), ids as text UUIDs: the same on both
//! backends, exact, and ordered.
// No `unwrap`/`expect` outside tests: whatever a client or the OS can make fail is
// mapped to an error (tests may unwrap; `cfg(test)` builds allow it).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub use sea_orm_migration::prelude::*;

mod m20261121_000001_initial;
mod m20261121_000002_session_indexes;
mod m20261121_000010_messages;
mod m20261121_000011_checkpoints;
mod m20261121_000012_worker_activity;
mod m20261121_000020_scrollback_chunks;
mod m20261121_000021_servers;
mod m20261121_000022_events_time;
mod m20261121_000023_events_sequence_trigger;
mod m20261207_000001_drop_sessions_state;

/// Every migration, oldest first.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_initial::Migration),
            Box::new(m20261121_000002_session_indexes::Migration),
            Box::new(m20261121_000010_messages::Migration),
            Box::new(m20261121_000011_checkpoints::Migration),
            Box::new(m20261121_000012_worker_activity::Migration),
            Box::new(m20261121_000020_scrollback_chunks::Migration),
            Box::new(m20261121_000021_servers::Migration),
            Box::new(m20261121_000022_events_time::Migration),
            Box::new(m20261121_000023_events_sequence_trigger::Migration),
            Box::new(m20261207_000001_drop_sessions_state::Migration),
        ]
    }
}
