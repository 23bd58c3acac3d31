//! A minimal HTTP/1.1 client for tests that talk to the fake provider directly (admin
//! endpoints, userinfo checks, hand-driven OAuth steps).
//!
//! One fresh connection per request: no pool, so a scripted connection reset affects only
//! the request that got it, and nothing is retried or redirected behind the test's back.
//! Every request is bounded by [`TIMEOUT`] so a broken fake fails a test instead of hanging.

use std::fmt;
use std::io;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use url::{Position, Url};

/// Upper bound on one request, connect to last body byte.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A complete response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl HttpResponse {
    /// A header as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
    }

    /// The body as JSON of type `T`.
    pub fn json_as<T: DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_slice(&self.body)
    }
}

/// Why no response arrived.
#[derive(Debug)]
pub enum HttpError {
    /// The URL or a header could not be used (only `http://` URLs are supported).
    Request(String),
    /// TCP connect failed (refused: nothing listens).
    Connect(io::Error),
    /// The HTTP exchange failed after connecting: reset, EOF before a response, bad HTTP.
    Http(hyper::Error),
    /// [`TIMEOUT`] passed.
    Timeout,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Request(why) => write!(f, "bad request: {why}"),
            Self::Connect(e) => write!(f, "connect failed: {e}"),
            Self::Http(e) => write!(f, "HTTP exchange failed: {e}"),
            Self::Timeout => write!(f, "no response within {TIMEOUT:?}"),
        }
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect(e) => Some(e),
            Self::Http(e) => Some(e),
            Self::Request(_) | Self::Timeout => None,
        }
    }
}

/// Sends one request with `headers` and `body` and reads the whole response.
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<HttpResponse, HttpError> {
    tokio::time::timeout(TIMEOUT, exchange(method, url, headers, body))
        .await
        .map_err(|_| HttpError::Timeout)?
}

async fn exchange(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<HttpResponse, HttpError> {
    let url = Url::parse(url).map_err(|e| HttpError::Request(e.to_string()))?;
    if url.scheme() != "http" {
        return Err(HttpError::Request(format!("unsupported scheme in {url}")));
    }
    let host = url
        .host_str()
        .ok_or_else(|| HttpError::Request(format!("no host in {url}")))?;
    // `connect` wants a bare IPv6 address, the Host header the bracketed form.
    let connect_host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(80);
    let stream = TcpStream::connect((connect_host, port))
        .await
        .map_err(HttpError::Connect)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(HttpError::Http)?;
    // The connection future drives the socket; its errors also reach `send_request`.
    tokio::spawn(connection);

    let mut builder = Request::builder()
        .method(method)
        .uri(&url[Position::BeforePath..Position::AfterQuery])
        .header(HOST, &url[Position::BeforeHost..Position::AfterPort]);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| HttpError::Request(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(HttpError::Http)?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(HttpError::Http)?.to_bytes();
    Ok(HttpResponse {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

/// `GET url`.
pub async fn get(url: &str) -> Result<HttpResponse, HttpError> {
    send(Method::GET, url, &[], Vec::new()).await
}

/// `GET url` with `Authorization: Bearer token`.
pub async fn get_bearer(url: &str, token: &str) -> Result<HttpResponse, HttpError> {
    let auth = format!("Bearer {token}");
    send(
        Method::GET,
        url,
        &[(AUTHORIZATION.as_str(), &auth)],
        Vec::new(),
    )
    .await
}

/// `POST url` with an `application/x-www-form-urlencoded` body.
pub async fn post_form(url: &str, form: &[(&str, &str)]) -> Result<HttpResponse, HttpError> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let content_type = (CONTENT_TYPE.as_str(), "application/x-www-form-urlencoded");
    send(Method::POST, url, &[content_type], body.into_bytes()).await
}

/// `POST url` with a JSON body.
pub async fn post_json<T: Serialize + ?Sized>(
    url: &str,
    body: &T,
) -> Result<HttpResponse, HttpError> {
    let body = serde_json::to_vec(body).map_err(|e| HttpError::Request(e.to_string()))?;
    let content_type = (CONTENT_TYPE.as_str(), "application/json");
    send(Method::POST, url, &[content_type], body).await
}

/// `DELETE url`.
pub async fn delete(url: &str) -> Result<HttpResponse, HttpError> {
    send(Method::DELETE, url, &[], Vec::new()).await
}
