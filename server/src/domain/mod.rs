//! The rules of Corral, free of I/O: the session state machine, resource names,
//! labels, filters and page tokens. Everything here is tested exhaustively with
//! plain unit tests; the manager consults it before touching the store or a process.

pub mod filter;
pub mod limits;
pub mod names;
pub mod page_token;
pub mod state;
