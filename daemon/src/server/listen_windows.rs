//! Getting a listening named pipe (Windows): the same interface as the Unix
//! `listen.rs`, so `latchkeyd`'s main and the server loop do not change.
//!
//! UNVERIFIED: no Windows machine builds or runs this project. This module is
//! type-checked with `scripts/check-windows` (`cargo check --target
//! x86_64-pc-windows-gnu`), never run. What it relies on:
//! - The pipe name is derived from the socket path the client also computes
//!   (`latchkey_proto::paths::pipe_name`), so both sides agree without settings.
//! - Single instance: the first pipe instance is created with
//!   FILE_FLAG_FIRST_PIPE_INSTANCE (interprocess does this), so a second daemon
//!   fails with "access denied". It then asks who serves the pipe: our own user's
//!   daemon means "already running"; anyone else's is an error naming the pipe
//!   (`crate::pipe_owner`). There is no stale
//!   socket file on Windows: a pipe disappears with its last handle.
//! - Access: a DACL that grants the pipe's owner alone (SDDL `D:P(A;;GA;;;OW)`;
//!   OW is the OWNER RIGHTS SID, S-1-3-4) and PIPE_REJECT_REMOTE_CLIENTS (the
//!   interprocess default). The kernel applies it before a client gets a handle, so
//!   it plays the part SO_PEERCRED plays on Unix; the peer's pid is still read for
//!   the audit line (`peer::verify_pipe`). Caveat: for an elevated administrator
//!   the default owner of new objects may be the Administrators group.
//! - No socket activation: Windows services are out of scope (packaging/README.md).

use std::path::{Path, PathBuf};

use interprocess::local_socket::traits::tokio::Listener as _;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::windows::local_socket::ListenerOptionsExt;
use interprocess::os::windows::security_descriptor::SecurityDescriptor;

use crate::error::StorageError;
use crate::pipe_owner::{self, Verdict};

/// How the daemon got its socket (`GET /v1/status`'s `activation`); always
/// [`Activation::SelfBound`] here.
pub use latchkey_proto::api::Activation;

/// The pipe is only made inside the runtime (tokio registers it with its reactor),
/// so binding yields its name.
#[derive(Debug)]
pub struct Listener {
    pipe: String,
}

/// Nothing to hold on Windows: the first pipe instance is the instance lock.
#[derive(Debug)]
pub struct InstanceLock;

impl InstanceLock {
    /// The same interface as on Unix; the pipe ends with the process.
    pub fn hold_until_exit(self) {}
}

/// The outcome of trying to become the daemon for a socket.
#[derive(Debug)]
pub enum Bound {
    Serving {
        listener: Listener,
        lock: InstanceLock,
        activation: Activation,
    },
    AlreadyRunning {
        pid: Option<u32>,
    },
}

/// Owner-only access (see the module docs), as a NUL-terminated UTF-16 SDDL string.
fn owner_only() -> std::io::Result<SecurityDescriptor> {
    let sddl: Vec<u16> = "D:P(A;;GA;;;OW)"
        .encode_utf16()
        .chain(std::iter::once(0))
        .collect();
    let sddl = widestring::U16CStr::from_slice(&sddl).map_err(std::io::Error::other)?;
    SecurityDescriptor::deserialize(sddl)
}

/// Names the pipe for `socket`. A second daemon is found out when the pipe is
/// created (`incoming`): it exits 0 from there.
pub fn bind(socket: &Path, _own_dir: &Path) -> Result<Bound, StorageError> {
    Ok(Bound::Serving {
        listener: Listener {
            pipe: latchkey_proto::paths::pipe_name(socket),
        },
        lock: InstanceLock,
        activation: Activation::SelfBound,
    })
}

/// The pipe's connections; the DACL admitted only the owner.
#[derive(Debug)]
pub struct PipeIncoming {
    listener: interprocess::local_socket::tokio::Listener,
}

impl super::Incoming for PipeIncoming {
    type Io = interprocess::local_socket::tokio::Stream;

    async fn accept(&self) -> std::io::Result<Self::Io> {
        self.listener.accept().await
    }

    fn verify(&self, io: &Self::Io) -> Option<super::Peer> {
        super::peer::verify_pipe(io).map(super::Peer::Owner)
    }
}

/// Creates the first instance of the pipe. When the name is taken, its server's
/// owner decides: our own user's daemon is "already running" (the error passes
/// through, and `is_already_running` says so); anyone else's pipe is a loud
/// failure, because clients would otherwise keep meeting an impostor while this
/// daemon quietly exits (docs/behaviour.md, "Security").
pub fn incoming(listener: Listener) -> std::io::Result<PipeIncoming> {
    let name = listener.pipe.as_str().to_fs_name::<GenericFilePath>()?;
    match ListenerOptions::new()
        .name(name)
        .security_descriptor(owner_only()?)
        .create_tokio()
    {
        Ok(listener) => Ok(PipeIncoming { listener }),
        Err(e) if is_already_running(&e) => match existing_owner(&listener.pipe) {
            Verdict::Ours => Err(e),
            Verdict::Foreign(why) => Err(std::io::Error::other(format!(
                "the pipe {} exists and is not yours ({why}): another user may be posing as latchkeyd; find and end that process, or set LATCHKEY_SOCKET to another path for client and daemon",
                listener.pipe
            ))),
        },
        Err(e) => Err(e),
    }
}

/// Whose is the pipe that already has our name: connects as a client and reads the
/// server's user. A pipe we may not even connect to is someone else's (ours admits
/// its owner).
fn existing_owner(pipe: &str) -> Verdict {
    use interprocess::local_socket::traits::{Stream as _, StreamCommon as _};
    let server = pipe
        .to_fs_name::<GenericFilePath>()
        .and_then(interprocess::local_socket::Stream::connect)
        .map_err(|e| format!("cannot connect to it: {e}"))
        .and_then(|s| {
            s.peer_creds()
                .map_err(|e| e.to_string())
                .and_then(|c| c.pid().ok_or_else(|| "no server process id".to_string()))
        })
        .and_then(|pid| pipe_owner::process_user_sid(Some(pid)).map_err(|e| e.to_string()));
    let ours = pipe_owner::process_user_sid(None).map_err(|e| e.to_string());
    pipe_owner::judge(
        ours.as_deref().map_err(String::as_str),
        server.as_deref().map_err(String::as_str),
    )
}

/// Whether creating the pipe failed because another daemon has it.
pub fn is_already_running(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::PermissionDenied || e.kind() == std::io::ErrorKind::AddrInUse
}

/// The name clients are told about: the pipe, not the socket path it stands for.
pub fn served_path(listener: &Listener, _activation: Activation, _computed: &Path) -> PathBuf {
    PathBuf::from(&listener.pipe)
}

/// A pipe vanishes with its last handle: nothing to remove.
pub fn remove_socket(_socket: &Path, _activation: Activation) {}

/// No service-manager readiness protocol on Windows.
pub fn notify_ready() {}
