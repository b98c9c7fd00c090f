//! The calls the scenarios make, through the generated client (`corral::pb`).

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use corral::pb;
use corral::pb::attach_request::Frame as In;
use corral::pb::attach_response::Frame as Out;
use corral::pb::session_service_client::SessionServiceClient;
use corral::pb::worker_service_client::WorkerServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

/// Client frames queued before the sender waits.
const REQUEST_QUEUE: usize = 64;

/// The session and worker services over one connection.
#[derive(Clone)]
pub struct Api {
    /// The connection, for Attach streams.
    pub channel: Channel,
    sessions: SessionServiceClient<Channel>,
}

/// A terminal worker to define: its display name and argv.
pub struct WorkerDef {
    /// Unique within the session.
    pub name: String,
    /// argv of the program.
    pub command: Vec<String>,
}

impl WorkerDef {
    /// A worker named `name` running `command`.
    pub fn new(name: impl Into<String>, command: &[&str]) -> WorkerDef {
        WorkerDef {
            name: name.into(),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn to_pb(&self) -> pb::Worker {
        pb::Worker {
            display_name: self.name.clone(),
            spec: Some(pb::worker::Spec::Terminal(pb::TerminalSpec {
                command: self.command.clone(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }
}

impl Api {
    /// The services over `channel`.
    pub fn new(channel: Channel) -> Api {
        Api {
            sessions: SessionServiceClient::new(channel.clone()),
            channel,
        }
    }

    fn workers(&self) -> WorkerServiceClient<Channel> {
        WorkerServiceClient::new(self.channel.clone())
    }

    /// CreateSession: a quick session `name` in `work_dir` with `workers` defined.
    pub async fn create_session(
        &self,
        name: &str,
        work_dir: &str,
        workers: &[WorkerDef],
    ) -> Result<pb::Session> {
        let request = pb::CreateSessionRequest {
            session: Some(pb::Session {
                display_name: name.to_owned(),
                source: Some(pb::session::Source::Quick(pb::QuickSource {
                    work_dir: work_dir.to_owned(),
                })),
                ..Default::default()
            }),
            workers: workers.iter().map(WorkerDef::to_pb).collect(),
            ..Default::default()
        };
        Ok(self
            .sessions
            .clone()
            .create_session(request)
            .await
            .with_context(|| format!("CreateSession {name}"))?
            .into_inner())
    }

    /// StartSession: returns once every worker runs (the session is ACTIVE).
    pub async fn start_session(&self, name: &str) -> Result<pb::Session> {
        let session = self
            .sessions
            .clone()
            .start_session(pb::StartSessionRequest {
                name: format!("sessions/{name}"),
                ..Default::default()
            })
            .await
            .with_context(|| format!("StartSession {name}"))?
            .into_inner();
        if session.state != pb::session::State::Active as i32 {
            bail!(
                "session {name} did not become ACTIVE (state {}): {}",
                session.state,
                session.last_error
            );
        }
        Ok(session)
    }

    /// StopSession with `grace` between SIGTERM and SIGKILL: returns once every
    /// process is gone.
    pub async fn stop_session(&self, name: &str, grace: Duration) -> Result<()> {
        self.sessions
            .clone()
            .stop_session(pb::StopSessionRequest {
                name: format!("sessions/{name}"),
                grace_ms: u32::try_from(grace.as_millis()).unwrap_or(u32::MAX),
                ..Default::default()
            })
            .await
            .with_context(|| format!("StopSession {name}"))?;
        Ok(())
    }

    /// DeleteSession.
    pub async fn delete_session(&self, name: &str) -> Result<()> {
        self.sessions
            .clone()
            .delete_session(pb::DeleteSessionRequest {
                name: format!("sessions/{name}"),
                ..Default::default()
            })
            .await
            .with_context(|| format!("DeleteSession {name}"))?;
        Ok(())
    }

    /// CreateWorker in an ACTIVE session: the worker starts at once.
    pub async fn create_worker(&self, session: &str, worker: &WorkerDef) -> Result<pb::Worker> {
        Ok(self
            .workers()
            .create_worker(pb::CreateWorkerRequest {
                parent: format!("sessions/{session}"),
                worker: Some(worker.to_pb()),
            })
            .await
            .with_context(|| format!("CreateWorker {session}/{}", worker.name))?
            .into_inner())
    }

    /// GetWorker.
    pub async fn get_worker(&self, name: &str) -> Result<pb::Worker> {
        Ok(self
            .workers()
            .get_worker(pb::GetWorkerRequest {
                name: name.to_owned(),
            })
            .await
            .with_context(|| format!("GetWorker {name}"))?
            .into_inner())
    }

    /// DeleteWorker (ends its process first).
    pub async fn delete_worker(&self, name: &str) -> Result<()> {
        self.workers()
            .delete_worker(pb::DeleteWorkerRequest {
                name: name.to_owned(),
            })
            .await
            .with_context(|| format!("DeleteWorker {name}"))?;
        Ok(())
    }

    /// Opens an Attach stream on worker `name` replaying `replay`; returns once
    /// the server answered with `attached`.
    pub async fn attach(&self, name: &str, replay: pb::replay::Mode) -> Result<Attach> {
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
        tx.send(pb::AttachRequest {
            frame: Some(In::Open(pb::AttachOpen {
                worker: name.to_owned(),
                replay: Some(pb::Replay { mode: Some(replay) }),
                ..Default::default()
            })),
        })
        .await
        .map_err(|_| anyhow!("the Attach request stream closed"))?;
        let mut inbound = self
            .workers()
            .attach(ReceiverStream::new(rx))
            .await
            .with_context(|| format!("Attach {name}"))?
            .into_inner();
        let attached = match inbound.message().await? {
            Some(pb::AttachResponse {
                frame: Some(Out::Attached(attached)),
            }) => attached,
            other => bail!("Attach {name}: expected `attached` first, got {other:?}"),
        };
        Ok(Attach {
            tx,
            inbound,
            attached,
        })
    }
}

/// An open Attach stream.
pub struct Attach {
    tx: mpsc::Sender<pb::AttachRequest>,
    inbound: Streaming<pb::AttachResponse>,
    /// The server's `attached` frame (replay range, worker).
    pub attached: pb::Attached,
}

impl Attach {
    /// Sends input bytes to the worker's PTY.
    pub async fn input(&self, data: Bytes) -> Result<()> {
        self.tx
            .send(pb::AttachRequest {
                frame: Some(In::Input(data)),
            })
            .await
            .map_err(|_| anyhow!("the Attach request stream closed"))
    }

    /// The next frame from the server; `None` when the stream ended.
    pub async fn next(&mut self) -> Result<Option<Out>> {
        match self.inbound.message().await.context("Attach stream")? {
            Some(response) => Ok(response.frame),
            None => Ok(None),
        }
    }

    /// Asks to detach and waits for the server's answer.
    pub async fn detach(mut self) -> Result<()> {
        self.tx
            .send(pb::AttachRequest {
                frame: Some(In::Detach(pb::Detach {})),
            })
            .await
            .map_err(|_| anyhow!("the Attach request stream closed"))?;
        while let Some(frame) = self.next().await? {
            if let Out::Detached(_) = frame {
                return Ok(());
            }
        }
        bail!("the Attach stream ended without `detached`")
    }
}
