//! The fake provider's own accept loop: hyper's HTTP/1 server per connection over the axum
//! router, with a per-connection abort signal so a handler can reset its connection.
//!
//! `axum::serve` hides the socket, and a [`Fault::ConnectionReset`](super::Fault) needs it:
//! the handler triggers the connection's [`ConnAbort`] (found in the request extensions),
//! the connection task drops hyper's connection, and the stream's `Drop` sets SO_LINGER 0
//! first, so closing sends a TCP RST instead of a FIN and no response is ever written.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper::service::{Service as _, service_fn};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinSet;

/// Asks the connection that carried a request to die without answering.
#[derive(Debug, Default)]
pub(crate) struct ConnAbort {
    triggered: AtomicBool,
    notify: Notify,
}

impl ConnAbort {
    /// Marks the connection for reset and wakes its task. `notify_one` stores a permit, so
    /// the wake-up is not lost if the task is not waiting yet.
    pub(crate) fn trigger(&self) {
        self.triggered.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }
}

/// A TCP stream that resets instead of closing gracefully when its connection was aborted.
struct ResettableStream {
    stream: TcpStream,
    abort: Arc<ConnAbort>,
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        if self.abort.triggered.load(Ordering::SeqCst) {
            // Runs before `stream` is dropped, so its close() sends RST. If this fails the
            // close is a FIN: the client still gets no response, only EOF instead of a reset.
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Serves `router` on `listener` until `shutdown` fires or its sender is dropped; then
/// stops accepting and aborts every open connection (the `JoinSet` drops them).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    mut shutdown: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, router.clone()));
                }
                // Typically EMFILE under a flood: back off instead of spinning; the
                // listener stays usable.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, router: Router) {
    let abort = Arc::new(ConnAbort::default());
    let io = TokioIo::new(ResettableStream {
        stream,
        abort: Arc::clone(&abort),
    });
    let tower = TowerToHyperService::new(router);
    let for_requests = Arc::clone(&abort);
    let service = service_fn(move |mut req| {
        req.extensions_mut().insert(Arc::clone(&for_requests));
        tower.call(req)
    });
    let connection = http1::Builder::new().serve_connection(io, service);
    tokio::select! {
        // Errors here are the client's doing (bad HTTP, hang-ups): nothing to report.
        _ = connection => {}
        // Leaving the select drops `connection`, and with it the stream: a reset.
        () = abort.notify.notified() => {}
    }
}
