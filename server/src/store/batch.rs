//! Group commit of SQLite writes: the write gate and its batch.
//!
//! SQLite lets one connection write at a time, and a connection that finds the
//! write lock taken waits in SQLite's busy handler, which *sleeps* 1, 2, 5, 10 …
//! 100 ms between tries (`sqliteDefaultBusyCallback`) whether or not the lock was
//! freed meanwhile. So this server's writers take turns at a FIFO gate (a
//! `tokio::sync::Mutex`), and the busy handler is left for other processes sharing
//! the file.
//!
//! Each turn used to be a transaction of its own: a pool checkout, `BEGIN
//! IMMEDIATE`, the statements, `COMMIT`. With many writers queued, most of a turn
//! was that overhead (BENCHMARKS.md, "Where lifecycle's time goes"). Now a writer
//! that reaches the gate while the writers before it left their transaction open
//! *joins* it: its statements run inside a `SAVEPOINT`, which it releases (or rolls
//! back to, undoing only its own writes) before handing the gate on. A writer alone
//! at the gate commits at once, as before. Otherwise the batch is left open, and a
//! committer task, which queued at the gate the moment the batch was first left
//! open, commits it for everyone once the writers queued before it had their turn.
//! The committer is a task of its own so that no writer's cancellation (its client
//! went away) can interrupt a `COMMIT` others wait for. This is group commit, as
//! PostgreSQL (`commit_delay`) and InnoDB do it for their logs, at the level of
//! whole transactions.
//!
//! What a writer sees is unchanged: [`WriteTxn::commit`] returns once the `COMMIT`
//! that holds its writes is done, with that `COMMIT`'s error if it failed (then
//! none of the batch's writes are stored), and [`WriteTxn::rollback`] undoes its
//! own writes only. A writer dropped before either (an error returned with `?`, or
//! its request cancelled) rolls back to its savepoint too, and the batch is
//! *sealed*: nobody joins it any more, and writers that reach the gate queue again
//! behind the committer. Sealing matters because some errors (a full disk, an I/O
//! error) make SQLite roll back the whole transaction by itself; a `SAVEPOINT`
//! after that would start a transaction of its own, which its `RELEASE` would
//! commit at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use sea_orm::{
    DatabaseConnection, DatabaseTransaction, DbErr, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};
use tokio::sync::{Mutex, OwnedMutexGuard, watch};

/// Most writers in one batch; the batch is then sealed. A batch's writers wait
/// for its `COMMIT`, so a batch that kept growing under a steady queue would
/// delay its first writer without bound; 32 turns are about 15–25 ms on a
/// 2-vCPU machine.
const MAX_BATCH: usize = 32;

/// How a batch ended, for the writers waiting on it: `None` while it is open.
type Outcome = Option<Result<(), Arc<str>>>;

/// The write gate of a SQLite store (see the module's documentation).
#[derive(Debug)]
pub(crate) struct Gate {
    batch: Arc<Mutex<Batch>>,
    /// Writers waiting for the gate (not counting committer tasks).
    waiting: AtomicUsize,
    /// Batches committed so far (logged at trace level).
    committed: AtomicU64,
}

/// The batch behind the gate. Whoever holds the gate owns it.
#[derive(Debug)]
struct Batch {
    /// The batch's open transaction, between turns. `None` while no batch is
    /// open, and while a writer holds it.
    txn: Option<DatabaseTransaction>,
    /// Writers whose writes are in `txn` and who wait for its `COMMIT`.
    members: usize,
    /// Nobody may join: writers that reach the gate queue again, behind the
    /// committer task.
    sealed: bool,
    /// A committer task is queued at the gate for this batch.
    committer: bool,
    /// Where the batch's members learn how it ended.
    outcome: watch::Sender<Outcome>,
}

impl Batch {
    /// Tells the members how the batch ended and starts afresh.
    fn finish(&mut self, outcome: Result<(), Arc<str>>) {
        self.outcome.send_replace(Some(outcome));
        self.outcome = watch::Sender::new(None);
        self.members = 0;
        self.sealed = false;
        self.committer = false;
    }
}

impl Gate {
    /// A gate with no batch open.
    pub(crate) fn new() -> Arc<Gate> {
        Arc::new(Gate {
            batch: Arc::new(Mutex::new(Batch {
                txn: None,
                members: 0,
                sealed: false,
                committer: false,
                outcome: watch::Sender::new(None),
            })),
            waiting: AtomicUsize::new(0),
            committed: AtomicU64::new(0),
        })
    }

    /// Waits for this writer's turn, then joins the open batch (a `SAVEPOINT` in
    /// its transaction) or opens one (`BEGIN IMMEDIATE` on a connection of `db`).
    ///
    /// Errors: the database's; nothing is written then.
    pub(crate) async fn begin(
        self: &Arc<Self>,
        db: &DatabaseConnection,
    ) -> Result<WriteTxn, DbErr> {
        let queued = Waiting::enter(&self.waiting);
        let mut batch = loop {
            let batch = Arc::clone(&self.batch).lock_owned().await;
            if !(batch.sealed && batch.txn.is_some()) {
                break batch;
            }
            // Sealed: its committer task is queued at the gate, and this writer
            // was ahead of it. Queue again, behind it.
            drop(batch);
        };
        drop(queued);
        batch.sealed = false;
        // The batch's transaction stays in the batch across every await, so that
        // a writer cancelled there leaves it whole.
        let joined = match batch.txn.as_ref() {
            Some(outer) => Some(outer.begin().await),
            None => None,
        };
        match joined {
            Some(Ok(savepoint)) => {
                let outer = batch.txn.take();
                Ok(WriteTxn {
                    txn: savepoint,
                    seat: Some(Seat {
                        batch,
                        outer,
                        gate: Arc::clone(self),
                    }),
                })
            }
            Some(Err(err)) => {
                batch.sealed = true;
                Err(err)
            }
            None => {
                let txn = db
                    .begin_with_options(TransactionOptions {
                        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                        ..Default::default()
                    })
                    .await?;
                Ok(WriteTxn {
                    txn,
                    seat: Some(Seat {
                        batch,
                        outer: None,
                        gate: Arc::clone(self),
                    }),
                })
            }
        }
    }

    /// Commits the batch `txn` and tells its members. Cancelled half-way, it tells
    /// them the `COMMIT` was interrupted.
    async fn settle(&self, batch: &mut Batch, txn: DatabaseTransaction) -> Result<(), DbErr> {
        let members = batch.members;
        let mut settling = Settling { batch, done: false };
        let result = txn.commit().await;
        settling.done = true;
        match &result {
            Ok(()) => {
                let committed = self.committed.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::trace!(members, committed, "SQLite write batch committed");
                settling.batch.finish(Ok(()));
            }
            Err(err) => settling.batch.finish(Err(commit_failed(err))),
        }
        result
    }

    /// Ends the batch without committing it, after a `RELEASE` or `ROLLBACK TO`
    /// failed and left its state unknown: tells the members, then rolls it back
    /// (dropped half-way, the transaction queues its `ROLLBACK` itself).
    async fn abandon(batch: &mut Batch, txn: DatabaseTransaction, cause: &DbErr) {
        batch.finish(Err(Arc::from(format!(
            "a write of the same batch failed and the batch was rolled back: {cause}"
        ))));
        if let Err(err) = txn.rollback().await {
            tracing::warn!(%err, "rolling back an abandoned SQLite write batch");
        }
    }

    /// The committer: waits for the gate behind the writers queued when a batch
    /// was first left open (they join it, or queue again if it is sealed), then
    /// commits the open batch.
    async fn commit_at_turn(self: Arc<Self>) {
        let mut batch = Arc::clone(&self.batch).lock_owned().await;
        if let Some(txn) = batch.txn.take()
            && let Err(err) = self.settle(&mut batch, txn).await
        {
            tracing::warn!(%err, "committing a batch of SQLite writes");
        }
    }
}

/// The message a batch's members get when its `COMMIT` failed.
fn commit_failed(err: &DbErr) -> Arc<str> {
    Arc::from(format!("COMMIT of the write batch failed: {err}"))
}

/// Counts a writer as waiting for the gate while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Waiting<'a> {
        count.fetch_add(1, Ordering::AcqRel);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A batch being committed; dropped before its `COMMIT` returned, it tells the
/// members that the outcome is unknown.
struct Settling<'a> {
    batch: &'a mut Batch,
    done: bool,
}

impl Drop for Settling<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.batch.finish(Err(Arc::from(
                "the COMMIT of the write batch was interrupted; its writes may or may not be stored",
            )));
        }
    }
}

/// A writer's hold on the gate.
#[derive(Debug)]
struct Seat {
    batch: OwnedMutexGuard<Batch>,
    /// The batch's transaction while this writer writes in a savepoint of it;
    /// `None` when the writer opened the batch (its transaction is the batch's).
    outer: Option<DatabaseTransaction>,
    gate: Arc<Gate>,
}

impl Drop for Seat {
    /// Reached with `outer` still held only when the writer neither committed nor
    /// rolled back (an error, or its future was dropped). Its savepoint, dropped
    /// just before, queued its `ROLLBACK TO`; the batch goes back, sealed.
    fn drop(&mut self) {
        if let Some(outer) = self.outer.take() {
            self.batch.txn = Some(outer);
            self.batch.sealed = true;
        }
    }
}

/// A write transaction: the statements of one writer, committed (or rolled back)
/// as a whole. On SQLite it holds the write gate until it ends and runs in the
/// write batch (see the module's documentation); on PostgreSQL it is an ordinary
/// transaction of its own.
#[derive(Debug)]
pub(crate) struct WriteTxn {
    // Field order is drop order: the transaction (rolled back if not committed)
    // before the seat that returns the batch and opens the gate.
    txn: DatabaseTransaction,
    seat: Option<Seat>,
}

impl std::ops::Deref for WriteTxn {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &Self::Target {
        &self.txn
    }
}

impl WriteTxn {
    /// A transaction outside any gate (PostgreSQL).
    pub(crate) fn alone(txn: DatabaseTransaction) -> WriteTxn {
        WriteTxn { txn, seat: None }
    }

    /// Commits: returns once the `COMMIT` holding this writer's statements is
    /// done. On SQLite that is the batch's `COMMIT`, made by this writer when it
    /// is alone at the gate, else by the batch's committer task.
    ///
    /// Errors: the database's. When the batch's `COMMIT` failed, none of its
    /// writes are stored.
    pub(crate) async fn commit(self) -> Result<(), DbErr> {
        let WriteTxn { txn, seat } = self;
        let Some(mut seat) = seat else {
            return txn.commit().await;
        };
        let gate = Arc::clone(&seat.gate);
        // A joiner's `outer` stays in its seat across the `RELEASE`: cancelled
        // there, the seat puts it back (sealed).
        let outer = if seat.outer.is_some() {
            let released = txn.commit().await;
            let Some(outer) = seat.outer.take() else {
                return released;
            };
            if let Err(err) = released {
                Gate::abandon(&mut seat.batch, outer, &err).await;
                return Err(err);
            }
            outer
        } else {
            txn
        };
        seat.batch.members += 1;
        if seat.batch.members == 1 && gate.waiting.load(Ordering::Acquire) == 0 {
            // Alone: commit here. Cancelled during it, this writer is the only
            // one left not knowing.
            return gate.settle(&mut seat.batch, outer).await;
        }
        // Writers are queued, or others wait for this batch: leave it to them
        // and the committer task, which no cancellation interrupts.
        if seat.batch.members >= MAX_BATCH {
            seat.batch.sealed = true;
        }
        seat.batch.txn = Some(outer);
        let mut outcome = seat.batch.outcome.subscribe();
        if !seat.batch.committer {
            seat.batch.committer = true;
            tokio::spawn(Arc::clone(&gate).commit_at_turn());
        }
        drop(seat);
        let ended = outcome.wait_for(Option::is_some).await;
        match ended.as_deref() {
            Ok(Some(Ok(()))) => Ok(()),
            Ok(Some(Err(message))) => Err(DbErr::Custom(message.to_string())),
            Ok(None) | Err(_) => Err(DbErr::Custom(
                "the write batch was dropped before its COMMIT".to_owned(),
            )),
        }
    }

    /// Rolls back this writer's statements (on SQLite, to its savepoint; the
    /// batch's other writes stay), then opens the gate.
    ///
    /// Errors: the database's. If a `ROLLBACK TO` fails, the whole batch is
    /// rolled back and its members get the error.
    pub(crate) async fn rollback(self) -> Result<(), DbErr> {
        let WriteTxn { txn, seat } = self;
        // As in `commit`, the batch's transaction stays in the seat meanwhile.
        let result = txn.rollback().await;
        if let Some(mut seat) = seat
            && let Some(outer) = seat.outer.take()
        {
            match &result {
                Ok(()) => seat.batch.txn = Some(outer),
                Err(err) => Gate::abandon(&mut seat.batch, outer, err).await,
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    use std::time::Duration;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
        (dir, Store::connect(&url).await.unwrap())
    }

    fn gate(store: &Store) -> Arc<Gate> {
        Arc::clone(store.gate.as_ref().unwrap())
    }

    async fn begin(store: &Store) -> Result<WriteTxn, DbErr> {
        gate(store).begin(store.connection()).await
    }

    async fn insert(txn: &WriteTxn, key: &str) -> Result<(), DbErr> {
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            r#"INSERT INTO "settings" ("key", "value") VALUES (?, ?)"#,
            [key.into(), "v".into()],
        ))
        .await
        .map(drop)
    }

    /// Inserts a child row whose parent does not exist (a deferred foreign key:
    /// SQLite reports it at COMMIT).
    async fn orphan(txn: &WriteTxn) -> Result<(), DbErr> {
        txn.execute_unprepared(r#"INSERT INTO "children" ("parent") VALUES ('none')"#)
            .await
            .map(drop)
    }

    async fn stored(store: &Store, key: &str) -> bool {
        store
            .connection()
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                r#"SELECT 1 FROM "settings" WHERE "key" = ?"#,
                [key.into()],
            ))
            .await
            .unwrap()
            .is_some()
    }

    /// The gate is free and a writer alone at it commits.
    async fn gate_works_on(store: &Store) {
        let txn = begin(store).await.unwrap();
        insert(&txn, "after").await.unwrap();
        txn.commit().await.unwrap();
        assert!(stored(store, "after").await);
    }

    /// Holds the gate until `writers` writers queue behind it, then lets them in.
    async fn release_when_queued(gate: &Gate, held: OwnedMutexGuard<Batch>, writers: usize) {
        until_queued(gate, writers).await;
        drop(held);
    }

    /// Returns once `writers` writers wait for the gate.
    async fn until_queued(gate: &Gate, writers: usize) {
        while gate.waiting.load(Ordering::Acquire) < writers {
            tokio::task::yield_now().await;
        }
    }

    /// A writer that opened a batch and wrote `key` in it.
    async fn first_writer(store: &Store, key: &str) -> WriteTxn {
        let txn = begin(store).await.unwrap();
        insert(&txn, key).await.unwrap();
        txn
    }

    /// Writers that queue behind each other share one COMMIT; a writer whose
    /// statement fails in the middle of the batch loses only its own writes, its
    /// error is its own (here: the primary key it repeated), and nobody joins
    /// the batch after it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_writers_share_one_commit_and_a_failure_stays_its_own() {
        let (_dir, store) = store().await;
        let gate = gate(&store);
        let before = gate.committed.load(Ordering::Relaxed);
        let held = Arc::clone(&gate.batch).lock_owned().await;
        let mut writers = Vec::new();
        for key in ["w0", "w1", "w2", "w1-again", "w4"] {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                let txn = begin(&store).await?;
                insert(&txn, &format!("{key}-extra")).await?;
                insert(&txn, key.trim_end_matches("-again")).await?;
                txn.commit().await
            }));
            // In this order at the gate.
            until_queued(&gate, writers.len()).await;
        }
        release_when_queued(&gate, held, 5).await;
        let mut results = Vec::new();
        for writer in writers {
            results.push(writer.await.unwrap());
        }
        for (i, result) in results.iter().enumerate() {
            if i == 3 {
                let err = result.as_ref().unwrap_err().to_string();
                assert!(err.contains("UNIQUE"), "{err}");
            } else {
                assert!(result.is_ok(), "writer {i}: {result:?}");
            }
        }
        // w0, w1 and w2 in one COMMIT; the failed writer sealed that batch, so
        // w4 committed one of its own.
        assert_eq!(gate.committed.load(Ordering::Relaxed) - before, 2);
        for key in ["w0", "w1", "w2", "w4", "w0-extra", "w4-extra"] {
            assert!(stored(&store, key).await, "{key} is missing");
        }
        assert!(
            !stored(&store, "w1-again-extra").await,
            "the failed writer's first insert was kept"
        );
    }

    /// A batch takes at most `MAX_BATCH` writers: then it is sealed, the writers
    /// still queued go behind its committer, and they form the next batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_batch_is_sealed_and_the_queue_forms_the_next() {
        let (_dir, store) = store().await;
        let gate = gate(&store);
        let before = gate.committed.load(Ordering::Relaxed);
        let held = Arc::clone(&gate.batch).lock_owned().await;
        let writers: Vec<_> = (0..MAX_BATCH + 8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let txn = begin(&store).await?;
                    insert(&txn, &format!("k{i}")).await?;
                    txn.commit().await
                })
            })
            .collect();
        release_when_queued(&gate, held, writers.len()).await;
        for writer in writers {
            writer.await.unwrap().unwrap();
        }
        // 32 in the first batch, the other 8 after it (in one batch, or more if
        // a writer reached the gate only after the second batch's committer).
        assert!(gate.committed.load(Ordering::Relaxed) - before >= 2);
        for i in 0..MAX_BATCH + 8 {
            assert!(stored(&store, &format!("k{i}")).await, "k{i} is missing");
        }
        gate_works_on(&store).await;
    }

    /// A writer that is dropped in the middle of a batch (an error returned with
    /// `?`, or its request cancelled) loses its own writes only; the batch is
    /// committed for the writer before it, by the committer task since nobody
    /// else is queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_dropped_in_a_batch_loses_only_its_writes() {
        let (_dir, store) = store().await;
        let gate = gate(&store);
        let first = first_writer(&store, "kept").await;
        let (inside, entered) = tokio::sync::oneshot::channel();
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        let second = tokio::spawn({
            let store = store.clone();
            async move {
                let txn = begin(&store).await.unwrap();
                insert(&txn, "dropped").await.unwrap();
                inside.send(()).unwrap();
                finished.await.ok();
                drop(txn);
            }
        });
        until_queued(&gate, 1).await;
        // Leaves the batch open for the second writer and waits for its COMMIT.
        let committing = tokio::spawn(first.commit());
        entered.await.unwrap();
        finish.send(()).unwrap();
        second.await.unwrap();
        committing.await.unwrap().unwrap();
        assert!(stored(&store, "kept").await);
        assert!(!stored(&store, "dropped").await);
        gate_works_on(&store).await;
    }

    /// A writer whose commit is cancelled half-way (its request went away during
    /// the `RELEASE`) hands the batch back whole: the writer before it, waiting
    /// for the batch's COMMIT, gets it, and the gate works on. The batch's
    /// transaction used to sit in a local there, so the cancel rolled back the
    /// whole batch and left that writer waiting forever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_cancelled_half_way_leaves_the_batch_whole() {
        let (_dir, store) = store().await;
        let gate = gate(&store);
        let first = first_writer(&store, "first").await;
        let second = tokio::spawn({
            let store = store.clone();
            async move {
                let txn = begin(&store).await.unwrap();
                insert(&txn, "second").await.unwrap();
                // Polled once (the RELEASE is sent), then dropped. (Should the
                // SQLite thread answer within that one poll, the commit simply
                // completes, and the rest must hold all the same.)
                let mut commit = std::pin::pin!(txn.commit());
                let polled =
                    std::future::poll_fn(|cx| std::task::Poll::Ready(commit.as_mut().poll(cx)))
                        .await;
                if let std::task::Poll::Ready(result) = polled {
                    result.unwrap();
                }
            }
        });
        until_queued(&gate, 1).await;
        let committing = tokio::spawn(first.commit());
        second.await.unwrap();
        // A hang guard, not a timing assertion.
        tokio::time::timeout(Duration::from_secs(30), committing)
            .await
            .expect("the first writer still waits for its batch")
            .unwrap()
            .unwrap();
        assert!(stored(&store, "first").await);
        gate_works_on(&store).await;
    }

    /// Once every connection is back in the pool, writes twice as many keys
    /// (`after-{i}`) as the pool holds connections, one write transaction each,
    /// one after the other, so that every pooled connection takes a turn.
    async fn every_connection_writes(store: &Store) {
        until_all_idle(store).await;
        for i in 0..2 * crate::store::sqlite_pool_size() {
            let key = format!("after-{i}");
            let txn = begin(store)
                .await
                .unwrap_or_else(|err| panic!("write {key}: BEGIN failed: {err}"));
            insert(&txn, &key).await.unwrap();
            txn.commit().await.unwrap();
        }
    }

    /// Waits until every open connection of the pool is back in it (a
    /// connection is returned by a task of sqlx's after its last user drops it).
    async fn until_all_idle(store: &Store) {
        let pool = store.connection().get_sqlite_connection_pool();
        while pool.num_idle() < pool.size() as usize {
            tokio::task::yield_now().await;
        }
    }

    /// A COMMIT that fails stores none of its batch's writes, every member gets
    /// the error, and the gate and every pooled connection work on. The failure
    /// here is a deferred foreign key, which SQLite checks at COMMIT and which
    /// leaves the transaction open (the ROLLBACK that the dropped transaction
    /// queues ends it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_commit_stores_nothing_and_the_gate_works_on() {
        let (_dir, store) = store().await;
        store
            .connection()
            .execute_unprepared(
                r#"CREATE TABLE "parents" ("id" TEXT PRIMARY KEY);
                   CREATE TABLE "children" ("parent" TEXT REFERENCES "parents" ("id")
                       DEFERRABLE INITIALLY DEFERRED);"#,
            )
            .await
            .unwrap();
        // Alone at the gate.
        let txn = begin(&store).await.unwrap();
        insert(&txn, "alone").await.unwrap();
        orphan(&txn).await.unwrap();
        let err = txn.commit().await.unwrap_err().to_string();
        assert!(err.contains("FOREIGN KEY"), "{err}");
        assert!(!stored(&store, "alone").await);

        // In a batch of two: the first writer's COMMIT is the batch's, and fails.
        let gate = gate(&store);
        let first = first_writer(&store, "first").await;
        let second = tokio::spawn({
            let store = store.clone();
            async move {
                let txn = begin(&store).await?;
                insert(&txn, "second").await?;
                orphan(&txn).await?;
                txn.commit().await
            }
        });
        until_queued(&gate, 1).await;
        let first = first.commit().await.unwrap_err().to_string();
        let second = second.await.unwrap().unwrap_err().to_string();
        for err in [first, second] {
            assert!(err.contains("FOREIGN KEY"), "{err}");
        }
        assert!(!stored(&store, "first").await);
        assert!(!stored(&store, "second").await);

        every_connection_writes(&store).await;
    }

    /// A connection on which sqlx still counts a transaction that SQLite has
    /// ended (as SQLite may after `SQLITE_FULL` or `SQLITE_IOERR` at COMMIT, so
    /// that the queued ROLLBACK fails) is closed when released, not handed out
    /// again (see `keep_after_release`). The test ends the transaction behind
    /// sqlx's back with a plain `ROLLBACK` statement, which leaves the
    /// connection in that same state; then it draws every connection the pool
    /// can hand out at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_whose_transaction_sqlite_ended_is_not_reused() {
        use sea_orm::sqlx::Connection as _;
        let (_dir, store) = store().await;
        let pool = store.connection().get_sqlite_connection_pool();
        {
            let mut conn = pool.acquire().await.unwrap();
            let mut txn = conn.begin().await.unwrap();
            sea_orm::sqlx::query("ROLLBACK")
                .execute(&mut *txn)
                .await
                .unwrap();
            assert!(txn.is_in_transaction(), "sqlx should still count it");
        }
        until_all_idle(&store).await;
        let mut every = Vec::new();
        for _ in 0..crate::store::sqlite_pool_size() {
            every.push(pool.acquire().await.unwrap());
        }
        for conn in &every {
            assert!(
                !conn.is_in_transaction(),
                "the pool handed out a connection that still counts a transaction"
            );
        }
        drop(every);
        every_connection_writes(&store).await;
        gate_works_on(&store).await;
    }

    /// A writer that rolls back in a batch undoes its own writes only; the
    /// batch's committer commits the writer's before it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rollback_in_a_batch_keeps_the_others() {
        let (_dir, store) = store().await;
        let gate = gate(&store);
        let held = Arc::clone(&gate.batch).lock_owned().await;
        let keep = tokio::spawn({
            let store = store.clone();
            async move {
                let txn = begin(&store).await?;
                insert(&txn, "a").await?;
                txn.commit().await
            }
        });
        until_queued(&gate, 1).await;
        let undo = tokio::spawn({
            let store = store.clone();
            async move {
                let txn = begin(&store).await?;
                insert(&txn, "b").await?;
                txn.rollback().await
            }
        });
        release_when_queued(&gate, held, 2).await;
        keep.await.unwrap().unwrap();
        undo.await.unwrap().unwrap();
        assert!(stored(&store, "a").await);
        assert!(!stored(&store, "b").await);
    }
}
