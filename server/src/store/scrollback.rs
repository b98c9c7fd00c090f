//! Persisted scrollback: batches of a worker's output in `scrollback_chunks`, kept
//! to about one ring's worth per worker.

use sea_orm::QueryTrait;
use sea_orm::sea_query::Query;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::Store;
use super::entities::{scrollback_chunk, session, worker};
use crate::clock::Micros;
use crate::domain::state::State;
use crate::error::Result;

impl Store {
    /// Deletes the stored scrollback of workers of DELETED sessions, at most
    /// `limit` workers' chunks per call (one statement). Nothing reads it any
    /// more: a deleted session's workers cannot be attached or started, and its
    /// tombstone keeps only the session's rows until it is purged. Returns how
    /// many chunk rows went.
    ///
    /// Errors: the database's.
    pub async fn drop_deleted_scrollback(&self, limit: u64) -> Result<u64> {
        let deleted_sessions = Query::select()
            .column(session::Column::Id)
            .from(session::Entity)
            .and_where(session::Column::State.eq(State::Deleted.as_str()))
            .to_owned();
        let their_workers = Query::select()
            .column(worker::Column::Id)
            .from(worker::Entity)
            .and_where(worker::Column::SessionId.in_subquery(deleted_sessions))
            .to_owned();
        let workers: Vec<String> = scrollback_chunk::Entity::find()
            .select_only()
            .column(scrollback_chunk::Column::WorkerId)
            .distinct()
            .filter(scrollback_chunk::Column::WorkerId.in_subquery(their_workers))
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        if workers.is_empty() {
            return Ok(0);
        }
        let deleted = scrollback_chunk::Entity::delete_many()
            .filter(scrollback_chunk::Column::WorkerId.is_in(workers))
            .build(self.backend());
        Ok(self.execute_write(deleted).await?.rows_affected())
    }

    /// Stores `data`, the worker's output from absolute offset `start`, as rows of
    /// at most `piece` bytes (so that trimming to the ring never keeps much more
    /// than a ring), and in the same transaction deletes the worker's chunks that
    /// end at or before `keep_from` (they fell out of the ring). Nothing is written
    /// when `data` is empty.
    ///
    /// Errors: a database error (e.g. the worker was deleted meanwhile: its
    /// foreign key no longer holds).
    pub async fn append_scrollback(
        &self,
        worker_id: &str,
        start: u64,
        data: &[u8],
        piece: usize,
        keep_from: u64,
        now: Micros,
    ) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut offset = i64::try_from(start).unwrap_or(i64::MAX);
        let rows: Vec<_> = data
            .chunks(piece.max(1))
            .map(|piece| {
                let start = offset;
                offset = start.saturating_add(i64::try_from(piece.len()).unwrap_or(i64::MAX));
                scrollback_chunk::ActiveModel {
                    worker_id: Set(worker_id.to_owned()),
                    start_offset: Set(start),
                    end_offset: Set(offset),
                    data: Set(piece.to_vec()),
                    write_time: Set(now),
                }
            })
            .collect();
        let chunks = scrollback_chunk::Entity::insert_many(rows);
        let keep_from = i64::try_from(keep_from).unwrap_or(i64::MAX);
        if keep_from == 0 {
            // Nothing has left the ring yet (no chunk ends at or before 0): one
            // statement, no transaction.
            self.execute_write(chunks.build(self.backend())).await?;
            return Ok(());
        }
        let txn = self.begin_write().await?;
        chunks.exec_without_returning(&*txn).await?;
        scrollback_chunk::Entity::delete_many()
            .filter(scrollback_chunk::Column::WorkerId.eq(worker_id))
            .filter(scrollback_chunk::Column::EndOffset.lte(keep_from))
            .exec(&*txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// One past the last persisted byte of a worker's output (`None`: nothing
    /// stored).
    pub async fn scrollback_end(&self, worker_id: &str) -> Result<Option<u64>> {
        let end: Option<i64> = scrollback_chunk::Entity::find()
            .select_only()
            .column_as(scrollback_chunk::Column::EndOffset.max(), "max")
            .filter(scrollback_chunk::Column::WorkerId.eq(worker_id))
            .into_tuple::<Option<i64>>()
            .one(&self.db)
            .await?
            .flatten();
        Ok(end.and_then(|e| u64::try_from(e).ok()))
    }

    /// The stored chunks of a worker that hold any of its last `capacity` bytes
    /// before `end` (its [`scrollback_end`](Self::scrollback_end)), oldest first.
    pub async fn load_scrollback(
        &self,
        worker_id: &str,
        end: u64,
        capacity: usize,
    ) -> Result<Vec<scrollback_chunk::Model>> {
        let from = end.saturating_sub(capacity as u64);
        Ok(scrollback_chunk::Entity::find()
            .filter(scrollback_chunk::Column::WorkerId.eq(worker_id))
            .filter(scrollback_chunk::Column::EndOffset.gt(i64::try_from(from).unwrap_or(0)))
            .order_by_asc(scrollback_chunk::Column::StartOffset)
            .all(&self.db)
            .await?)
    }
}
