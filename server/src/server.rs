//! Assembling and running the gRPC server: the listener (bound first, so that a
//! server that cannot listen changes nothing) → store → manager → services (plus
//! health and reflection) served on it, and the drain on shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use corral::pb::checkpoint_service_server::CheckpointServiceServer;
use corral::pb::event_service_server::EventServiceServer;
use corral::pb::session_service_server::SessionServiceServer;
use corral::pb::worker_service_server::WorkerServiceServer;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

use crate::api::{Api, ApiSettings, CheckpointApi, EventApi, SessionApi, WorkerApi};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ReflectionAccess};
use crate::error::{Error, Result};
use crate::guard::{GuardLayer, GuardSettings};
use crate::listen::{self, Listener};
use crate::manager::Manager;
use crate::store::Store;

/// The `google.rpc.ErrorInfo` reason when the data directory cannot be created.
pub const DATA_DIR_UNUSABLE: &str = "DATA_DIR_UNUSABLE";

/// A server that is listening. Drop does not stop it: call [`shutdown`](Self::shutdown)
/// and [`wait`](Self::wait).
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    unix_path: Option<PathBuf>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<()>>,
    manager: Arc<Manager>,
}

impl RunningServer {
    /// The TCP address the server listens on (with the real port when 0 was
    /// asked); `0.0.0.0:0` when it listens on a Unix socket (see
    /// [`unix_path`](Self::unix_path)).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Unix socket the server listens on, if it does.
    pub fn unix_path(&self) -> Option<&Path> {
        self.unix_path.as_deref()
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
///
/// Checks the configuration first ([`Config::check`]): an invalid one — e.g. a
/// non-loopback address without authentication — is INVALID_ARGUMENT
/// ("invalid configuration: …", naming the problem), and nothing is started.
/// A data directory that cannot be created is FAILED_PRECONDITION
/// ([`DATA_DIR_UNUSABLE`]). Then binds the address, before the store is opened:
/// a server that cannot listen (FAILED_PRECONDITION from [`listen::bind`], e.g.
/// the port is taken) changes nothing, and in particular does not claim and
/// restart the sessions of a server that is gone only to exit. Connections that
/// arrive before the manager is ready wait in the listen backlog.
pub async fn serve_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<RunningServer> {
    let security = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || config.check())
            .await
            .map_err(|e| Error::Internal(format!("checking the configuration: {e}")))?
            .map_err(|e| Error::invalid("configuration", e))?
    };
    let data_dir = config.data_dir();
    tokio::fs::create_dir_all(&data_dir).await.map_err(|e| {
        Error::precondition(
            DATA_DIR_UNUSABLE,
            format!(
                "cannot create the data directory {}: {e}: give --data-dir (or \
                 CORRAL_DATA_DIR) a directory the server's user can create and write",
                data_dir.display()
            ),
        )
    })?;
    let listener = listen::bind(&config.listen).await?;
    let unix_path = listener.unix_path().map(Path::to_path_buf);
    let started = start(config, clock, security, listener).await;
    if started.is_err()
        && let Some(path) = &unix_path
    {
        let _ = tokio::fs::remove_file(path).await;
    }
    started
}

/// Everything after the bind: the store, the manager, the services and the task
/// that serves `listener`.
async fn start(
    config: Config,
    clock: Arc<dyn Clock>,
    security: crate::security::Security,
    listener: Listener,
) -> Result<RunningServer> {
    let url = config.database_url();
    let store = Store::connect(&url).await?;
    tracing::info!(backend = store.backend_name(), data_dir = %config.data_dir().display(), "store ready");

    let shutdown = CancellationToken::new();
    let manager = Manager::start(&config, store, clock, shutdown.clone()).await?;
    let addr = listener
        .tcp_addr()
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let unix_path = listener.unix_path().map(Path::to_path_buf);
    if !config.listen.is_local() && security.tls.is_none() {
        tracing::warn!(listen = %config.listen, "serving without TLS on a non-loopback address: tokens and terminal traffic travel in clear text");
    }

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

    let guard = GuardLayer::new(GuardSettings {
        authenticator: security.authenticator.clone(),
        deadline: config.unary_deadline,
        max_message_bytes: limit,
    });
    let mut builder =
        tonic::transport::Server::builder().max_concurrent_streams(config.max_concurrent_streams);
    if let Some(tls) = security.tls.clone() {
        builder = builder
            .tls_config(tls)
            .map_err(|e| Error::Internal(format!("TLS: {e}")))?;
    }
    let mut router = builder.layer(guard).add_service(health);
    if config.reflection != ReflectionAccess::Off {
        router = router
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
    }
    let router = router
        .add_service(sessions)
        .add_service(workers)
        .add_service(checkpoints)
        .add_service(events);

    let reaper =
        crate::reaper::Reaper::new(manager.clone()).spawn(config.reaper_interval, shutdown.clone());

    tracing::info!(listen = %config.listen, %addr, tls = security.tls.is_some(), authentication = security.authenticator.enabled(), "corrald listening");
    let task_manager = manager.clone();
    let task_shutdown = shutdown.clone();
    let task = tokio::spawn(async move {
        let served = match listener {
            Listener::Tcp(listener) => {
                // TCP_NODELAY on every connection: with Nagle's algorithm a
                // response's frames written separately wait for the client's
                // delayed ACK (40 ms on Linux) — every unary call and keystroke.
                let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                router
                    .serve_with_incoming_shutdown(incoming, task_shutdown.cancelled())
                    .await
            }
            Listener::Unix(listener, path) => {
                let served = router
                    .serve_with_incoming_shutdown(
                        UnixListenerStream::new(listener),
                        task_shutdown.cancelled(),
                    )
                    .await;
                let _ = tokio::fs::remove_file(&path).await;
                served
            }
        };
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
        unix_path,
        shutdown,
        task,
        manager,
    })
}
