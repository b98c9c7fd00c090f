//! Checkpoints of agent workers (seed 003): versioned, expiring snapshots.
//!
//! A worker's checkpoints are numbered 1, 2, … in one write transaction that also
//! appends the CHECKPOINT_SAVED event; the unique index on (worker, version) makes
//! a concurrent second writer fail rather than duplicate a version. Listing never
//! loads the transcript copies and scrollback (they can be large) unless asked.
//!
//! Expiry ([`Store::expire_checkpoints`]) is one `DELETE … WHERE expire_time <= now`
//! (plus the checkpoints of deleted sessions): idempotent, and safe when several
//! servers share the database — each row is deleted once, by whoever comes first.

use sea_orm::QueryTrait;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, EntityTrait, FromQueryResult, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::Store;
use super::events::{self, EventKind, EventPayload, NewEvent};
use crate::clock::Micros;
use crate::error::Result;

/// `checkpoints`: one row per checkpoint (the entity's generated items are
/// SeaORM's).
#[allow(missing_docs)]
pub mod checkpoint {
    use sea_orm::entity::prelude::*;

    #[sea_orm::model]
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "checkpoints")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        /// A UUID.
        pub id: String,
        /// The session's id.
        pub session_id: String,
        /// The agent worker's id.
        pub worker_id: String,
        /// 1, 2, … within the worker.
        pub version: i64,
        /// `TURN`, `STOP` or `CRASH`.
        pub trigger: String,
        /// The agent's conversation id.
        pub agent_session_id: String,
        /// Turns the transcript shows completed.
        pub turn_count: i32,
        /// The model (from the transcript, else the worker's).
        pub model: String,
        /// The session's directory.
        pub work_dir: String,
        /// The transcript file (empty when none was found).
        pub transcript_path: String,
        /// Length of the transcript at the checkpoint, in bytes (complete lines).
        pub transcript_bytes: i64,
        /// Where `transcript_delta` starts in the transcript.
        pub delta_offset: i64,
        /// The transcript bytes `[delta_offset, transcript_bytes)`.
        pub transcript_delta: Vec<u8>,
        /// The last bytes of terminal output (at most 64 KiB).
        pub scrollback_tail: Vec<u8>,
        /// When it was written (µs).
        pub create_time: i64,
        /// When it expires (µs).
        pub expire_time: i64,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// A checkpoint without its transcript copy and scrollback (the BASIC view);
/// the fields are those of [`checkpoint::Model`].
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq, FromQueryResult)]
pub struct CheckpointMeta {
    pub id: String,
    pub session_id: String,
    pub worker_id: String,
    pub version: i64,
    pub trigger: String,
    pub agent_session_id: String,
    pub turn_count: i32,
    pub model: String,
    pub work_dir: String,
    pub transcript_path: String,
    pub transcript_bytes: i64,
    pub delta_offset: i64,
    pub create_time: i64,
    pub expire_time: i64,
}

impl From<checkpoint::Model> for CheckpointMeta {
    fn from(m: checkpoint::Model) -> Self {
        CheckpointMeta {
            id: m.id,
            session_id: m.session_id,
            worker_id: m.worker_id,
            version: m.version,
            trigger: m.trigger,
            agent_session_id: m.agent_session_id,
            turn_count: m.turn_count,
            model: m.model,
            work_dir: m.work_dir,
            transcript_path: m.transcript_path,
            transcript_bytes: m.transcript_bytes,
            delta_offset: m.delta_offset,
            create_time: m.create_time,
            expire_time: m.expire_time,
        }
    }
}

const META_COLUMNS: [checkpoint::Column; 14] = [
    checkpoint::Column::Id,
    checkpoint::Column::SessionId,
    checkpoint::Column::WorkerId,
    checkpoint::Column::Version,
    checkpoint::Column::Trigger,
    checkpoint::Column::AgentSessionId,
    checkpoint::Column::TurnCount,
    checkpoint::Column::Model,
    checkpoint::Column::WorkDir,
    checkpoint::Column::TranscriptPath,
    checkpoint::Column::TranscriptBytes,
    checkpoint::Column::DeltaOffset,
    checkpoint::Column::CreateTime,
    checkpoint::Column::ExpireTime,
];

/// Which checkpoints a listing covers.
#[derive(Clone, Debug)]
pub struct CheckpointScope<'a> {
    /// The session's id.
    pub session_id: &'a str,
    /// Only this worker's.
    pub worker_id: Option<&'a str>,
}

impl Store {
    /// Stores `row` as the next version of its worker (its `version` is ignored)
    /// with a CHECKPOINT_SAVED event naming `name_of(version)`. Returns the row.
    pub async fn insert_checkpoint(
        &self,
        mut row: checkpoint::Model,
        name_of: impl Fn(i64) -> String,
    ) -> Result<checkpoint::Model> {
        let txn = self.begin_write().await?;
        let last: Option<i64> = checkpoint::Entity::find()
            .select_only()
            .column_as(checkpoint::Column::Version.max(), "max")
            .filter(checkpoint::Column::WorkerId.eq(row.worker_id.as_str()))
            .into_tuple::<Option<i64>>()
            .one(&*txn)
            .await?
            .flatten();
        row.version = last.unwrap_or(0) + 1;
        checkpoint::Entity::insert(row.clone().into_active_model())
            .exec_without_returning(&*txn)
            .await?;
        let event = NewEvent::worker(
            EventKind::CheckpointSaved,
            &row.session_id,
            &row.worker_id,
            EventPayload {
                checkpoint: name_of(row.version),
                version: Some(row.version),
                reason: row.trigger.clone(),
                ..Default::default()
            },
        );
        let last = events::append(&*txn, row.create_time, vec![event]).await?;
        txn.commit().await?;
        self.announce(last);
        Ok(row)
    }

    /// The newest checkpoint of a worker (FULL).
    pub async fn latest_checkpoint(&self, worker_id: &str) -> Result<Option<checkpoint::Model>> {
        Ok(checkpoint::Entity::find()
            .filter(checkpoint::Column::WorkerId.eq(worker_id))
            .order_by_desc(checkpoint::Column::Version)
            .one(&self.db)
            .await?)
    }

    /// One checkpoint of a worker by version (FULL).
    pub async fn get_checkpoint(
        &self,
        worker_id: &str,
        version: i64,
    ) -> Result<Option<checkpoint::Model>> {
        Ok(checkpoint::Entity::find()
            .filter(checkpoint::Column::WorkerId.eq(worker_id))
            .filter(checkpoint::Column::Version.eq(version))
            .one(&self.db)
            .await?)
    }

    /// One checkpoint of a worker by version, without its large fields.
    pub async fn get_checkpoint_meta(
        &self,
        worker_id: &str,
        version: i64,
    ) -> Result<Option<CheckpointMeta>> {
        Ok(checkpoint::Entity::find()
            .select_only()
            .columns(META_COLUMNS)
            .filter(checkpoint::Column::WorkerId.eq(worker_id))
            .filter(checkpoint::Column::Version.eq(version))
            .into_model::<CheckpointMeta>()
            .one(&self.db)
            .await?)
    }

    /// Checkpoints in `scope`, newest first, `offset` skipped, at most `limit`;
    /// FULL rows when `full`, else with empty large fields.
    pub async fn list_checkpoints(
        &self,
        scope: &CheckpointScope<'_>,
        offset: u64,
        limit: u64,
        full: bool,
    ) -> Result<Vec<checkpoint::Model>> {
        let mut query =
            checkpoint::Entity::find().filter(checkpoint::Column::SessionId.eq(scope.session_id));
        if let Some(worker_id) = scope.worker_id {
            query = query.filter(checkpoint::Column::WorkerId.eq(worker_id));
        }
        let query = query
            .order_by_desc(checkpoint::Column::CreateTime)
            .order_by_desc(checkpoint::Column::Version)
            .order_by_asc(checkpoint::Column::Id)
            .offset(offset)
            .limit(limit);
        if full {
            return Ok(query.all(&self.db).await?);
        }
        let metas = query
            .select_only()
            .columns(META_COLUMNS)
            .into_model::<CheckpointMeta>()
            .all(&self.db)
            .await?;
        Ok(metas.into_iter().map(CheckpointMeta::into_model).collect())
    }

    /// The versions of a worker's checkpoints of transcript `path` up to
    /// `version`, oldest first: the chain that rebuilds the transcript.
    pub async fn checkpoint_versions(
        &self,
        worker_id: &str,
        path: &str,
        version: i64,
    ) -> Result<Vec<i64>> {
        Ok(checkpoint::Entity::find()
            .select_only()
            .column(checkpoint::Column::Version)
            .filter(checkpoint::Column::WorkerId.eq(worker_id))
            .filter(checkpoint::Column::TranscriptPath.eq(path))
            .filter(checkpoint::Column::Version.lte(version))
            .order_by_asc(checkpoint::Column::Version)
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    /// The newest checkpoint of a worker, without its large fields.
    pub async fn latest_checkpoint_meta(&self, worker_id: &str) -> Result<Option<CheckpointMeta>> {
        Ok(checkpoint::Entity::find()
            .select_only()
            .columns(META_COLUMNS)
            .filter(checkpoint::Column::WorkerId.eq(worker_id))
            .order_by_desc(checkpoint::Column::Version)
            .into_model::<CheckpointMeta>()
            .one(&self.db)
            .await?)
    }

    /// Deletes one checkpoint; false when it did not exist.
    pub async fn delete_checkpoint(&self, id: &str) -> Result<bool> {
        let delete = checkpoint::Entity::delete_many()
            .filter(checkpoint::Column::Id.eq(id))
            .build(self.backend());
        Ok(self.execute_write(delete).await?.rows_affected() > 0)
    }

    /// Deletes every checkpoint of a session (or of one of its workers).
    pub async fn delete_checkpoints(&self, scope: &CheckpointScope<'_>) -> Result<u64> {
        let mut condition =
            sea_orm::Condition::all().add(checkpoint::Column::SessionId.eq(scope.session_id));
        if let Some(worker_id) = scope.worker_id {
            condition = condition.add(checkpoint::Column::WorkerId.eq(worker_id));
        }
        // Most sessions have none (terminals): a read, which takes no write lock,
        // spares them the DELETE.
        let any = checkpoint::Entity::find()
            .select_only()
            .column(checkpoint::Column::Id)
            .filter(condition.clone())
            .into_tuple::<String>()
            .one(&self.db)
            .await?;
        if any.is_none() {
            return Ok(0);
        }
        let delete = checkpoint::Entity::delete_many()
            .filter(condition)
            .build(self.backend());
        Ok(self.execute_write(delete).await?.rows_affected())
    }

    /// Deletes checkpoints whose `expire_time` is at or before `now`, and those of
    /// sessions that are DELETED. Returns how many rows this call deleted.
    /// Idempotent and safe to run from several servers at once (for the reaper).
    pub async fn expire_checkpoints(&self, now: Micros) -> Result<u64> {
        let deleted_sessions = Query::select()
            .column(Alias::new("id"))
            .from(Alias::new("sessions"))
            .and_where(Expr::col(Alias::new("delete_time")).is_not_null())
            .to_owned();
        let statement = Query::delete()
            .from_table(Alias::new("checkpoints"))
            .cond_where(
                sea_orm::Condition::any()
                    .add(Expr::col(Alias::new("expire_time")).lte(now))
                    .add(Expr::col(Alias::new("session_id")).in_subquery(deleted_sessions)),
            )
            .to_owned();
        let statement = self.backend().build(&statement);
        Ok(self.execute_write(statement).await?.rows_affected())
    }
}

impl CheckpointMeta {
    /// As a model with empty large fields.
    pub fn into_model(self) -> checkpoint::Model {
        checkpoint::Model {
            id: self.id,
            session_id: self.session_id,
            worker_id: self.worker_id,
            version: self.version,
            trigger: self.trigger,
            agent_session_id: self.agent_session_id,
            turn_count: self.turn_count,
            model: self.model,
            work_dir: self.work_dir,
            transcript_path: self.transcript_path,
            transcript_bytes: self.transcript_bytes,
            delta_offset: self.delta_offset,
            transcript_delta: Vec::new(),
            scrollback_tail: Vec::new(),
            create_time: self.create_time,
            expire_time: self.expire_time,
        }
    }
}
