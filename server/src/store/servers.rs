//! The `servers` registry: which server processes exist or existed, so that
//! start-up reconciliation can tell a live server's sessions from orphans.

use sea_orm::QueryTrait;
use sea_orm::sea_query::Query;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
};

use super::Store;
use super::entities::{server, session, worker};
use crate::clock::Micros;
use crate::error::Result;

/// Most `servers` rows [`Store::forget_unnamed_servers`] deletes in one
/// statement, one bound parameter each (SQLite allows 32 766).
const FORGET_BATCH: usize = 500;

impl Store {
    /// Records the start of a server process.
    pub async fn register_server(&self, model: &server::Model) -> Result<()> {
        let insert = server::Entity::insert(model.clone().into_active_model());
        self.execute_write(insert.build(self.backend())).await?;
        Ok(())
    }

    /// Records a clean shutdown of server `id` at `now`.
    pub async fn mark_server_stopped(&self, id: &str, now: Micros) -> Result<()> {
        let update = server::Entity::update_many()
            .set(server::ActiveModel {
                stop_time: Set(Some(now)),
                ..Default::default()
            })
            .filter(server::Column::Id.eq(id))
            .build(self.backend());
        self.execute_write(update).await?;
        Ok(())
    }

    /// A server by id.
    pub async fn find_server(&self, id: &str) -> Result<Option<server::Model>> {
        Ok(server::Entity::find_by_id(id).one(&self.db).await?)
    }

    /// Every server recorded on machine `machine_id` (`/etc/machine-id`).
    ///
    /// Errors: the database's.
    pub async fn servers_on_machine(&self, machine_id: &str) -> Result<Vec<server::Model>> {
        Ok(server::Entity::find()
            .filter(server::Column::MachineId.eq(machine_id))
            .all(&self.db)
            .await?)
    }

    /// Deletes the servers `ids` that no session names (`sessions.server_id`),
    /// each statement checking that itself, so that a session written meanwhile
    /// keeps its server; [`FORGET_BATCH`] ids per statement. Returns how many
    /// rows went.
    ///
    /// Errors: the database's.
    pub async fn forget_unnamed_servers(&self, ids: &[String]) -> Result<u64> {
        let mut forgotten = 0;
        for batch in ids.chunks(FORGET_BATCH) {
            let named = Query::select()
                .column(session::Column::ServerId)
                .from(session::Entity)
                .and_where(session::Column::ServerId.is_not_null())
                .to_owned();
            let delete = server::Entity::delete_many()
                .filter(server::Column::Id.is_in(batch.iter().cloned()))
                .filter(server::Column::Id.not_in_subquery(named))
                .build(self.backend());
            forgotten += self.execute_write(delete).await?.rows_affected();
        }
        Ok(forgotten)
    }

    /// Every worker whose row still names a process (`pid` set), oldest first:
    /// the candidates for reaping after a restart.
    pub async fn workers_with_pid(&self) -> Result<Vec<worker::Model>> {
        Ok(worker::Entity::find()
            .filter(worker::Column::Pid.is_not_null())
            .order_by_asc(worker::Column::CreateTime)
            .all(&self.db)
            .await?)
    }
}
