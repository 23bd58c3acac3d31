//! Who is asking, decided once per request before any route runs
//! (docs/behaviour.md, "Client tokens").
//!
//! - The owner: a connection on the main socket (the peer check passed) whose
//!   request carries no `Authorization` header. The owner may call every endpoint.
//! - A client token (`Authorization: Bearer lk_…`), wherever it arrives: limited
//!   to its scopes by the proto's route → scope table ([`Endpoint::access`]), and
//!   never allowed an owner-only endpoint (administration, status, shutdown,
//!   logout), whatever its scopes.
//! - Anything else on a delegate listener: 401 with `WWW-Authenticate: Bearer
//!   realm="latchkey"` (plus `error="invalid_token"` when a token was presented
//!   but is unknown, expired or revoked). A valid token without the scope: 403,
//!   category `forbidden`, no `WWW-Authenticate`.
//! - On the TCP listener, first: the `Host` header must name the listener and a
//!   request with an `Origin` header is refused, so a web page in a browser
//!   (DNS rebinding, a cross-site form) cannot reach it.
//!
//! [`Caller`] can only be made here, and every handler takes one: a route reached
//! without this check does not compile.

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use latchkey_proto::delegation::{Presented, ScopeKind, TokenId};
use latchkey_proto::error::{Category, ErrorBody};
use latchkey_proto::profile::ProfileName;
use latchkey_proto::request::{Access, Endpoint};

use super::peer::{DelegatePeer, Peer, Via};
use super::routes::problem;
use super::state::Daemon;
use crate::delegation::{Rejection, Verified};
use crate::vault::unix_now;

/// The caller of a request, as [`authorize`] decided.
#[derive(Debug, Clone)]
pub struct Caller {
    token: Option<Verified>,
}

impl Caller {
    /// The client token the request carries; `None`: the owner.
    pub fn token(&self) -> Option<&Verified> {
        self.token.as_ref()
    }

    /// Whether the caller may see `profile` for `kind`.
    pub fn allows(&self, kind: ScopeKind, profile: &str) -> bool {
        self.token.as_ref().is_none_or(|t| t.allows(kind, profile))
    }

    /// The profiles the caller may see for `kind`; `None`: every one (the owner).
    pub fn limited_to(&self, kind: ScopeKind) -> Option<Vec<ProfileName>> {
        self.token.as_ref().map(|t| t.profiles(kind))
    }
}

/// A request refused before any route runs, with the client token it named, if
/// any (a well-formed token's id is public: the audit line names it).
#[derive(Debug)]
pub struct Refused {
    pub response: Response,
    pub token_id: Option<TokenId>,
    pub token_name: Option<String>,
}

impl Refused {
    fn anonymous(response: Response) -> Self {
        Refused {
            response,
            token_id: None,
            token_name: None,
        }
    }
}

/// Decides the [`Caller`] of a routed request, or the 401/403 that refuses it.
/// The router's front middleware calls it before anything else runs.
#[allow(
    clippy::result_large_err,
    reason = "the error is the finished response, built only on the refusal path"
)]
pub fn authorize(d: &Daemon, peer: &Peer, req: &Request) -> Result<Caller, Refused> {
    if let Peer::Delegate(DelegatePeer {
        via: Via::Tcp(local),
        ..
    }) = peer
    {
        check_browser_safety(req, *local).map_err(Refused::anonymous)?;
    }
    let token = match (req.headers().get(header::AUTHORIZATION), peer) {
        // The owner: the hot path, nothing to look up.
        (None, Peer::Owner(_)) => return Ok(Caller { token: None }),
        (None, Peer::Delegate(_)) => {
            return Err(Refused::anonymous(unauthorized(
                false,
                "this listener serves client tokens only: send `Authorization: Bearer lk_…`",
            )));
        }
        (Some(value), _) => {
            let Some(text) = bearer(value) else {
                return Err(Refused::anonymous(unauthorized(
                    true,
                    "the Authorization header is not `Bearer` with a client token",
                )));
            };
            let presented_id = Presented::parse(text).map(|p| p.id);
            match d.engine.client_tokens().verify(text, unix_now()) {
                Ok(v) => v,
                Err(Rejection::Unreadable(e)) => {
                    // Fail closed. The details (a path, a parse error) go to the log,
                    // not to a caller who may be another user.
                    tracing::error!(error = %e, "cannot read the client tokens; refusing every request that carries one");
                    let response = problem(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        ErrorBody {
                            category: Category::LocalStorage,
                            message: "client tokens cannot be checked right now".into(),
                            hint: Some(
                                "the owner can run `latchkey doctor`; the daemon's log says why"
                                    .into(),
                            ),
                            retryable: false,
                        },
                        None,
                    );
                    return Err(Refused {
                        response,
                        token_id: presented_id,
                        token_name: None,
                    });
                }
                Err(r) => {
                    tracing::info!(
                        target: "latchkey::audit",
                        reason = r.reason(),
                        listener = peer.listener(),
                        client_token = presented_id.as_ref().map_or("-", TokenId::as_str),
                        "client token refused"
                    );
                    return Err(Refused {
                        response: unauthorized(
                            true,
                            "the client token is unknown, expired or revoked",
                        ),
                        token_id: presented_id,
                        token_name: None,
                    });
                }
            }
        }
    };
    let checked = match endpoint_of(req) {
        Some(endpoint) => check_scope(&token, endpoint, req),
        // A routed path whose method no endpoint takes: the router would answer
        // 405, but a token gets nothing it was not granted, not even that.
        None if req.extensions().get::<MatchedPath>().is_some() => Err(forbidden(format!(
            "{} is not an operation a client token can be granted",
            req.method()
        ))),
        None => Ok(()),
    };
    match checked {
        Ok(()) => Ok(Caller { token: Some(token) }),
        Err(response) => Err(Refused {
            response,
            token_id: Some(token.id.clone()),
            token_name: Some(token.name.clone()),
        }),
    }
}

/// 403, category `forbidden`, with the hint to mint what is needed.
fn forbidden(message: String) -> Response {
    problem(
        StatusCode::FORBIDDEN,
        ErrorBody {
            category: Category::Forbidden,
            message,
            hint: Some(
                "the owner can mint a token with the scope it needs: `latchkey client-token mint --scope KIND:PROFILE`".into(),
            ),
            retryable: false,
        },
        None,
    )
}

/// The token of a `Bearer` Authorization value (the scheme in any case).
fn bearer(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    let (scheme, token) = text.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The endpoint a routed request is for, by [`Method::admits`](latchkey_proto::request::Method::admits) (HEAD counts as
/// GET, since the router serves it with the GET handler). `None` for the fallback and for a method no
/// endpoint at that path takes.
fn endpoint_of(req: &Request) -> Option<Endpoint> {
    let matched = req.extensions().get::<MatchedPath>()?.as_str();
    let method = req.method().as_str();
    Endpoint::ALL
        .into_iter()
        .find(|e| e.template() == matched && e.method().admits(method))
}

/// The scope check of [`Endpoint::access`] for a client token.
#[allow(
    clippy::result_large_err,
    reason = "the error is the finished response"
)]
fn check_scope(t: &Verified, endpoint: Endpoint, req: &Request) -> Result<(), Response> {
    match endpoint.access() {
        Access::AnyToken => Ok(()),
        Access::Owner => Err(forbidden(format!(
            "{} {} is for the owner alone, never for a client token",
            endpoint.method(),
            endpoint.template()
        ))),
        Access::Profile(kind) => {
            let profile = path_segment(endpoint.template(), req.uri().path(), "{profile}");
            match profile {
                Some(p) if t.allows(kind, &p) => Ok(()),
                Some(p) => Err(forbidden(format!(
                    "this client token lacks the scope {}:{}",
                    kind.as_str(),
                    p.chars().take(64).collect::<String>()
                ))),
                None => Err(forbidden("this request names no profile".into())),
            }
        }
        Access::Limited(kind) => {
            if t.profiles(kind).is_empty() {
                Err(forbidden(format!(
                    "this client token has no {}: scope",
                    kind.as_str()
                )))
            } else {
                Ok(())
            }
        }
    }
}

/// The segment of `path` where `template` has `var`, as sent (not decoded: a
/// percent-encoded name matches no scope, which fails closed).
fn path_segment(template: &str, path: &str, var: &str) -> Option<String> {
    let index = template.split('/').position(|s| s == var)?;
    path.split('/').nth(index).map(str::to_string)
}

/// The TCP listener's defences against web pages: `Host` must name the listener
/// (`127.0.0.1:PORT`, `[::1]:PORT` or `localhost:PORT`), and no `Origin`.
#[allow(
    clippy::result_large_err,
    reason = "the error is the finished response"
)]
fn check_browser_safety(req: &Request, local: std::net::SocketAddr) -> Result<(), Response> {
    let refuse = |message: &str| {
        problem(
            StatusCode::FORBIDDEN,
            ErrorBody {
                category: Category::Forbidden,
                message: message.into(),
                hint: Some(format!(
                    "call http://{local}/ directly, from a program rather than a web page"
                )),
                retryable: false,
            },
            None,
        )
    };
    if req.headers().contains_key(header::ORIGIN) {
        return Err(refuse(
            "requests with an Origin header (from web pages) are refused",
        ));
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let named = [local.to_string(), format!("localhost:{}", local.port())];
    if named.iter().any(|n| n.eq_ignore_ascii_case(host)) {
        Ok(())
    } else {
        Err(refuse("the Host header does not name this listener"))
    }
}

/// 401 with the `WWW-Authenticate` challenge of RFC 6750.
fn unauthorized(presented: bool, message: &str) -> Response {
    let mut r = problem(
        StatusCode::UNAUTHORIZED,
        ErrorBody {
            category: Category::Forbidden,
            message: message.into(),
            hint: Some(
                "present a client token the owner minted (`latchkey client-token mint`), as LATCHKEY_CLIENT_TOKEN for latchkey".into(),
            ),
            retryable: false,
        },
        None,
    );
    let challenge = if presented {
        "Bearer realm=\"latchkey\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"latchkey\""
    };
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_segment_is_read_where_the_template_has_it() {
        let t = "/v1/profiles/{profile}/token";
        assert_eq!(
            path_segment(t, "/v1/profiles/work/token", "{profile}").as_deref(),
            Some("work")
        );
        assert_eq!(
            path_segment(t, "/v1/profiles/wor%6B/token", "{profile}").as_deref(),
            Some("wor%6B")
        );
        assert_eq!(path_segment("/v1/events", "/v1/events", "{profile}"), None);
    }

    #[test]
    fn bearer_takes_the_scheme_in_any_case() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(bearer(&v("Bearer lk_x")), Some("lk_x"));
        assert_eq!(bearer(&v("bearer  lk_x ")), Some("lk_x"));
        assert_eq!(bearer(&v("Basic abc")), None);
        assert_eq!(bearer(&v("Bearer ")), None);
        assert_eq!(bearer(&v("Bearer")), None);
    }
}
