//! Agent workers: what makes an agent CLI in a PTY more than a terminal.
//!
//! ```text
//! profile.rs     server-side recipes (command, start/resume flags, transcript, rules)
//! activity.rs    WORKING / WAITING_FOR_INPUT / IDLE / UNKNOWN and their evidence
//! screen.rs      the VT screen of a run and the profile's screen rules (a task)
//! transcript.rs  parsing Claude Code and Codex transcripts (pure)
//! tail.rs        following a transcript file as it grows
//! export.rs      JSON / CSV / Markdown renderings of a conversation (pure)
//! runtime.rs     live state shared by the manager and the Attach streams
//! ```
//!
//! Parsing, rule matching and rendering are pure and tested without processes;
//! the orchestration (spawning, verified resume, checkpoints, crash restarts,
//! messages) is the manager's (`manager/agents.rs`, `manager/conversation.rs`,
//! `manager/checkpoints.rs`).

pub mod activity;
pub mod export;
pub mod profile;
pub mod runtime;
pub mod screen;
pub mod tail;
pub mod transcript;

pub use activity::{Activity, ActivityState, Evidence};
pub use profile::{Launch, Profile, Profiles};
pub use runtime::{AgentRuntime, AgentSettings};
