//! The peer-credential check every connection passes before any route runs.
//!
//! [`PeerVerified`] can only be made by [`verify`], which reads the peer's uid from
//! the kernel (SO_PEERCRED) and refuses any uid but the daemon's own. Handlers and
//! the audit log take a `PeerVerified`, so a route reached without the check does not
//! compile.

use tokio::net::UnixStream;

/// A connection whose peer the kernel says runs as this daemon's user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerVerified {
    uid: u32,
    pid: Option<i32>,
}

impl PeerVerified {
    pub fn uid(&self) -> u32 {
        self.uid
    }

    pub fn pid(&self) -> Option<i32> {
        self.pid
    }

    /// The peer's executable, for the audit log (Linux; `None` elsewhere or when
    /// the process is gone).
    pub fn exe(&self) -> Option<String> {
        let pid = self.pid?;
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| p.display().to_string())
    }
}

/// Checks the peer of `stream`; `None` means: close it unanswered.
pub fn verify(stream: &UnixStream, own_uid: u32) -> Option<PeerVerified> {
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
    Some(PeerVerified {
        uid: cred.uid(),
        pid: cred.pid(),
    })
}
