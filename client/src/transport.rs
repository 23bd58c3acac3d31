//! HTTP/1.1 requests to the daemon over its local socket (a Unix socket; a named
//! pipe on Windows), classified for the client's fallback table (`crate`'s docs;
//! docs/behaviour.md, "Daemon and fallback").
//!
//! - `Dead`: no socket, or nobody listening (ENOENT, ECONNREFUSED): fall back at once.
//! - `Hung`: connected but no answer within the deadline (a stopped or wedged
//!   daemon): fall back, with a hint.
//! - `Stale`: the daemon answered with another protocol version: fall back, and
//!   suggest `latchkey daemon restart`.
//! - `Refused`: something listens, but it is not this user's daemon (the socket, its
//!   folder or the listening process belongs to another user): never talk to it;
//!   fall back, and say why.
//! - `Answer`: a typed answer, success or error, which is final.
//!
//! Connections are kept alive and reused (a small idle pool), so an embedding
//! program pays the connect and handshake once, not per call. A pooled connection
//! can die at any time (the daemon drops idle ones after 10 s, or restarted): a
//! request that hyper hands back unsent is retried on a fresh connection, so reuse
//! never turns into a spurious fallback.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use latchkey_proto::{PROTOCOL_HEADER, PROTOCOL_VERSION};

/// An answer from the daemon. A token answer's body holds the token, so `Debug`
/// shows only its size.
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// How a request to the daemon went.
#[derive(Debug)]
pub enum Reach {
    Answer(Reply),
    Dead(String),
    Hung,
    Stale {
        theirs: String,
    },
    /// Only Unix checks files and peers; on Windows the pipe's DACL does it.
    #[cfg_attr(not(unix), allow(dead_code))]
    Refused(String),
}

/// The most a daemon answer may weigh.
const MAX_REPLY: usize = 1024 * 1024;
/// Idle connections kept for reuse; more concurrent callers open their own.
const MAX_IDLE: usize = 16;

type Sender = SendRequest<Full<Bytes>>;

/// The way to one daemon socket, with its idle connections.
pub struct Transport {
    socket: PathBuf,
    idle: Mutex<Vec<Sender>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl Transport {
    pub fn new(socket: PathBuf) -> Transport {
        Transport {
            socket,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends one request and waits at most `deadline` for the whole answer.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        deadline: Duration,
    ) -> Reach {
        match tokio::time::timeout(deadline, self.exchange(method, path, body)).await {
            Ok(r) => r,
            Err(_) => Reach::Hung,
        }
    }

    fn take_idle(&self) -> Option<Sender> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
    }

    fn put_idle(&self, sender: Sender) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }

    async fn exchange(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Reach {
        let mut request = match build(method, path, body) {
            Ok(r) => r,
            Err(e) => return Reach::Dead(format!("cannot build the request: {e}")),
        };
        while let Some(mut sender) = self.take_idle() {
            if sender.ready().await.is_err() {
                continue; // closed while idle
            }
            match sender.try_send_request(request).await {
                Ok(response) => return self.finish(sender, response).await,
                Err(mut e) => match e.take_message() {
                    // Never sent: the connection died under us; try the next one.
                    Some(unsent) => request = unsent,
                    None => return Reach::Dead(e.into_error().to_string()),
                },
            }
        }
        let stream = match connect(&self.socket).await {
            Ok(s) => s,
            Err(reach) => return reach,
        };
        let (mut sender, conn) =
            match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                Ok(x) => x,
                Err(e) => return Reach::Dead(e.to_string()),
            };
        // The driver ends when the connection closes or the runtime stops; its errors
        // surface through the sender.
        drop(tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "the daemon connection ended");
            }
        }));
        match sender.send_request(request).await {
            Ok(response) => self.finish(sender, response).await,
            Err(e) => Reach::Dead(e.to_string()),
        }
    }

    /// Reads an answer and returns a healthy connection to the pool.
    async fn finish(
        &self,
        sender: Sender,
        response: hyper::Response<hyper::body::Incoming>,
    ) -> Reach {
        let theirs = response
            .headers()
            .get(PROTOCOL_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_string();
        if theirs != PROTOCOL_VERSION.to_string() {
            return Reach::Stale { theirs };
        }
        let status = response.status().as_u16();
        let limited = http_body_util::Limited::new(response.into_body(), MAX_REPLY);
        let body = match limited.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return Reach::Dead(format!("the answer broke off: {e}")),
        };
        if !sender.is_closed() {
            self.put_idle(sender);
        }
        Reach::Answer(Reply { status, body })
    }
}

fn build(
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> hyper::http::Result<Request<Full<Bytes>>> {
    let content_type = if body.is_some() {
        "application/json"
    } else {
        "text/plain"
    };
    Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "latchkeyd")
        .header(PROTOCOL_HEADER, PROTOCOL_VERSION)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
}

/// Whether `socket` may be this user's daemon, before connecting: the socket file
/// and its folder must belong to us (a sticky folder such as /tmp may belong to
/// root), and the folder must not be writable by others unless it is sticky.
/// Anything else could be another user's impostor, which could hand out tokens of
/// its choosing or phish a login.
#[cfg(unix)]
fn check_socket(socket: &Path) -> Result<(), Reach> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let uid = latchkey_daemon::vault::fs::current_uid();
    let meta = match std::fs::symlink_metadata(socket) {
        Ok(m) => m,
        Err(e) => return Err(Reach::Dead(e.to_string())),
    };
    if !meta.file_type().is_socket() || Some(meta.uid()) != uid {
        return Err(refused(format!(
            "{} is not a socket of this user (owner uid {})",
            socket.display(),
            meta.uid()
        )));
    }
    if let Some(dir) = socket.parent() {
        // The engine's folder check (ours, not a symlink, not writable by others),
        // except for a shared sticky folder such as /tmp holding an explicit
        // LATCHKEY_SOCKET: there the socket's owner and the listener's uid decide.
        match latchkey_daemon::vault::fs::check_dir(dir) {
            Ok(true) => {}
            Ok(false) => return Err(Reach::Dead(format!("{} does not exist", dir.display()))),
            Err(_) if shared_sticky(dir) => {}
            Err(e) => return Err(refused(e.to_string())),
        }
    }
    Ok(())
}

/// A sticky folder of root's, like /tmp: others may add files but not replace ours.
#[cfg(unix)]
fn shared_sticky(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).is_ok_and(|d| d.mode() & 0o1000 != 0 && d.uid() == 0)
}

/// The listening process must run as us (SO_PEERCRED).
#[cfg(unix)]
fn check_peer(socket: &Path, peer_uid: std::io::Result<u32>) -> Result<(), Reach> {
    match peer_uid {
        Ok(uid) if Some(uid) == latchkey_daemon::vault::fs::current_uid() => Ok(()),
        Ok(uid) => Err(refused(format!(
            "the process listening on {} runs as uid {uid}",
            socket.display()
        ))),
        Err(e) => Err(refused(format!(
            "cannot tell who listens on {}: {e}",
            socket.display()
        ))),
    }
}

#[cfg(unix)]
fn refused(what: String) -> Reach {
    Reach::Refused(format!("{what}; not talking to it"))
}

/// Connects to the daemon's socket, if it is this user's daemon.
#[cfg(unix)]
async fn connect(socket: &Path) -> Result<tokio::net::UnixStream, Reach> {
    check_socket(socket)?;
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| Reach::Dead(e.to_string()))?;
    check_peer(socket, stream.peer_cred().map(|c| c.uid()))?;
    Ok(stream)
}

/// One GET without an async runtime, for `latchkey token`'s hot path: a process
/// that asks once and exits gains nothing from tokio and hyper but their start-up
/// cost (docs/behaviour.md, "Performance targets"). Same checks and classification
/// as [`Transport::call`]; the connection is closed after the answer.
#[cfg(unix)]
pub fn get_blocking(socket: &Path, path: &str, deadline: Duration) -> Reach {
    use std::io::{Read, Write};
    let start = std::time::Instant::now();
    if let Err(reach) = check_socket(socket) {
        return reach;
    }
    let mut stream = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => return Reach::Dead(e.to_string()),
    };
    let peer = rustix::net::sockopt::socket_peercred(&stream)
        .map(|c| c.uid.as_raw())
        .map_err(std::io::Error::from);
    if let Err(reach) = check_peer(socket, peer) {
        return reach;
    }
    let timed_out = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    };
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: latchkeyd\r\n{PROTOCOL_HEADER}: {PROTOCOL_VERSION}\r\nConnection: close\r\n\r\n"
    );
    if let Err(e) = stream
        .set_write_timeout(Some(deadline))
        .and_then(|()| stream.write_all(head.as_bytes()))
    {
        return if timed_out(&e) {
            Reach::Hung
        } else {
            Reach::Dead(e.to_string())
        };
    }
    let mut answer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let Some(left) = deadline
            .checked_sub(start.elapsed())
            .filter(|d| !d.is_zero())
        else {
            return Reach::Hung;
        };
        if let Err(e) = stream.set_read_timeout(Some(left)) {
            return Reach::Dead(e.to_string());
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&chunk[..n]);
                if answer.len() > MAX_REPLY {
                    return Reach::Dead("the answer is too large".into());
                }
                if matches!(parse_answer(&answer), Parsed::Done(_)) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if timed_out(&e) => return Reach::Hung,
            Err(e) => return Reach::Dead(e.to_string()),
        }
    }
    match parse_answer(&answer) {
        Parsed::Done(reach) => reach,
        Parsed::Partial => Reach::Dead("the answer broke off".into()),
    }
}

#[cfg(unix)]
enum Parsed {
    Done(Reach),
    Partial,
}

/// An HTTP/1.1 answer with a Content-Length body (what the daemon sends).
#[cfg(unix)]
fn parse_answer(bytes: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(e) => return Parsed::Done(Reach::Dead(format!("not an HTTP answer: {e}"))),
    };
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    let theirs = header(PROTOCOL_HEADER).unwrap_or_else(|| "none".into());
    if theirs != PROTOCOL_VERSION.to_string() {
        return Parsed::Done(Reach::Stale { theirs });
    }
    let Some(length) = header("content-length").and_then(|v| v.parse::<usize>().ok()) else {
        return Parsed::Done(Reach::Dead("the answer has no Content-Length".into()));
    };
    let Some(body) = bytes.get(head_len..head_len.saturating_add(length)) else {
        return Parsed::Partial;
    };
    Parsed::Done(Reach::Answer(Reply {
        status: response.code.unwrap_or(0),
        body: Bytes::copy_from_slice(body),
    }))
}

/// Windows: the daemon listens on a named pipe whose name is derived from the
/// socket path (`latchkey_proto::paths::pipe_name`); the pipe's DACL admits only its
/// owner. Unverified: type-checked by scripts/check-windows, never run.
#[cfg(windows)]
async fn connect(socket: &Path) -> Result<interprocess::local_socket::tokio::Stream, Reach> {
    use interprocess::local_socket::traits::tokio::Stream as _;
    use interprocess::local_socket::{GenericFilePath, ToFsName};
    let name = latchkey_proto::paths::pipe_name(socket);
    let name = name
        .as_str()
        .to_fs_name::<GenericFilePath>()
        .map_err(|e| Reach::Dead(e.to_string()))?;
    interprocess::local_socket::tokio::Stream::connect(name)
        .await
        .map_err(|e| Reach::Dead(e.to_string()))
}

#[cfg(not(any(unix, windows)))]
async fn connect(_socket: &Path) -> Result<tokio::net::TcpStream, Reach> {
    Err(Reach::Dead("no daemon transport on this platform".into()))
}
