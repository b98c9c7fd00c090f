//! The two places where the supervisor needs `unsafe`, each a single call whose
//! safety argument is local.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Duplicates a descriptor that `_owner` keeps open (portable-pty exposes its
/// master only as a raw fd). The duplicate shares the open file description.
pub fn dup_raw<O>(raw: RawFd, _owner: &O) -> io::Result<OwnedFd> {
    // SAFETY: `raw` is open and owned by `_owner`, which the caller borrows for the
    // whole call; the borrow ends with the `dup` below.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    borrowed.try_clone_to_owned()
}

/// Registers an owned descriptor with tokio's reactor.
pub fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is a valid open descriptor, closed only when the
    // `AsyncFd` drops it, and its `as_raw_fd` never changes.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)
}
