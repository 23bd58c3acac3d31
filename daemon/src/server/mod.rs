//! `latchkeyd`: the engine served on a local socket (docs/behaviour.md,
//! "Daemon and fallback" and "Socket API"): a Unix socket, or a named pipe on Windows
//! (unverified there; see `listen`).
//!
//! [`run`] takes an already-bound listener ([`Incoming`]), so tests can start the
//! real server in process on a temporary socket. Per connection: the peer check
//! (closed unanswered for another user), a connection limit, hyper's HTTP/1.1 with
//! bounded headers and a header-read timeout (slow or idle clients are dropped), and
//! graceful shutdown.
//!
//! Shutdown has one source, the daemon's `CancellationToken`: signals, `POST
//! /v1/shutdown` and `--idle-exit` cancel it; the accept loop stops, open
//! connections finish their request, and the drain is bounded.

pub mod access;
mod admin;
pub mod delegate;
pub mod harden;
#[cfg(unix)]
pub mod listen;
#[cfg(windows)]
#[path = "listen_windows.rs"]
pub mod listen;
pub mod logfile;
pub mod login;
pub mod peer;
mod proxy;
pub mod routes;
pub mod state;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

pub use peer::{Peer, PeerVerified};
pub use state::Daemon;

/// At most this many connections at once on the main socket; more are closed at
/// once. Generous, since idle ones are dropped after [`HEADER_TIMEOUT`].
pub const MAX_CONNECTIONS: usize = 512;
/// At most this many connections at once on the delegate listeners together. A
/// limit of their own: whoever can reach them (other users, containers) cannot use
/// up the owner's connections.
pub const MAX_DELEGATE_CONNECTIONS: usize = 128;
/// A client must send a whole request head within this time (also the idle limit of
/// a kept-alive connection).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes of request head hyper buffers (a 200 KB header is refused).
pub const MAX_HEAD: usize = 32 * 1024;
/// How long shutdown waits for open requests.
pub const DRAIN: Duration = Duration::from_secs(5);
/// How long shutdown waits for refreshes and logouts that have not sent anything
/// to the provider (those that have are always waited for: `Engine::shutdown`).
pub const REFRESH_DRAIN: Duration = Duration::from_secs(5);

/// Where connections come from: a listener and its peer check. The main socket's
/// check is the only way to make a [`PeerVerified`], which makes a caller the
/// owner; the delegate listeners make [`Peer::Delegate`]s.
pub trait Incoming {
    type Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl std::future::Future<Output = std::io::Result<Self::Io>> + Send;
    /// `None`: close the connection unanswered.
    fn verify(&self, io: &Self::Io) -> Option<Peer>;
}

/// Serves `daemon` on `listener` and the `delegates` until the daemon's shutdown
/// token is cancelled. The delegates share a connection limit of their own.
pub async fn run<L: Incoming>(
    listener: L,
    delegates: delegate::Delegates,
    daemon: Arc<Daemon>,
    idle_exit: Option<Duration>,
) {
    let app = routes::router(daemon.clone());
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let delegate_slots = Arc::new(Semaphore::new(MAX_DELEGATE_CONNECTIONS));
    let tracker = TaskTracker::new();
    tracker.spawn(maintenance(daemon.clone()));
    if let Some(idle) = idle_exit {
        tracker.spawn(idle_watch(
            daemon.clone(),
            [slots.clone(), delegate_slots.clone()],
            idle,
        ));
    }
    #[cfg(unix)]
    let socket = async {
        if let Some(l) = &delegates.socket {
            serve(l, &app, &delegate_slots, &tracker, &daemon).await;
        }
    };
    #[cfg(not(unix))]
    let socket = async {};
    let tcp = async {
        if let Some(l) = &delegates.tcp {
            serve(l, &app, &delegate_slots, &tracker, &daemon).await;
        }
    };
    tokio::join!(
        serve(&listener, &app, &slots, &tracker, &daemon),
        socket,
        tcp
    );
    // From here on nothing new is sent to a provider, not even by the requests
    // still being answered during the drain or by a maintenance pass.
    daemon.engine.begin_stop();
    delegates.remove_socket();
    tracker.close();
    if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
        tracing::warn!("some connections were still open after the drain time");
    }
    // A refresh or logout that sent anything finishes and writes before the daemon
    // exits (the provider call itself is bounded by the HTTP client's timeouts),
    // none starts sending from here on, and an unsaved change gets one last write.
    let lost = daemon.engine.shutdown(REFRESH_DRAIN).await;
    if !lost.is_empty() {
        tracing::error!(
            profiles = ?lost.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
            "stopping with sessions that could not be saved; they must log in again"
        );
    }
    daemon.write_client_token_uses(true).await;
}

/// Accepts connections on one listener until shutdown, each served on the tracker.
async fn serve<L: Incoming>(
    listener: &L,
    app: &axum::Router,
    slots: &Arc<Semaphore>,
    tracker: &TaskTracker,
    daemon: &Arc<Daemon>,
) {
    loop {
        let accepted = tokio::select! {
            () = daemon.shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(peer) = listener.verify(&stream) else {
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!("too many connections; closing a new one");
            continue;
        };
        let svc = app
            .clone()
            .map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(peer.clone());
                req
            });
        let shutdown = daemon.shutdown.clone();
        tracker.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    match tokio::time::timeout(DRAIN, conn.as_mut()).await {
                        Ok(r) => r,
                        Err(_) => Ok(()),
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
}

/// The daemon's background pass (the engine's `maintain`): unsaved sessions are
/// written as soon as the disk allows, and sessions are refreshed before callers
/// need it. Every ~4 s, with jitter.
async fn maintenance(daemon: Arc<Daemon>) {
    loop {
        let jitter = crate::vault::crypto::random::<1>().map_or(0, |b| u64::from(b[0]) * 4);
        tokio::select! {
            () = daemon.shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(4_000 + jitter)) => {}
        }
        daemon.engine.maintain().await;
        daemon.write_client_token_uses(false).await;
    }
}

/// Cancels the daemon after `idle` without requests, with no open connection (on
/// any listener) and no unsaved session.
async fn idle_watch(daemon: Arc<Daemon>, slots: [Arc<Semaphore>; 2], idle: Duration) {
    loop {
        tokio::select! {
            () = daemon.shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        let last = daemon.last_activity.load(Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let quiet = Duration::from_millis(now.saturating_sub(last));
        // An unsaved session exists nowhere else: idling out would lose it.
        if quiet >= idle
            && slots[0].available_permits() == MAX_CONNECTIONS
            && slots[1].available_permits() == MAX_DELEGATE_CONNECTIONS
            && daemon.engine.unsaved_profiles().is_empty()
        {
            tracing::info!(idle_secs = idle.as_secs(), "idle: exiting");
            daemon.shutdown.cancel();
            return;
        }
    }
}
