//! The `servers` registry: which server processes exist or existed, so that
//! start-up reconciliation can tell a live server's sessions from orphans.

use sea_orm::QueryTrait;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
};

use super::Store;
use super::entities::{server, worker};
use crate::clock::Micros;
use crate::error::Result;

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
