//! `corral.v1.WorkerService`, including the Attach stream.
//!
//! Attach: the handler reads the opening frame, asks the manager for an
//! [`Attachment`] (which fails with a status before any stream exists), then hands
//! the request stream and the attachment to a task that owns both. The task feeds a
//! bounded channel that tonic drains into the response stream; a failed send means
//! the client left. It ends on detach, on the worker's exit (after the last output
//! and the exit frame), when the client goes away, and when the server shuts down
//! (tonic would otherwise wait for open streams forever).

use corral::pb;
use corral::pb::attach_request::Frame as In;
use corral::pb::attach_response::Frame as Out;
use corral::pb::worker_service_server::WorkerService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::convert::{activity_update_to_pb, exit_to_pb, profile_to_pb, size_to_pb, worker_to_pb};
use super::sessions::new_worker;
use super::{Api, run_detached, session_ref, worker_ref};
use crate::domain::names::Ref;
use crate::error::Error;
use crate::manager::Attachment;
use crate::supervisor::{Next, ReplayFrom, SignalTarget, WindowSize};

/// Largest output frame, in bytes.
pub const MAX_OUTPUT_FRAME_BYTES: usize = 32 * 1024;
/// Frames buffered per attached client before its sender waits (bounded memory:
/// at most this many × 32 KiB per client, plus the HTTP/2 window).
const CLIENT_QUEUE: usize = 8;

/// The WorkerService handlers.
#[derive(Clone, Debug)]
pub struct WorkerApi(pub Api);

impl WorkerApi {
    fn size(
        &self,
        field: &str,
        size: Option<pb::WindowSize>,
    ) -> Result<Option<WindowSize>, Status> {
        match size {
            None => Ok(None),
            Some(size) => Ok(Some(
                self.0.manager.check_size(field, size.rows, size.cols)?,
            )),
        }
    }
}

fn signal_of(signal: i32) -> Result<nix::sys::signal::Signal, Status> {
    if signal == pb::Signal::Unspecified as i32 {
        return Err(Error::invalid("signal", "is required, e.g. SIGINT").into());
    }
    nix::sys::signal::Signal::try_from(signal).map_err(|_| {
        Error::invalid(
            "signal",
            format!("{signal} is not a signal this server sends"),
        )
        .into()
    })
}

fn replay_of(replay: Option<pb::Replay>) -> Result<ReplayFrom, Status> {
    use pb::replay::Mode;
    match replay.and_then(|r| r.mode) {
        None => Ok(ReplayFrom::All),
        Some(Mode::None(_)) => Ok(ReplayFrom::None),
        Some(Mode::FromOffset(offset)) => u64::try_from(offset)
            .map(ReplayFrom::Offset)
            .map_err(|_| Error::invalid("open.replay.from_offset", "must not be negative").into()),
        Some(Mode::LastBytes(n)) => u64::try_from(n)
            .map(ReplayFrom::LastBytes)
            .map_err(|_| Error::invalid("open.replay.last_bytes", "must not be negative").into()),
    }
}

#[tonic::async_trait]
impl WorkerService for WorkerApi {
    async fn create_worker(
        &self,
        request: Request<pb::CreateWorkerRequest>,
    ) -> Result<Response<pb::Worker>, Status> {
        let request = request.into_inner();
        let session = session_ref("parent", &request.parent)?;
        let worker = request
            .worker
            .ok_or_else(|| Status::from(Error::invalid("worker", "is required")))?;
        let manager = self.0.manager.clone();
        let view =
            run_detached(async move { manager.create_worker(&session, new_worker(worker)).await })
                .await?;
        Ok(Response::new(worker_to_pb(&view)))
    }

    async fn get_worker(
        &self,
        request: Request<pb::GetWorkerRequest>,
    ) -> Result<Response<pb::Worker>, Status> {
        let (session, worker) = worker_ref("name", &request.into_inner().name)?;
        let view = self.0.manager.get_worker(&session, &worker).await?;
        Ok(Response::new(worker_to_pb(&view)))
    }

    async fn list_workers(
        &self,
        request: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let request = request.into_inner();
        let session = session_ref("parent", &request.parent)?;
        let (views, next) = self
            .0
            .manager
            .list_workers(&session, request.page_size, &request.page_token)
            .await?;
        Ok(Response::new(pb::ListWorkersResponse {
            workers: views.iter().map(worker_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn delete_worker(
        &self,
        request: Request<pb::DeleteWorkerRequest>,
    ) -> Result<Response<pb::DeleteWorkerResponse>, Status> {
        let (session, worker) = worker_ref("name", &request.into_inner().name)?;
        let manager = self.0.manager.clone();
        run_detached(async move { manager.delete_worker(&session, &worker).await }).await?;
        Ok(Response::new(pb::DeleteWorkerResponse {}))
    }

    async fn resize_worker(
        &self,
        request: Request<pb::ResizeWorkerRequest>,
    ) -> Result<Response<pb::Worker>, Status> {
        let request = request.into_inner();
        let (session, worker) = worker_ref("name", &request.name)?;
        let size = self
            .size("size", request.size)?
            .ok_or_else(|| Status::from(Error::invalid("size", "is required")))?;
        let view = self
            .0
            .manager
            .resize_worker(&session, &worker, size)
            .await?;
        Ok(Response::new(worker_to_pb(&view)))
    }

    async fn signal_worker(
        &self,
        request: Request<pb::SignalWorkerRequest>,
    ) -> Result<Response<pb::Worker>, Status> {
        let request = request.into_inner();
        let (session, worker) = worker_ref("name", &request.name)?;
        let signal = signal_of(request.signal)?;
        use pb::signal_worker_request::Target;
        let target = match Target::try_from(request.target) {
            Ok(Target::Unspecified | Target::Foreground) => SignalTarget::Foreground,
            Ok(Target::ProcessGroup) => SignalTarget::ProcessGroup,
            Ok(Target::Session) => SignalTarget::Session,
            Err(_) => {
                return Err(
                    Error::invalid("target", format!("unknown target {}", request.target)).into(),
                );
            }
        };
        let view = self
            .0
            .manager
            .signal_worker(&session, &worker, signal, target)
            .await?;
        Ok(Response::new(worker_to_pb(&view)))
    }

    type AttachStream = ReceiverStream<Result<pb::AttachResponse, Status>>;

    async fn attach(
        &self,
        request: Request<Streaming<pb::AttachRequest>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let mut inbound = request.into_inner();
        let open = match inbound.message().await? {
            Some(pb::AttachRequest {
                frame: Some(In::Open(open)),
            }) => open,
            Some(_) => {
                return Err(
                    Error::invalid("frame", "the first frame of Attach must be `open`").into(),
                );
            }
            None => {
                return Err(
                    Error::invalid("frame", "the stream ended before the `open` frame").into(),
                );
            }
        };
        let (session, worker): (Ref, Option<Ref>) = if open.worker.contains("/workers/") {
            let (s, w) = worker_ref("open.worker", &open.worker)?;
            (s, Some(w))
        } else {
            (session_ref("open.worker", &open.worker)?, None)
        };
        let size = self.size("open.size", open.size)?;
        let replay = replay_of(open.replay)?;
        let attachment = self
            .0
            .manager
            .attach(&session, worker.as_ref(), size, replay)
            .await?;
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let pump = Pump {
            api: self.0.clone(),
            shutdown: self.0.manager.shutdown_token().clone(),
            read_only: open.read_only,
            tx,
        };
        tokio::spawn(pump.run(attachment, inbound));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_agent_profiles(
        &self,
        _request: Request<pb::ListAgentProfilesRequest>,
    ) -> Result<Response<pb::ListAgentProfilesResponse>, Status> {
        let profiles = &self.0.manager.agents().profiles;
        Ok(Response::new(pb::ListAgentProfilesResponse {
            profiles: profiles.iter().map(|p| profile_to_pb(p)).collect(),
        }))
    }
}

/// The task that owns one Attach stream.
struct Pump {
    api: Api,
    shutdown: CancellationToken,
    read_only: bool,
    tx: mpsc::Sender<Result<pb::AttachResponse, Status>>,
}

fn frame(frame: Out) -> Result<pb::AttachResponse, Status> {
    Ok(pb::AttachResponse { frame: Some(frame) })
}

fn refusal(err: Error) -> Out {
    let status = Status::from(err);
    Out::Error(pb::AttachError {
        code: status.code() as i32,
        message: status.message().to_owned(),
    })
}

impl Pump {
    /// Sends one frame; false when the client is gone or the server shuts down.
    async fn send(&self, item: Result<pb::AttachResponse, Status>) -> bool {
        tokio::select! {
            sent = self.tx.send(item) => sent.is_ok(),
            () = self.shutdown.cancelled() => false,
        }
    }

    async fn run(self, mut attachment: Attachment, mut inbound: Streaming<pb::AttachRequest>) {
        let worker = attachment.worker.model.id.clone();
        let replay_end = attachment.replay_end;
        let mut worker_pb = worker_to_pb(&attachment.worker);
        worker_pb.attached_clients =
            i32::try_from(attachment.handle.attached()).unwrap_or(i32::MAX);
        let attached = Out::Attached(pb::Attached {
            worker: Some(worker_pb),
            replay_start_offset: attachment.replay_start as i64,
            replay_end_offset: replay_end as i64,
            attached_clients: i32::try_from(attachment.handle.attached()).unwrap_or(i32::MAX),
        });
        if !self.send(frame(attached)).await {
            return;
        }
        tracing::debug!(worker_id = %worker, "client attached");
        let mut inbound_open = true;
        // Agent workers: activity changes become `update` frames (a `watch`: a
        // slow client skips to the latest value, it never queues old ones).
        let mut activity = attachment.activity.take();
        loop {
            tokio::select! {
                changed = async {
                    match activity.as_mut() {
                        Some(receiver) => receiver.changed().await,
                        None => std::future::pending().await,
                    }
                } => {
                    match changed {
                        Ok(()) => {
                            let update = activity
                                .as_mut()
                                .map(|receiver| activity_update_to_pb(&receiver.borrow_and_update()));
                            if let Some(update) = update
                                && !self.send(frame(Out::Update(update))).await
                            {
                                break;
                            }
                        }
                        Err(_) => activity = None,
                    }
                }
                () = self.shutdown.cancelled() => {
                    let _ = self.tx.try_send(Err(Status::unavailable("the server is shutting down")));
                    break;
                }
                () = self.tx.closed() => break,
                next = attachment.subscription.next(MAX_OUTPUT_FRAME_BYTES) => match next {
                    Next::Data { offset, data } => {
                        let output = Out::Output(pb::Output {
                            offset: offset as i64,
                            replay: offset < replay_end,
                            data,
                        });
                        if !self.send(frame(output)).await {
                            break;
                        }
                    }
                    Next::Skipped { from, to } => {
                        let skipped = Out::Skipped(pb::Skipped { from_offset: from as i64, to_offset: to as i64 });
                        if !self.send(frame(skipped)).await {
                            break;
                        }
                    }
                    Next::Exited(exit) => {
                        self.send(frame(Out::Exit(exit_to_pb(&exit)))).await;
                        break;
                    }
                },
                message = inbound.message(), if inbound_open => match message {
                    Ok(Some(request)) => {
                        if !self.handle(&attachment, request).await {
                            break;
                        }
                    }
                    // The client closed its side: keep sending output until the end.
                    Ok(None) => inbound_open = false,
                    Err(status) => {
                        tracing::debug!(worker_id = %worker, %status, "attach request stream failed");
                        break;
                    }
                },
            }
        }
        tracing::debug!(worker_id = %worker, "client detached");
    }

    /// Handles one client frame; false ends the stream.
    async fn handle(&self, attachment: &Attachment, request: pb::AttachRequest) -> bool {
        let manager = &self.api.manager;
        match request.frame {
            Some(In::Input(data)) => {
                let limit = self.api.settings.max_input_frame_bytes;
                if data.len() > limit {
                    let err = Error::ResourceExhausted {
                        limit: "max_input_frame_bytes",
                        value: limit as u64,
                        message: format!("input frame of {} bytes", data.len()),
                    };
                    self.send(Err(err.into())).await;
                    return false;
                }
                if self.read_only {
                    return self
                        .send(frame(refusal(Error::precondition(
                            "READ_ONLY",
                            "this client attached read-only: input is refused",
                        ))))
                        .await;
                }
                match manager.attach_input(attachment, data).await {
                    Ok(()) => true,
                    Err(err) => self.send(frame(refusal(err))).await,
                }
            }
            Some(In::Resize(size)) => {
                if self.read_only {
                    return self
                        .send(frame(refusal(Error::precondition(
                            "READ_ONLY",
                            "this client attached read-only: resize is refused",
                        ))))
                        .await;
                }
                match manager.check_size("resize", size.rows, size.cols) {
                    Ok(size) => match attachment.handle.resize(size) {
                        Ok(()) => {
                            let update = Out::Update(pb::WorkerUpdate {
                                size: Some(size_to_pb(size)),
                                ..Default::default()
                            });
                            self.send(frame(update)).await
                        }
                        Err(err) => {
                            self.send(frame(refusal(Error::Internal(format!(
                                "TIOCSWINSZ: {err}"
                            )))))
                            .await
                        }
                    },
                    Err(err) => self.send(frame(refusal(err))).await,
                }
            }
            Some(In::Detach(_)) => {
                self.send(frame(Out::Detached(pb::Detach {}))).await;
                false
            }
            Some(In::Open(_)) => {
                self.send(frame(refusal(Error::invalid(
                    "frame",
                    "the stream is already open",
                ))))
                .await
            }
            None => {
                self.send(frame(refusal(Error::invalid("frame", "empty frame"))))
                    .await
            }
        }
    }
}
