//! The peer check every connection passes before any route runs.
//!
//! [`PeerVerified`] can only be made in this module: on Unix by [`verify_unix`],
//! which reads the peer's uid from the kernel (SO_PEERCRED / getpeereid) and refuses
//! any uid but the daemon's own; on Windows by [`verify_pipe`] after the named pipe's
//! access list (owner only) has let the client in. Handlers and the audit log take a
//! `PeerVerified`, so a route reached without the check does not compile.

/// A connection whose peer the OS says runs as this daemon's user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerVerified {
    uid: Option<u32>,
    pid: Option<u32>,
    /// Read once per connection, not per request: a kept-alive connection from an
    /// embedding program makes many requests.
    exe: Option<std::sync::Arc<str>>,
}

impl PeerVerified {
    /// The peer's uid (Unix; `None` on Windows, where the pipe's access list checked
    /// the user).
    pub fn uid(&self) -> Option<u32> {
        self.uid
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The peer's executable when the connection was made, for the audit log
    /// (Linux; `None` elsewhere or when the process was already gone).
    pub fn exe(&self) -> Option<&str> {
        self.exe.as_deref()
    }
}

#[cfg(unix)]
fn exe_of(pid: Option<u32>) -> Option<std::sync::Arc<str>> {
    let pid = pid?;
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| p.display().to_string().into())
}

/// Checks the peer of a Unix socket connection; `None` means: close it unanswered.
#[cfg(unix)]
pub fn verify_unix(stream: &tokio::net::UnixStream, own_uid: u32) -> Option<PeerVerified> {
    let cred = match stream.peer_cred() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the peer's credentials; closing the connection");
            return None;
        }
    };
    if cred.uid() != own_uid {
        tracing::warn!(
            peer_uid = cred.uid(),
            peer_pid = cred.pid(),
            "refused a connection from another user"
        );
        return None;
    }
    let pid = cred.pid().and_then(|p| u32::try_from(p).ok());
    Some(PeerVerified {
        uid: Some(cred.uid()),
        pid,
        exe: exe_of(pid),
    })
}

/// Windows: the pipe was created with an access list that admits only its owner and
/// rejects remote clients, so the OS has already checked the user when a client
/// gets here. The client's process id is read for the audit log; a connection whose
/// peer cannot be identified is closed. Unverified: see `listen` (Windows).
#[cfg(windows)]
pub fn verify_pipe(stream: &interprocess::local_socket::tokio::Stream) -> Option<PeerVerified> {
    use interprocess::local_socket::traits::StreamCommon as _;
    match stream.peer_creds() {
        Ok(creds) => Some(PeerVerified {
            uid: None,
            pid: creds.pid(),
            exe: None,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "cannot identify the pipe client; closing the connection");
            None
        }
    }
}
