//! Who is on the other end of a connection, as its listener saw it ([`Peer`]).
//!
//! [`PeerVerified`] can only be made in this module: on Unix by [`verify_unix`],
//! which reads the peer's uid from the kernel (SO_PEERCRED / getpeereid) and refuses
//! any uid but the daemon's own; on Windows by [`verify_pipe`] after the named pipe's
//! access list (owner only) has let the client in. It is what makes a caller the
//! owner (`access`). The delegate listeners admit anyone and make a
//! [`Peer::Delegate`], which can only ever present a client token.

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

/// A connection's peer, per listener.
#[derive(Debug, Clone)]
pub enum Peer {
    /// The main socket: the OS says the peer runs as this daemon's user.
    Owner(PeerVerified),
    /// The delegate socket or the loopback TCP listener: anyone who can reach it;
    /// every request needs a client token.
    Delegate(DelegatePeer),
}

/// Which delegate listener a connection came through, and what is known of its
/// peer (for the audit line; none of it grants anything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegatePeer {
    pub via: Via,
    pub uid: Option<u32>,
    pub pid: Option<u32>,
    pub addr: Option<std::net::SocketAddr>,
}

/// The delegate listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// `[delegate] socket`.
    Socket,
    /// `[delegate] listen`, bound at this address: requests must name it in `Host`.
    Tcp(std::net::SocketAddr),
}

impl Peer {
    pub fn pid(&self) -> Option<u32> {
        match self {
            Peer::Owner(v) => v.pid(),
            Peer::Delegate(d) => d.pid,
        }
    }

    pub fn uid(&self) -> Option<u32> {
        match self {
            Peer::Owner(v) => v.uid(),
            Peer::Delegate(d) => d.uid,
        }
    }

    /// The listener's name for the audit line.
    pub fn listener(&self) -> &'static str {
        match self {
            Peer::Owner(_) => "main",
            Peer::Delegate(DelegatePeer {
                via: Via::Socket, ..
            }) => "delegate",
            Peer::Delegate(DelegatePeer {
                via: Via::Tcp(_), ..
            }) => "tcp",
        }
    }

    /// The peer's executable (main socket), or its address (TCP), for the audit
    /// line: written straight into it, no string built per request.
    pub fn origin(&self) -> Origin<'_> {
        match self {
            Peer::Owner(v) => Origin::Exe(v.exe()),
            Peer::Delegate(d) => Origin::Addr(d.addr),
        }
    }
}

/// See [`Peer::origin`]; `?` when unknown.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    Exe(Option<&'a str>),
    Addr(Option<std::net::SocketAddr>),
}

impl std::fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Exe(Some(exe)) => f.write_str(exe),
            Origin::Addr(Some(addr)) => write!(f, "{addr}"),
            Origin::Exe(None) | Origin::Addr(None) => f.write_str("?"),
        }
    }
}

/// The peer of a delegate socket connection: anyone; its credentials are read for
/// the audit line only.
#[cfg(unix)]
pub fn delegate_unix(stream: &tokio::net::UnixStream) -> Peer {
    let cred = stream.peer_cred().ok();
    Peer::Delegate(DelegatePeer {
        via: Via::Socket,
        uid: cred.as_ref().map(tokio::net::unix::UCred::uid),
        pid: cred
            .and_then(|c| c.pid())
            .and_then(|p| u32::try_from(p).ok()),
        addr: None,
    })
}

/// The peer of a TCP listener connection; `None` (closed unanswered) unless it
/// comes from a loopback address, which a listener bound to loopback implies.
pub fn delegate_tcp(stream: &tokio::net::TcpStream, local: std::net::SocketAddr) -> Option<Peer> {
    let addr = stream.peer_addr().ok()?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "refused a TCP connection from outside this machine");
        return None;
    }
    Some(Peer::Delegate(DelegatePeer {
        via: Via::Tcp(local),
        uid: None,
        pid: None,
        addr: Some(addr),
    }))
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
