//! corrald, the Corral server, as a library: the binary is a thin `main` around
//! [`server::serve`], and the tests start the same server in-process on port 0.
//!
//! ```text
//! main.rs / server.rs   config → tracing → store (migrations) → manager → gRPC
//! api/                  one file per gRPC service: decode, call, encode
//! agent/                agent profiles, activity, transcripts, exports (pure + tasks)
//! manager/              what each RPC does: domain checks, then store and processes
//! domain/               the state machine, names, filters, page tokens (pure)
//! supervisor/           worker actors: PTY, process tree, scrollback ring, cursors
//! worktree.rs           git worktrees of worktree sessions (real `git`, clean env)
//! reaper.rs             the retention task: auto-archive, purge tombstones
//! store/                SeaORM entities and queries, one error type
//! events.rs             the event feed and WatchEvents readers
//! error.rs              the cause enum and its one mapping to tonic::Status
//! guard.rs, auth/       every call: credentials → principal, deadline, decode faults
//! security.rs           tokens, TLS, allowed roots, listener rules, loaded at start-up
//! confinement.rs        allowed roots for work dirs, the terminal command policy
//! ```

#![deny(unsafe_code)]
// No `unwrap`/`expect` outside tests: whatever a client or the OS can make fail is
// mapped to an error (tests may unwrap; `cfg(test)` builds allow it).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod agent;
pub mod api;
pub mod auth;
pub mod clock;
pub mod config;
pub mod confinement;
pub mod domain;
pub mod error;
pub mod events;
pub mod guard;
pub mod listen;
pub mod manager;
pub mod reaper;
pub mod security;
pub mod server;
pub mod store;
pub mod supervisor;
pub mod worktree;

pub use config::Config;
pub use server::{RunningServer, serve, serve_with_clock};
