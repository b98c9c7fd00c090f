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

/// Binds `addr`.
///
/// Errors (INTERNAL, with the address and the OS's reason): the address is in
/// use, the socket path is not a socket or another server answers on it.
pub async fn bind(addr: &ListenAddr) -> Result<Listener> {
    match addr {
        ListenAddr::Tcp(addr) => TcpListener::bind(addr)
            .await
            .map(Listener::Tcp)
            .map_err(|e| Error::Internal(format!("cannot listen on {addr}: {e}"))),
        ListenAddr::Unix(path) => {
            let path = path.clone();
            let std_listener = tokio::task::spawn_blocking({
                let path = path.clone();
                move || bind_unix(&path)
            })
            .await
            .map_err(|e| Error::Internal(format!("binding unix:{}: {e}", path.display())))?
            .map_err(|e| {
                Error::Internal(format!("cannot listen on unix:{}: {e}", path.display()))
            })?;
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

        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = bind(&ListenAddr::Unix(file.clone())).await.unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(file).unwrap(), "x");
    }
}
