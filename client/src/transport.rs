//! The two ways to the daemon's local socket (a Unix socket; a named pipe on
//! Windows), both speaking the protocol of [`crate::wire`] and ending in its
//! [`Reach`]:
//!
//! - [`Transport::call`]: hyper over kept-alive connections in a small idle pool,
//!   so an embedding program pays the connect and handshake once, not per call. A
//!   pooled connection can die at any time (the daemon drops idle ones after 10 s,
//!   or restarted): a request that hyper hands back unsent is retried on a fresh
//!   connection, so reuse never turns into a spurious fallback.
//! - [`call_blocking`]: one exchange with std I/O and httparse, for `latchkey
//!   token`'s hot path, which gains nothing from tokio and hyper but their
//!   start-up cost.
//!
//! Both check, before connecting, that the socket is this user's and, after, that
//! the listener runs as this user; anything else is `Refused`.
//!
//! Both tell a busy daemon from a hung one the same way ([`split`]): when no
//! answer came in the first part of the deadline, a health request on a second
//! connection asks whether the daemon is alive. A daemon that answers it is busy
//! (a token request waiting for a refresh at a slow provider) and is waited for,
//! asked again every [`PROBE_EVERY`], up to [`BUSY_LIMIT`]; one that does not
//! answer, the first time or any later one, is `Hung` (the first time within the
//! same deadline as before).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use latchkey_proto::PROTOCOL_HEADER;
use latchkey_proto::api;
use latchkey_proto::request::{self as rq, Request};
use latchkey_proto::secret::Secret;
use serde::de::DeserializeOwned;

use crate::wire::{self, AnswerHead, MAX_REPLY, Outgoing, Reach};

/// How long a daemon that keeps proving alive is waited for: just past its own
/// per-request deadline (40 s), so it is the daemon that ends a request that
/// takes too long.
pub const BUSY_LIMIT: Duration = Duration::from_secs(45);
/// How often a busy daemon is asked again whether it is alive.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);

/// The two parts of a `deadline`: how long to wait for the answer before asking
/// whether the daemon is alive, and how long that question may take. Together
/// they are the deadline: a hung daemon is found as soon as before.
pub fn split(deadline: Duration) -> (Duration, Duration) {
    let first = deadline * 3 / 5;
    (first, deadline.saturating_sub(first))
}

/// Idle connections kept for reuse; more concurrent callers open their own.
const MAX_IDLE: usize = 16;
/// The largest proxied answer [`Transport::proxy`] reads into memory.
pub const MAX_PROXIED_BODY: usize = 64 * 1024 * 1024;

/// A request for the daemon's API proxy.
#[derive(Debug)]
pub struct ProxyRequest<'a> {
    pub method: &'a str,
    /// `/v1/proxy/{profile}/{path}?{query}`.
    pub target: &'a str,
    pub headers: &'a [(String, String)],
    pub body: Bytes,
}

/// How a proxied exchange ended.
#[derive(Debug)]
pub enum ProxyReach {
    /// The daemon answered (the upstream's response, or Latchkey's own error).
    Answer(hyper::Response<Bytes>),
    /// The request never left this process (or a stale daemon refused it): the
    /// fallback table applies.
    Unsent(Reach<()>),
    /// The request may have reached the daemon and an upstream, and the answer
    /// was lost: final, never repeated.
    Lost(String),
}

fn describe(reach: Reach<()>) -> String {
    match reach {
        Reach::Dead(why) | Reach::Broken(why) | Reach::Refused(why) => why,
        Reach::Hung => "no answer".into(),
        Reach::Stale { theirs } => format!("protocol {theirs}"),
        Reach::Outdated => "an older latchkeyd without this endpoint".into(),
        Reach::Answer(_) => "an answer".into(),
    }
}

fn build_proxy(
    request: &ProxyRequest<'_>,
    bearer: Option<&Secret>,
) -> hyper::http::Result<hyper::Request<Full<Bytes>>> {
    let mut built = hyper::Request::builder()
        .method(request.method)
        .uri(request.target);
    for (name, value) in wire::FIELDS {
        built = built.header(name, value);
    }
    for (name, value) in request.headers {
        built = built.header(name.as_str(), value.as_str());
    }
    if let Some(token) = bearer {
        let mut value = hyper::header::HeaderValue::try_from(format!("Bearer {}", token.expose()))?;
        value.set_sensitive(true);
        built = built.header(hyper::header::AUTHORIZATION, value);
    }
    built.body(Full::new(request.body.clone()))
}

type Sender = SendRequest<Full<Bytes>>;

/// An open `GET /v1/events` answer: its body, and the connection's sender,
/// kept so the connection lives as long as the stream is read.
pub struct EventStream {
    _sender: Sender,
    pub body: hyper::body::Incoming,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

/// The way to one daemon socket, with its idle connections.
pub struct Transport {
    socket: PathBuf,
    idle: Mutex<Vec<Sender>>,
    /// A client token, sent as `Authorization: Bearer`.
    bearer: Option<Secret>,
    /// Whether the socket and the listener must be this user's. Off only for a
    /// client token with an explicitly named socket (a delegate socket belongs to
    /// another user by design).
    check_owner: bool,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl Transport {
    pub fn new(socket: PathBuf, bearer: Option<Secret>, check_owner: bool) -> Transport {
        Transport {
            socket,
            idle: Mutex::new(Vec::new()),
            bearer,
            check_owner,
        }
    }

    /// Sends one request of the proto's set and waits for the whole answer: up to
    /// `deadline`, or up to [`BUSY_LIMIT`] when the daemon proves alive meanwhile
    /// (see the module documentation).
    pub async fn call<R: Request>(&self, request: &R, deadline: Duration) -> Reach<R::Answer> {
        let out = match Outgoing::new(request) {
            Ok(o) => o,
            Err(why) => return Reach::Broken(why),
        };
        let exchange = self.exchange(out);
        tokio::pin!(exchange);
        let (first, probe) = split(deadline);
        if let Ok(reach) = tokio::time::timeout(first, &mut exchange).await {
            return reach;
        }
        let busy_since = tokio::time::Instant::now();
        loop {
            let alive = tokio::select! {
                reach = &mut exchange => return reach,
                alive = self.alive(probe) => alive,
            };
            if !alive || busy_since.elapsed() >= BUSY_LIMIT {
                return Reach::Hung;
            }
            tracing::debug!("the daemon is alive and busy; waiting for its answer");
            if let Ok(reach) = tokio::time::timeout(PROBE_EVERY, &mut exchange).await {
                return reach;
            }
        }
    }

    /// Whether the daemon answers a health request (any answer, an error of the
    /// delegate listener's access rules included) within `deadline`. The busy
    /// request holds its own connection, so this one goes on another.
    async fn alive(&self, deadline: Duration) -> bool {
        let Ok(out) = Outgoing::new(&rq::Health) else {
            return false;
        };
        let probe = self.exchange::<<rq::Health as Request>::Answer>(out);
        matches!(
            tokio::time::timeout(deadline, probe).await,
            Ok(Reach::Answer(_))
        )
    }

    /// [`call_blocking`] with this transport's socket and client token.
    #[cfg(unix)]
    pub fn call_blocking<R: Request>(&self, request: &R, deadline: Duration) -> Reach<R::Answer> {
        call_blocking(
            &self.socket,
            request,
            deadline,
            self.bearer.as_ref(),
            self.check_owner,
        )
    }

    /// Whether the socket and its listener must be this user's.
    #[cfg(test)]
    pub fn checks_owner(&self) -> bool {
        self.check_owner
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

    async fn exchange<T: DeserializeOwned>(&self, out: Outgoing) -> Reach<T> {
        let request = match build(out, self.bearer.as_ref()) {
            Ok(r) => r,
            Err(e) => return Reach::Broken(format!("cannot build the request: {e}")),
        };
        match self.round_trip(request).await {
            Ok((sender, response)) => self.finish(sender, response).await,
            Err((reach, _sent)) => reach,
        }
    }

    /// Sends `request` over an idle connection or a new one. On failure, whether
    /// the request may have reached the daemon: a connect failure did not send it.
    async fn round_trip<T>(
        &self,
        mut request: hyper::Request<Full<Bytes>>,
    ) -> Result<(Sender, hyper::Response<hyper::body::Incoming>), (Reach<T>, bool)> {
        while let Some(mut sender) = self.take_idle() {
            if sender.ready().await.is_err() {
                continue; // closed while idle
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((sender, response)),
                Err(mut e) => match e.take_message() {
                    // Never sent: the connection died under us; try the next one.
                    Some(unsent) => request = unsent,
                    None => return Err((failed(e.into_error()), true)),
                },
            }
        }
        let stream = connect(&self.socket, self.check_owner)
            .await
            .map_err(|reach| (reach, false))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| (Reach::Dead(e.to_string()), false))?;
        // The driver ends when the connection closes or the runtime stops; its errors
        // surface through the sender.
        drop(tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "the daemon connection ended");
            }
        }));
        match sender.send_request(request).await {
            Ok(response) => Ok((sender, response)),
            Err(e) => Err((failed(e), true)),
        }
    }

    /// One request through the daemon's API proxy (`target` from
    /// [`latchkey_proto::proxy::target`]), waiting at most `deadline`. The
    /// outcome says whether the request may have been sent on: a proxied request
    /// is never repeated by a fallback once it may have reached an upstream.
    pub async fn proxy(&self, request: ProxyRequest<'_>, deadline: Duration) -> ProxyReach {
        let built = build_proxy(&request, self.bearer.as_ref());
        let built = match built {
            Ok(r) => r,
            Err(e) => {
                return ProxyReach::Unsent(Reach::Broken(format!("cannot build the request: {e}")));
            }
        };
        // The deadline covers the answer's head; its body streams for as long as
        // the upstream sends it (the daemon bounds stalls).
        let (sender, response) =
            match tokio::time::timeout(deadline, self.round_trip::<()>(built)).await {
                Err(_) => {
                    return ProxyReach::Lost(format!(
                        "the daemon did not answer within {} s",
                        deadline.as_secs()
                    ));
                }
                Ok(Ok(x)) => x,
                Ok(Err((reach, false))) => return ProxyReach::Unsent(reach),
                Ok(Err((reach, true))) => return ProxyReach::Lost(describe(reach)),
            };
        let (parts, body) = response.into_parts();
        if let Some(theirs) =
            wire::other_protocol(parts.headers.get(PROTOCOL_HEADER).map(|v| v.as_bytes()))
        {
            // Another protocol's daemon forwards nothing it does not know.
            return ProxyReach::Unsent(Reach::Stale { theirs });
        }
        let limited = http_body_util::Limited::new(body, MAX_PROXIED_BODY);
        let body = match limited.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return ProxyReach::Lost(format!(
                    "the answer broke off or passed {MAX_PROXIED_BODY} bytes: {e}"
                ));
            }
        };
        if !sender.is_closed() {
            self.put_idle(sender);
        }
        // An older daemon of this protocol, from before the proxy: its own 404,
        // not an upstream's (no Latchkey-Proxied), and nothing was forwarded.
        if parts.status == hyper::StatusCode::NOT_FOUND
            && !parts
                .headers
                .contains_key(latchkey_proto::proxy::PROXIED_HEADER)
            && matches!(wire::decode::<()>(404, &body), Reach::Outdated)
        {
            return ProxyReach::Unsent(Reach::Outdated);
        }
        ProxyReach::Answer(hyper::Response::from_parts(parts, body))
    }

    /// Opens the daemon's event stream (`GET /v1/events`) on a connection of its
    /// own, waiting at most `deadline` for the answer's head. A 2xx of this
    /// protocol is the stream; any other answer is read by the wire rules (an
    /// error document, or `Broken`).
    pub async fn subscribe(&self, deadline: Duration) -> Reach<EventStream> {
        let request = match Outgoing::new(&rq::Events).and_then(|out| {
            build(out, self.bearer.as_ref()).map_err(|e| format!("cannot build the request: {e}"))
        }) {
            Ok(r) => r,
            Err(why) => return Reach::Broken(why),
        };
        let (sender, response) =
            match tokio::time::timeout(deadline, self.round_trip::<EventStream>(request)).await {
                Err(_) => return Reach::Hung,
                Ok(Err((reach, _sent))) => return reach,
                Ok(Ok(x)) => x,
            };
        if !response.status().is_success() {
            // An error document (or something outside the protocol): read by the
            // wire rules like any answer.
            return self
                .finish::<api::SessionEvent>(sender, response)
                .await
                .and_then(|_| {
                    Reach::Broken("a session event where the stream should start".into())
                });
        }
        if let Some(theirs) = wire::other_protocol(
            response
                .headers()
                .get(PROTOCOL_HEADER)
                .map(|v| v.as_bytes()),
        ) {
            return Reach::Stale { theirs };
        }
        Reach::Answer(Ok(EventStream {
            _sender: sender,
            body: response.into_body(),
        }))
    }

    /// Reads an answer by the wire rules and returns a healthy connection to the
    /// pool.
    async fn finish<T: DeserializeOwned>(
        &self,
        sender: Sender,
        response: hyper::Response<hyper::body::Incoming>,
    ) -> Reach<T> {
        let status = response.status().as_u16();
        let fields = response.headers();
        let head = AnswerHead {
            status,
            protocol: fields.get(PROTOCOL_HEADER).map(|v| v.as_bytes()),
            content_length: fields
                .get(hyper::header::CONTENT_LENGTH)
                .map(|v| v.as_bytes()),
        };
        if let Err(reach) = wire::check_head::<T>(&head) {
            return reach;
        }
        let limited = http_body_util::Limited::new(response.into_body(), MAX_REPLY);
        let body = match limited.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return Reach::Dead(format!("the answer broke off: {e}")),
        };
        if !sender.is_closed() {
            self.put_idle(sender);
        }
        wire::decode(status, &body)
    }
}

/// A failed hyper exchange: an answer hyper could not parse is `Broken`; anything
/// else (reset, closed before the answer) means the daemon went away.
fn failed<T>(e: hyper::Error) -> Reach<T> {
    if e.is_parse() || e.is_parse_status() {
        Reach::Broken(format!("not an HTTP answer: {e}"))
    } else {
        Reach::Dead(e.to_string())
    }
}

fn build(
    out: Outgoing,
    bearer: Option<&Secret>,
) -> hyper::http::Result<hyper::Request<Full<Bytes>>> {
    let mut request = hyper::Request::builder().method(out.method).uri(out.target);
    for (name, value) in wire::FIELDS {
        request = request.header(name, value);
    }
    if let Some(token) = bearer {
        let mut value = hyper::header::HeaderValue::try_from(format!("Bearer {}", token.expose()))?;
        value.set_sensitive(true);
        request = request.header(hyper::header::AUTHORIZATION, value);
    }
    if out.body.is_some() {
        request = request.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    request.body(Full::new(Bytes::from(out.body.unwrap_or_default())))
}

/// Whether `socket` may be this user's daemon, before connecting: the socket file
/// and its folder must belong to us (a sticky folder such as /tmp may belong to
/// root), and the folder must not be writable by others unless it is sticky.
/// Anything else could be another user's impostor, which could hand out tokens of
/// its choosing or phish a login.
#[cfg(unix)]
fn check_socket<T>(socket: &Path) -> Result<(), Reach<T>> {
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
fn check_peer<T>(socket: &Path, peer_uid: std::io::Result<u32>) -> Result<(), Reach<T>> {
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
fn refused<T>(what: String) -> Reach<T> {
    Reach::Refused(format!("{what}; not talking to it"))
}

/// Connects to the daemon's socket, if it is this user's daemon (`owner`; a
/// client token's socket is another user's by design and is not checked).
#[cfg(unix)]
async fn connect<T>(socket: &Path, owner: bool) -> Result<tokio::net::UnixStream, Reach<T>> {
    if owner {
        check_socket(socket)?;
    }
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| Reach::Dead(e.to_string()))?;
    if owner {
        check_peer(socket, stream.peer_cred().map(|c| c.uid()))?;
    }
    Ok(stream)
}

/// One exchange without an async runtime, for `latchkey token`'s hot path: a
/// process that asks once and exits gains nothing from tokio and hyper but their
/// start-up cost (docs/benchmarks.md). Same checks, head, classification and
/// busy-or-hung rule as [`Transport::call`]; the connection is closed after the
/// answer.
#[cfg(unix)]
pub fn call_blocking<R: Request>(
    socket: &Path,
    request: &R,
    deadline: Duration,
    bearer: Option<&Secret>,
    check_owner: bool,
) -> Reach<R::Answer> {
    let (first, probe) = split(deadline);
    let alive = || {
        matches!(
            exchange_blocking(socket, &rq::Health, probe, bearer, check_owner, &|| false),
            Reach::Answer(_)
        )
    };
    exchange_blocking(socket, request, first, bearer, check_owner, &alive)
}

/// [`call_blocking`]'s exchange: when `first` passes without an answer, waits
/// [`PROBE_EVERY`] more each time `alive` says the daemon is, up to
/// [`BUSY_LIMIT`]; else it is `Hung`.
#[cfg(unix)]
fn exchange_blocking<R: Request>(
    socket: &Path,
    request: &R,
    first: Duration,
    bearer: Option<&Secret>,
    check_owner: bool,
    alive: &dyn Fn() -> bool,
) -> Reach<R::Answer> {
    use std::io::{Read, Write};
    let start = std::time::Instant::now();
    let mut deadline = first;
    let out = match Outgoing::new(request) {
        Ok(o) => o,
        Err(why) => return Reach::Broken(why),
    };
    if check_owner && let Err(reach) = check_socket(socket) {
        return reach;
    }
    let mut stream = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => return Reach::Dead(e.to_string()),
    };
    if check_owner {
        let peer = rustix::net::sockopt::socket_peercred(&stream)
            .map(|c| c.uid.as_raw())
            .map_err(std::io::Error::from);
        if let Err(reach) = check_peer(socket, peer) {
            return reach;
        }
    }
    let timed_out = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    };
    let mut message = zeroize::Zeroizing::new(out.head_once(bearer).into_bytes());
    message.extend_from_slice(out.body.as_deref().unwrap_or_default());
    if let Err(e) = stream
        .set_write_timeout(Some(first))
        .and_then(|()| stream.write_all(&message))
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
            if start.elapsed() >= first + BUSY_LIMIT || !alive() {
                return Reach::Hung;
            }
            deadline = start.elapsed() + PROBE_EVERY;
            continue;
        };
        if let Err(e) = stream.set_read_timeout(Some(left)) {
            return Reach::Dead(e.to_string());
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&chunk[..n]);
                if answer.len() > MAX_REPLY {
                    return Reach::Broken(format!("the answer is larger than {MAX_REPLY} bytes"));
                }
                if let wire::Parsed::Done(reach) = wire::parse(&answer) {
                    return reach;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // The loop's head decides: ask whether the daemon is alive, or give up.
            Err(e) if timed_out(&e) => {}
            Err(e) => return Reach::Dead(e.to_string()),
        }
    }
    // The daemon closed the connection before a whole answer: it went away.
    match wire::parse(&answer) {
        wire::Parsed::Done(reach) => reach,
        wire::Parsed::Partial if answer.is_empty() => {
            Reach::Dead("the daemon closed the connection without answering".into())
        }
        wire::Parsed::Partial => Reach::Dead("the answer broke off".into()),
    }
}

/// Windows: the daemon listens on a named pipe whose name is derived from the
/// socket path (`latchkey_proto::paths::pipe_name`); the pipe's DACL admits only its
/// owner. That protects our pipe, not the name: another user may have created the
/// pipe first. So before anything is sent, the server's process must run as our
/// user (`latchkey_daemon::pipe_owner`), the part SO_PEERCRED plays on Unix.
/// Unverified: type-checked by scripts/check-windows, never run.
#[cfg(windows)]
async fn connect<T>(
    socket: &Path,
    _owner: bool,
) -> Result<interprocess::local_socket::tokio::Stream, Reach<T>> {
    use interprocess::local_socket::traits::StreamCommon as _;
    use interprocess::local_socket::traits::tokio::Stream as _;
    use interprocess::local_socket::{GenericFilePath, ToFsName};
    use latchkey_daemon::pipe_owner::{self, Verdict};
    let name = latchkey_proto::paths::pipe_name(socket);
    let fs_name = name
        .as_str()
        .to_fs_name::<GenericFilePath>()
        .map_err(|e| Reach::Dead(e.to_string()))?;
    let stream = interprocess::local_socket::tokio::Stream::connect(fs_name)
        .await
        .map_err(|e| Reach::Dead(e.to_string()))?;
    // On the client side of a pipe, the peer is the server (GetNamedPipeServerProcessId).
    let server = stream
        .peer_creds()
        .map_err(|e| e.to_string())
        .and_then(|c| c.pid().ok_or_else(|| "no server process id".to_string()))
        .and_then(|pid| pipe_owner::process_user_sid(Some(pid)).map_err(|e| e.to_string()));
    let ours = pipe_owner::process_user_sid(None).map_err(|e| e.to_string());
    match pipe_owner::judge(
        ours.as_deref().map_err(String::as_str),
        server.as_deref().map_err(String::as_str),
    ) {
        Verdict::Ours => Ok(stream),
        Verdict::Foreign(why) => Err(Reach::Refused(format!("{name}: {why}; not talking to it"))),
    }
}

#[cfg(not(any(unix, windows)))]
async fn connect<T>(_socket: &Path, _owner: bool) -> Result<tokio::net::TcpStream, Reach<T>> {
    Err(Reach::Dead("no daemon transport on this platform".into()))
}
