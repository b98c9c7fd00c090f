//! The one error type of the server and its one mapping to `tonic::Status`.
//!
//! Every failure is a cause in [`Error`]; [`From<Error> for Status`] picks the gRPC
//! code and attaches a `google.rpc.ErrorInfo` (reason, domain `corral.dev`, metadata)
//! so that clients can branch on the reason without parsing messages. Client
//! mistakes never map to INTERNAL; causes that are the server's own fault are
//! logged with their detail when converted.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::filter::FilterError;
use crate::domain::names::Invalid;
use crate::domain::state::{Refused, State};

/// The `google.rpc.ErrorInfo.domain` of every error Corral returns.
pub const ERROR_DOMAIN: &str = "corral.dev";

/// A cause of failure, with what a person needs to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed field → INVALID_ARGUMENT.
    #[error("invalid {0}")]
    Invalid(#[from] Invalid),

    /// A filter that does not parse → INVALID_ARGUMENT.
    #[error("invalid {0}")]
    Filter(#[from] FilterError),

    /// No such resource → NOT_FOUND.
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },

    /// A unique name is taken → ALREADY_EXISTS.
    #[error("{kind} {name:?} already exists{detail}")]
    AlreadyExists {
        kind: &'static str,
        name: String,
        detail: String,
    },

    /// The state machine refuses the action → FAILED_PRECONDITION.
    #[error("session {session:?}: {refused}")]
    Refused { session: String, refused: Refused },

    /// Another precondition does not hold → FAILED_PRECONDITION.
    #[error("{message}")]
    FailedPrecondition {
        reason: &'static str,
        message: String,
    },

    /// A concurrent change won (stale etag or version) → ABORTED.
    #[error("{message}")]
    Aborted { message: String },

    /// Outside what the caller may touch → PERMISSION_DENIED.
    #[error("{message}")]
    PermissionDenied { message: String },

    /// A configured limit was reached → RESOURCE_EXHAUSTED.
    #[error("{message} (limit {limit} = {value})")]
    ResourceExhausted {
        limit: &'static str,
        value: u64,
        message: String,
    },

    /// No valid credentials → UNAUTHENTICATED. The message is always
    /// [`crate::auth::UNAUTHENTICATED_MESSAGE`]: it never says what was wrong.
    #[error("{}", crate::auth::UNAUTHENTICATED_MESSAGE)]
    Unauthenticated,

    /// A configured time limit ran out → DEADLINE_EXCEEDED.
    #[error("{message} (limit {limit} = {value})")]
    DeadlineExceeded {
        limit: &'static str,
        /// The limit, e.g. `60s`.
        value: String,
        message: String,
    },

    /// A position past what is kept (e.g. events already purged) → OUT_OF_RANGE.
    #[error("{message}")]
    OutOfRange {
        reason: &'static str,
        message: String,
    },

    /// The server is shutting down → UNAVAILABLE.
    #[error("{0}")]
    Unavailable(String),

    /// The database failed → INTERNAL (UNAVAILABLE when it cannot be reached).
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),

    /// A bug or an unexpected OS failure → INTERNAL.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// NOT_FOUND for a session.
    pub fn session_not_found(name: impl Into<String>) -> Self {
        Error::NotFound {
            kind: "session",
            name: name.into(),
        }
    }

    /// NOT_FOUND for a worker.
    pub fn worker_not_found(name: impl Into<String>) -> Self {
        Error::NotFound {
            kind: "worker",
            name: name.into(),
        }
    }

    /// INVALID_ARGUMENT on `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid(Invalid::new(field, reason))
    }

    /// FAILED_PRECONDITION with a machine-readable `reason` (e.g. `WORKER_NOT_RUNNING`).
    pub fn precondition(reason: &'static str, message: impl Into<String>) -> Self {
        Error::FailedPrecondition {
            reason,
            message: message.into(),
        }
    }

    /// The gRPC code of this cause.
    pub fn code(&self) -> Code {
        match self {
            Error::Invalid(_) | Error::Filter(_) => Code::InvalidArgument,
            Error::NotFound { .. } => Code::NotFound,
            Error::AlreadyExists { .. } => Code::AlreadyExists,
            Error::Refused { .. } | Error::FailedPrecondition { .. } => Code::FailedPrecondition,
            Error::Aborted { .. } => Code::Aborted,
            Error::PermissionDenied { .. } => Code::PermissionDenied,
            Error::ResourceExhausted { .. } => Code::ResourceExhausted,
            Error::Unauthenticated => Code::Unauthenticated,
            Error::DeadlineExceeded { .. } => Code::DeadlineExceeded,
            Error::OutOfRange { .. } => Code::OutOfRange,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Database(err) if is_connection_error(err) => Code::Unavailable,
            Error::Database(_) | Error::Internal(_) => Code::Internal,
        }
    }

    /// The `ErrorInfo.reason`: an UPPER_SNAKE_CASE constant.
    fn reason(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "INVALID_ARGUMENT",
            Error::Filter(_) => "INVALID_FILTER",
            Error::NotFound {
                kind: "session", ..
            } => "SESSION_NOT_FOUND",
            Error::NotFound { kind: "worker", .. } => "WORKER_NOT_FOUND",
            Error::NotFound { .. } => "NOT_FOUND",
            Error::AlreadyExists { .. } => "ALREADY_EXISTS",
            Error::Refused { .. } => "ACTION_NOT_ALLOWED",
            Error::FailedPrecondition { reason, .. } => reason,
            Error::Aborted { .. } => "CONCURRENT_MODIFICATION",
            Error::PermissionDenied { .. } => "PERMISSION_DENIED",
            Error::ResourceExhausted { .. } => "LIMIT_EXCEEDED",
            Error::Unauthenticated => "UNAUTHENTICATED",
            Error::DeadlineExceeded { .. } => "DEADLINE_EXCEEDED",
            Error::OutOfRange { reason, .. } => reason,
            Error::Unavailable(_) => "UNAVAILABLE",
            Error::Database(_) => "DATABASE_ERROR",
            Error::Internal(_) => "INTERNAL",
        }
    }

    fn metadata(&self) -> HashMap<String, String> {
        let mut metadata = HashMap::new();
        match self {
            Error::Invalid(invalid) => {
                metadata.insert("field".into(), invalid.field.clone());
            }
            Error::NotFound { name, .. } | Error::AlreadyExists { name, .. } => {
                metadata.insert("name".into(), name.clone());
            }
            Error::Refused { session, refused } => {
                metadata.insert("session".into(), session.clone());
                metadata.insert("state".into(), refused.state.to_string());
                metadata.insert("action".into(), refused.action.to_string());
                let allowed: Vec<&str> = refused.allowed.iter().map(|a| a.as_str()).collect();
                metadata.insert("allowed_actions".into(), allowed.join(","));
            }
            Error::ResourceExhausted { limit, value, .. } => {
                metadata.insert("limit".into(), (*limit).into());
                metadata.insert("value".into(), value.to_string());
            }
            Error::DeadlineExceeded { limit, value, .. } => {
                metadata.insert("limit".into(), (*limit).into());
                metadata.insert("value".into(), value.clone());
            }
            _ => {}
        }
        metadata
    }
}

/// A refusal by the state machine, for the session called `session`.
pub fn refused(session: impl Into<String>, refused: Refused) -> Error {
    Error::Refused {
        session: session.into(),
        refused,
    }
}

/// A refusal because the session's state forbids something that is not an action
/// (input, messages, workers), naming the state.
pub fn not_in_state(
    reason: &'static str,
    session: &str,
    state: State,
    what: &str,
    need: &str,
) -> Error {
    Error::precondition(
        reason,
        format!("session {session:?} is {state}: {what} {need}"),
    )
}

fn is_connection_error(err: &sea_orm::DbErr) -> bool {
    matches!(
        err,
        sea_orm::DbErr::Conn(_) | sea_orm::DbErr::ConnectionAcquire(_)
    )
}

/// Longest status message, in bytes. Messages quote what the client sent (a name,
/// a path, a filter), and the client may have sent megabytes: the message travels
/// in an HTTP/2 header (`grpc-message`), and clients refuse responses whose headers
/// exceed a few KiB.
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// Longest `ErrorInfo.metadata` value, in bytes (same reason).
pub const MAX_METADATA_BYTES: usize = 256;

/// `text`, cut at a character boundary to at most `max` bytes plus a note of how
/// long it was.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        let code = err.code();
        if matches!(code, Code::Internal | Code::Unavailable) {
            tracing::error!(error = %err, "request failed");
        }
        let metadata = err
            .metadata()
            .into_iter()
            .map(|(key, value)| (key, bounded(&value, MAX_METADATA_BYTES)))
            .collect::<HashMap<_, _>>();
        let details = ErrorDetails::with_error_info(err.reason(), ERROR_DOMAIN, metadata);
        Status::with_error_details(code, bounded(&err.to_string(), MAX_MESSAGE_BYTES), details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::state::{Action, transition};

    #[test]
    fn client_mistakes_never_map_to_internal() {
        let cases: Vec<(Error, Code)> = vec![
            (Error::invalid("name", "bad"), Code::InvalidArgument),
            (Error::session_not_found("sessions/x"), Code::NotFound),
            (
                Error::AlreadyExists {
                    kind: "worker",
                    name: "logs".into(),
                    detail: String::new(),
                },
                Code::AlreadyExists,
            ),
            (
                refused(
                    "demo",
                    transition(State::Stopped, Action::Pause).unwrap_err(),
                ),
                Code::FailedPrecondition,
            ),
            (
                Error::Aborted {
                    message: "stale".into(),
                },
                Code::Aborted,
            ),
            (
                Error::ResourceExhausted {
                    limit: "max_input_frame_bytes",
                    value: 65536,
                    message: "input frame of 70000 bytes".into(),
                },
                Code::ResourceExhausted,
            ),
            (Error::Unauthenticated, Code::Unauthenticated),
            (
                Error::DeadlineExceeded {
                    limit: "stream_idle_timeout",
                    value: "1h".into(),
                    message: "idle".into(),
                },
                Code::DeadlineExceeded,
            ),
        ];
        for (err, want) in cases {
            let status = Status::from(err);
            assert_eq!(status.code(), want);
            let info = status
                .get_details_error_info()
                .expect("every status carries ErrorInfo");
            assert_eq!(info.domain, ERROR_DOMAIN);
        }
    }

    #[test]
    fn messages_quoting_huge_input_are_bounded() {
        let huge = "é".repeat(100_000);
        let status = Status::from(Error::invalid("name", huge.clone()));
        assert!(
            status.message().len() <= MAX_MESSAGE_BYTES + 40,
            "{}",
            status.message().len()
        );
        assert!(
            status.message().ends_with(" bytes in all)"),
            "{}",
            status.message()
        );
        let status = Status::from(Error::session_not_found(huge));
        let info = status.get_details_error_info().unwrap();
        assert!(info.metadata["name"].len() <= MAX_METADATA_BYTES + 40);
        assert_eq!(bounded("short", 10), "short");
    }

    #[test]
    fn refusal_metadata_lists_allowed_actions() {
        let status = Status::from(refused(
            "demo",
            transition(State::Stopped, Action::Pause).unwrap_err(),
        ));
        let info = status.get_details_error_info().unwrap();
        assert_eq!(info.reason, "ACTION_NOT_ALLOWED");
        assert_eq!(info.metadata["state"], "STOPPED");
        assert_eq!(info.metadata["allowed_actions"], "resume,archive,delete");
        assert!(
            status
                .message()
                .contains("allowed actions: resume, archive, delete")
        );
    }
}
