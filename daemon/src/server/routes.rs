//! The socket API's routes (docs/behaviour.md, "Socket API") and the one mapping of
//! engine errors to HTTP.
//!
//! Every handler takes the connection's [`PeerVerified`], which only the peer check
//! can create. Each request gets one audit line (peer pid, uid, executable, endpoint,
//! profile, outcome, duration), never token material. Every response carries the
//! `Latchkey-Protocol` header; a client that sends another protocol gets a usage
//! error it can recognise as "stale daemon".

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Extension, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_proto::api;
use latchkey_proto::error::{Category, ErrorBody, ErrorDocument};
use latchkey_proto::{PROTOCOL_HEADER, PROTOCOL_VERSION};
use serde::Deserialize;

use super::peer::PeerVerified;
use super::state::Daemon;
use crate::convert::{self, rfc3339};
use crate::engine::Served;
use crate::error::EngineError;

/// The most a request body may weigh: request bodies are bounded.
pub const MAX_BODY: usize = 64 * 1024;
/// Every ordinary request's deadline. A refresh against a slow provider is bounded
/// by the HTTP client's own 30 s; this is the outer bound.
pub const DEADLINE: Duration = Duration::from_secs(40);

/// What the audit line says about a request, set by the handler.
#[derive(Debug, Clone)]
struct Audit {
    profile: Option<String>,
    outcome: &'static str,
}

type Shared = State<Arc<Daemon>>;

/// The API as a router, for the server loop and for in-process tests.
pub fn router(daemon: Arc<Daemon>) -> Router {
    // Routes that answer from the configuration: each first re-reads config.toml
    // when it changed on disk (one stat).
    let configured = Router::new()
        .route("/v1/profiles", get(profiles))
        .route("/v1/profiles/{profile}/token", get(token))
        .route("/v1/profiles/{profile}/session", get(session))
        .route("/v1/profiles/{profile}/refresh", post(refresh))
        .route("/v1/profiles/{profile}/logout", post(logout))
        .route("/v1/profiles/{profile}/login", post(login))
        .route("/v1/status", get(status))
        .route_layer(middleware::from_fn_with_state(
            daemon.clone(),
            synced_config,
        ));
    let bounded = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/shutdown", post(shutdown))
        .merge(configured)
        .layer(middleware::from_fn(deadline));
    // Long-polls and the event stream bound themselves.
    let long = Router::new()
        .route("/v1/logins/{id}", get(login_status))
        .route("/v1/events", get(events));
    bounded
        .merge(long)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(daemon.clone(), audit))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(daemon)
}

async fn synced_config(
    State(d): Shared,
    params: axum::extract::RawPathParams,
    req: Request,
    next: Next,
) -> Response {
    if let Err(e) = d.sync_config() {
        let profile = params
            .iter()
            .find(|(k, _)| *k == "profile")
            .map(|(_, v)| v.to_string());
        return fail(&e, profile.as_deref(), None);
    }
    next.run(req).await
}

async fn deadline(req: Request, next: Next) -> Response {
    match tokio::time::timeout(DEADLINE, next.run(req)).await {
        Ok(r) => r,
        Err(_) => problem(
            StatusCode::GATEWAY_TIMEOUT,
            ErrorBody {
                category: Category::Transport,
                message: format!("the request did not finish within {} s", DEADLINE.as_secs()),
                hint: Some("try again; `latchkey doctor --server` checks the provider".into()),
                retryable: true,
            },
            None,
        ),
    }
}

async fn audit(
    State(daemon): Shared,
    Extension(peer): Extension<PeerVerified>,
    req: Request,
    next: Next,
) -> Response {
    daemon.touch();
    let start = Instant::now();
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "(unknown)".to_string(), |m| m.as_str().to_string());
    let method = req.method().clone();
    let theirs = req
        .headers()
        .get(PROTOCOL_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut response = match theirs {
        Some(v) if v.trim() != PROTOCOL_VERSION.to_string() => problem(
            StatusCode::BAD_REQUEST,
            ErrorBody {
                category: Category::Usage,
                message: format!("this daemon speaks protocol {PROTOCOL_VERSION}, the client {v}"),
                hint: Some("run `latchkey daemon restart`".into()),
                retryable: false,
            },
            None,
        ),
        _ => next.run(req).await,
    };
    // Rejections made by the framework (bad query, bad or oversized body, wrong
    // method) come as plain text: give them the one error shape of the API.
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status().is_client_error() && !is_json {
        let status = response.status();
        let message = match status {
            StatusCode::PAYLOAD_TOO_LARGE => {
                format!("the request body is larger than {MAX_BODY} bytes")
            }
            StatusCode::METHOD_NOT_ALLOWED => format!("{method} is not allowed on {endpoint}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "send the body as application/json".to_string(),
            _ => format!(
                "the request is not valid for {endpoint} (HTTP {})",
                status.as_u16()
            ),
        };
        let audit = response.extensions().get::<Audit>().cloned();
        response = problem(
            status,
            ErrorBody {
                category: Category::Usage,
                message,
                hint: Some("see docs/api.md".into()),
                retryable: false,
            },
            audit.as_ref().and_then(|a| a.profile.as_deref()),
        );
    }
    response
        .headers_mut()
        .insert(PROTOCOL_HEADER, HeaderValue::from(PROTOCOL_VERSION));
    let a = response.extensions().get::<Audit>().cloned();
    if tracing::enabled!(target: "latchkey::audit", tracing::Level::INFO) {
        tracing::info!(
            target: "latchkey::audit",
            pid = peer.pid(),
            uid = peer.uid(),
            exe = peer.exe().unwrap_or("?"),
            method = %method,
            endpoint,
            profile = a.as_ref().and_then(|a| a.profile.as_deref()).unwrap_or("-"),
            outcome = a.as_ref().map_or("-", |a| a.outcome),
            status = response.status().as_u16(),
            ms = start.elapsed().as_secs_f64() * 1000.0,
        );
    }
    response
}

fn reply<T: serde::Serialize>(body: T, profile: Option<&str>, outcome: &'static str) -> Response {
    let mut r = Json(body).into_response();
    r.extensions_mut().insert(Audit {
        profile: profile.map(str::to_string),
        outcome,
    });
    r
}

fn problem(status: StatusCode, error: ErrorBody, profile: Option<&str>) -> Response {
    let outcome = category_outcome(error.category);
    let mut r = (status, Json(ErrorDocument { error })).into_response();
    r.extensions_mut().insert(Audit {
        profile: profile.map(str::to_string),
        outcome,
    });
    r
}

fn category_outcome(c: Category) -> &'static str {
    c.as_str()
}

/// The one mapping from categories to HTTP statuses. The category stays
/// authoritative; the status is for generic HTTP tooling.
pub fn http_status(c: Category) -> StatusCode {
    match c {
        Category::Usage => StatusCode::BAD_REQUEST,
        Category::NotLoggedIn | Category::SessionExpired => StatusCode::UNAUTHORIZED,
        Category::Forbidden => StatusCode::FORBIDDEN,
        Category::Transport => StatusCode::SERVICE_UNAVAILABLE,
        Category::Server => StatusCode::BAD_GATEWAY,
        Category::LocalStorage | Category::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The JSON error body of an engine error. `hint` overrides the engine's own.
pub fn error_body(e: &EngineError, _profile: &str, hint: Option<String>) -> ErrorBody {
    ErrorBody {
        category: e.category(),
        message: e.to_string(),
        hint: hint.or_else(|| e.hint()),
        retryable: e.retryable(),
    }
}

fn fail(e: &EngineError, profile: Option<&str>, hint: Option<String>) -> Response {
    let status = match e {
        EngineError::Config(crate::error::ConfigError::UnknownProfile { .. }) => {
            StatusCode::NOT_FOUND
        }
        _ => http_status(e.category()),
    };
    problem(status, error_body(e, profile.unwrap_or(""), hint), profile)
}

async fn health(State(d): Shared, Extension(_): Extension<PeerVerified>) -> Response {
    reply(d.health(), None, "served")
}

async fn profiles(State(d): Shared, Extension(_): Extension<PeerVerified>) -> Response {
    reply(
        api::Profiles {
            profiles: d.profiles(),
        },
        None,
        "served",
    )
}

/// Parses an optional JSON body whatever its Content-Type says, so a client that
/// forgot the header still gets what it asked for (`{"revoke": false}` included).
#[allow(
    clippy::result_large_err,
    reason = "the error is the finished response"
)]
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Option<T>, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body).map(Some).map_err(|e| {
        problem(
            StatusCode::BAD_REQUEST,
            ErrorBody {
                category: Category::Usage,
                message: format!("the request body is not valid: {e}"),
                hint: Some("see docs/api.md".into()),
                retryable: false,
            },
            None,
        )
    })
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    min_ttl: Option<u64>,
}

async fn token(
    State(d): Shared,
    Extension(_): Extension<PeerVerified>,
    Path(profile): Path<String>,
    Query(q): Query<TokenQuery>,
) -> Response {
    let min_ttl = q.min_ttl.unwrap_or(crate::engine::DEFAULT_MIN_TTL);
    match d.token(&profile, min_ttl).await {
        Ok(t) => reply(
            api::Token {
                access_token: t.access_token,
                token_type: t.token_type,
                expires_at: t.expires_at.map(rfc3339),
                generation: t.generation,
            },
            Some(&profile),
            match t.served {
                Served::AsHeld => "served",
                Served::Refreshed => "refreshed",
            },
        ),
        Err(e @ EngineError::NotLoggedIn { .. }) => {
            // Never wait on a login: answer at once, pointing at the pending one.
            let hint = d.pending_login_hint(&profile);
            fail(&e, Some(&profile), hint)
        }
        Err(e) => fail(&e, Some(&profile), None),
    }
}

async fn session(
    State(d): Shared,
    Extension(_): Extension<PeerVerified>,
    Path(profile): Path<String>,
) -> Response {
    match d.engine.status(&profile) {
        Ok(st) => reply(convert::session(st), Some(&profile), "served"),
        Err(e) => fail(&e, Some(&profile), None),
    }
}

async fn refresh(
    State(d): Shared,
    Extension(_): Extension<PeerVerified>,
    Path(profile): Path<String>,
) -> Response {
    match d.engine.refresh(&profile).await {
        Ok(t) => reply(
            api::Refreshed {
                profile: profile.clone(),
                expires_at: t.expires_at.map(rfc3339),
                generation: t.generation,
            },
            Some(&profile),
            "refreshed",
        ),
        Err(e) => fail(&e, Some(&profile), None),
    }
}

async fn logout(
    State(d): Shared,
    Extension(_): Extension<PeerVerified>,
    Path(profile): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let revoke = match parse_body::<api::LogoutRequest>(&body) {
        Ok(b) => b.is_none_or(|b| b.revoke),
        Err(r) => return r,
    };
    match d.engine.logout(&profile, revoke).await {
        Ok(outcome) => {
            let name = outcome.name();
            reply(convert::logged_out(outcome), Some(&profile), name)
        }
        Err(e) => fail(&e, Some(&profile), None),
    }
}

async fn login(
    State(d): Shared,
    Extension(_): Extension<PeerVerified>,
    Path(profile): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let flow = match parse_body::<api::LoginRequest>(&body) {
        Ok(b) => b.map_or(api::LoginFlow::Device, |b| b.flow),
        Err(r) => return r,
    };
    match d.start_login(&profile, flow).await {
        Ok(l) => reply(l, Some(&profile), "login_started"),
        Err(e) => fail(&e, Some(&profile), None),
    }
}

#[derive(Debug, Deserialize)]
struct WaitQuery {
    wait: Option<u64>,
}

async fn login_status(
    State(d): Shared,
    Extension(_): Extension<PeerVerified>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Response {
    let Some(l) = d.find_login(&id) else {
        return problem(
            StatusCode::NOT_FOUND,
            ErrorBody {
                category: Category::Usage,
                message: format!(
                    "no login with id {:?}",
                    id.chars().take(40).collect::<String>()
                ),
                hint: Some("logins are kept for 10 minutes after they end".into()),
                retryable: false,
            },
            None,
        );
    };
    let snapshot = l.wait(Duration::from_secs(q.wait.unwrap_or(0))).await;
    let profile = snapshot.profile.clone();
    reply(snapshot, Some(&profile), "served")
}

async fn events(State(d): Shared, Extension(_): Extension<PeerVerified>) -> Response {
    let rx = d.engine.subscribe();
    let guard = Subscriber::new(d.clone());
    let shutdown = d.shutdown.clone();
    let stream = futures_util::stream::unfold(
        (rx, guard, shutdown),
        |(mut rx, guard, shutdown)| async move {
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return None,
                    n = rx.recv() => n,
                };
                match next {
                    Ok(change) => {
                        let event = Event::default()
                            .event("session")
                            .json_data(convert::session_event(change))
                            .ok()?;
                        return Some((Ok::<_, Infallible>(event), (rx, guard, shutdown)));
                    }
                    // A slow subscriber lost some events; it keeps the newer ones.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    // A comment first, so the response head goes out at once and a client with a
    // header timeout sees the subscription is live.
    let hello = futures_util::stream::once(async {
        Ok::<_, Infallible>(Event::default().comment("subscribed"))
    });
    let stream = futures_util::StreamExt::chain(hello, stream);
    let mut r = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    r.extensions_mut().insert(Audit {
        profile: None,
        outcome: "subscribed",
    });
    r
}

/// Counts event subscribers for the operator status while a stream lives.
struct Subscriber(Arc<Daemon>);

impl Subscriber {
    fn new(d: Arc<Daemon>) -> Self {
        d.counters.event_subscribers.fetch_add(1, Ordering::Relaxed);
        Subscriber(d)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.0
            .counters
            .event_subscribers
            .fetch_sub(1, Ordering::Relaxed);
    }
}

async fn status(State(d): Shared, Extension(_): Extension<PeerVerified>) -> Response {
    reply(d.status(), None, "served")
}

async fn shutdown(State(d): Shared, Extension(peer): Extension<PeerVerified>) -> Response {
    tracing::info!(pid = peer.pid(), "shutdown requested over the socket");
    d.shutdown.cancel();
    let mut r = reply(serde_json::json!({"stopping": true}), None, "shutdown");
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

async fn not_found(Extension(_): Extension<PeerVerified>) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        ErrorBody {
            category: Category::Usage,
            message: "no such endpoint".into(),
            hint: Some("see docs/openapi.yaml".into()),
            retryable: false,
        },
        None,
    )
}
