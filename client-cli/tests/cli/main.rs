//! The `corral` binary against a real, in-process `corrald`: real gRPC on an
//! ephemeral port, a real database (SQLite, or PostgreSQL with
//! `CORRAL_TEST_DATABASE_URL`), real PTYs and processes. Each test starts its own
//! server in its own temporary directory and checks what the CLI prints and exits
//! with, and the real effect of each command on the server.
//!
//! One test binary with a module per command group (a binary per file would link
//! the server once per file).

mod attach;
mod connect;
mod events;
mod harness;
mod sessions;
mod workers;
