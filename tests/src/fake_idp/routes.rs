//! The HTTP face of the fake provider: the OAuth/OIDC routes, and the middleware that logs
//! and counts every request and serves scripted faults before the real handler runs.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LOCATION, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::admin;
use super::model::{DEVICE_CODE_GRANT, Endpoint, Fault, LoggedRequest, fingerprint};
use super::server::ConnAbort;
use super::state::{AuthorizeOutcome, BearerError, OAuthError, Params, Shared};

/// Request bodies larger than this are refused: the fake only ever needs small forms.
/// Large enough for the API proxy tests, which send 2 MiB through userinfo.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// The OAuth `error` code a response carries, for the request log and the counters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorCode(pub(crate) &'static str);

/// The whole application: OAuth routes behind the tracking middleware, admin routes not
/// (they are the test's own channel and must not disturb counters, log or faults).
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let oauth = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/oauth-authorization-server", get(discovery))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/device/authorize", post(device_authorize))
        .route("/userinfo", get(userinfo).post(userinfo))
        .route("/revoke", post(revoke))
        .route("/jwks", get(jwks))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&shared), track));
    admin::router().merge(oauth).with_state(shared)
}

/// Logs and counts the request, then serves a scripted fault or the real handler.
async fn track(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let arrived = shared.started.elapsed();
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
    };
    let endpoint = Endpoint::from_path(parts.uri.path());
    let mut entry = describe(&parts, &bytes, endpoint);
    entry.at_ms = millis(arrived);

    let (seq, fault) = {
        let mut st = shared.lock();
        entry.seq = st.next_seq;
        st.next_seq += 1;
        let c = &mut st.counters;
        match endpoint {
            Some(Endpoint::Discovery) => c.requests.discovery += 1,
            Some(Endpoint::Authorize) => c.requests.authorize += 1,
            Some(Endpoint::Token) => {
                c.requests.token += 1;
                let g = &mut c.token_requests;
                match entry.grant_type.as_deref() {
                    Some("authorization_code") => g.authorization_code += 1,
                    Some("refresh_token") => g.refresh_token += 1,
                    Some(DEVICE_CODE_GRANT) => g.device_code += 1,
                    _ => g.other += 1,
                }
            }
            Some(Endpoint::DeviceAuthorization) => c.requests.device_authorization += 1,
            Some(Endpoint::Userinfo) => c.requests.userinfo += 1,
            Some(Endpoint::Revocation) => c.requests.revocation += 1,
            Some(Endpoint::Any) | None => c.requests.other += 1,
        }
        let fault = endpoint.and_then(|e| st.take_fault(e));
        if fault.is_some() {
            st.counters.faults_served += 1;
        }
        entry.fault = fault;
        st.log.push(entry.clone());
        (entry.seq, fault)
    };

    let response = match fault {
        Some(Fault::ConnectionReset) => return reset_connection(&parts).await,
        Some(Fault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Some(canned) => canned_fault(canned),
        None => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    };

    let error = response.extensions().get::<ErrorCode>().map(|e| e.0);
    let mut st = shared.lock();
    if error == Some("invalid_grant") {
        st.counters.invalid_grant += 1;
    }
    // Search by sequence number: the log may have been cleared while this request ran.
    if let Some(logged) = st.log.iter_mut().rev().find(|e| e.seq == seq) {
        logged.done_ms = Some(millis(shared.started.elapsed()));
        logged.status = Some(response.status().as_u16());
        logged.error = error.map(str::to_owned);
    }
    response
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The log entry of a request, with tokens reduced to fingerprints.
fn describe(parts: &Parts, body: &[u8], endpoint: Option<Endpoint>) -> LoggedRequest {
    // Parameters live in the form for POSTs and in the query for `/authorize`; a malformed
    // set is logged without parameters (the handler answers `invalid_request`).
    let raw = if parts.method == Method::POST {
        body
    } else {
        parts.uri.query().unwrap_or_default().as_bytes()
    };
    let params = Params::parse(raw).unwrap_or_default();
    let owned = |key: &str| params.get(key).map(str::to_owned);
    let token_sha256 = match endpoint {
        Some(Endpoint::Userinfo) => bearer(&parts.headers).map(fingerprint),
        _ => params.get("token").map(fingerprint),
    };
    LoggedRequest {
        seq: 0,
        at_ms: 0,
        done_ms: None,
        unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, millis),
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        endpoint,
        grant_type: owned("grant_type"),
        client_id: owned("client_id").or_else(|| basic_client(&parts.headers).map(|(id, _)| id)),
        refresh_token_sha256: params.get("refresh_token").map(fingerprint),
        device_code_sha256: params.get("device_code").map(fingerprint),
        token_sha256,
        token_type_hint: owned("token_type_hint"),
        status: None,
        error: None,
        fault: None,
    }
}

/// Resets the connection carrying this request; the returned future never completes
/// because the connection task drops it together with the connection.
async fn reset_connection(parts: &Parts) -> Response {
    match parts.extensions.get::<Arc<ConnAbort>>() {
        Some(abort) => {
            abort.trigger();
            std::future::pending().await
        }
        // Only reachable if the router is served by something other than `server::serve`.
        None => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "connection_reset needs the fake's own server loop\n",
        ),
    }
}

/// The fixed answer of a fault that replaces the response.
fn canned_fault(fault: Fault) -> Response {
    let retry_after = |mut r: Response| {
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        r
    };
    match fault {
        Fault::Status500 => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected fault: internal server error\n",
        ),
        Fault::Status503 => retry_after(plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "injected fault: service unavailable\n",
        )),
        Fault::Status429 => retry_after(plain(
            StatusCode::TOO_MANY_REQUESTS,
            "injected fault: too many requests\n",
        )),
        Fault::Status409 => json_error(
            StatusCode::CONFLICT,
            "conflict",
            "injected fault: conflicting concurrent request",
        ),
        Fault::InvalidGrant => json_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "injected fault: grant rejected",
        ),
        Fault::Forbidden403 => json_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "injected fault: forbidden",
        ),
        Fault::Redirect(port) => (
            StatusCode::FOUND,
            [(
                axum::http::header::LOCATION,
                format!("http://127.0.0.1:{port}/elsewhere"),
            )],
        )
            .into_response(),
        // Cut mid-document, as a proxy dropping the tail of a token response would.
        Fault::MalformedJson => (
            StatusCode::OK,
            [(CONTENT_TYPE, "application/json")],
            r#"{"token_type":"Bearer","expires_in":36"#,
        )
            .into_response(),
        // Handled by the middleware before it asks for a canned answer.
        Fault::Slow(_) | Fault::ConnectionReset => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "fake-idp bug: fault has no canned answer\n",
        ),
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, [(CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// An RFC 6749 §5.2 JSON error, tagged for the log.
fn json_error(status: StatusCode, error: &'static str, description: &str) -> Response {
    let mut r = (
        status,
        [(CACHE_CONTROL, "no-store"), (PRAGMA, "no-cache")],
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response();
    r.extensions_mut().insert(ErrorCode(error));
    r
}

fn oauth_error(e: &OAuthError) -> Response {
    let mut r = json_error(e.status, e.error, &e.description);
    if e.status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="fake-idp""#),
        );
    }
    r
}

/// A token-endpoint style success: JSON that must not be cached (RFC 6749 §5.1).
fn no_store_json(body: Value) -> Response {
    (
        [(CACHE_CONTROL, "no-store"), (PRAGMA, "no-cache")],
        axum::Json(body),
    )
        .into_response()
}

/// The form of a POST, refusing other content types as RFC 6749 §3.2 requires.
fn form(headers: &HeaderMap, body: &[u8]) -> Result<Params, OAuthError> {
    let is_form = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(OAuthError::invalid_request(
            "content-type must be application/x-www-form-urlencoded",
        ));
    }
    Params::parse(body)
}

/// The client id of an `Authorization: Basic` header (RFC 6749 §2.3.1: form-encoded id).
fn basic_client(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    // RFC 6749 §2.3.1: each part is form-urlencoded.
    let pair = format!("id={id}&secret={secret}");
    let mut parts = url::form_urlencoded::parse(pair.as_bytes());
    let id = parts.next()?.1.into_owned();
    let secret = parts.next()?.1.into_owned();
    Some((id, secret))
}

/// The token of an `Authorization: Bearer` header (RFC 6750 §2.1).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    let doc = shared.lock().discovery();
    match doc {
        Some(doc) => axum::Json(doc).into_response(),
        None => not_found().await,
    }
}

async fn jwks() -> Response {
    // ID tokens are unsigned (`alg: none`), so there are no keys to publish.
    axum::Json(json!({ "keys": [] })).into_response()
}

async fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "not found\n")
}

async fn authorize(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let query = req.uri().query().unwrap_or_default();
    let params = match Params::parse(query.as_bytes()) {
        Ok(p) => p,
        Err(e) => return oauth_error(&e),
    };
    let outcome = shared.lock().authorize(&params);
    match outcome {
        AuthorizeOutcome::Refuse(e) => oauth_error(&e),
        AuthorizeOutcome::Redirect { location, error } => {
            let mut r = (StatusCode::FOUND, [(LOCATION, location)]).into_response();
            if let Some(error) = error {
                r.extensions_mut().insert(ErrorCode(error));
            }
            r
        }
    }
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match form(&headers, &body) {
        Ok(p) => p,
        Err(e) => return oauth_error(&e),
    };
    let basic = basic_client(&headers);
    let result = shared.lock().token(
        &params,
        basic.as_ref().map(|(i, s)| (i.as_str(), s.as_str())),
    );
    match result {
        Ok(body) => no_store_json(body),
        Err(e) => oauth_error(&e),
    }
}

async fn device_authorize(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match form(&headers, &body) {
        Ok(p) => p,
        Err(e) => return oauth_error(&e),
    };
    let basic = basic_client(&headers);
    let result = shared.lock().device_authorize(
        &params,
        basic.as_ref().map(|(i, s)| (i.as_str(), s.as_str())),
    );
    match result {
        Ok(body) => no_store_json(body),
        Err(e) => oauth_error(&e),
    }
}

/// Reads (and ignores) a body: a POST of any size is taken whole before the answer,
/// as an API would (the proxy tests send 2 MiB through it).
async fn userinfo(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    use http_body_util::BodyExt;
    // A broken upload still gets the answer below.
    body.collect().await.ok();

    let result = shared.lock().userinfo(bearer(&headers));
    match result {
        Ok(claims) => axum::Json(claims).into_response(),
        // RFC 6750 §3.1: no error code when the request carried no credentials.
        Err(BearerError::Missing) => (
            StatusCode::UNAUTHORIZED,
            [(WWW_AUTHENTICATE, r#"Bearer realm="fake-idp""#)],
        )
            .into_response(),
        Err(BearerError::Invalid(why)) => {
            let mut r = json_error(StatusCode::UNAUTHORIZED, "invalid_token", why);
            let challenge = format!(
                r#"Bearer realm="fake-idp", error="invalid_token", error_description="{why}""#
            );
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                r.headers_mut().insert(WWW_AUTHENTICATE, v);
            }
            r
        }
    }
}

async fn revoke(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if !shared.lock().cfg.revocation {
        return not_found().await;
    }
    let params = match form(&headers, &body) {
        Ok(p) => p,
        Err(e) => return oauth_error(&e),
    };
    let basic = basic_client(&headers);
    let result = shared.lock().revoke(
        &params,
        basic.as_ref().map(|(i, s)| (i.as_str(), s.as_str())),
    );
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => oauth_error(&e),
    }
}
