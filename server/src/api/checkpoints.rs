//! `corral.v1.CheckpointService`.

use corral::pb;
use corral::pb::checkpoint_service_server::CheckpointService;
use tonic::{Request, Response, Status};

use super::Api;
use super::convert::checkpoint_to_pb;

/// The CheckpointService handlers.
#[derive(Clone, Debug)]
pub struct CheckpointApi(pub Api);

/// Whether `view` asks for the large fields; `default_full` when unspecified
/// (BASIC for List, FULL for Get).
fn full(view: i32, default_full: bool) -> bool {
    match pb::checkpoint::View::try_from(view) {
        Ok(pb::checkpoint::View::Full) => true,
        Ok(pb::checkpoint::View::Basic) => false,
        _ => default_full,
    }
}

#[tonic::async_trait]
impl CheckpointService for CheckpointApi {
    async fn list_checkpoints(
        &self,
        request: Request<pb::ListCheckpointsRequest>,
    ) -> Result<Response<pb::ListCheckpointsResponse>, Status> {
        let request = request.into_inner();
        let full = full(request.view, false);
        let (rows, next) = self
            .0
            .manager
            .list_checkpoints(
                &request.parent,
                request.page_size,
                &request.page_token,
                full,
            )
            .await?;
        Ok(Response::new(pb::ListCheckpointsResponse {
            checkpoints: rows.iter().map(|row| checkpoint_to_pb(row, full)).collect(),
            next_page_token: next,
        }))
    }

    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::Checkpoint>, Status> {
        let request = request.into_inner();
        let full = full(request.view, true);
        let row = self.0.manager.get_checkpoint(&request.name, full).await?;
        Ok(Response::new(checkpoint_to_pb(&row, full)))
    }

    async fn delete_checkpoint(
        &self,
        request: Request<pb::DeleteCheckpointRequest>,
    ) -> Result<Response<pb::DeleteCheckpointResponse>, Status> {
        self.0
            .manager
            .delete_checkpoint(&request.into_inner().name)
            .await?;
        Ok(Response::new(pb::DeleteCheckpointResponse {}))
    }

    async fn resume_from_checkpoint(
        &self,
        request: Request<pb::ResumeFromCheckpointRequest>,
    ) -> Result<Response<pb::ResumeFromCheckpointResponse>, Status> {
        let (view, description) = self
            .0
            .manager
            .resume_from_checkpoint(&request.into_inner().name)
            .await?;
        Ok(Response::new(pb::ResumeFromCheckpointResponse {
            session: format!("sessions/{}", view.row.model.id),
            description,
        }))
    }
}
