//! Where the gRPC server listens: TCP, or a Unix domain socket (clients on
//! the same host); and the stream of accepted connections.

use std::path::PathBuf;

use anyhow::{bail, Context};
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tokio_stream::{Stream, StreamExt};

use super::coalesce::CoalescedWrites;
use crate::config::ListenAddr;

/// A bound gRPC socket.
pub enum Listener {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        file: SocketFile,
    },
}

/// The file of a bound Unix socket. Dropped when the server stops, it
/// removes the file, so that clients find no stale one; unless the file is
/// no longer the one bound here (another server replaced it meanwhile).
pub struct SocketFile {
    path: PathBuf,
    inode: Option<u64>,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| Some(m.ino()) == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl From<TcpListener> for Listener {
    fn from(l: TcpListener) -> Self {
        Listener::Tcp(l)
    }
}

impl Listener {
    /// Binds `addr`. A Unix socket file that no server answers on (left by
    /// one that is gone) is replaced; one that a live server answers on, or
    /// a file that is not a socket, is refused.
    pub async fn bind(addr: &ListenAddr) -> anyhow::Result<Listener> {
        match addr {
            ListenAddr::Tcp(a) => TcpListener::bind(a)
                .await
                .map(Listener::Tcp)
                .map_err(|e| anyhow::anyhow!("cannot listen on {a}: {e}")),
            ListenAddr::Unix(path) => {
                use std::os::unix::fs::{FileTypeExt, MetadataExt};
                let socket_there =
                    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
                if socket_there {
                    if tokio::net::UnixStream::connect(path).await.is_ok() {
                        bail!("cannot listen on {addr}: a server is already listening there");
                    }
                    std::fs::remove_file(path).with_context(|| {
                        format!("cannot listen on {addr}: removing the stale socket file")
                    })?;
                }
                let listener = UnixListener::bind(path)
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
                let inode = std::fs::symlink_metadata(path).ok().map(|m| m.ino());
                Ok(Listener::Unix {
                    listener,
                    file: SocketFile {
                        path: path.clone(),
                        inode,
                    },
                })
            }
        }
    }

    /// What is listened on (the port a `:0` address was given included).
    pub fn addr(&self) -> std::io::Result<ListenAddr> {
        Ok(match self {
            Listener::Tcp(l) => ListenAddr::Tcp(l.local_addr()?),
            Listener::Unix { file, .. } => ListenAddr::Unix(file.path.clone()),
        })
    }
}

/// The accepted TCP connections, each with TCP_NODELAY (without it,
/// Nagle's algorithm and the client's delayed ACKs hold back small
/// responses under concurrency) and its writes coalesced when `coalesce`.
pub fn tcp_incoming(
    listener: TcpListener,
    coalesce: bool,
) -> impl Stream<Item = std::io::Result<CoalescedWrites<tokio::net::TcpStream>>> {
    TcpListenerStream::new(listener).map(move |conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(CoalescedWrites::new(conn, coalesce))
    })
}

/// The accepted Unix socket connections, their writes coalesced when
/// `coalesce`.
pub fn unix_incoming(
    listener: UnixListener,
    coalesce: bool,
) -> impl Stream<Item = std::io::Result<CoalescedWrites<tokio::net::UnixStream>>> {
    UnixListenerStream::new(listener)
        .map(move |conn| conn.map(|c| CoalescedWrites::new(c, coalesce)))
}
