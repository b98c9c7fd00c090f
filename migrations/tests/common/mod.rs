//! Runs a check on a fresh SQLite database and, when `CORRAL_TEST_DATABASE_URL`
//! names a PostgreSQL server, on a fresh database created there for it and
//! dropped after it.

use std::future::Future;

use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection};

/// Runs `check` on an empty SQLite database, then on an empty PostgreSQL database
/// named `<prefix>_<pid>_<ns>` when `CORRAL_TEST_DATABASE_URL` is set.
pub async fn on_each_backend<F, Fut>(prefix: &str, check: F)
where
    F: Fn(DatabaseConnection) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
    let db = Database::connect(&url).await.unwrap();
    check(db.clone()).await;
    db.close().await.unwrap();

    let Ok(admin_url) = std::env::var("CORRAL_TEST_DATABASE_URL") else {
        return;
    };
    if admin_url.is_empty() {
        return;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("{prefix}_{}_{nanos}", std::process::id());
    let admin = Database::connect(&admin_url).await.unwrap();
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap();
    let db = Database::connect(format!("{base}/{name}")).await.unwrap();
    check(db.clone()).await;
    db.close().await.unwrap();
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
}
