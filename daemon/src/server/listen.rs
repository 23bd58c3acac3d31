//! Getting a listening socket (Unix): the private runtime folder, the
//! single-instance lock, stale-socket removal, and socket activation (systemd's
//! LISTEN_FDS, launchd's `launch_activate_socket`). Windows has the same interface
//! over a named pipe in `listen_windows.rs`.
//!
//! Order matters (rbw's lesson): the instance lock is taken *before* a leftover
//! socket file is removed, so a running daemon's socket is never unlinked by a
//! second one. The lock file is `latchkeyd.lock` beside the socket; the kernel drops
//! the lock when the daemon dies, even on kill -9, so a stale socket is recognised
//! by a free lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::StorageError;
use crate::vault::fs;

/// How the daemon got its socket (`GET /v1/status`'s `activation`).
pub use latchkey_proto::api::Activation;

/// The bound, not yet served, listener.
pub type Listener = std::os::unix::net::UnixListener;

/// The Unix socket's connections, each admitted by the peer's uid.
#[derive(Debug)]
pub struct UnixIncoming {
    listener: tokio::net::UnixListener,
    own_uid: u32,
}

impl super::Incoming for UnixIncoming {
    type Io = tokio::net::UnixStream;

    async fn accept(&self) -> std::io::Result<tokio::net::UnixStream> {
        self.listener.accept().await.map(|(stream, _)| stream)
    }

    fn verify(&self, io: &tokio::net::UnixStream) -> Option<super::Peer> {
        super::peer::verify_unix(io, self.own_uid).map(super::Peer::Owner)
    }
}

/// Serves `listener` (inside the runtime). Without a known uid of our own, no peer
/// can match it: every connection is refused rather than any admitted.
pub fn incoming(listener: Listener) -> std::io::Result<UnixIncoming> {
    listener.set_nonblocking(true)?;
    Ok(UnixIncoming {
        listener: tokio::net::UnixListener::from_std(listener)?,
        own_uid: fs::current_uid().unwrap_or(u32::MAX),
    })
}

/// The socket path clients should be told about: an activated socket may live
/// elsewhere than the computed path.
pub fn served_path(listener: &Listener, activation: Activation, computed: &Path) -> PathBuf {
    match listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf))
    {
        Some(actual) if activation != Activation::SelfBound => actual,
        _ => computed.to_path_buf(),
    }
}

/// Removes our own socket file after a clean stop, so clients see "not running" at
/// once instead of a refusal. An activated socket belongs to its manager.
pub fn remove_socket(socket: &Path, activation: Activation) {
    if activation != Activation::SelfBound {
        return;
    }
    if let Err(e) = std::fs::remove_file(socket) {
        tracing::debug!(error = %e, "the socket was already gone");
    }
}

/// The held single-instance lock; released on drop (or by the kernel on death).
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

impl InstanceLock {
    /// Never unlocks by hand: the kernel releases the lock when this process is
    /// gone, so whoever waits for it (`latchkey daemon stop`) knows the process
    /// has really exited, not just reached the end of `main`.
    pub fn hold_until_exit(self) {
        std::mem::forget(self);
    }
}

/// The outcome of trying to become the daemon for a socket.
#[derive(Debug)]
pub enum Bound {
    /// This process serves `listener`.
    Serving {
        listener: std::os::unix::net::UnixListener,
        lock: InstanceLock,
        activation: Activation,
    },
    /// Another daemon holds the lock.
    AlreadyRunning { pid: Option<u32> },
}

/// The lock file of the daemon serving `socket`.
pub fn lock_path(socket: &Path) -> PathBuf {
    socket.with_file_name("latchkeyd.lock")
}

/// Makes Latchkey's own runtime folder private: created 0700, or an existing one of
/// ours forced to 0700 (docs/soak.md, finding 4); another user's folder is refused.
/// Only for the folder Latchkey names itself (`Paths::runtime_dir`): a folder the
/// user chose for the socket is checked by [`require_private_dir`], never changed.
pub fn ensure_runtime_dir(dir: &Path) -> Result<(), StorageError> {
    match fs::ensure_private_dir(dir) {
        Ok(()) => {}
        Err(StorageError::Insecure { .. }) if owned_by_us(dir) => {}
        Err(e) => return Err(e),
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| StorageError::io("set the mode of", dir, e))?;
    }
    fs::ensure_private_dir(dir)
}

/// Checks a folder that is not Latchkey's own (the folder of `--socket` or
/// LATCHKEY_SOCKET) without creating or changing it: it must exist, be a real
/// folder of ours, and let nobody else in. Changing its mode would change someone's
/// `$HOME` or a shared folder behind their back (docs/behaviour.md, "Security").
pub fn require_private_dir(dir: &Path) -> Result<(), StorageError> {
    match fs::check_private_dir(dir) {
        Ok(true) => Ok(()),
        Ok(false) => Err(StorageError::Insecure {
            path: dir.to_path_buf(),
            reason:
                "the socket's folder does not exist; latchkeyd creates only its own runtime folder"
                    .into(),
        }),
        Err(StorageError::Insecure { path, reason }) => Err(StorageError::Insecure {
            path,
            reason: format!(
                "{reason}; latchkeyd changes the mode only of its own runtime folder: make this one 0700 or put the socket in a private folder"
            ),
        }),
        Err(e) => Err(e),
    }
}

fn owned_by_us(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(dir).is_ok_and(|m| {
        m.is_dir() && !m.file_type().is_symlink() && Some(m.uid()) == fs::current_uid()
    })
}

/// Takes the instance lock and binds `socket` (or adopts a socket-activated one).
/// `own_dir` is Latchkey's own runtime folder (`Paths::runtime_dir`): only when the
/// socket is in it is the folder created or its mode fixed; any other folder must
/// already be private.
pub fn bind(socket: &Path, own_dir: &Path) -> Result<Bound, StorageError> {
    let dir = socket.parent().ok_or_else(|| StorageError::Insecure {
        path: socket.to_path_buf(),
        reason: "the socket path has no folder".into(),
    })?;
    if dir == own_dir {
        ensure_runtime_dir(dir)?;
    } else {
        require_private_dir(dir)?;
    }
    let lock_file = lock_path(socket);
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts
        .open(&lock_file)
        .map_err(|e| StorageError::io("open", &lock_file, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut s = String::new();
            let pid = file
                .read_to_string(&mut s)
                .ok()
                .and_then(|_| s.trim().parse().ok());
            return Ok(Bound::AlreadyRunning { pid });
        }
        Err(TryLockError::Error(e)) => return Err(StorageError::io("lock", &lock_file, e)),
    }
    file.set_len(0)
        .and_then(|()| write!(file, "{}", std::process::id()))
        .map_err(|e| StorageError::io("write", &lock_file, e))?;
    let lock = InstanceLock { _file: file };

    if let Some(listener) = activated_listener()? {
        return Ok(Bound::Serving {
            listener,
            lock,
            activation: Activation::Systemd,
        });
    }
    #[cfg(target_os = "macos")]
    if let Some(listener) = launchd::activated_listener()? {
        return Ok(Bound::Serving {
            listener,
            lock,
            activation: Activation::Launchd,
        });
    }
    // We hold the lock, so no live latchkeyd owns a socket file here. But a listener
    // may still be there without one (a systemd socket unit whose service is
    // stopped): replacing that would leave systemd on a socket nobody can reach.
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        tracing::info!(socket = %socket.display(), "something else listens on the socket (a systemd socket unit?); leaving it alone");
        return Ok(Bound::AlreadyRunning { pid: None });
    }
    // Nobody listens: the file is stale.
    match std::fs::remove_file(socket) {
        Ok(()) => tracing::info!(socket = %socket.display(), "removed a stale socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StorageError::io("remove the stale socket", socket, e)),
    }
    let listener = std::os::unix::net::UnixListener::bind(socket)
        .map_err(|e| StorageError::io("listen on", socket, e))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| StorageError::io("set the mode of", socket, e))?;
    }
    Ok(Bound::Serving {
        listener,
        lock,
        activation: Activation::SelfBound,
    })
}

/// systemd socket activation: LISTEN_PID is us and LISTEN_FDS is at least 1; the
/// socket is fd 3 (SD_LISTEN_FDS_START).
fn activated_listener() -> Result<Option<std::os::unix::net::UnixListener>, StorageError> {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    if !ours || count == 0 {
        return Ok(None);
    }
    // Children must not inherit the activation (sd_listen_fds(unset_environment=1)).
    // SAFETY (env): the daemon is still single-threaded here, before the runtime starts.
    #[allow(unsafe_code)]
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    use std::os::fd::FromRawFd;
    // SAFETY: systemd passed fd 3 to this process (LISTEN_PID matched), and nothing
    // else in the process has taken ownership of it. What kind of fd it is gets
    // checked by `adopt`, before it is used.
    #[allow(unsafe_code)]
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(3) };
    adopt(fd, "fd 3 (LISTEN_FDS)").map(Some)
}

/// Takes a listening socket handed over by a service manager: it must be a
/// listening Unix stream socket; it is made close-on-exec (no child inherits it) and
/// non-blocking (tokio needs that).
fn adopt(fd: std::os::fd::OwnedFd, what: &str) -> Result<Listener, StorageError> {
    let listener = Listener::from(fd);
    let bad = |reason: &str| StorageError::Insecure {
        path: what.into(),
        reason: reason.to_string(),
    };
    let is_unix = rustix::net::sockopt::socket_domain(&listener)
        .is_ok_and(|d| d == rustix::net::AddressFamily::UNIX);
    let is_stream = rustix::net::sockopt::socket_type(&listener)
        .is_ok_and(|t| t == rustix::net::SocketType::STREAM);
    let listening = rustix::net::sockopt::socket_acceptconn(&listener).unwrap_or(false);
    if !(is_unix && is_stream && listening) {
        return Err(bad("it is not a listening Unix stream socket"));
    }
    rustix::io::fcntl_setfd(&listener, rustix::io::FdFlags::CLOEXEC)
        .map_err(|e| bad(&format!("cannot set close-on-exec: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| StorageError::io("use the activated socket", what, e))?;
    Ok(listener)
}

/// launchd socket activation (macOS): the agent's plist declares a socket named
/// `Listeners`; launchd creates it and starts latchkeyd on the first connection.
///
/// UNVERIFIED: no macOS machine builds this project, so this FFI has never been
/// compiled against the real libSystem. The adoption checks after it are the ones
/// the systemd path runs (and tests) on Linux.
#[cfg(target_os = "macos")]
mod launchd {
    use std::ffi::{c_char, c_int, c_void};
    use std::os::fd::{FromRawFd, OwnedFd};

    use super::{Listener, StorageError, adopt};

    #[allow(unsafe_code)]
    unsafe extern "C" {
        /// launch_activate_socket(3), in libSystem (liblaunch).
        fn launch_activate_socket(
            name: *const c_char,
            fds: *mut *mut c_int,
            cnt: *mut usize,
        ) -> c_int;
        fn free(ptr: *mut c_void);
    }

    /// The name of the socket in the plist's `Sockets` dictionary.
    const NAME: &std::ffi::CStr = c"Listeners";

    pub(super) fn activated_listener() -> Result<Option<Listener>, StorageError> {
        let mut fds: *mut c_int = std::ptr::null_mut();
        let mut count: usize = 0;
        // SAFETY: NAME is NUL-terminated; `fds` and `count` are valid out-pointers.
        #[allow(unsafe_code)]
        let rc = unsafe { launch_activate_socket(NAME.as_ptr(), &mut fds, &mut count) };
        if rc != 0 || fds.is_null() {
            // ESRCH: not started by launchd; ENOENT: no such socket in the plist.
            return Ok(None);
        }
        // SAFETY: on success launchd returns `count` descriptors in a malloc'd array
        // that the caller owns (and frees) and whose descriptors it now owns.
        #[allow(unsafe_code)]
        let owned: Vec<OwnedFd> = unsafe {
            let v = (0..count)
                .map(|i| OwnedFd::from_raw_fd(*fds.add(i)))
                .collect();
            free(fds.cast());
            v
        };
        // One socket path gives one descriptor; any others are closed on drop.
        match owned.into_iter().next() {
            Some(fd) => adopt(fd, "the launchd socket \"Listeners\"").map(Some),
            None => Ok(None),
        }
    }
}

/// Tells systemd the daemon is ready (`Type=notify`): one `READY=1` datagram to
/// $NOTIFY_SOCKET, which may be a path or an abstract name (`@...`). Does nothing
/// without NOTIFY_SOCKET; a failure is logged, never fatal.
pub fn notify_ready() {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let target = target.to_string_lossy().into_owned();
    let sent = (|| -> std::io::Result<()> {
        let sock = std::os::unix::net::UnixDatagram::unbound()?;
        let msg = format!("READY=1\nMAINPID={}", std::process::id());
        if let Some(name) = target.strip_prefix('@') {
            #[cfg(target_os = "linux")]
            {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
                sock.send_to_addr(msg.as_bytes(), &addr)?;
            }
            #[cfg(not(target_os = "linux"))]
            return Err(std::io::Error::other(format!(
                "abstract socket {name} on a non-Linux system"
            )));
        } else {
            sock.send_to(msg.as_bytes(), &target)?;
        }
        Ok(())
    })();
    match sent {
        Ok(()) => tracing::debug!("told systemd we are ready"),
        Err(e) => tracing::warn!(error = %e, "cannot notify systemd of readiness"),
    }
}
