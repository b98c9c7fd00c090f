//! `corral.v1.CheckpointService`.

use corral::pb;
use corral::pb::checkpoint_service_server::CheckpointService;
use tonic::{Request, Response, Status};

use super::{Api, unimplemented};

/// The CheckpointService handlers.
#[derive(Clone, Debug)]
pub struct CheckpointApi(pub Api);

#[tonic::async_trait]
impl CheckpointService for CheckpointApi {
    async fn list_checkpoints(
        &self,
        _request: Request<pb::ListCheckpointsRequest>,
    ) -> Result<Response<pb::ListCheckpointsResponse>, Status> {
        Err(unimplemented("CheckpointService.ListCheckpoints"))
    }

    async fn get_checkpoint(
        &self,
        _request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::Checkpoint>, Status> {
        Err(unimplemented("CheckpointService.GetCheckpoint"))
    }

    async fn delete_checkpoint(
        &self,
        _request: Request<pb::DeleteCheckpointRequest>,
    ) -> Result<Response<pb::DeleteCheckpointResponse>, Status> {
        Err(unimplemented("CheckpointService.DeleteCheckpoint"))
    }

    async fn resume_from_checkpoint(
        &self,
        _request: Request<pb::ResumeFromCheckpointRequest>,
    ) -> Result<Response<pb::ResumeFromCheckpointResponse>, Status> {
        Err(unimplemented("CheckpointService.ResumeFromCheckpoint"))
    }
}
