//! Queries of the retention task: which sessions are due, and the conditional
//! purge of a tombstone. Every query errs only with the database's error.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::entities::session;
use super::{EventKind, EventPayload, NewEvent, SessionRow, Store, events};
use crate::clock::Micros;
use crate::domain::filter::SourceKind;
use crate::domain::state::State;
use crate::error::Result;

impl Store {
    /// Ids of STOPPED sessions whose `stop_time` is before `before` (µs), oldest
    /// first, at most `limit`.
    pub async fn stopped_before(&self, before: Micros, limit: u64) -> Result<Vec<String>> {
        Ok(session::Entity::find()
            .select_only()
            .column(session::Column::Id)
            .filter(session::Column::State.eq(State::Stopped.as_str()))
            .filter(session::Column::StopTime.lt(before))
            .order_by_asc(session::Column::StopTime)
            .limit(limit)
            .into_tuple::<String>()
            .all(self.connection())
            .await?)
    }

    /// DELETED sessions whose `purge_time` is at or before `now`, oldest first, at
    /// most `limit` (labels are not loaded: the rows are about to go).
    pub async fn tombstones_due(&self, now: Micros, limit: u64) -> Result<Vec<SessionRow>> {
        let models = session::Entity::find()
            .filter(session::Column::State.eq(State::Deleted.as_str()))
            .filter(session::Column::PurgeTime.lte(now))
            .order_by_asc(session::Column::PurgeTime)
            .limit(limit)
            .all(self.connection())
            .await?;
        Ok(models
            .into_iter()
            .map(|model| SessionRow {
                model,
                labels: Default::default(),
            })
            .collect())
    }

    /// Which of the session ids `ids` have a row (in any state, tombstones
    /// included).
    pub async fn existing_session_ids(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashSet<String>> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let found: Vec<String> = session::Entity::find()
            .select_only()
            .column(session::Column::Id)
            .filter(session::Column::Id.is_in(ids.iter().cloned()))
            .into_tuple()
            .all(self.connection())
            .await?;
        Ok(found.into_iter().collect())
    }

    /// DELETED worktree sessions (whose worktree may still need removing), oldest
    /// deletion first, at most `limit` (labels not loaded).
    pub async fn deleted_worktree_sessions(&self, limit: u64) -> Result<Vec<SessionRow>> {
        let models = session::Entity::find()
            .filter(session::Column::State.eq(State::Deleted.as_str()))
            .filter(session::Column::Kind.eq(SourceKind::Worktree.as_str()))
            .filter(session::Column::WorktreePath.is_not_null())
            .order_by_asc(session::Column::DeleteTime)
            .limit(limit)
            .all(self.connection())
            .await?;
        Ok(models
            .into_iter()
            .map(|model| SessionRow {
                model,
                labels: Default::default(),
            })
            .collect())
    }

    /// Deletes the tombstone `id` if it is still DELETED with `purge_time <= now`
    /// (its workers and labels cascade) and records SESSION_PURGED, in one
    /// transaction. Returns false when another server purged it first (or it is
    /// not due): the delete is conditional, so a row is purged once.
    pub async fn purge_session(&self, id: &str, now: Micros) -> Result<bool> {
        let txn = self.begin_write().await?;
        let deleted = session::Entity::delete_many()
            .filter(session::Column::Id.eq(id))
            .filter(session::Column::State.eq(State::Deleted.as_str()))
            .filter(session::Column::PurgeTime.lte(now))
            .exec(&*txn)
            .await?;
        if deleted.rows_affected == 0 {
            txn.rollback().await?;
            return Ok(false);
        }
        let last = events::append(
            &*txn,
            now,
            vec![NewEvent::session(
                EventKind::SessionPurged,
                id,
                EventPayload::default(),
            )],
        )
        .await?;
        txn.commit().await?;
        self.announce(last);
        Ok(true)
    }
}
