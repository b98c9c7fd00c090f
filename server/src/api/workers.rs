//! `corral.v1.WorkerService`, including the Attach stream.
//!
//! Attach: the handler reads the opening frame, asks the manager for an
//! [`Attachment`] (which fails with a status before any stream exists), then hands
//! the request stream and the attachment to a task that owns both. The task feeds a
//! bounded channel that tonic drains into the response stream; a failed send means
//! the client left. It ends on detach, on the worker's exit (after the last output
//! and the exit frame), when the client goes away, and when the server shuts down
//! (tonic would otherwise wait for open streams forever).
//!
//! Limits of one stream: input frames at most `--max-input-frame-bytes` (larger
//! ends the stream, RESOURCE_EXHAUSTED); input at most
//! `--max-input-bytes-per-second` (a token bucket over the injected clock; a frame
//! over the budget is dropped and answered with an `error` frame,
//! RESOURCE_EXHAUSTED, and the stream goes on); no frame either way for
//! `--stream-idle-timeout`, or open for `--stream-max-duration`, ends it with
//! DEADLINE_EXCEEDED. A request frame that does not decode ends it with
//! INVALID_ARGUMENT.

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
use super::{Api, session_ref, worker_ref};
use crate::domain::limits::{Expiry, StreamDeadlines, TokenBucket};
use crate::domain::names::Ref;
use crate::error::Error;
use crate::guard::client_fault;
use crate::manager::Attachment;
use crate::supervisor::{Next, ReplayFrom, SignalTarget, WindowSize};

/// Largest output frame, in bytes.
pub const MAX_OUTPUT_FRAME_BYTES: usize = 32 * 1024;
/// Frames buffered per attached client before its sender waits (bounded memory:
/// at most this many × 32 KiB per client, plus the batch tonic is encoding, at
/// most [`corral::codec::STREAM_YIELD_BYTES`] and one frame, and the HTTP/2
/// window).
const CLIENT_QUEUE: usize = 8;
/// How often an Attach stream checks its idle and absolute deadlines (at most).
const LIMIT_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

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
        let view = self
            .0
            .manager
            .create_worker(&session, new_worker(worker))
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
        self.0.manager.delete_worker(&session, &worker).await?;
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
        let max_message_bytes = self.0.settings.max_message_bytes;
        let first = inbound.message().await.map_err(|status| {
            client_fault(&status, max_message_bytes).map_or(status, Status::from)
        })?;
        let open = match first {
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

/// The status that ends a stream whose time is up.
fn expired(expiry: Expiry) -> Error {
    let (limit, value, message) = match expiry {
        Expiry::Idle(d) => (
            "stream_idle_timeout",
            d,
            "the Attach stream had no frame either way for too long; attach again to continue",
        ),
        Expiry::Lifetime(d) => (
            "stream_max_duration",
            d,
            "the Attach stream was open for as long as the server allows; attach again to continue",
        ),
    };
    Error::DeadlineExceeded {
        limit,
        value: humantime::format_duration(value).to_string(),
        message: message.into(),
    }
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
        let settings = &self.api.settings;
        let clock = self.api.manager.clock().clone();
        let mut bucket = (settings.max_input_bytes_per_second > 0)
            .then(|| TokenBucket::per_second(settings.max_input_bytes_per_second, clock.now()));
        let mut deadlines = StreamDeadlines::new(
            settings.stream_idle_timeout,
            settings.stream_max_duration,
            clock.now(),
        );
        let limited = [settings.stream_idle_timeout, settings.stream_max_duration]
            .into_iter()
            .filter(|d| !d.is_zero())
            .min();
        let mut tick = tokio::time::interval(
            limited
                .map(|d| (d / 4).clamp(std::time::Duration::from_millis(10), LIMIT_CHECK_INTERVAL))
                .unwrap_or(LIMIT_CHECK_INTERVAL),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                _ = tick.tick(), if limited.is_some() => {
                    if let Some(expiry) = deadlines.expired(clock.now()) {
                        let _ = self.tx.try_send(Err(expired(expiry).into()));
                        break;
                    }
                }
                () = self.shutdown.cancelled() => {
                    let _ = self.tx.try_send(Err(Status::unavailable("the server is shutting down")));
                    break;
                }
                () = self.tx.closed() => break,
                next = attachment.subscription.next(MAX_OUTPUT_FRAME_BYTES) => match next {
                    Next::Data { offset, data } => {
                        deadlines.touch(clock.now());
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
                        deadlines.touch(clock.now());
                        if !self.handle(&attachment, request, bucket.as_mut()).await {
                            break;
                        }
                    }
                    // The client closed its side: keep sending output until the end.
                    Ok(None) => inbound_open = false,
                    Err(status) => {
                        tracing::debug!(worker_id = %worker, %status, "attach request stream failed");
                        // A frame that does not decode is the client's mistake: say so
                        // (if the client is gone, the send goes nowhere).
                        if let Some(fault) = client_fault(&status, settings.max_message_bytes) {
                            let _ = self.tx.try_send(Err(fault.into()));
                        }
                        break;
                    }
                },
            }
        }
        tracing::debug!(worker_id = %worker, "client detached");
    }

    /// Handles one client frame; false ends the stream. `bucket` meters input.
    async fn handle(
        &self,
        attachment: &Attachment,
        request: pb::AttachRequest,
        bucket: Option<&mut TokenBucket>,
    ) -> bool {
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
                if let Some(bucket) = bucket
                    && !bucket.try_take(data.len() as u64, manager.clock().now())
                {
                    let err = Error::ResourceExhausted {
                        limit: "max_input_bytes_per_second",
                        value: bucket.rate(),
                        message: format!(
                            "input frame of {} bytes dropped: this stream sends input faster than the server accepts",
                            data.len()
                        ),
                    };
                    return self.send(frame(refusal(err))).await;
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
