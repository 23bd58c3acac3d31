//! The API proxy's forwarding (docs/behaviour.md, "The API proxy"): one
//! consumer request sent to a profile's upstream with the session's access token
//! added, and the one retry after a 401. The daemon's `/v1/proxy` route and
//! `latchkey api` without a daemon both call [`Engine::forward`], so the rule
//! lives here once; the header, challenge and path rules it applies are the
//! proto's ([`latchkey_proto::proxy`]).
//!
//! 1. The URL is `upstream + "/" + path` with the consumer's query. The path is
//!    checked first (no `.`/`..` segments), and the URL built must still have
//!    the upstream's scheme, host and port: the token never goes anywhere else.
//! 2. The access token comes from the session service like any other token
//!    request (fresh enough for a minute, refreshed first if not).
//! 3. Headers pass except hop-by-hop ones, `Authorization`, `Host` and
//!    `Latchkey-*`; redirects are never followed (the client has no redirect
//!    policy), so a `Location` elsewhere goes back to the consumer untouched.
//! 4. A 401 whose challenge says the token was refused
//!    ([`latchkey_proto::proxy::wants_new_token`]) renews the token unless the
//!    session moved on since the token was read ([`Engine::renew_rejected`]:
//!    concurrent 401s cause one refresh). A replayable request (no body, or one of
//!    at most [`MAX_REPLAY`] bytes, kept for this) is sent once more with the new
//!    token and answered with `Latchkey-Retried: 1`; a streamed one gets the 401,
//!    and the next request uses the new token. When the retry is refused too,
//!    the new token is not renewed again for a rejection for a minute
//!    ([`RENEWAL_QUIET`]): an API that refuses every token must not turn every
//!    request into a refresh.
//! 5. A 403 and everything else passes back as the upstream sent it, marked
//!    `Latchkey-Proxied: 1`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Response;
use latchkey_proto::proxy::{
    self as rules, BadPath, MAX_REPLAY, PROXIED_HEADER, RETRIED_HEADER, check_path,
};
use reqwest::header::{
    AUTHORIZATION, CONNECTION, CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};
use url::Url;

use crate::engine::{AccessToken, DEFAULT_MIN_TTL, Engine};
use crate::error::EngineError;

/// How long a token renewed after a rejection is not renewed again for one
/// ([`Engine::renew_rejected`]).
pub const RENEWAL_QUIET: Duration = Duration::from_secs(60);
/// How long a TCP + TLS connection to an upstream may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an upstream may take from the request's start to its answer's head,
/// unless the profile sets `timeout_seconds`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The most `timeout_seconds` may say, and how long a response body may stall
/// between two parts (reqwest's read timeout, which bounds the head too).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    #[error(
        "profile {profile:?} has no API proxy: config.toml sets no [profiles.{profile}.proxy] upstream"
    )]
    NoUpstream { profile: String },
    #[error("{0}")]
    Path(#[from] BadPath),
    #[error("the upstream {host} cannot be reached: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("the upstream {host} did not answer within {} s", secs)]
    TooSlow { host: String, secs: u64 },
    #[error("the request could not be read: {0}")]
    Body(String),
    #[error("{method} {path} is outside the allow list of [profiles.{profile}.proxy]")]
    NotAllowed {
        profile: String,
        method: String,
        path: String,
    },
}

/// A consumer's request body.
#[derive(Debug)]
pub enum Body {
    Empty,
    /// At most [`MAX_REPLAY`] bytes, kept: the request can be sent again.
    Replayable(Bytes),
    /// Streamed through as it comes: sent once.
    Streaming(reqwest::Body),
}

impl ProxyError {
    /// The upstream's host, when the failure was the upstream's.
    pub fn host(&self) -> Option<&str> {
        match self {
            ProxyError::Unreachable { host, .. } | ProxyError::TooSlow { host, .. } => Some(host),
            _ => None,
        }
    }
}

impl Body {
    /// A body held in memory, replayable when it is small enough to be kept.
    pub fn from_bytes(bytes: Bytes) -> Body {
        if bytes.is_empty() {
            Body::Empty
        } else if bytes.len() <= MAX_REPLAY {
            Body::Replayable(bytes)
        } else {
            Body::Streaming(reqwest::Body::from(bytes))
        }
    }
}

/// One consumer request for a profile's upstream.
#[derive(Debug)]
pub struct Outgoing {
    pub method: Method,
    /// What follows `/v1/proxy/{profile}/`, as sent (percent-encoding kept).
    pub path: String,
    pub query: Option<String>,
    /// The consumer's headers; [`Engine::forward`] drops those that do not pass.
    pub headers: HeaderMap,
    pub body: Body,
}

/// The upstream's answer, ready for the consumer.
#[derive(Debug)]
pub struct Forwarded {
    pub response: Response<reqwest::Body>,
    /// The request was sent a second time with a renewed token.
    pub retried: bool,
    /// The upstream's host, for the audit line.
    pub host: String,
}

/// The proxy's HTTP client: no redirects followed, bounded connects and reads.
#[derive(Debug)]
pub struct Upstreams {
    client: reqwest::Client,
}

impl Upstreams {
    pub fn new() -> Result<Upstreams, EngineError> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(MAX_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            // Straight to the upstream: an HTTP_PROXY of the environment would see
            // the token in clear for an http upstream on loopback.
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| {
                EngineError::Internal(format!("cannot start the proxy's HTTP client: {e}"))
            })?;
        Ok(Upstreams { client })
    }
}

/// The upstream URL for `path` and `query` under `base`, or why not. The result
/// has `base`'s scheme, host and port, and its path starts with `base`'s.
pub fn upstream_url(base: &Url, path: &str, query: Option<&str>) -> Result<Url, BadPath> {
    check_path(path)?;
    let mut text = base.as_str().trim_end_matches('/').to_string();
    if let Some(q) = base.query() {
        // An upstream has no query (config.toml is checked at load); never let one
        // shift what follows.
        text.truncate(text.len() - q.len() - 1);
    }
    text.push('/');
    text.push_str(path);
    if let Some(q) = query {
        text.push('?');
        text.push_str(q);
    }
    let url = Url::parse(&text).map_err(|_| BadPath("the path does not make a valid URL"))?;
    let same_origin = url.scheme() == base.scheme()
        && url.host() == base.host()
        && url.port_or_known_default() == base.port_or_known_default()
        && url.username().is_empty()
        && url.password().is_none();
    if !same_origin || !url.path().starts_with(base.path().trim_end_matches('/')) {
        return Err(BadPath("the path would leave the upstream"));
    }
    Ok(url)
}

impl Engine {
    /// Forwards one request to `profile`'s upstream with its access token: see the
    /// module documentation for the rules.
    pub async fn forward(
        self: &Arc<Self>,
        profile: &str,
        out: Outgoing,
    ) -> Result<Forwarded, EngineError> {
        let settings = self
            .profile(profile)?
            .proxy
            .ok_or_else(|| ProxyError::NoUpstream {
                profile: profile.to_string(),
            })?;
        let base = settings.upstream_url().map_err(|e| {
            EngineError::Internal(format!("an upstream checked at load is invalid: {e}"))
        })?;
        let url = upstream_url(&base, &out.path, out.query.as_deref()).map_err(ProxyError::from)?;
        // The allow list is checked before the token is even fetched: nothing of a
        // refused request leaves the machine.
        let rules = settings.allow_rules().map_err(|e| {
            EngineError::Internal(format!("an allow list checked at load is invalid: {e}"))
        })?;
        if let Some(rules) = rules
            && !rules::allowed(&rules, out.method.as_str(), url.path())
        {
            return Err(ProxyError::NotAllowed {
                profile: profile.to_string(),
                method: out.method.to_string(),
                path: url.path().to_string(),
            }
            .into());
        }
        let host = url.host_str().unwrap_or_default().to_string();
        let timeout = settings.timeout();
        let headers = forwarded_headers(out.headers, &out.body);
        let token = self.token(profile, DEFAULT_MIN_TTL).await?;

        let upstreams = self.upstreams()?;
        let (first_body, replay) = match out.body {
            Body::Empty => (None, Some(None)),
            Body::Replayable(b) => (Some(reqwest::Body::from(b.clone())), Some(Some(b))),
            Body::Streaming(b) => (Some(b), None),
        };
        let target = Target {
            upstreams,
            url: &url,
            method: &out.method,
            headers: &headers,
            timeout,
        };
        let first = target.send(&token, first_body).await?;
        if first.status() != StatusCode::UNAUTHORIZED || !token_refused(first.headers()) {
            return Ok(Forwarded {
                response: for_consumer(first, false),
                retried: false,
                host,
            });
        }
        let renewed = self.renew_rejected(profile, token.generation).await?;
        match replay {
            Some(body) if renewed.generation != token.generation => {
                drop(first);
                let second = target.send(&renewed, body.map(reqwest::Body::from)).await?;
                if second.status() == StatusCode::UNAUTHORIZED && token_refused(second.headers()) {
                    self.refused_when_fresh(profile, renewed.generation);
                }
                Ok(Forwarded {
                    response: for_consumer(second, true),
                    retried: true,
                    host,
                })
            }
            // Streamed (it cannot be sent again), or no newer token to send: the
            // consumer gets the 401; the next request uses the renewed token.
            _ => Ok(Forwarded {
                response: for_consumer(first, false),
                retried: false,
                host,
            }),
        }
    }

    /// A resource server refused the access token of `rejected_generation`: a new
    /// one, unless the session moved on since (then the current one, and no
    /// provider call). Concurrent callers with the same generation cause one
    /// refresh (the refresh transaction's forced rule).
    ///
    /// A token the API refused at once after such a renewal (the retry got a
    /// 401 too: see [`Engine::forward`]) is not renewed again for a rejection
    /// within [`RENEWAL_QUIET`]: an API that refuses a brand-new token will refuse
    /// the next one too, and renewing on every request would make every request a
    /// refresh at the provider. The current token is answered instead, and the
    /// caller passes the rejection on.
    pub async fn renew_rejected(
        self: &Arc<Self>,
        profile: &str,
        rejected_generation: u64,
    ) -> Result<AccessToken, EngineError> {
        let quiet = self
            .renewals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(profile)
            .is_some_and(|(generation, at)| {
                *generation == rejected_generation && at.elapsed() < RENEWAL_QUIET
            });
        if quiet {
            tracing::warn!(
                profile,
                "the API refused a token renewed less than a minute ago for the same reason; not renewing again"
            );
            return Ok(self
                .usable(profile)
                .await?
                .token(crate::engine::Served::AsHeld));
        }
        self.refresh_as(
            profile,
            crate::session::refresh::Want::Forced {
                seen_generation: rejected_generation,
            },
        )
        .await
    }

    /// The API refused the token of `generation` right after a renewal made it:
    /// [`Engine::renew_rejected`] leaves it alone for [`RENEWAL_QUIET`].
    fn refused_when_fresh(&self, profile: &str, generation: u64) {
        self.renewals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(profile.to_string(), (generation, Instant::now()));
    }
}

/// Whether a 401's challenges say the token was refused.
fn token_refused(headers: &HeaderMap) -> bool {
    rules::wants_new_token(
        headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

/// The names a `Connection` header lists, owned (the map is consumed after).
fn connection_names(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| rules::connection_names(v).into_iter().map(str::to_string))
        .collect()
}

fn filter(headers: HeaderMap, keep: fn(&str, &[&str]) -> bool) -> HeaderMap {
    let named = connection_names(&headers);
    let named: Vec<&str> = named.iter().map(String::as_str).collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    let mut last: Option<HeaderName> = None;
    for (name, value) in headers {
        // `HeaderMap`'s iterator names a header once, then gives its further values
        // with `None`.
        if let Some(n) = name {
            last = Some(n);
        }
        if let Some(n) = &last
            && keep(n.as_str(), &named)
        {
            out.append(n.clone(), value);
        }
    }
    out
}

/// The consumer's headers that go to the upstream. A body held in memory gets its
/// length from reqwest; a streamed one keeps the consumer's `Content-Length`.
fn forwarded_headers(headers: HeaderMap, body: &Body) -> HeaderMap {
    let mut out = filter(headers, rules::forwards_request_header);
    if !matches!(body, Body::Streaming(_)) {
        out.remove(CONTENT_LENGTH);
    }
    out
}

/// Where and how one request goes; sent once, or twice after a 401.
struct Target<'a> {
    upstreams: &'a Upstreams,
    url: &'a Url,
    method: &'a Method,
    headers: &'a HeaderMap,
    timeout: Duration,
}

impl Target<'_> {
    /// One attempt with `token`.
    async fn send(
        &self,
        token: &AccessToken,
        body: Option<reqwest::Body>,
    ) -> Result<reqwest::Response, ProxyError> {
        let Target {
            upstreams,
            url,
            method,
            headers,
            timeout,
        } = *self;
        let host = url.host_str().unwrap_or_default().to_string();
        let mut bearer = HeaderValue::try_from(format!("Bearer {}", token.access_token.expose()))
            .map_err(|_| ProxyError::Unreachable {
            host: host.clone(),
            reason: "the access token cannot be sent in a header".into(),
        })?;
        bearer.set_sensitive(true);
        let mut request = upstreams
            .client
            .request(method.clone(), url.clone())
            .headers(headers.clone())
            .header(AUTHORIZATION, bearer);
        if let Some(b) = body {
            request = request.body(b);
        }
        match tokio::time::timeout(timeout, request.send()).await {
            Err(_) => Err(ProxyError::TooSlow {
                host,
                secs: timeout.as_secs(),
            }),
            Ok(Ok(response)) => Ok(response),
            // A connect that timed out is an upstream that cannot be reached (502),
            // not a slow answer.
            Ok(Err(e)) if e.is_timeout() && !e.is_connect() => Err(ProxyError::TooSlow {
                host,
                secs: timeout.as_secs(),
            }),
            // reqwest's errors name the URL, which holds the consumer's query: say only
            // what kind of failure it was.
            Ok(Err(e)) => Err(ProxyError::Unreachable {
                host,
                reason: failure_kind(&e).into(),
            }),
        }
    }
}

fn failure_kind(e: &reqwest::Error) -> &'static str {
    if e.is_connect() {
        "the connection failed"
    } else if e.is_body() || e.is_request() {
        "the request could not be sent"
    } else {
        "the exchange failed"
    }
}

/// The upstream's response with its hop-by-hop and `Latchkey-*` headers dropped,
/// marked as the upstream's.
fn for_consumer(response: reqwest::Response, retried: bool) -> Response<reqwest::Body> {
    let response: Response<reqwest::Body> = response.into();
    let (mut parts, body) = response.into_parts();
    parts.headers = filter(
        std::mem::take(&mut parts.headers),
        rules::forwards_response_header,
    );
    parts
        .headers
        .insert(PROXIED_HEADER, HeaderValue::from_static("1"));
    if retried {
        parts
            .headers
            .insert(RETRIED_HEADER, HeaderValue::from_static("1"));
    }
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn upstream_urls_stay_under_the_upstream() {
        let base = url("https://api.example.com/v2");
        assert_eq!(
            upstream_url(&base, "issues", Some("state=open"))
                .unwrap()
                .as_str(),
            "https://api.example.com/v2/issues?state=open"
        );
        let root = url("https://api.example.com/");
        assert_eq!(
            upstream_url(&root, "me", None).unwrap().as_str(),
            "https://api.example.com/me"
        );
        // A doubled slash or an `@` stays a path on the same host.
        let u = upstream_url(&root, "/evil.example/x", None).unwrap();
        assert_eq!(u.host_str(), Some("api.example.com"));
        let u = upstream_url(&base, "@evil.example/x", None).unwrap();
        assert_eq!(u.host_str(), Some("api.example.com"));
        assert!(upstream_url(&base, "../admin", None).is_err());
        assert!(upstream_url(&base, "%2e%2e/admin", None).is_err());
    }

    #[test]
    fn request_headers_lose_what_must_not_pass() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer lk_x"));
        h.insert("connection", HeaderValue::from_static("x-hop"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("latchkey-protocol", HeaderValue::from_static("1"));
        h.insert("content-length", HeaderValue::from_static("3"));
        h.append("accept", HeaderValue::from_static("a/b"));
        h.append("accept", HeaderValue::from_static("c/d"));
        let out = forwarded_headers(h, &Body::Replayable(Bytes::from_static(b"abc")));
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["accept"]);
        assert_eq!(out.get_all("accept").iter().count(), 2);
    }
}
