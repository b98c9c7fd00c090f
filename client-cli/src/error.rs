//! The CLI's error type and its mapping to messages and exit codes.
//!
//! | error                          | printed as                         | exit |
//! |--------------------------------|------------------------------------|------|
//! | an RPC failed                  | `error: NOT_FOUND: <message>`      | 1    |
//! | a usage error found after clap | `error: <message>`                 | 2    |
//! | the server cannot be reached   | `error: cannot reach ... at <url>` | 69   |
//! | local I/O (files, terminal)    | `error: <context>: <os error>`     | 1    |
//!
//! Clap reports its own usage errors (exit 2) before any of this runs. A broken pipe
//! on stdout (e.g. `corral session list | head -1`) is not an error: the process
//! exits quietly.

use std::io;

use tonic::{Code, Status};

/// Exit code of a failed RPC or local failure.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code of a usage error (same as clap's).
pub const EXIT_USAGE: i32 = 2;
/// Exit code when the server cannot be reached (`EX_UNAVAILABLE` of sysexits.h).
pub const EXIT_UNAVAILABLE: i32 = 69;

/// Everything that can make a command fail.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered with an error status.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Rpc(#[from] Status),
    /// No connection could be made to the server.
    #[error("cannot reach the corral server at {address}: {reason}")]
    Unreachable {
        /// The URL that was tried.
        address: String,
        /// Why, with the whole source chain.
        reason: String,
    },
    /// The arguments are wrong in a way clap cannot check.
    #[error("{0}")]
    Usage(String),
    /// Writing the output failed (stdout closed, disk full, ...).
    #[error("writing output: {0}")]
    Output(#[from] io::Error),
    /// A local operation other than writing output failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. `creating /tmp/x.md`.
        context: String,
        /// The OS error.
        source: io::Error,
    },
    /// Anything else, in plain words.
    #[error("{0}")]
    Other(String),
}

impl CliError {
    /// A local I/O failure with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) => EXIT_USAGE,
            Self::Unreachable { .. } => EXIT_UNAVAILABLE,
            Self::Rpc(_) | Self::Output(_) | Self::Io { .. } | Self::Other(_) => EXIT_FAILURE,
        }
    }

    /// True for a write to a closed pipe: the reader went away, which is how
    /// `| head` ends a pipeline, so nothing is reported.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Self::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// An error and every `source()` under it, joined with `: `.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Transport errors often repeat their cause in their own message.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The canonical name of a gRPC status code, as in `google.rpc.Code`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_errors_print_the_code_name_and_message() {
        let err = CliError::from(Status::failed_precondition(
            "session \"demo\" is STOPPED; allowed actions: resume, archive, delete",
        ));
        assert_eq!(
            err.to_string(),
            "FAILED_PRECONDITION: session \"demo\" is STOPPED; allowed actions: resume, archive, delete"
        );
        assert_eq!(err.exit_code(), EXIT_FAILURE);
    }

    #[test]
    fn exit_codes() {
        let unreachable = CliError::Unreachable {
            address: "http://127.0.0.1:1".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(unreachable.exit_code(), EXIT_UNAVAILABLE);
        assert!(unreachable.to_string().contains("http://127.0.0.1:1"));
        assert_eq!(CliError::Usage("x".into()).exit_code(), EXIT_USAGE);
        let pipe = CliError::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(pipe.is_broken_pipe());
    }

    #[test]
    fn every_code_has_its_canonical_name() {
        assert_eq!(code_name(Code::from_i32(5)), "NOT_FOUND");
        assert_eq!(code_name(Code::from_i32(16)), "UNAUTHENTICATED");
    }
}
