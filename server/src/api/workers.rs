//! `corral.v1.WorkerService`, including the Attach stream.
//!
//! Attach: the handler reads the opening frame, asks the manager for an
//! [`Attachment`] (which fails with a status before any stream exists), then splits
//! it in two. The response stream, [`AttachOutput`], reads the worker's output
//! straight from its ring whenever hyper polls it (the actor's wake-up reaches the
//! task sending the response directly). A task of its own, the `Pump`, owns the
//! request stream: it handles input, resizes and detach, and queues every other
//! frame (`error`, `update`, `detached`, the final status) on a bounded channel the
//! response stream drains first; a failed send means the client left. The stream
//! ends after the `exit` frame that follows the last output, on detach, when the
//! client goes away, and when the server shuts down (tonic would otherwise wait for
//! open streams forever).
//!
//! Limits of one stream: input frames at most `--max-input-frame-bytes` (larger
//! ends the stream, RESOURCE_EXHAUSTED); input at most
//! `--max-input-bytes-per-second` (a token bucket over the injected clock; a frame
//! over the budget is dropped and answered with an `error` frame,
//! RESOURCE_EXHAUSTED, and the stream goes on); no frame either way for
//! `--stream-idle-timeout`, or open for `--stream-max-duration`, ends it with
//! DEADLINE_EXCEEDED. A request frame that does not decode ends it with
//! INVALID_ARGUMENT.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use corral::pb;
use corral::pb::attach_request::Frame as In;
use corral::pb::attach_response::Frame as Out;
use corral::pb::worker_service_server::WorkerService;
use futures::Stream;
use futures::stream::BoxStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::convert::{activity_update_to_pb, exit_to_pb, profile_to_pb, size_to_pb, worker_to_pb};
use super::sessions::new_worker;
use super::{Api, session_ref, worker_ref};
use crate::domain::limits::{Expiry, StreamDeadlines, TokenBucket};
use crate::domain::names::Ref;
use crate::error::Error;
use crate::guard::client_fault;
use crate::manager::{Attachment, WorkerView};
use crate::supervisor::{Next, ReplayFrom, SignalTarget, Subscription, WindowSize, WorkerHandle};

/// Largest output frame, in bytes.
pub const MAX_OUTPUT_FRAME_BYTES: usize = 32 * 1024;
/// Frames other than output (`error`, `update`, `detached`, the final status)
/// queued per attached client before the Pump waits. Output is not queued: it
/// stays in the worker's ring until the response stream reads it, at most
/// [`corral::codec::STREAM_YIELD_BYTES`] and one frame per poll (see
/// [`AttachOutput`]).
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

    type AttachStream = AttachOutput;

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
        let Attachment {
            subscription,
            handle,
            worker,
            replay_start,
            replay_end,
            activity,
        } = self
            .0
            .manager
            .attach(&session, worker.as_ref(), size, replay)
            .await?;
        let attached_clients = i32::try_from(handle.attached()).unwrap_or(i32::MAX);
        let mut worker_pb = worker_to_pb(&worker);
        worker_pb.attached_clients = attached_clients;
        let attached = Out::Attached(pb::Attached {
            worker: Some(worker_pb),
            replay_start_offset: replay_start as i64,
            replay_end_offset: replay_end as i64,
            attached_clients,
        });
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let (output, sent) = AttachOutput::new(attached, rx, subscription, replay_end);
        let pump = Pump {
            api: self.0.clone(),
            shutdown: self.0.manager.shutdown_token().clone(),
            read_only: open.read_only,
            handle,
            worker,
            sent,
            tx,
        };
        tracing::debug!(worker_id = %pump.worker.model.id, "client attached");
        tokio::spawn(pump.run(activity, inbound));
        Ok(Response::new(output))
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

/// The response stream of one Attach.
///
/// It yields the `attached` frame first. After that, each poll first takes what
/// the Pump queued; a closed queue (the Pump ended) ends the stream. Otherwise it
/// reads the worker's ring after the client's cursor: `output` frames of at most
/// [`MAX_OUTPUT_FRAME_BYTES`] bytes, a `skipped` frame for bytes the ring dropped
/// before this client read them, and, once the run ended and everything before
/// the end was read, the `exit` frame, after which the stream ends.
///
/// Memory per client is bounded without a queue of output: hyper keeps a chunk it
/// polled until the HTTP/2 stream has send capacity, which it lacks while the
/// client's window is used up or h2 holds 400 KiB of the stream's data unsent
/// (hyper's server default), and polls again only then. A client that reads
/// slowly leaves its cursor behind in the ring, where the worker's flow control
/// sees it.
pub struct AttachOutput {
    /// The `attached` frame, until it is sent.
    attached: Option<Out>,
    control: mpsc::Receiver<Result<pb::AttachResponse, Status>>,
    /// The worker's output; `None` once the `exit` frame went out.
    output: Option<BoxStream<'static, Next>>,
    /// Output before this offset is replayed scrollback (`Output.replay`).
    replay_end: u64,
    /// `output` and `skipped` frames sent so far (the Pump's idle deadline).
    sent: Arc<AtomicU64>,
}

impl AttachOutput {
    /// The stream that sends `attached`, then the frames of `control` and the
    /// output of `subscription`; and its count of frames sent, for the Pump.
    fn new(
        attached: Out,
        control: mpsc::Receiver<Result<pb::AttachResponse, Status>>,
        subscription: Subscription,
        replay_end: u64,
    ) -> (AttachOutput, Arc<AtomicU64>) {
        let sent = Arc::new(AtomicU64::new(0));
        let output = futures::stream::unfold(subscription, |mut subscription| async move {
            let next = subscription.next(MAX_OUTPUT_FRAME_BYTES).await;
            Some((next, subscription))
        });
        let stream = AttachOutput {
            attached: Some(attached),
            control,
            output: Some(Box::pin(output)),
            replay_end,
            sent: sent.clone(),
        };
        (stream, sent)
    }
}

impl Stream for AttachOutput {
    type Item = Result<pb::AttachResponse, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(attached) = this.attached.take() {
            return Poll::Ready(Some(frame(attached)));
        }
        match this.control.poll_recv(cx) {
            Poll::Ready(Some(item)) => return Poll::Ready(Some(item)),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        let Some(output) = this.output.as_mut() else {
            // The exit frame went out: nothing follows.
            return Poll::Ready(None);
        };
        let out = match output.as_mut().poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Next::Data { offset, data })) => Out::Output(pb::Output {
                offset: offset as i64,
                replay: offset < this.replay_end,
                data,
            }),
            Poll::Ready(Some(Next::Skipped { from, to })) => Out::Skipped(pb::Skipped {
                from_offset: from as i64,
                to_offset: to as i64,
            }),
            Poll::Ready(Some(Next::Exited(exit))) => {
                this.output = None;
                Out::Exit(exit_to_pb(&exit))
            }
            // `unfold` above never ends.
            Poll::Ready(None) => {
                this.output = None;
                return Poll::Ready(None);
            }
        };
        this.sent.fetch_add(1, Ordering::Relaxed);
        Poll::Ready(Some(frame(out)))
    }
}

/// The task that owns one Attach's request stream.
struct Pump {
    api: Api,
    shutdown: CancellationToken,
    read_only: bool,
    handle: WorkerHandle,
    worker: WorkerView,
    /// Frames the response stream sent (output counts as activity for the idle
    /// deadline).
    sent: Arc<AtomicU64>,
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

    /// Runs until the client detaches or leaves, the response stream ends (the
    /// worker's exit), a deadline passes, or the server shuts down. `activity`:
    /// an agent worker's activity, sent as `update` frames.
    async fn run(
        self,
        mut activity: Option<tokio::sync::watch::Receiver<crate::agent::ActivityState>>,
        mut inbound: Streaming<pb::AttachRequest>,
    ) {
        let worker = self.worker.model.id.clone();
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
        // Output frames sent by the last tick: more since then count as activity.
        let mut sent = 0;
        let mut inbound_open = true;
        loop {
            tokio::select! {
                // Agent workers: activity changes become `update` frames (a
                // `watch`: a slow client skips to the latest value, it never
                // queues old ones).
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
                    let now = clock.now();
                    let total = self.sent.load(Ordering::Relaxed);
                    if total != sent {
                        sent = total;
                        deadlines.touch(now);
                    }
                    if let Some(expiry) = deadlines.expired(now) {
                        let _ = self.tx.try_send(Err(expired(expiry).into()));
                        break;
                    }
                }
                () = self.shutdown.cancelled() => {
                    let _ = self.tx.try_send(Err(Status::unavailable("the server is shutting down")));
                    break;
                }
                // The response stream ended (after the exit frame) or the client left.
                () = self.tx.closed() => break,
                message = inbound.message(), if inbound_open => match message {
                    Ok(Some(request)) => {
                        deadlines.touch(clock.now());
                        if !self.handle(request, bucket.as_mut()).await {
                            break;
                        }
                    }
                    // The client closed its side: output goes on until the end.
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
    async fn handle(&self, request: pb::AttachRequest, bucket: Option<&mut TokenBucket>) -> bool {
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
                match manager.attach_input(&self.handle, &self.worker, data).await {
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
                    Ok(size) => match self.handle.resize(size) {
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
