//! The delegate listeners of `[delegate]` (docs/behaviour.md, "Client tokens"):
//! a Unix socket for containers and other users, and a loopback TCP port. Neither
//! checks who connects; every request on them must carry a client token
//! (`access`), so they only ever serve what a token's scopes allow.
//!
//! - The socket: `<runtime folder>/delegate.sock` (a private folder: reach it by
//!   bind-mounting the socket file into a container) or a configured path, whose
//!   folder must exist, be the user's and be writable by nobody else (it is never
//!   created or changed). The socket is mode 0666: the token is the check.
//! - TCP: a loopback address only (checked at config load), every peer checked
//!   to be on loopback as well.
//!
//! Both are bound at start, after the instance lock: a leftover socket file at the
//! path is replaced, anything else there is refused.

use std::net::SocketAddr;
use std::path::Path;
#[cfg(unix)]
use std::path::PathBuf;

use super::Incoming;
use super::peer::{self, Peer};
use crate::config::DelegateSettings;
use crate::error::StorageError;

/// The delegate listeners, bound (std listeners, before the runtime exists).
#[derive(Debug, Default)]
pub struct Bound {
    #[cfg(unix)]
    socket: Option<(std::os::unix::net::UnixListener, PathBuf)>,
    tcp: Option<std::net::TcpListener>,
}

/// Why a delegate listener could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot listen on {addr}: {source}")]
    Tcp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the delegate socket is not supported on this system")]
    Unsupported,
}

/// Binds what `settings` asks for. `runtime_dir` is Latchkey's own runtime folder
/// (made private by the main socket's binding); `main_socket` is never taken over.
pub fn bind(
    settings: &DelegateSettings,
    runtime_dir: &Path,
    main_socket: &Path,
) -> Result<Bound, BindError> {
    let mut bound = Bound::default();
    if let Some(path) = settings.socket_path(runtime_dir) {
        if path == main_socket {
            return Err(BindError::Storage(StorageError::Insecure {
                path,
                reason: "the delegate socket cannot be the main socket".into(),
            }));
        }
        #[cfg(unix)]
        {
            bound.socket = Some((bind_socket(&path, runtime_dir)?, path));
        }
        #[cfg(not(unix))]
        {
            let _ = path; // Named pipes for delegates are not built yet.
            return Err(BindError::Unsupported);
        }
    }
    if let Some(addr) = settings.listen {
        let listener =
            std::net::TcpListener::bind(addr).map_err(|source| BindError::Tcp { addr, source })?;
        bound.tcp = Some(listener);
    }
    Ok(bound)
}

#[cfg(unix)]
fn bind_socket(
    path: &Path,
    runtime_dir: &Path,
) -> Result<std::os::unix::net::UnixListener, StorageError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let insecure = |reason: &str| StorageError::Insecure {
        path: path.to_path_buf(),
        reason: reason.into(),
    };
    let dir = path
        .parent()
        .ok_or_else(|| insecure("the delegate socket path has no folder"))?;
    if dir == runtime_dir {
        super::listen::ensure_runtime_dir(dir)?;
    } else if !crate::vault::fs::check_dir(dir)? {
        return Err(StorageError::Insecure {
            path: dir.to_path_buf(),
            reason: "the delegate socket's folder does not exist; latchkeyd creates only its own runtime folder".into(),
        });
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            // A leftover of an earlier run: this daemon holds the instance lock.
            std::fs::remove_file(path).map_err(|e| StorageError::io("remove", path, e))?;
        }
        Ok(_) => return Err(insecure("something other than a socket is in the way")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StorageError::io("inspect", path, e)),
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| StorageError::io("bind", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| StorageError::io("set the mode of", path, e))?;
    Ok(listener)
}

impl Bound {
    /// Where they listen, for the start-up log line.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        #[cfg(unix)]
        if let Some((_, p)) = &self.socket {
            out.push(format!("delegate socket {}", p.display()));
        }
        if let Some(addr) = self.tcp.as_ref().and_then(|l| l.local_addr().ok()) {
            out.push(format!("delegate TCP {addr}"));
        }
        out
    }

    /// The listeners as the server loop serves them (inside the runtime).
    pub fn incoming(self) -> std::io::Result<Delegates> {
        let tcp = match self.tcp {
            Some(l) => {
                l.set_nonblocking(true)?;
                let local = l.local_addr()?;
                Some(TcpIncoming {
                    listener: tokio::net::TcpListener::from_std(l)?,
                    local,
                })
            }
            None => None,
        };
        #[cfg(unix)]
        let socket = match self.socket {
            Some((l, path)) => {
                l.set_nonblocking(true)?;
                Some(SocketIncoming {
                    listener: tokio::net::UnixListener::from_std(l)?,
                    path,
                })
            }
            None => None,
        };
        Ok(Delegates {
            #[cfg(unix)]
            socket,
            tcp,
        })
    }
}

/// The delegate listeners, served.
#[derive(Debug, Default)]
pub struct Delegates {
    #[cfg(unix)]
    pub socket: Option<SocketIncoming>,
    pub tcp: Option<TcpIncoming>,
}

impl Delegates {
    /// Removes the delegate socket file after a clean stop.
    pub fn remove_socket(&self) {
        #[cfg(unix)]
        if let Some(s) = &self.socket
            && let Err(e) = std::fs::remove_file(&s.path)
        {
            tracing::debug!(error = %e, "the delegate socket was already gone");
        }
    }
}

/// The delegate socket: anyone may connect.
#[cfg(unix)]
#[derive(Debug)]
pub struct SocketIncoming {
    listener: tokio::net::UnixListener,
    path: PathBuf,
}

#[cfg(unix)]
impl Incoming for SocketIncoming {
    type Io = tokio::net::UnixStream;

    async fn accept(&self) -> std::io::Result<tokio::net::UnixStream> {
        self.listener.accept().await.map(|(stream, _)| stream)
    }

    fn verify(&self, io: &tokio::net::UnixStream) -> Option<Peer> {
        Some(peer::delegate_unix(io))
    }
}

/// The loopback TCP listener.
#[derive(Debug)]
pub struct TcpIncoming {
    listener: tokio::net::TcpListener,
    local: SocketAddr,
}

impl Incoming for TcpIncoming {
    type Io = tokio::net::TcpStream;

    async fn accept(&self) -> std::io::Result<tokio::net::TcpStream> {
        self.listener.accept().await.map(|(stream, _)| stream)
    }

    fn verify(&self, io: &tokio::net::TcpStream) -> Option<Peer> {
        peer::delegate_tcp(io, self.local)
    }
}
