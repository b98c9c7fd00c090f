//! The gRPC services: one file per service. Each handler decodes its request, calls
//! the manager, and encodes the answer: no business logic lives here.

mod checkpoints;
pub mod convert;
mod events;
mod sessions;
mod workers;

use std::sync::Arc;

use tonic::Status;

use crate::config::Config;
use crate::domain::names::{self, Ref};
use crate::error::Error;
use crate::manager::Manager;
pub use checkpoints::CheckpointApi;
pub use events::EventApi;
pub use sessions::SessionApi;
pub use workers::WorkerApi;

/// Settings the handlers need besides the manager.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// Largest Attach input frame, in bytes.
    pub max_input_frame_bytes: usize,
}

impl ApiSettings {
    /// From the server's configuration.
    pub fn from_config(config: &Config) -> Self {
        ApiSettings {
            max_input_frame_bytes: config.max_input_frame_bytes,
        }
    }
}

/// What every service holds.
#[derive(Clone, Debug)]
pub struct Api {
    pub manager: Arc<Manager>,
    pub settings: ApiSettings,
}

/// Parses a `sessions/{session}` field.
fn session_ref(field: &str, name: &str) -> Result<Ref, Status> {
    names::parse_session_name(field, name).map_err(|e| Error::Invalid(e).into())
}

/// Parses a `sessions/{session}/workers/{worker}` field.
fn worker_ref(field: &str, name: &str) -> Result<(Ref, Ref), Status> {
    names::parse_worker_name(field, name).map_err(|e| Error::Invalid(e).into())
}

/// Runs `work` to completion on its own task and waits for it.
///
/// tonic drops a handler's future when its client disconnects; a lifecycle change
/// cut off at an `.await` could leave a session STARTING with half its workers
/// spawned, or a worktree made without its row. Handlers that change processes or
/// the filesystem run their work through this, so it always finishes.
async fn run_detached<T: Send + 'static>(
    work: impl std::future::Future<Output = crate::error::Result<T>> + Send + 'static,
) -> Result<T, Status> {
    match tokio::spawn(work).await {
        Ok(result) => result.map_err(Status::from),
        Err(err) => Err(Error::Internal(format!("the request's task failed: {err}")).into()),
    }
}

/// UNIMPLEMENTED, with the RPC's name.
fn unimplemented(rpc: &'static str) -> Status {
    Error::Unimplemented { rpc }.into()
}
