//! "Safe to kill during a migration": every migration runs in one transaction
//! together with the row that records it in `seaql_migrations`, so until that
//! transaction commits nothing of it exists. A server killed mid-migration (kill
//! -9, power loss) leaves the transaction uncommitted: PostgreSQL aborts it when
//! the connection drops, SQLite rolls it back from its journal on the next open.
//! The next start finds the migration pending and applies it from scratch.
//!
//! A migration that fails half-way is the same situation seen from inside (the
//! transaction is abandoned after some statements ran), so this test makes one
//! fail after creating a table and checks that neither the table nor its record
//! exists afterwards, on SQLite and, with `CORRAL_TEST_DATABASE_URL`, PostgreSQL;
//! then that the real migrations apply cleanly over that database.

mod common;

use corral_migrations::{Migrator, MigratorTrait};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseConnection};

/// Creates a table, then dies before finishing.
struct HalfApplied;

impl MigrationName for HalfApplied {
    fn name(&self) -> &str {
        "m29991231_000001_half_applied"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for HalfApplied {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("half_applied")
                    .col(ColumnDef::new("id").integer().primary_key())
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared("INSERT INTO half_applied (id) VALUES (1)")
            .await?;
        Err(DbErr::Migration("the server died here".into()))
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}

/// Corral's migrations followed by the one that dies.
struct Interrupted;

impl MigratorTrait for Interrupted {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut all = Migrator::migrations();
        all.push(Box::new(HalfApplied));
        all
    }
}

async fn check(db: &DatabaseConnection) {
    let failed = Interrupted::up(db, None).await;
    assert!(failed.is_err(), "the last migration fails");
    let manager = SchemaManager::new(db);
    assert!(
        !manager.has_table("half_applied").await.unwrap(),
        "nothing of the interrupted migration exists"
    );
    let applied: Vec<String> = Interrupted::get_applied_migrations(db)
        .await
        .unwrap()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    assert!(!applied.contains(&"m29991231_000001_half_applied".to_owned()));
    assert_eq!(
        applied.len(),
        Migrator::migrations().len(),
        "the others committed"
    );
    assert!(manager.has_table("scrollback_chunks").await.unwrap());
    // The real migrator finds nothing pending and nothing broken.
    Migrator::up(db, None).await.unwrap();
    assert!(
        Migrator::get_pending_migrations(db)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn an_interrupted_migration_leaves_no_trace() {
    common::on_each_backend("corral_migrations", |db| async move { check(&db).await }).await;
}
