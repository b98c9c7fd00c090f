//! The store: SeaORM over SQLite (the embedded default) or PostgreSQL, one code path
//! for both.
//!
//! Every write that changes a session's state is one transaction that (1) updates
//! the row only if its `version` is still the one the caller read (optimistic
//! concurrency: concurrent transitions cannot both win, and a state the table
//! forbids can never be stored) and (2) appends the events describing the change.
//! On SQLite, this server's writers take turns at a write gate and share their
//! transactions' `COMMIT`s (group commit: see [`batch`]); their transactions start
//! with `BEGIN IMMEDIATE`, so that another process writing the same file makes them
//! wait on the busy timeout instead of failing when both upgrade to writers.

mod batch;
pub mod checkpoints;
pub mod entities;
pub mod events;
pub mod messages;
mod retention;
pub mod scrollback;
pub mod servers;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::sea_query::{Alias, CaseStatement, Expr, ExprTrait, Func, Query, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectOptions, ConnectionTrait, Database,
    DatabaseConnection, DbBackend, DbErr, EntityTrait, IntoActiveModel, Iterable, ModelTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr, Statement, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clock::Micros;
use crate::domain::filter::{Expr as Filter, Op};
use crate::domain::names::Ref;
use crate::domain::page_token::PageTokens;
use crate::error::{Error, Result};
use batch::WriteTxn;
use corral_migrations::{Migrator, MigratorTrait};
use entities::{session, session_label, setting, worker};
pub use events::{EventFilter, EventKind, EventPayload, NewEvent};

/// How long a SQLite writer waits for the lock before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A session row with its labels.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionRow {
    pub model: session::Model,
    pub labels: BTreeMap<String, String>,
}

/// The order of ListSessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Order {
    pub field: OrderField,
    pub descending: bool,
}

/// The field ListSessions orders by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderField {
    CreateTime,
    UpdateTime,
}

impl Default for Order {
    fn default() -> Self {
        Order {
            field: OrderField::CreateTime,
            descending: true,
        }
    }
}

/// Where the next page of a listing starts: after the row with this sort key and id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The sort key of the last row returned (µs).
    pub t: i64,
    /// Its id.
    pub id: String,
}

/// A ListSessions query.
#[derive(Clone, Debug, Default)]
pub struct SessionQuery {
    pub filter: Option<Filter>,
    pub order: Order,
    pub show_deleted: bool,
    /// Rows per page, ≥ 1.
    pub page_size: u64,
    pub after: Option<Cursor>,
    /// Only sessions this principal created (`None`: every session).
    pub creator: Option<String>,
}

/// Limits on how many live (not deleted) sessions may exist, checked inside the
/// transaction that creates one.
#[derive(Clone, Debug, Default)]
pub struct SessionLimits {
    /// Most live sessions on the server (`None`: no limit).
    pub max_total: Option<u64>,
    /// Most live sessions of the new session's creator.
    pub max_per_creator: Option<u64>,
}

/// One page of sessions.
#[derive(Clone, Debug)]
pub struct SessionPage {
    pub sessions: Vec<SessionRow>,
    /// Set when more rows follow.
    pub next: Option<Cursor>,
    /// Rows matching the query (all pages).
    pub total: u64,
}

/// The outcome of a conditional write.
#[derive(Clone, Debug, PartialEq)]
pub enum Write<T> {
    /// Written; the new row.
    Done(T),
    /// The row changed since it was read (or is gone): nothing was written.
    Conflict,
}

/// Connections to a SQLite database: two per CPU, between 4 and 16. Each is a
/// thread doing CPU-bound work on the page cache, and writers take turns anyway
/// (see [`batch`]), so more threads than that only add context switches: on 2
/// vCPUs, 4 connections instead of 8 took `corral-bench lifecycle` from 184 to
/// 194 cycles/s (BENCHMARKS.md).
fn sqlite_pool_size() -> u32 {
    let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    u32::try_from(cpus.saturating_mul(2))
        .unwrap_or(u32::MAX)
        .clamp(4, 16)
}

/// The Corral database.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    page_tokens: PageTokens,
    /// The URL connected to (the event feed opens its own PostgreSQL listener).
    url: String,
    /// The highest event sequence known committed (see [`Store::committed_events`]).
    committed: Arc<tokio::sync::watch::Sender<i64>>,
    /// SQLite only: the write gate every write goes through, in arrival order,
    /// and its batch (see [`batch`]).
    gate: Option<Arc<batch::Gate>>,
}

/// Whether a SQLite connection goes back to the pool when released (sqlx's
/// `after_release`): not while sqlx still counts a transaction on it once the
/// commands queued on it have run. An error (the connection's thread is gone)
/// makes sqlx close it too.
///
/// A transaction dropped without its COMMIT or ROLLBACK succeeding (an error
/// returned with `?`, a cancelled request, a COMMIT that failed) queues a
/// ROLLBACK on its connection. When SQLite has already ended the transaction
/// itself, as it may after `SQLITE_FULL`, `SQLITE_IOERR`, `SQLITE_BUSY` or
/// `SQLITE_NOMEM` ("Response To Errors Within A Transaction",
/// <https://sqlite.org/lang_transaction.html>), that ROLLBACK fails ("no
/// transaction is active"). sqlx lowers its transaction depth only when a COMMIT
/// or ROLLBACK succeeds, so it would keep counting one on that connection: the
/// next write transaction there would start with a `SAVEPOINT` instead of `BEGIN
/// IMMEDIATE`, and if rolled back, end with `ROLLBACK TO`, which leaves SQLite's
/// transaction open. An idle pooled connection would then hold the database's
/// write lock, and every other write would wait out the busy timeout and fail.
/// Such a connection is closed instead; the pool opens a new one.
async fn keep_after_release(
    conn: &mut sea_orm::sqlx::SqliteConnection,
) -> std::result::Result<bool, sea_orm::sqlx::Error> {
    use sea_orm::sqlx::Connection as _;
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    // The connection's thread runs commands in order: the queued ROLLBACK first.
    conn.ping().await?;
    if conn.is_in_transaction() {
        tracing::warn!(
            "closing a SQLite connection whose ROLLBACK failed: SQLite had ended the \
             transaction itself, after an error"
        );
        return Ok(false);
    }
    Ok(true)
}

impl Store {
    /// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://…`), applies the
    /// migrations, and loads (or creates) the page-token key.
    ///
    /// SQLite runs in WAL mode with `synchronous = NORMAL`, foreign keys on and a
    /// busy timeout; a connection whose transaction state is unknown after an
    /// error is closed, not reused (`keep_after_release`). On PostgreSQL,
    /// migrations run under an advisory lock so that several servers starting at
    /// once on one database do not race.
    pub async fn connect(url: &str) -> Result<Store> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .sqlx_logging(false)
            .connect_timeout(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(30));
        if url.starts_with("sqlite:") {
            // No ping before handing out a pooled connection: a SQLite connection
            // is a file handle that cannot drop, and sqlx's ping is one more
            // round trip to the connection's thread before every statement outside
            // a transaction and every BEGIN.
            options.test_before_acquire(false);
            options
                .max_connections(sqlite_pool_size())
                .map_sqlx_sqlite_opts(|opts| {
                    opts.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                        .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                        .busy_timeout(SQLITE_BUSY_TIMEOUT)
                        .foreign_keys(true)
                })
                .map_sqlx_sqlite_pool_opts(|opts| {
                    opts.after_release(|conn, _| Box::pin(keep_after_release(conn)))
                });
        } else {
            // Ping only connections idle long enough to have been dropped (server
            // restart, proxy, firewall), not one round trip before every checkout.
            options
                .max_connections(16)
                .test_before_acquire_if_idle_for(Duration::from_secs(30));
        }
        let db = Database::connect(options).await?;
        migrate(&db).await?;
        let key = page_token_key(&db).await?;
        let store = Store {
            db,
            page_tokens: PageTokens::new(key),
            url: url.to_owned(),
            committed: Arc::new(tokio::sync::watch::Sender::new(0)),
            gate: url.starts_with("sqlite:").then(batch::Gate::new),
        };
        let head = store.event_head().await?;
        store.announce(head);
        Ok(store)
    }

    /// The URL the store connected to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying connection (for subsystems with their own queries).
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self.db.get_database_backend() {
            DbBackend::Sqlite => "sqlite",
            DbBackend::Postgres => "postgres",
            _ => "other",
        }
    }

    /// The signer of page tokens.
    pub fn page_tokens(&self) -> &PageTokens {
        &self.page_tokens
    }

    /// Begins a write transaction: on SQLite, a turn at the write gate in the
    /// write batch (see [`batch`]); on PostgreSQL, a transaction of its own.
    async fn begin_write(&self) -> Result<WriteTxn> {
        match &self.gate {
            Some(gate) => Ok(gate.begin(&self.db).await?),
            None => Ok(WriteTxn::alone(self.db.begin().await?)),
        }
    }

    /// Runs one write statement: on SQLite as a writer of the write batch (a
    /// connection outside it would wait in SQLite's busy handler for the
    /// batch's lock), on PostgreSQL on the pool, in autocommit.
    ///
    /// Errors: the database's.
    async fn execute_write(&self, statement: Statement) -> Result<sea_orm::ExecResult> {
        if self.gate.is_none() {
            return Ok(self.db.execute_raw(statement).await?);
        }
        let txn = self.begin_write().await?;
        let result = txn.execute_raw(statement).await?;
        txn.commit().await?;
        Ok(result)
    }

    /// The backend statements are built for.
    fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Inserts a new session with its labels and workers, and its events.
    ///
    /// Errors: ALREADY_EXISTS when a live session has the same display name.
    pub async fn create_session(
        &self,
        row: &SessionRow,
        workers: &[worker::Model],
        events: Vec<NewEvent>,
    ) -> Result<()> {
        self.create_session_within(row, workers, events, &SessionLimits::default())
            .await
    }

    /// [`create_session`](Self::create_session), refused when it would exceed
    /// `limits`. The sessions are counted in the creating transaction after its
    /// events took the event counter's row lock, which serializes writers, so
    /// concurrent creations cannot overshoot a limit.
    ///
    /// Errors: RESOURCE_EXHAUSTED naming the limit and its value (nothing written);
    /// ALREADY_EXISTS as for `create_session`.
    pub async fn create_session_within(
        &self,
        row: &SessionRow,
        workers: &[worker::Model],
        events: Vec<NewEvent>,
        limits: &SessionLimits,
    ) -> Result<()> {
        let txn = self.begin_write().await?;
        let inserted = session::Entity::insert(row.model.clone().into_active_model())
            .exec_without_returning(&*txn)
            .await;
        if let Err(err) = inserted {
            return Err(unique_violation(err, "session", &row.model.display_name));
        }
        insert_labels(&*txn, &row.model.id, &row.labels).await?;
        if !workers.is_empty() {
            worker::Entity::insert_many(
                workers
                    .iter()
                    .cloned()
                    .map(IntoActiveModel::into_active_model),
            )
            .exec_without_returning(&*txn)
            .await?;
        }
        let last = events::append(&*txn, row.model.create_time, events).await?;
        if limits.max_total.is_some() || limits.max_per_creator.is_some() {
            // Both counts in one scan (one statement while the write lock is held).
            let counts = Query::select()
                .expr_as(Expr::col(session::Column::Id).count(), "total")
                .expr_as(
                    Func::coalesce::<[SimpleExpr; 2], SimpleExpr>([
                        Func::sum(
                            CaseStatement::new()
                                .case(
                                    session::Column::Creator.eq(row.model.creator.as_str()),
                                    Expr::val(1),
                                )
                                .finally(Expr::val(0)),
                        )
                        .into(),
                        Expr::val(0),
                    ]),
                    "mine",
                )
                .from(session::Entity)
                .and_where(session::Column::DeleteTime.is_null())
                .to_owned();
            let counts = txn
                .query_one(&counts)
                .await?
                .ok_or_else(|| DbErr::RecordNotFound("session counts".into()))?;
            let count = |name: &str| -> Result<u64> {
                let value: i64 = counts.try_get("", name)?;
                Ok(u64::try_from(value).unwrap_or(0))
            };
            if let Some(max) = limits.max_total
                && count("total")? > max
            {
                txn.rollback().await?;
                return Err(Error::ResourceExhausted {
                    limit: "max_sessions",
                    value: max,
                    message: format!("the server already holds {max} sessions; delete some first"),
                });
            }
            if let Some(max) = limits.max_per_creator
                && count("mine")? > max
            {
                txn.rollback().await?;
                let who = if row.model.creator.is_empty() {
                    "the anonymous principal".to_owned()
                } else {
                    format!("principal {:?}", row.model.creator)
                };
                return Err(Error::ResourceExhausted {
                    limit: "max_sessions_per_principal",
                    value: max,
                    message: format!("{who} already has {max} sessions; delete some first"),
                });
            }
        }
        txn.commit().await?;
        self.announce(last);
        Ok(())
    }

    /// Finds a session by id (tombstones included) or by display name (live
    /// sessions only).
    ///
    /// One statement (the session LEFT JOIN its labels: one row per label, or one
    /// row without), so the row and its labels are one snapshot and, on SQLite,
    /// one round trip to a connection's thread instead of two.
    pub async fn find_session(&self, session: &Ref) -> Result<Option<SessionRow>> {
        let mut query = Query::select();
        query
            .columns(session::Column::iter().map(|c| (session::Entity, c)))
            .expr_as(
                Expr::col((session_label::Entity, session_label::Column::Key)),
                Alias::new("label_key"),
            )
            .expr_as(
                Expr::col((session_label::Entity, session_label::Column::Value)),
                Alias::new("label_value"),
            )
            .from(session::Entity)
            .left_join(
                session_label::Entity,
                Expr::col((session_label::Entity, session_label::Column::SessionId))
                    .equals((session::Entity, session::Column::Id)),
            );
        match session {
            Ref::Id(id) => {
                query.and_where(
                    Expr::col((session::Entity, session::Column::Id)).eq(id.to_string()),
                );
            }
            Ref::Name(name) => {
                query
                    .and_where(
                        Expr::col((session::Entity, session::Column::DisplayName))
                            .eq(name.as_str()),
                    )
                    .and_where(Expr::col((session::Entity, session::Column::DeleteTime)).is_null());
            }
        }
        let rows = self.db.query_all(&query).await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let model = <session::Model as sea_orm::FromQueryResult>::from_query_result(first, "")?;
        let mut labels = BTreeMap::new();
        for row in &rows {
            let key: Option<String> = row.try_get("", "label_key")?;
            let value: Option<String> = row.try_get("", "label_value")?;
            if let (Some(key), Some(value)) = (key, value) {
                labels.insert(key, value);
            }
        }
        Ok(Some(SessionRow { model, labels }))
    }

    /// Loads a session by id (tombstones included).
    pub async fn get_session(&self, id: &str) -> Result<Option<SessionRow>> {
        match Uuid::try_parse(id) {
            Ok(uuid) => self.find_session(&Ref::Id(uuid)).await,
            Err(_) => Ok(None),
        }
    }

    async fn labels_of(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        let mut by_session: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        if ids.is_empty() {
            return Ok(by_session);
        }
        let rows = session_label::Entity::find()
            .filter(session_label::Column::SessionId.is_in(ids.iter().cloned()))
            .all(&self.db)
            .await?;
        for row in rows {
            by_session
                .entry(row.session_id)
                .or_default()
                .insert(row.key, row.value);
        }
        Ok(by_session)
    }

    /// One page of sessions matching `query`, with the total count.
    pub async fn list_sessions(&self, query: &SessionQuery) -> Result<SessionPage> {
        let mut condition = Condition::all();
        if !query.show_deleted {
            condition = condition.add(session::Column::DeleteTime.is_null());
        }
        if let Some(filter) = &query.filter {
            condition = condition.add(filter_condition(filter));
        }
        if let Some(creator) = &query.creator {
            condition = condition.add(session::Column::Creator.eq(creator.as_str()));
        }
        let total = session::Entity::find()
            .filter(condition.clone())
            .count(&self.db)
            .await?;

        let sort = match query.order.field {
            OrderField::CreateTime => session::Column::CreateTime,
            OrderField::UpdateTime => session::Column::UpdateTime,
        };
        let mut page_condition = condition;
        if let Some(after) = &query.after {
            // Keyset pagination: rows strictly after (t, id) in the sort order.
            let (sort_past, id_past) = if query.order.descending {
                (sort.lt(after.t), session::Column::Id.lt(after.id.as_str()))
            } else {
                (sort.gt(after.t), session::Column::Id.gt(after.id.as_str()))
            };
            page_condition = page_condition.add(
                Condition::any()
                    .add(sort_past)
                    .add(Condition::all().add(sort.eq(after.t)).add(id_past)),
            );
        }
        let direction = if query.order.descending {
            sea_orm::Order::Desc
        } else {
            sea_orm::Order::Asc
        };
        let page_size = std::cmp::max(query.page_size, 1);
        let mut models = session::Entity::find()
            .filter(page_condition)
            .order_by(sort, direction.clone())
            .order_by(session::Column::Id, direction)
            .limit(page_size + 1)
            .all(&self.db)
            .await?;
        let next = if models.len() as u64 > page_size {
            models.truncate(page_size as usize);
            models.last().map(|last| Cursor {
                t: match query.order.field {
                    OrderField::CreateTime => last.create_time,
                    OrderField::UpdateTime => last.update_time,
                },
                id: last.id.clone(),
            })
        } else {
            None
        };
        let ids: Vec<String> = models.iter().map(|m| m.id.clone()).collect();
        let mut labels = self.labels_of(&ids).await?;
        let sessions = models
            .into_iter()
            .map(|model| {
                let labels = labels.remove(&model.id).unwrap_or_default();
                SessionRow { model, labels }
            })
            .collect();
        Ok(SessionPage {
            sessions,
            next,
            total,
        })
    }

    /// Writes `new` over `old` if the stored version is still `old.version`, together
    /// with `events`. Only the columns that differ are written; `version` becomes
    /// `old.version + 1`. Labels are replaced when `new.labels` differs.
    ///
    /// Returns [`Write::Conflict`] (writing nothing) when the row changed meanwhile.
    /// Errors: ALREADY_EXISTS when a new display name is taken.
    pub async fn write_session(
        &self,
        old: &SessionRow,
        new: &SessionRow,
        events: Vec<NewEvent>,
    ) -> Result<Write<SessionRow>> {
        self.write_session_with(old, new, events, WorkerWrites::default())
            .await
    }

    /// [`write_session`](Self::write_session) in the transaction that also writes
    /// `workers` (their events first). The workers' rows are written whether or
    /// not the session's is: on [`Write::Conflict`] they and their events are
    /// committed alone. One transaction instead of two spares a cycle of
    /// `corral-bench lifecycle` three statements on PostgreSQL, two on SQLite
    /// (BENCHMARKS.md).
    pub async fn write_session_with(
        &self,
        old: &SessionRow,
        new: &SessionRow,
        events: Vec<NewEvent>,
        workers: WorkerWrites,
    ) -> Result<Write<SessionRow>> {
        let WorkerWrites {
            rows: worker_rows,
            events: worker_events,
            time: worker_time,
        } = workers;
        let mut next = new.clone();
        next.model.version = old.model.version + 1;
        let mut changes = next.model.clone().into_active_model();
        for column in session::Column::iter() {
            if old.model.get(column) == next.model.get(column) {
                changes.not_set(column);
            } else {
                changes.set(column, next.model.get(column));
            }
        }
        let txn = self.begin_write().await?;
        for (old, new) in &worker_rows {
            update_worker_columns(&*txn, old, new).await?;
        }
        let updated = session::Entity::update_many()
            .set(changes)
            .filter(session::Column::Id.eq(old.model.id.as_str()))
            .filter(session::Column::Version.eq(old.model.version))
            .exec(&*txn)
            .await;
        let updated = match updated {
            Ok(result) => result,
            Err(err) => return Err(unique_violation(err, "session", &next.model.display_name)),
        };
        if updated.rows_affected == 0 {
            if worker_rows.is_empty() && worker_events.is_empty() {
                txn.rollback().await?;
            } else {
                let last = events::append(&*txn, worker_time, worker_events).await?;
                txn.commit().await?;
                self.announce(last);
            }
            return Ok(Write::Conflict);
        }
        if old.labels != next.labels {
            session_label::Entity::delete_many()
                .filter(session_label::Column::SessionId.eq(old.model.id.as_str()))
                .exec(&*txn)
                .await?;
            insert_labels(&*txn, &old.model.id, &next.labels).await?;
        }
        let mut all = worker_events;
        all.extend(events);
        let last = events::append(&*txn, next.model.update_time, all).await?;
        txn.commit().await?;
        self.announce(last);
        Ok(Write::Done(next))
    }

    /// The workers of a session, in creation order.
    pub async fn list_workers(&self, session_id: &str) -> Result<Vec<worker::Model>> {
        Ok(worker::Entity::find()
            .filter(worker::Column::SessionId.eq(session_id))
            .order_by_asc(worker::Column::Position)
            .all(&self.db)
            .await?)
    }

    /// The workers of several sessions, grouped by session id.
    pub async fn workers_of(
        &self,
        session_ids: &[String],
    ) -> Result<BTreeMap<String, Vec<worker::Model>>> {
        let mut grouped: BTreeMap<String, Vec<worker::Model>> = BTreeMap::new();
        if session_ids.is_empty() {
            return Ok(grouped);
        }
        let rows = worker::Entity::find()
            .filter(worker::Column::SessionId.is_in(session_ids.iter().cloned()))
            .order_by_asc(worker::Column::Position)
            .all(&self.db)
            .await?;
        for row in rows {
            grouped.entry(row.session_id.clone()).or_default().push(row);
        }
        Ok(grouped)
    }

    /// Finds a worker of a session by id or display name.
    pub async fn find_worker(
        &self,
        session_id: &str,
        worker: &Ref,
    ) -> Result<Option<worker::Model>> {
        let query = worker::Entity::find().filter(worker::Column::SessionId.eq(session_id));
        let query = match worker {
            Ref::Id(id) => query.filter(worker::Column::Id.eq(id.to_string())),
            Ref::Name(name) => query.filter(worker::Column::DisplayName.eq(name.as_str())),
        };
        Ok(query.one(&self.db).await?)
    }

    /// The next free `position` in a session.
    pub async fn next_worker_position(&self, session_id: &str) -> Result<i32> {
        let max: Option<i32> = worker::Entity::find()
            .select_only()
            .column_as(worker::Column::Position.max(), "max")
            .filter(worker::Column::SessionId.eq(session_id))
            .into_tuple::<Option<i32>>()
            .one(&self.db)
            .await?
            .flatten();
        Ok(max.map_or(0, |m| m + 1))
    }

    /// Inserts a worker and its events.
    ///
    /// Errors: ALREADY_EXISTS when the session has a worker with that display name.
    pub async fn insert_worker(&self, model: &worker::Model, events: Vec<NewEvent>) -> Result<()> {
        let txn = self.begin_write().await?;
        if let Err(err) = worker::Entity::insert(model.clone().into_active_model())
            .exec_without_returning(&*txn)
            .await
        {
            return Err(unique_violation(err, "worker", &model.display_name));
        }
        let last = events::append(&*txn, model.create_time, events).await?;
        txn.commit().await?;
        self.announce(last);
        Ok(())
    }

    /// Writes the columns of `new` that differ from `old`, with `events`.
    pub async fn update_worker(
        &self,
        old: &worker::Model,
        new: &worker::Model,
        now: Micros,
        events: Vec<NewEvent>,
    ) -> Result<()> {
        self.update_workers(WorkerWrites {
            rows: vec![(old.clone(), new.clone())],
            events,
            time: now,
        })
        .await
    }

    /// Writes several workers' rows (each only the columns that differ) and their
    /// events, in one transaction.
    pub async fn update_workers(&self, writes: WorkerWrites) -> Result<()> {
        let any = writes.rows.iter().any(|(old, new)| old != new);
        if !any && writes.events.is_empty() {
            return Ok(());
        }
        let txn = self.begin_write().await?;
        for (old, new) in &writes.rows {
            update_worker_columns(&*txn, old, new).await?;
        }
        let last = events::append(&*txn, writes.time, writes.events).await?;
        txn.commit().await?;
        self.announce(last);
        Ok(())
    }

    /// Deletes a worker row, with its events.
    pub async fn delete_worker(
        &self,
        worker_id: &str,
        now: Micros,
        events: Vec<NewEvent>,
    ) -> Result<()> {
        let txn = self.begin_write().await?;
        worker::Entity::delete_many()
            .filter(worker::Column::Id.eq(worker_id))
            .exec(&*txn)
            .await?;
        let last = events::append(&*txn, now, events).await?;
        txn.commit().await?;
        self.announce(last);
        Ok(())
    }

    /// Stored events after `after`, oldest first, at most `limit`, optionally for one
    /// session only.
    pub async fn events_after(
        &self,
        after: i64,
        session_id: Option<&str>,
        limit: u64,
    ) -> Result<Vec<entities::event::Model>> {
        use entities::event;
        let mut query = event::Entity::find().filter(event::Column::Sequence.gt(after));
        if let Some(session_id) = session_id {
            query = query.filter(event::Column::SessionId.eq(session_id));
        }
        Ok(query
            .order_by_asc(event::Column::Sequence)
            .limit(limit)
            .all(&self.db)
            .await?)
    }
}

/// Changes to workers' rows written in one transaction (see
/// [`Store::write_session_with`]).
#[derive(Clone, Debug, Default)]
pub struct WorkerWrites {
    /// Each worker's row as read, and as it is to be written.
    pub rows: Vec<(worker::Model, worker::Model)>,
    /// Their events, appended before any other of the transaction.
    pub events: Vec<NewEvent>,
    /// The time of those events (µs since the epoch).
    pub time: Micros,
}

/// Writes the columns of `new` that differ from `old` (nothing when none do).
async fn update_worker_columns<C: ConnectionTrait>(
    txn: &C,
    old: &worker::Model,
    new: &worker::Model,
) -> Result<()> {
    let mut changes = new.clone().into_active_model();
    let mut any = false;
    for column in worker::Column::iter() {
        if old.get(column) == new.get(column) {
            changes.not_set(column);
        } else {
            any = true;
            changes.set(column, new.get(column));
        }
    }
    if any {
        worker::Entity::update_many()
            .set(changes)
            .filter(worker::Column::Id.eq(old.id.as_str()))
            .exec(txn)
            .await?;
    }
    Ok(())
}

async fn insert_labels<C: ConnectionTrait>(
    txn: &C,
    session_id: &str,
    labels: &BTreeMap<String, String>,
) -> Result<()> {
    if labels.is_empty() {
        return Ok(());
    }
    let rows = labels.iter().map(|(key, value)| {
        session_label::Model {
            session_id: session_id.to_owned(),
            key: key.clone(),
            value: value.clone(),
        }
        .into_active_model()
    });
    session_label::Entity::insert_many(rows)
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// Maps a unique-constraint violation to ALREADY_EXISTS, anything else to a database error.
fn unique_violation(err: DbErr, kind: &'static str, name: &str) -> Error {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => Error::AlreadyExists {
            kind,
            name: name.to_owned(),
            detail: match kind {
                "session" => {
                    "; display names are unique among sessions that are not deleted".into()
                }
                "worker" => "; worker names are unique within a session".into(),
                _ => String::new(),
            },
        },
        _ => Error::Database(err),
    }
}

/// Translates a parsed filter into SQL with bound parameters.
fn filter_condition(filter: &Filter) -> Condition {
    fn compare<C: ColumnTrait, V: Into<sea_orm::Value>>(column: C, op: Op, value: V) -> SimpleExpr {
        match op {
            Op::Eq => column.eq(value),
            Op::Ne => column.ne(value),
            Op::Lt => column.lt(value),
            Op::Le => column.lte(value),
            Op::Gt => column.gt(value),
            Op::Ge => column.gte(value),
        }
    }
    fn label_exists(key: &str, value: Option<&str>) -> SimpleExpr {
        let mut sub = Query::select();
        sub.expr(Expr::val(1))
            .from(Alias::new("session_labels"))
            .and_where(
                Expr::col((Alias::new("session_labels"), Alias::new("session_id")))
                    .equals((Alias::new("sessions"), Alias::new("id"))),
            )
            .and_where(Expr::col((Alias::new("session_labels"), Alias::new("key"))).eq(key));
        if let Some(value) = value {
            sub.and_where(Expr::col((Alias::new("session_labels"), Alias::new("value"))).eq(value));
        }
        Expr::exists(sub.to_owned())
    }
    match filter {
        Filter::And(items) => items
            .iter()
            .fold(Condition::all(), |c, item| c.add(filter_condition(item))),
        Filter::Or(items) => items
            .iter()
            .fold(Condition::any(), |c, item| c.add(filter_condition(item))),
        Filter::Not(inner) => filter_condition(inner).not(),
        Filter::State(op, state) => {
            Condition::all().add(compare(session::Column::State, *op, state.as_str()))
        }
        Filter::Kind(op, kind) => {
            Condition::all().add(compare(session::Column::Kind, *op, kind.as_str()))
        }
        Filter::DisplayName(op, name) => {
            Condition::all().add(compare(session::Column::DisplayName, *op, name.as_str()))
        }
        Filter::Label(key, Op::Ne, value) => {
            Condition::all().add(label_exists(key, Some(value)).not())
        }
        Filter::Label(key, _, value) => Condition::all().add(label_exists(key, Some(value))),
        Filter::HasLabel(key) => Condition::all().add(label_exists(key, None)),
        Filter::CreateTime(op, time) => Condition::all().add(compare(
            session::Column::CreateTime,
            *op,
            time.timestamp_micros(),
        )),
        Filter::UpdateTime(op, time) => Condition::all().add(compare(
            session::Column::UpdateTime,
            *op,
            time.timestamp_micros(),
        )),
    }
}

/// Applies the migrations; on PostgreSQL under an advisory lock held on a dedicated
/// connection, so concurrent server start-ups migrate one at a time.
async fn migrate(db: &DatabaseConnection) -> Result<()> {
    if db.get_database_backend() != DbBackend::Postgres {
        Migrator::up(db, None).await?;
        return Ok(());
    }
    // An arbitrary constant identifying "Corral migrations" among advisory locks.
    const LOCK_KEY: i64 = 0x636f_7272_616c;
    let txn = db.begin().await?;
    txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({LOCK_KEY})"))
        .await?;
    Migrator::up(&txn, None).await?;
    txn.commit().await?;
    Ok(())
}

/// Loads the page-token key, creating it on first start.
async fn page_token_key(db: &DatabaseConnection) -> Result<Vec<u8>> {
    const KEY: &str = "page_token_key";
    if let Some(row) = setting::Entity::find_by_id(KEY).one(db).await? {
        return Ok(row.value.into_bytes());
    }
    let fresh = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let insert = setting::Entity::insert(
        setting::Model {
            key: KEY.into(),
            value: fresh,
        }
        .into_active_model(),
    )
    .on_conflict(
        sea_orm::sea_query::OnConflict::column(setting::Column::Key)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await;
    match insert {
        Ok(_) | Err(DbErr::RecordNotInserted) => {}
        Err(err) => return Err(err.into()),
    }
    // Another server may have won the race: read back whichever key is stored.
    let row = setting::Entity::find_by_id(KEY)
        .one(db)
        .await?
        .ok_or_else(|| Error::Internal("page-token key vanished after insert".into()))?;
    Ok(row.value.into_bytes())
}
