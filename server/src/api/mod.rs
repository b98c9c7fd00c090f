//! The gRPC services: one file per service. Each handler decodes its request, calls
//! the manager, and encodes the answer: no business logic lives here.

mod checkpoints;
pub mod convert;
mod events;
mod sessions;
mod workers;

use std::sync::Arc;
use std::time::Duration;

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
    /// Input bytes per second per Attach stream (0: unlimited).
    pub max_input_bytes_per_second: u64,
    /// Largest gRPC message, in bytes (for the message of an oversized frame).
    pub max_message_bytes: usize,
    /// An Attach stream without frames for this long ends (zero: never).
    pub stream_idle_timeout: Duration,
    /// An Attach or WatchEvents stream open this long ends (zero: never).
    pub stream_max_duration: Duration,
}

impl ApiSettings {
    /// From the server's configuration.
    pub fn from_config(config: &Config) -> Self {
        ApiSettings {
            max_input_frame_bytes: config.max_input_frame_bytes,
            max_input_bytes_per_second: config.max_input_bytes_per_second,
            max_message_bytes: config.max_message_bytes,
            stream_idle_timeout: config.stream_idle_timeout,
            stream_max_duration: config.stream_max_duration,
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
