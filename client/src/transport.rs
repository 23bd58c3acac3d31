//! One HTTP/1.1 request to the daemon over its Unix socket, classified for the
//! fallback table (SPEC §4, STYLE example 13).
//!
//! - `Dead`: no socket, or nobody listening (ENOENT, ECONNREFUSED): fall back at once.
//! - `Hung`: connected but no answer within the deadline (a stopped or wedged
//!   daemon): fall back, with a hint.
//! - `Stale`: the daemon answered with another protocol version: fall back, and
//!   suggest `latchkey daemon restart`.
//! - `Answer`: a typed answer, success or error, which is final.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
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
    Stale { theirs: String },
}

/// The most a daemon answer may weigh.
const MAX_REPLY: usize = 1024 * 1024;

/// Sends one request and waits at most `deadline` for the whole answer.
pub async fn call(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    deadline: Duration,
) -> Reach {
    match tokio::time::timeout(deadline, exchange(socket, method, path, body)).await {
        Ok(r) => r,
        Err(_) => Reach::Hung,
    }
}

#[cfg(not(unix))]
async fn exchange(_socket: &Path, _method: &str, _path: &str, _body: Option<Vec<u8>>) -> Reach {
    // Named pipes are not implemented yet: every call uses the embedded engine.
    Reach::Dead("no daemon transport on this platform yet".into())
}

#[cfg(unix)]
async fn exchange(socket: &Path, method: &str, path: &str, body: Option<Vec<u8>>) -> Reach {
    let stream = match tokio::net::UnixStream::connect(socket).await {
        Ok(s) => s,
        Err(e) => return Reach::Dead(e.to_string()),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(x) => x,
        Err(e) => return Reach::Dead(e.to_string()),
    };
    // The connection driver ends with the request; its own error shows up below.
    let driver = tokio::spawn(conn);
    let has_body = body.is_some();
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "latchkeyd")
        .header(PROTOCOL_HEADER, PROTOCOL_VERSION)
        .header(
            hyper::header::CONTENT_TYPE,
            if has_body {
                "application/json"
            } else {
                "text/plain"
            },
        )
        .body(Full::new(Bytes::from(body.unwrap_or_default())));
    let request = match request {
        Ok(r) => r,
        Err(e) => return Reach::Dead(format!("cannot build the request: {e}")),
    };
    let response = match sender.send_request(request).await {
        Ok(r) => r,
        Err(e) => {
            driver.abort();
            return Reach::Dead(e.to_string());
        }
    };
    let theirs = response
        .headers()
        .get(PROTOCOL_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_string();
    if theirs != PROTOCOL_VERSION.to_string() {
        driver.abort();
        return Reach::Stale { theirs };
    }
    let status = response.status().as_u16();
    let limited = http_body_util::Limited::new(response.into_body(), MAX_REPLY);
    let body = match limited.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            driver.abort();
            return Reach::Dead(format!("the answer broke off: {e}"));
        }
    };
    driver.abort();
    Reach::Answer(Reply { status, body })
}
