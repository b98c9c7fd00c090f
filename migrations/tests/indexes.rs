//! The sessions' state indexes: `sessions_state` (`state` alone) is gone, and a
//! query on `state` alone is still answered from an index whose leading column is
//! `state` (`sessions_state_stop_time` or `sessions_state_purge_time`), so
//! dropping it cost no scan. Rolling the migration back restores it. On SQLite,
//! and with `CORRAL_TEST_DATABASE_URL` on PostgreSQL too (whose planner is not
//! asked: on a near-empty table it rightly prefers a scan).

mod common;

use corral_migrations::{Migrator, MigratorTrait};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

/// Whether the index `sessions_state` exists.
async fn has_state_index(manager: &SchemaManager<'_>) -> bool {
    manager
        .has_index("sessions", "sessions_state")
        .await
        .unwrap()
}

async fn check(db: &DatabaseConnection) {
    Migrator::up(db, None).await.unwrap();
    let manager = SchemaManager::new(db);
    assert!(!has_state_index(&manager).await);
    for kept in ["sessions_state_stop_time", "sessions_state_purge_time"] {
        assert!(manager.has_index("sessions", kept).await.unwrap(), "{kept}");
    }

    if db.get_database_backend() == DbBackend::Sqlite {
        let plan = db
            .query_all_raw(Statement::from_string(
                DbBackend::Sqlite,
                "EXPLAIN QUERY PLAN SELECT id FROM sessions WHERE state = 'DELETED'",
            ))
            .await
            .unwrap();
        let detail: Vec<String> = plan
            .iter()
            .map(|row| row.try_get::<String>("", "detail").unwrap())
            .collect();
        assert!(
            detail.iter().any(|d| d.contains("INDEX sessions_state_")),
            "a query on state alone searches a state index: {detail:?}"
        );
    }

    // Roll back to just before the migration that drops it (later migrations
    // first).
    let all = Migrator::migrations();
    let position = all
        .iter()
        .position(|m| m.name() == "m20261207_000001_drop_sessions_state")
        .expect("the migration is listed");
    let steps = (all.len() - position) as u32;
    Migrator::down(db, Some(steps)).await.unwrap();
    assert!(has_state_index(&manager).await);
    Migrator::up(db, None).await.unwrap();
    assert!(!has_state_index(&manager).await);
}

#[tokio::test]
async fn a_query_on_state_alone_uses_a_kept_index() {
    common::on_each_backend("corral_indexes", |db| async move { check(&db).await }).await;
}
