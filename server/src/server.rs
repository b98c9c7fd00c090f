//! Assembling and running the gRPC server: store → manager → services (plus
//! health and reflection) → a listener, and the drain on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use corral::pb::checkpoint_service_server::CheckpointServiceServer;
use corral::pb::event_service_server::EventServiceServer;
use corral::pb::session_service_server::SessionServiceServer;
use corral::pb::worker_service_server::WorkerServiceServer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use crate::api::{Api, ApiSettings, CheckpointApi, EventApi, SessionApi, WorkerApi};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::manager::Manager;
use crate::store::Store;

/// A server that is listening. Drop does not stop it: call [`shutdown`](Self::shutdown)
/// and [`wait`](Self::wait).
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<Result<()>>,
    manager: Arc<Manager>,
}

impl RunningServer {
    /// The address the server listens on (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The manager (for tests that inspect the server's state).
    pub fn manager(&self) -> &Arc<Manager> {
        &self.manager
    }

    /// Starts a graceful shutdown: no new calls, open Attach streams end, workers
    /// are stopped and their sessions recorded as stopped.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until the server has stopped.
    pub async fn wait(self) -> Result<()> {
        self.task
            .await
            .map_err(|e| Error::Internal(format!("server task: {e}")))?
    }
}

/// Opens the store, starts the manager and serves `config.listen` with the system
/// clock.
pub async fn serve(config: Config) -> Result<RunningServer> {
    serve_with_clock(config, Arc::new(SystemClock)).await
}

/// [`serve`] with an injected clock (tests).
pub async fn serve_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<RunningServer> {
    let data_dir = config.data_dir();
    tokio::fs::create_dir_all(&data_dir).await.map_err(|e| {
        Error::Internal(format!(
            "cannot create the data directory {}: {e}",
            data_dir.display()
        ))
    })?;
    let url = config.database_url();
    let store = Store::connect(&url).await?;
    tracing::info!(backend = store.backend_name(), data_dir = %data_dir.display(), "store ready");

    let shutdown = CancellationToken::new();
    let manager = Manager::start(&config, store, clock, shutdown.clone()).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::Internal(format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("listener address: {e}")))?;

    let api = Api {
        manager: manager.clone(),
        settings: ApiSettings::from_config(&config),
    };
    let limit = config.max_message_bytes;
    let sessions = SessionServiceServer::new(SessionApi(api.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let workers = WorkerServiceServer::new(WorkerApi(api.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let checkpoints = CheckpointServiceServer::new(CheckpointApi(api.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let events = EventServiceServer::new(EventApi(api.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<SessionServiceServer<SessionApi>>()
        .await;
    health_reporter
        .set_serving::<WorkerServiceServer<WorkerApi>>()
        .await;
    health_reporter
        .set_serving::<CheckpointServiceServer<CheckpointApi>>()
        .await;
    health_reporter
        .set_serving::<EventServiceServer<EventApi>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(corral::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(corral::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;

    let router = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(sessions)
        .add_service(workers)
        .add_service(checkpoints)
        .add_service(events);

    let reaper =
        crate::reaper::Reaper::new(manager.clone()).spawn(config.reaper_interval, shutdown.clone());

    tracing::info!(%addr, "corrald listening");
    let task_manager = manager.clone();
    let task_shutdown = shutdown.clone();
    let task = tokio::spawn(async move {
        let served = router
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                task_shutdown.cancelled(),
            )
            .await;
        if let Err(err) = reaper.await {
            tracing::error!(%err, "the retention task failed");
        }
        tracing::info!("no more calls; stopping workers");
        task_manager.shutdown().await;
        tracing::info!("shutdown complete");
        served.map_err(|e| Error::Internal(format!("gRPC server: {e}")))
    });
    Ok(RunningServer {
        addr,
        shutdown,
        task,
        manager,
    })
}
