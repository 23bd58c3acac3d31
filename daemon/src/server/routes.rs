//! The socket API's routes (docs/behaviour.md, "Socket API"; `docs/api.md`,
//! `docs/openapi.yaml`) and the one mapping of engine errors to HTTP.
//!
//! The router serves exactly the proto's closed set of endpoints
//! ([`latchkey_proto::request::Endpoint::ALL`]), each at the proto's template and
//! method, and each handler answers the body type of the proto's request type for
//! it (`reply` takes `R::Answer`). A profile in the path is a [`ProfileName`] by
//! the time a handler runs: a name that breaks the rules is a `usage` error before
//! any handler logic.
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

use axum::extract::{
    DefaultBodyLimit, Extension, FromRequestParts, MatchedPath, Path, Query, Request, State,
};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Json, Router};
use latchkey_proto::api;
use latchkey_proto::delegation::ScopeKind;
use latchkey_proto::error::{Category, ErrorBody, ErrorDocument};
use latchkey_proto::profile::ProfileName;
use latchkey_proto::proxy::PROXIED_HEADER;
use latchkey_proto::request::{self as rq, Endpoint, Method};
use latchkey_proto::{PROTOCOL_HEADER, PROTOCOL_VERSION};
use serde::Deserialize;

use super::access::{self, Caller};
use super::peer::Peer;
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
pub(super) struct Audit {
    pub profile: Option<String>,
    pub outcome: &'static str,
}

type Shared = State<Arc<Daemon>>;

/// Which middleware an endpoint runs behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    /// Answers from the configuration: config.toml is re-read first when it
    /// changed on disk (one stat), then the request deadline applies.
    Configured,
    /// The request deadline only.
    Bounded,
    /// Long-polls and the event stream, which bound themselves.
    Long,
    /// The API proxy: config.toml synced, no request deadline (bodies stream for
    /// as long as they take; the proxy bounds connects and reads itself).
    Streaming,
}

/// The handler of each endpoint and its group. The match is exhaustive, so an
/// endpoint of the proto's set without a handler does not compile; the method comes
/// from the set (`on(method(e), …)`), not from here.
fn handler(e: Endpoint) -> (Group, MethodRouter<Arc<Daemon>>) {
    let m = method(e);
    match e {
        Endpoint::Health => (Group::Bounded, on(m, health)),
        Endpoint::Profiles => (Group::Configured, on(m, profiles)),
        Endpoint::Token => (Group::Configured, on(m, token)),
        Endpoint::IdToken => (Group::Configured, on(m, id_token)),
        Endpoint::Session => (Group::Configured, on(m, session)),
        Endpoint::Refresh => (Group::Configured, on(m, refresh)),
        Endpoint::Logout => (Group::Configured, on(m, logout)),
        Endpoint::Login => (Group::Configured, on(m, login)),
        Endpoint::LoginStatus => (Group::Long, on(m, login_status)),
        Endpoint::Events => (Group::Long, on(m, events)),
        Endpoint::Status => (Group::Configured, on(m, status)),
        Endpoint::Shutdown => (Group::Bounded, on(m, shutdown)),
        // Configured: the scopes must name profiles of the current config.toml.
        Endpoint::MintClientToken => (Group::Configured, on(m, super::admin::mint)),
        Endpoint::ListClientTokens => (Group::Bounded, on(m, super::admin::list)),
        Endpoint::RevokeClientToken => (Group::Bounded, on(m, super::admin::revoke)),
        Endpoint::Proxy => (Group::Streaming, on(m, super::proxy::proxy)),
    }
}

fn method(e: Endpoint) -> MethodFilter {
    match e.method() {
        Method::Get => MethodFilter::GET,
        Method::Post => MethodFilter::POST,
        Method::Delete => MethodFilter::DELETE,
        // Exactly `Method::ANY` (a unit test holds them together); an extension
        // method (PROPFIND…) gets 405, or 403 for a token.
        Method::Any => MethodFilter::GET
            .or(MethodFilter::HEAD)
            .or(MethodFilter::POST)
            .or(MethodFilter::PUT)
            .or(MethodFilter::PATCH)
            .or(MethodFilter::DELETE)
            .or(MethodFilter::OPTIONS),
    }
}

/// The API as a router, for the server loop and for in-process tests: every
/// endpoint of [`Endpoint::ALL`] at its template, and nothing else.
pub fn router(daemon: Arc<Daemon>) -> Router {
    let (mut configured, mut bounded, mut long, mut streaming) =
        (Router::new(), Router::new(), Router::new(), Router::new());
    for e in Endpoint::ALL {
        let (group, route) = handler(e);
        let routes = match group {
            Group::Configured => &mut configured,
            Group::Bounded => &mut bounded,
            Group::Long => &mut long,
            Group::Streaming => &mut streaming,
        };
        *routes = std::mem::take(routes).route(e.template(), route);
    }
    let configured = configured.route_layer(middleware::from_fn_with_state(
        daemon.clone(),
        synced_config,
    ));
    let streaming = streaming.route_layer(middleware::from_fn_with_state(
        daemon.clone(),
        synced_config,
    ));
    let bounded = bounded
        .merge(configured)
        .layer(middleware::from_fn(deadline));
    bounded
        .merge(long)
        .merge(streaming)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(daemon.clone(), front))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(daemon)
}

/// A profile name from the path, checked against the naming rules before any
/// handler logic: a name that breaks them is a `usage` error (400) that quotes it
/// escaped, and the handler only ever sees a [`ProfileName`].
#[derive(Debug)]
struct Profile(ProfileName);

impl<S: Send + Sync> FromRequestParts<S> for Profile {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        ProfileName::new(raw)
            .map(Profile)
            .map_err(|e| bad_profile_name(&e))
    }
}

/// The `usage` error (400) for a profile name in a path that breaks the rules.
pub(super) fn bad_profile_name(e: &impl std::fmt::Display) -> Response {
    problem(
        StatusCode::BAD_REQUEST,
        ErrorBody {
            category: Category::Usage,
            message: e.to_string(),
            hint: Some("see `latchkey profile list`".into()),
            retryable: false,
        },
        None,
    )
}

async fn synced_config(
    State(d): Shared,
    params: axum::extract::RawPathParams,
    req: Request,
    next: Next,
) -> Response {
    if let Err(e) = d.sync_config() {
        // Only a valid name goes into the audit line.
        let profile = params
            .iter()
            .find(|(k, _)| *k == "profile")
            .and_then(|(_, v)| ProfileName::new(v).ok());
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

/// Every request passes here first, in one layer (each layer costs the token hot
/// path): the access check ([`access::authorize`]), then the protocol check, then
/// the route; afterwards the framework's rejections get the API's error shape,
/// the response its `Latchkey-Protocol` header, and the request its audit line.
async fn front(
    State(daemon): Shared,
    Extension(peer): Extension<Peer>,
    mut req: Request,
    next: Next,
) -> Response {
    daemon.touch();
    let start = Instant::now();
    // Cheap clones: the matched path is shared, a standard method is inline.
    let endpoint = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let (mut response, caller_token) = match access::authorize(&daemon, &peer, &req) {
        Err(refused) => (
            refused.response,
            refused.token_id.map(|id| (id, refused.token_name)),
        ),
        Ok(caller) => {
            let token = caller.token().map(|t| (t.id.clone(), Some(t.name.clone())));
            // After the access check: a caller that may not use the daemon at all
            // learns nothing, not even the protocol.
            let response = match stale_protocol(&req) {
                Some(refused) => refused,
                None => {
                    req.extensions_mut().insert(caller);
                    next.run(req).await
                }
            };
            (response, token)
        }
    };
    let endpoint = endpoint.as_ref().map_or("(unknown)", MatchedPath::as_str);
    // Rejections made by the framework (bad query, bad or oversized body, wrong
    // method) come as plain text: give them the one error shape of the API. An
    // upstream's answer through the proxy is the upstream's, untouched.
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let proxied = response.headers().contains_key(PROXIED_HEADER);
    if response.status().is_client_error() && !is_json && !proxied {
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
    if tracing::enabled!(target: "latchkey::audit", tracing::Level::INFO) {
        let a = response.extensions().get::<Audit>();
        let (token_id, token_name) = caller_token.as_ref().map_or(("-", "-"), |(id, name)| {
            (id.as_str(), name.as_deref().unwrap_or("-"))
        });
        // Only a proxied request has these; a `None` field is left out of the line.
        let proxied = response.extensions().get::<super::proxy::ProxyAudit>();
        tracing::info!(
            target: "latchkey::audit",
            listener = peer.listener(),
            pid = peer.pid(),
            uid = peer.uid(),
            exe = %peer.origin(),
            client_token = token_id,
            client_token_name = token_name,
            method = %method,
            endpoint,
            profile = a.and_then(|a| a.profile.as_deref()).unwrap_or("-"),
            upstream = proxied.map(|p| p.host.as_str()),
            path = proxied.map(|p| p.path.as_str()),
            retried = proxied.map(|p| p.retried),
            outcome = a.map_or("-", |a| a.outcome),
            status = response.status().as_u16(),
            // Microsecond resolution, not f64's seventeen digits.
            ms = %format_args!("{:.3}", start.elapsed().as_secs_f64() * 1000.0),
        );
    }
    response
}

/// A client of another protocol gets a `usage` error it can recognise as "stale
/// daemon".
fn stale_protocol(req: &Request) -> Option<Response> {
    let theirs = req.headers().get(PROTOCOL_HEADER)?;
    let theirs = String::from_utf8_lossy(theirs.as_bytes());
    (theirs.trim().parse::<u32>() != Ok(PROTOCOL_VERSION)).then(|| {
        problem(
            StatusCode::BAD_REQUEST,
            ErrorBody {
                category: Category::Usage,
                message: format!(
                    "this daemon speaks protocol {PROTOCOL_VERSION}, the client {theirs}"
                ),
                hint: Some("run `latchkey daemon restart`".into()),
                retryable: false,
            },
            None,
        )
    })
}

/// A success: the answer type of the endpoint's request in the proto's set.
pub(super) fn reply<R: rq::Request>(
    body: R::Answer,
    profile: Option<&str>,
    outcome: &'static str,
) -> Response {
    let mut r = Json(body).into_response();
    r.extensions_mut().insert(Audit {
        profile: profile.map(str::to_string),
        outcome,
    });
    r
}

pub(super) fn problem(status: StatusCode, error: ErrorBody, profile: Option<&str>) -> Response {
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

/// The HTTP status of a category, by the proto's one mapping
/// ([`Category::http_status`]). The category stays authoritative; the status is
/// for generic HTTP tooling.
pub fn http_status(c: Category) -> StatusCode {
    StatusCode::from_u16(c.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
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

pub(super) fn fail(e: &EngineError, profile: Option<&str>, hint: Option<String>) -> Response {
    let status = match e {
        EngineError::Config(crate::error::ConfigError::UnknownProfile { .. }) => {
            StatusCode::NOT_FOUND
        }
        EngineError::Proxy(crate::proxy::ProxyError::Unreachable { .. }) => StatusCode::BAD_GATEWAY,
        EngineError::Proxy(crate::proxy::ProxyError::TooSlow { .. }) => StatusCode::GATEWAY_TIMEOUT,
        _ => http_status(e.category()),
    };
    problem(status, error_body(e, profile.unwrap_or(""), hint), profile)
}

async fn health(State(d): Shared, Extension(_): Extension<Caller>) -> Response {
    reply::<rq::Health>(d.health(), None, "served")
}

async fn profiles(State(d): Shared, Extension(caller): Extension<Caller>) -> Response {
    let mut profiles = d.profiles().await;
    if let Some(allowed) = caller.limited_to(ScopeKind::Session) {
        profiles.retain(|p| allowed.iter().any(|a| a.as_str() == p.name));
    }
    reply::<rq::Profiles>(api::Profiles { profiles }, None, "served")
}

/// Parses an optional JSON body whatever its Content-Type says, so a client that
/// forgot the header still gets what it asked for (`{"revoke": false}` included).
#[allow(
    clippy::result_large_err,
    reason = "the error is the finished response"
)]
pub(super) fn parse_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<Option<T>, Response> {
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
    Extension(_): Extension<Caller>,
    Profile(profile): Profile,
    Query(q): Query<TokenQuery>,
) -> Response {
    let min_ttl = q.min_ttl.unwrap_or(crate::engine::DEFAULT_MIN_TTL);
    match d.token(&profile, min_ttl).await {
        Ok(t) => reply::<rq::Token>(
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
        Err(e) => token_refused(&d, &e, &profile),
    }
}

/// A token request's error. Never wait on a login: without a session the answer
/// is at once, pointing at the pending login if there is one.
fn token_refused(d: &Daemon, e: &EngineError, profile: &ProfileName) -> Response {
    let hint = match e {
        EngineError::NotLoggedIn { .. } => d.pending_login_hint(profile),
        _ => None,
    };
    fail(e, Some(profile), hint)
}

async fn id_token(
    State(d): Shared,
    Extension(_): Extension<Caller>,
    Profile(profile): Profile,
    Query(q): Query<TokenQuery>,
) -> Response {
    let min_ttl = q.min_ttl.unwrap_or(crate::engine::DEFAULT_MIN_TTL);
    match d.id_token(&profile, min_ttl).await {
        Ok(t) => reply::<rq::IdToken>(convert::id_token(t), Some(&profile), "served"),
        Err(e) => token_refused(&d, &e, &profile),
    }
}

async fn session(
    State(d): Shared,
    Extension(_): Extension<Caller>,
    Profile(profile): Profile,
) -> Response {
    match d.engine.status(&profile).await {
        Ok(st) => reply::<rq::Session>(convert::session(st), Some(&profile), "served"),
        Err(e) => fail(&e, Some(&profile), None),
    }
}

async fn refresh(
    State(d): Shared,
    Extension(_): Extension<Caller>,
    Profile(profile): Profile,
) -> Response {
    match d.engine.refresh(&profile).await {
        Ok(t) => reply::<rq::Refresh>(
            api::Refreshed {
                profile: profile.to_string(),
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
    Extension(_): Extension<Caller>,
    Profile(profile): Profile,
    body: axum::body::Bytes,
) -> Response {
    let revoke = match parse_body::<api::LogoutRequest>(&body) {
        Ok(b) => b.is_none_or(|b| b.revoke),
        Err(r) => return r,
    };
    match d.engine.logout(&profile, revoke).await {
        Ok(outcome) => {
            let name = outcome.name();
            reply::<rq::Logout>(convert::logged_out(outcome), Some(&profile), name)
        }
        Err(e) => fail(&e, Some(&profile), None),
    }
}

async fn login(
    State(d): Shared,
    Extension(_): Extension<Caller>,
    Profile(profile): Profile,
    body: axum::body::Bytes,
) -> Response {
    let flow = match parse_body::<api::LoginRequest>(&body) {
        Ok(b) => b.map_or(api::LoginFlow::Device, |b| b.flow),
        Err(r) => return r,
    };
    match d.start_login(&profile, flow).await {
        Ok(l) => reply::<rq::Login>(l, Some(&profile), "login_started"),
        Err(e) => fail(&e, Some(&profile), None),
    }
}

#[derive(Debug, Deserialize)]
struct WaitQuery {
    wait: Option<u64>,
}

async fn login_status(
    State(d): Shared,
    Extension(caller): Extension<Caller>,
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
    if !caller.allows(ScopeKind::Login, &l.profile) {
        return problem(
            StatusCode::FORBIDDEN,
            ErrorBody {
                category: Category::Forbidden,
                message: format!("this client token lacks the scope login:{}", l.profile),
                hint: None,
                retryable: false,
            },
            None,
        );
    }
    let snapshot = l.wait(Duration::from_secs(q.wait.unwrap_or(0))).await;
    let profile = snapshot.profile.clone();
    reply::<rq::LoginStatus>(snapshot, Some(&profile), "served")
}

async fn events(State(d): Shared, Extension(caller): Extension<Caller>) -> Response {
    let rx = d.engine.subscribe();
    let allowed = caller.limited_to(ScopeKind::Session);
    // A client token's stream ends at the first event after it was revoked or
    // expired: a revocation reaches open streams too.
    let token = caller.token().map(|t| t.id.clone());
    let engine = d.engine.clone();
    let guard = Subscriber::new(d.clone());
    let shutdown = d.shutdown.clone();
    let stream = futures_util::stream::unfold(
        (rx, guard, shutdown, allowed, token, engine),
        |(mut rx, guard, shutdown, allowed, token, engine)| async move {
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return None,
                    n = rx.recv() => n,
                };
                if next.is_ok()
                    && let Some(id) = &token
                    && !engine.client_tokens().is_live(id, crate::vault::unix_now())
                {
                    return None;
                }
                match next {
                    Ok(change)
                        if allowed
                            .as_ref()
                            .is_some_and(|a| !a.iter().any(|p| p.as_str() == change.profile)) =>
                    {
                        continue;
                    }
                    Ok(change) => {
                        let event = Event::default()
                            .event("session")
                            .json_data(convert::session_event(change))
                            .ok()?;
                        return Some((
                            Ok::<_, Infallible>(event),
                            (rx, guard, shutdown, allowed, token, engine),
                        ));
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

async fn status(State(d): Shared, Extension(_): Extension<Caller>) -> Response {
    reply::<rq::Status>(d.status().await, None, "served")
}

async fn shutdown(
    State(d): Shared,
    Extension(_): Extension<Caller>,
    Extension(peer): Extension<Peer>,
) -> Response {
    tracing::info!(pid = peer.pid(), "shutdown requested over the socket");
    d.shutdown.cancel();
    let mut r = reply::<rq::Shutdown>(api::Stopping { stopping: true }, None, "shutdown");
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

async fn not_found(Extension(_): Extension<Caller>) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        ErrorBody {
            category: Category::Usage,
            message: latchkey_proto::error::NO_SUCH_ENDPOINT.into(),
            hint: Some("see docs/openapi.yaml".into()),
            retryable: false,
        },
        None,
    )
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use latchkey_proto::paths::{EnvInputs, Paths};
    use tower::ServiceExt;

    use super::*;
    use crate::Engine;
    use crate::config::Config;

    /// The real router over a home whose profile `work` has no session and whose
    /// provider is a closed port, with the peer value of a real socketpair.
    struct Fixture {
        _home: tempfile::TempDir,
        _pair: (tokio::net::UnixStream, tokio::net::UnixStream),
        peer: crate::server::PeerVerified,
        app: Router,
    }

    fn fixture() -> Fixture {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let home = tempfile::tempdir().unwrap();
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let uid = a.peer_cred().unwrap().uid();
        let peer = super::super::peer::verify_unix(&a, uid).unwrap();
        let paths = Paths::resolve(&EnvInputs {
            latchkey_home: Some(home.path().to_path_buf()),
            temp_dir: std::env::temp_dir(),
            uid,
            ..EnvInputs::default()
        })
        .unwrap();
        let p = "http://127.0.0.1:1";
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&paths.config_file)
            .unwrap()
            .write_all(
                format!(
                    "[vault]\nscrypt_log_n = 10\n\n[profiles.work]\nissuer = \"{p}\"\n\
                     client_id = \"c\"\ntoken_endpoint = \"{p}/token\"\n\
                     device_authorization_endpoint = \"{p}/device\"\n"
                )
                .as_bytes(),
            )
            .unwrap();
        let config = Config::load(&paths.config_file).unwrap();
        let socket = paths.socket.clone();
        let daemon = Daemon::new(
            Engine::new(paths, config),
            socket,
            api::Activation::SelfBound,
        );
        Fixture {
            _home: home,
            _pair: (a, b),
            peer,
            app: router(daemon),
        }
    }

    async fn ask(fx: &Fixture, method: &str, path: &str) -> (StatusCode, Option<ErrorBody>) {
        let mut req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(super::super::peer::Peer::Owner(fx.peer.clone()));
        let response = fx.app.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let is_stream = response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if is_stream {
            return (status, None);
        }
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let error = serde_json::from_slice::<ErrorDocument>(&body)
            .ok()
            .map(|d| d.error);
        (status, error)
    }

    /// Every endpoint of the proto's set is routed at its template and method (a
    /// handler answers, not the fallback), and answers another method with 405.
    #[tokio::test]
    async fn the_router_serves_exactly_the_proto_set() {
        let fx = fixture();
        for e in Endpoint::ALL {
            let path = e
                .template()
                .replace("{profile}", "work")
                .replace("{id}", "0123")
                .replace("{*path}", "v2/me");
            let methods: &[&str] = match e.method() {
                Method::Any => &Method::ANY,
                m => &[m.as_str()],
            };
            for method in methods {
                let (status, error) = ask(&fx, method, &path).await;
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{e:?} {path}");
                assert!(
                    error
                        .as_ref()
                        .is_none_or(|e| e.message != "no such endpoint"),
                    "{e:?} {path} is not routed"
                );
            }
            // No endpoint takes PUT but the proxy, and none TRACE or an extension
            // method.
            let other = if e.method() == Method::Any {
                "TRACE"
            } else {
                "PUT"
            };
            let (status, error) = ask(&fx, other, &path).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{other} {path}");
            assert_eq!(error.map(|e| e.category), Some(Category::Usage));
        }
        let (status, error) = ask(&fx, "GET", "/v1/nothing").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(error.unwrap().message, "no such endpoint");
    }

    /// A profile name that breaks the rules is a usage error before any handler
    /// logic; an unknown valid one is still 404.
    #[tokio::test]
    async fn a_bad_profile_name_is_a_usage_error() {
        let fx = fixture();
        for (method, path) in [
            ("GET", "/v1/profiles/../token?min_ttl=60"),
            ("GET", "/v1/profiles/a%2Fb/session"),
            ("POST", "/v1/profiles/.x/refresh"),
            ("POST", "/v1/profiles/a%20b/logout"),
            ("POST", "/v1/profiles/%C3%A9/login"),
        ] {
            let (status, error) = ask(&fx, method, path).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
            let error = error.unwrap();
            assert_eq!(error.category, Category::Usage, "{path}");
            assert!(
                error.message.starts_with("invalid profile name"),
                "{path}: {}",
                error.message
            );
        }
        let (status, error) = ask(&fx, "GET", "/v1/profiles/nope/session").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(error.unwrap().category, Category::Usage);
    }

    #[test]
    fn http_statuses_follow_the_proto_mapping() {
        for c in Category::ALL {
            assert_eq!(http_status(c).as_u16(), c.http_status());
        }
    }
}
