//! The guard: a tower layer in front of every gRPC service (`Server::layer`), so
//! that no RPC — including ones added later — can skip it. For each call it
//!
//! 1. **authenticates** (see [`crate::auth`]): a missing, malformed or wrong
//!    credential is answered UNAUTHENTICATED with one fixed message, before any
//!    handler runs; the principal goes into the request's extensions;
//! 2. runs the handler **in its own task**, inside the caller's scope
//!    ([`crate::auth::CALLER`]): a call that was accepted runs to completion even if
//!    the client goes away or its deadline passes, so no operation is left half
//!    done by a cancelled future; a panicking handler becomes INTERNAL instead of
//!    tearing down the connection;
//! 3. enforces the **server's deadline** (`--unary-deadline`): a unary call that
//!    has not answered by then — or a streaming call that has not opened — is
//!    answered DEADLINE_EXCEEDED naming the limit (the work still completes);
//! 4. **maps client faults** that tonic reports with server-fault codes: a request
//!    that does not decode (invalid UTF-8 in a string, a truncated field) is
//!    INVALID_ARGUMENT rather than tonic's INTERNAL, and a request larger than
//!    `--max-message-bytes` is RESOURCE_EXHAUSTED naming the limit rather than
//!    OUT_OF_RANGE (gRPC's status-code guide lists both as the right codes). Such
//!    errors are "trailers-only" responses (the status in the headers) without
//!    `grpc-status-details-bin`; Corral's own errors always carry details, so they
//!    are never rewritten.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;
use tonic::{Code, Status};
use tower::{Layer, Service};

use crate::auth::{Authenticator, CALLER};
use crate::error::Error;

/// The header that carries `google.rpc.Status` details; Corral's errors always
/// have it.
const DETAILS_HEADER: &str = "grpc-status-details-bin";

/// What the guard enforces.
#[derive(Clone, Debug)]
pub struct GuardSettings {
    /// Decides who calls (credentials → principal).
    pub authenticator: Authenticator,
    /// `--unary-deadline`.
    pub deadline: Duration,
    /// `--max-message-bytes`, for the message of an oversized request.
    pub max_message_bytes: usize,
}

/// The layer; see the module documentation.
#[derive(Clone, Debug)]
pub struct GuardLayer {
    settings: Arc<GuardSettings>,
}

impl GuardLayer {
    /// A guard enforcing `settings`.
    pub fn new(settings: GuardSettings) -> Self {
        GuardLayer {
            settings: Arc::new(settings),
        }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            settings: self.settings.clone(),
        }
    }
}

/// The service the [`GuardLayer`] wraps around the routes.
#[derive(Clone, Debug)]
pub struct Guard<S> {
    inner: S,
    settings: Arc<GuardSettings>,
}

/// A gRPC response carrying `status` in its headers.
fn status_response(status: Status) -> http::Response<Body> {
    status.into_http()
}

impl<S> Service<http::Request<Body>> for Guard<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // The clone that was driven to readiness serves this call (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let settings = self.settings.clone();
        Box::pin(async move {
            let path = request.uri().path().to_owned();
            let principal =
                settings
                    .authenticator
                    .authenticate(&path, request.headers(), request.extensions());
            let Some(principal) = principal else {
                let peer = request
                    .extensions()
                    .get::<TcpConnectInfo>()
                    .and_then(TcpConnectInfo::remote_addr)
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                tracing::info!(%path, %peer, "unauthenticated call refused");
                return Ok(status_response(Error::Unauthenticated.into()));
            };
            request.extensions_mut().insert(principal.clone());
            let task =
                tokio::spawn(CALLER.scope(principal, async move { inner.call(request).await }));
            match tokio::time::timeout(settings.deadline, task).await {
                Ok(Ok(Ok(response))) => Ok(map_client_faults(response, settings.max_message_bytes)),
                Ok(Ok(Err(err))) => Err(err),
                Ok(Err(join)) => Ok(status_response(
                    Error::Internal(format!("{path}: the handler failed: {join}")).into(),
                )),
                Err(_) => Ok(status_response(
                    Error::DeadlineExceeded {
                        limit: "unary_deadline",
                        value: humantime::format_duration(settings.deadline).to_string(),
                        message: format!(
                            "{path} did not answer within the server's deadline; the server may still complete it"
                        ),
                    }
                    .into(),
                )),
            }
        })
    }
}

/// Rewrites a trailers-only error response that tonic produced for a request it
/// could not decode (see the module documentation).
fn map_client_faults(
    response: http::Response<Body>,
    max_message_bytes: usize,
) -> http::Response<Body> {
    if response.headers().contains_key(DETAILS_HEADER) {
        return response;
    }
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    match client_fault(&status, max_message_bytes) {
        Some(err) => status_response(err.into()),
        None => response,
    }
}

/// The right error for a status tonic raises while reading a client's message, if
/// it is one: INVALID_ARGUMENT for a message that does not decode,
/// RESOURCE_EXHAUSTED for one over `max_message_bytes`. `None` for any other status.
///
/// Used by the guard for unary and server-streaming calls and by Attach for the
/// frames of its request stream.
pub fn client_fault(status: &Status, max_message_bytes: usize) -> Option<Error> {
    let message = status.message();
    match status.code() {
        Code::Internal
            if message.starts_with("failed to decode Protobuf message")
                || message.starts_with("protocol error: received message with") =>
        {
            Some(Error::invalid(
                "request",
                format!(
                    "the message could not be decoded ({message}); string fields must be valid UTF-8"
                ),
            ))
        }
        Code::OutOfRange if message.starts_with("Error, decoded message length too large") => {
            Some(Error::ResourceExhausted {
                limit: "max_message_bytes",
                value: max_message_bytes as u64,
                message: format!("the request message is too large ({message})"),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_failures_are_client_faults() {
        let status = Status::internal(
            "failed to decode Protobuf message: Session.display_name: invalid string value: data is not UTF-8 encoded",
        );
        let err = client_fault(&status, 100).expect("a client fault");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.to_string().contains("Session.display_name"), "{err}");

        let status = Status::out_of_range(
            "Error, decoded message length too large: found 200 bytes, the limit is: 100 bytes",
        );
        let err = client_fault(&status, 100).expect("a client fault");
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert!(err.to_string().contains("max_message_bytes = 100"), "{err}");
    }

    #[test]
    fn other_statuses_are_left_alone() {
        for status in [
            Status::internal("database error: disk full"),
            Status::out_of_range("page 7 of 3"),
            Status::not_found("sessions/x"),
        ] {
            assert!(client_fault(&status, 100).is_none(), "{status:?}");
        }
    }

    #[test]
    fn responses_with_details_are_never_rewritten() {
        let ours: Status = Error::Internal("failed to decode Protobuf message: ours".into()).into();
        let response = status_response(ours);
        let mapped = map_client_faults(response, 100);
        assert_eq!(
            Status::from_header_map(mapped.headers()).unwrap().code(),
            Code::Internal
        );
        let tonics = status_response(Status::internal("failed to decode Protobuf message: x"));
        let mapped = map_client_faults(tonics, 100);
        assert_eq!(
            Status::from_header_map(mapped.headers()).unwrap().code(),
            Code::InvalidArgument
        );
    }
}
