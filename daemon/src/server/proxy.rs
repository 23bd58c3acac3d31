//! `ANY /v1/proxy/{profile}/{*path}`: the API proxy's route (docs/behaviour.md,
//! "The API proxy"). It turns the consumer's request into the engine's
//! [`Outgoing`], keeping a body of at most [`MAX_REPLAY`] bytes for a retry and
//! streaming a larger one, calls [`crate::Engine::forward`] (which holds every
//! rule), counts, and tells the audit line what happened. The access check
//! (`proxy:<profile>` for a client token) ran before, in the front layer.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use latchkey_proto::error::{Category, ErrorBody};
use latchkey_proto::profile::ProfileName;
use latchkey_proto::proxy::MAX_REPLAY;

use super::routes::{Audit, bad_profile_name, fail, problem};
use super::state::Daemon;
use crate::error::EngineError;
use crate::proxy::{self, Outgoing, ProxyError};

/// What the audit line says about a proxied request, beyond the common fields:
/// the upstream's host and the path without its query. Never headers, bodies or
/// queries.
#[derive(Debug, Clone)]
pub(super) struct ProxyAudit {
    pub host: String,
    pub path: String,
    pub retried: bool,
}

pub(super) async fn proxy(State(d): State<Arc<Daemon>>, req: Request) -> Response {
    // The path as sent, percent-encoding kept: `/v1/proxy/{profile}/{rest}`.
    let raw = req.uri().path().to_string();
    let mut parts = raw.splitn(5, '/').skip(3);
    let (Some(name), Some(rest)) = (parts.next(), parts.next()) else {
        return not_proxied("name a path after the profile: /v1/proxy/PROFILE/PATH");
    };
    let profile = match ProfileName::new(name) {
        Ok(p) => p,
        Err(e) => return bad_profile_name(&e),
    };
    d.counters.proxy_requests.fetch_add(1, Ordering::Relaxed);
    let (mut head, body) = req.into_parts();
    // The caller's client token, if any, was checked and is of no further use: it
    // never reaches the engine (nor a Debug print of the request).
    head.headers.remove(axum::http::header::AUTHORIZATION);
    let body = match read_body(body, content_length(&head.headers)).await {
        Ok(b) => b,
        Err(e) => return fail(&EngineError::from(e), Some(&profile), None),
    };
    let out = Outgoing {
        method: head.method,
        path: rest.to_string(),
        query: head.uri.query().map(str::to_string),
        headers: head.headers,
        body,
    };
    let audit = |host: &str, retried| ProxyAudit {
        host: host.to_string(),
        path: rest.to_string(),
        retried,
    };
    match d.engine.forward(&profile, out).await {
        Ok(f) => {
            if f.retried {
                d.counters.proxy_retries.fetch_add(1, Ordering::Relaxed);
            }
            let mut r = f.response.map(Body::new).into_response();
            r.extensions_mut().insert(Audit {
                profile: Some(profile.to_string()),
                outcome: if f.retried { "retried" } else { "proxied" },
            });
            r.extensions_mut().insert(audit(&f.host, f.retried));
            r
        }
        Err(e) => {
            // An upstream that failed (502, 504) names itself; nothing else does.
            let upstream = match &e {
                EngineError::Proxy(p) => p.host(),
                _ => None,
            };
            if upstream.is_some() {
                d.counters
                    .proxy_upstream_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
            let hint = matches!(e, EngineError::NotLoggedIn { .. })
                .then(|| d.pending_login_hint(&profile))
                .flatten();
            let mut r = fail(&e, Some(&profile), hint);
            r.extensions_mut()
                .insert(audit(upstream.unwrap_or("-"), false));
            r
        }
    }
}

fn not_proxied(message: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        ErrorBody {
            category: Category::Usage,
            message: message.into(),
            hint: Some("see docs/api.md, \"The API proxy\"".into()),
            retryable: false,
        },
        None,
    )
}

fn content_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The consumer's body: kept when it ends within [`MAX_REPLAY`] bytes, else
/// streamed on (what was read first, then the rest as it comes).
async fn read_body(mut body: Body, length: Option<u64>) -> Result<proxy::Body, ProxyError> {
    if length.is_some_and(|l| l > MAX_REPLAY as u64) {
        return Ok(proxy::Body::Streaming(reqwest::Body::wrap_stream(
            body.into_data_stream(),
        )));
    }
    let mut kept = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ProxyError::Body(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers: not forwarded
        };
        kept.extend_from_slice(&data);
        if kept.len() > MAX_REPLAY {
            let first = futures_util::stream::iter([Ok::<Bytes, axum::Error>(kept.freeze())]);
            return Ok(proxy::Body::Streaming(reqwest::Body::wrap_stream(
                first.chain(body.into_data_stream()),
            )));
        }
    }
    Ok(proxy::Body::from_bytes(kept.freeze()))
}
