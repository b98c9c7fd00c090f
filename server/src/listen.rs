//! Listening sockets: TCP, or a Unix socket that only the server's user can use.
//!
//! The Unix socket is bound under a temporary name in the same directory, given
//! mode 0600, and only then renamed into place: at no moment does a socket with
//! looser permissions exist at the configured path (binding honours the umask,
//! and a `chmod` after binding would leave a window). A stale socket left by a
//! previous run is replaced; a path where another server answers, or that is not a
//! socket, is refused.

use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UnixListener};

use crate::config::ListenAddr;
use crate::error::{Error, Result};

/// Permissions of the Unix socket: read and write for the owner only.
pub const SOCKET_MODE: u32 = 0o600;

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// The listener and its path (removed at shutdown).
    Unix(UnixListener, PathBuf),
}

/// The `google.rpc.ErrorInfo` reason of an address the server cannot listen on.
pub const LISTEN_FAILED: &str = "LISTEN_FAILED";

/// Binds `addr`.
///
/// Errors: FAILED_PRECONDITION ([`LISTEN_FAILED`]; the message names the
/// address, the OS's reason and what the operator can do) when the address is in
/// use (another server answers on a socket path too), is not an address of this
/// machine, needs a privilege the server's user lacks, or is a path that is not a
/// socket; INTERNAL for any other failure of the OS.
pub async fn bind(addr: &ListenAddr) -> Result<Listener> {
    match addr {
        ListenAddr::Tcp(addr) => TcpListener::bind(addr)
            .await
            .map(Listener::Tcp)
            .map_err(|e| cannot_listen(addr, &e)),
        ListenAddr::Unix(path) => {
            let path = path.clone();
            let std_listener = tokio::task::spawn_blocking({
                let path = path.clone();
                move || bind_unix(&path)
            })
            .await
            .map_err(|e| Error::Internal(format!("binding unix:{}: {e}", path.display())))?
            .map_err(|e| cannot_listen(&format!("unix:{}", path.display()), &e))?;
            let listener = UnixListener::from_std(std_listener)
                .map_err(|e| Error::Internal(format!("unix:{}: {e}", path.display())))?;
            Ok(Listener::Unix(listener, path))
        }
    }
}

impl Listener {
    /// The TCP address with its real port, or `None` for a Unix socket.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(listener) => listener.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }

    /// The Unix socket's path, or `None` for a TCP listener.
    pub fn unix_path(&self) -> Option<&Path> {
        match self {
            Listener::Tcp(_) => None,
            Listener::Unix(_, path) => Some(path),
        }
    }
}

/// The error for `addr` that the OS refused with `err`: what the operator can do
/// when it is theirs to fix, INTERNAL otherwise.
fn cannot_listen(addr: &dyn std::fmt::Display, err: &std::io::Error) -> Error {
    use std::io::ErrorKind;
    let hint = match err.kind() {
        ErrorKind::AddrInUse => {
            "is another corrald running? Stop it, or give this one another address \
             with --listen (or CORRAL_LISTEN)"
        }
        ErrorKind::AddrNotAvailable => {
            "no interface of this machine has that address; give --listen (or \
             CORRAL_LISTEN) one of its addresses, e.g. 127.0.0.1:50051"
        }
        ErrorKind::PermissionDenied => {
            "the server's user may not listen there (ports below 1024 need \
             CAP_NET_BIND_SERVICE; a socket's directory must be writable); give \
             --listen (or CORRAL_LISTEN) another address"
        }
        ErrorKind::AlreadyExists => {
            "move that file away, or give --listen (or CORRAL_LISTEN) another path"
        }
        _ => return Error::Internal(format!("cannot listen on {addr}: {err}")),
    };
    Error::precondition(
        LISTEN_FAILED,
        format!("cannot listen on {addr}: {err}: {hint}"),
    )
}

fn bind_unix(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::io::{Error, ErrorKind};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                "the path exists and is not a socket",
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::new(
                ErrorKind::AddrInUse,
                "another server is listening on it",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let name = path
        .file_name()
        .ok_or_else(|| Error::new(ErrorKind::InvalidInput, "the path has no file name"))?;
    let temporary = path.with_file_name(format!(
        ".{}.{}.binding",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&temporary);
    let listener = std::os::unix::net::UnixListener::bind(&temporary)?;
    let placed = std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(SOCKET_MODE))
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(err) = placed {
        let _ = std::fs::remove_file(&temporary);
        return Err(err);
    }
    listener.set_nonblocking(true)?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unix_sockets_are_private_and_not_stolen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corral.sock");
        let addr = ListenAddr::Unix(path.clone());
        let listener = bind(&addr).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, SOCKET_MODE);
        assert!(
            bind(&addr)
                .await
                .unwrap_err()
                .to_string()
                .contains("another server")
        );
        drop(listener);
        // The stale socket of a server that is gone is replaced.
        let again = bind(&addr).await.unwrap();
        assert!(again.tcp_addr().is_none());

        // A path that is not a socket is the operator's to fix, and left alone.
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = bind(&ListenAddr::Unix(file.clone())).await.unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
        assert_eq!(std::fs::read_to_string(file).unwrap(), "x");
    }

    #[tokio::test]
    async fn a_tcp_address_in_use_says_what_to_do() {
        let taken = bind(&ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 0))))
            .await
            .unwrap();
        let addr = taken.tcp_addr().unwrap();
        let err = bind(&ListenAddr::Tcp(addr)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("cannot listen on {addr}: ")),
            "{message}"
        );
        assert!(message.contains("another corrald"), "{message}");
        assert!(message.contains("--listen"), "{message}");
    }
}
