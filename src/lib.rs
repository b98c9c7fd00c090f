//! The Corral API (`corral.v1`) for Rust: every message, the tonic clients and the
//! tonic server traits, generated from `proto/corral/v1/*.proto` at build time.
//!
//! The `.proto` files are the single source of the API; clients in other languages
//! are generated from the same files (or discovered through the server's gRPC
//! reflection, which serves [`FILE_DESCRIPTOR_SET`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use corral::pb::session_service_client::SessionServiceClient;
//! use corral::pb::ListSessionsRequest;
//!
//! let mut client = SessionServiceClient::connect("http://127.0.0.1:50051").await?;
//! let sessions = client.list_sessions(ListSessionsRequest::default()).await?;
//! println!("{} sessions", sessions.into_inner().sessions.len());
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
// No `unwrap`/`expect` outside tests: whatever a client or the OS can make fail is
// mapped to an error (tests may unwrap; `cfg(test)` builds allow it).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod codec;

/// Generated types of package `corral.v1`.
pub mod pb {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("corral.v1");
}

/// The largest HTTP/2 frame a Corral client should accept, in bytes (1 MiB): set it
/// with `tonic::transport::Endpoint::max_frame_size`.
///
/// HTTP/2's default, 16 KiB (`SETTINGS_MAX_FRAME_SIZE`, RFC 9113 §6.5.2), makes
/// the server split every 32 KiB `output` message of `WorkerService.Attach` into
/// DATA frames of 16 KiB, each its own write on the socket. Accepting larger
/// frames halves those writes: with ten clients of one flood the server used
/// 7–26 % less CPU and the slowest client read faster (`BENCHMARKS.md`,
/// fan-out). It also lets the frames a client has queued leave together in one
/// DATA frame of up to [`codec::STREAM_YIELD_BYTES`]. The bundled CLI and the
/// bench use it; clients in other languages work with the default.
pub const CLIENT_MAX_FRAME_BYTES: u32 = 1 << 20;

/// The encoded `google.protobuf.FileDescriptorSet` of `corral.v1` and the well-known
/// types it imports, for gRPC server reflection and dynamic (JSON) encoding.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("corral_descriptor");
